package protocol

import (
	"encoding/binary"
	"fmt"
)

// flagPayloadLen is the size of a PayloadFlag payload (§4.3).
const flagPayloadLen = 4

// AppendBinary appends the 4-byte big-endian payload of a flag message.
func (f Flag) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(b, uint32(f)), nil
}

// ParseFlag decodes the payload of a PayloadFlag message.
func ParseFlag(p []byte) (Flag, error) {
	if len(p) != flagPayloadLen {
		return 0, fmt.Errorf("flag payload: %d bytes, want %d", len(p), flagPayloadLen)
	}
	return Flag(binary.BigEndian.Uint32(p)), nil
}
