package protocol

import (
	"encoding/hex"
	"errors"
	"io"
)

// UUID is a 16-byte RFC 4122 UUID in canonical byte order (the order of the
// hex digits in its string form). On the wire its halves are swapped (§3).
type UUID [16]byte

// NewUUID returns a random version 4 UUID read from r (crypto/rand.Reader in
// production, a seeded source in tests).
func NewUUID(r io.Reader) (UUID, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return UUID{}, err
	}
	return UUIDv4(b), nil
}

// UUIDv4 makes 16 random bytes a version 4 (RFC 4122 variant) UUID.
func UUIDv4(random [16]byte) UUID {
	u := UUID(random)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// String returns the lowercase hyphenated form used in JSON payloads (§5.1).
func (u UUID) String() string {
	var b [36]byte
	return string(u.appendText(b[:0]))
}

// appendText appends the String form to b.
func (u UUID) appendText(b []byte) []byte {
	var h [36]byte
	hex.Encode(h[0:8], u[0:4])
	h[8] = '-'
	hex.Encode(h[9:13], u[4:6])
	h[13] = '-'
	hex.Encode(h[14:18], u[6:8])
	h[18] = '-'
	hex.Encode(h[19:23], u[8:10])
	h[23] = '-'
	hex.Encode(h[24:36], u[10:16])
	return append(b, h[:]...)
}

var errBadUUID = errors.New("malformed uuid")

// ParseUUID parses the hyphenated 36-character form, in either case.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return UUID{}, errBadUUID
	}
	j := 0
	for i := 0; i < 36; {
		if s[i] == '-' {
			i++
			continue
		}
		if _, err := hex.Decode(u[j:j+1], []byte(s[i:i+2])); err != nil {
			return UUID{}, errBadUUID
		}
		i += 2
		j++
	}
	return u, nil
}
