package bench

// The null client (bench/internal/nullclient) in-process, against an
// emulator whose target is a TCP source or sink (no ssh): what the emulator
// itself can carry on this machine, unpaced in each direction and paced.

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/bench/internal/nullclient"
	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
	"github.com/ssm-proxy/ssm-proxy/protocol"
)

// nullSession starts an emulator with opts and a null-client session on
// it. end closes both, so that nothing idles on through later measurements.
func nullSession(b *testing.B, opts ssmtest.Options) (s *nullclient.Session, end func()) {
	b.Helper()
	emu, err := ssmtest.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err = nullclient.Start(ctx, ssmtest.APIClient(emu.Endpoint()), "i-0123456789abcdef0", map[string][]string{"portNumber": {"22"}})
	if err != nil {
		emu.Close()
		b.Fatal(err)
	}
	return s, func() {
		s.Close()
		emu.Close()
	}
}

// nullDownload measures the emulator's download rate (bytes/s) to the null
// client: a TCP source writes size bytes as fast as the agent reads.
func nullDownload(b *testing.B, opts ssmtest.Options, size int64) float64 {
	b.Helper()
	opts.TargetAddr = testenv.ServeTCP(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for n := int64(0); n < size; {
			k, err := c.Write(buf[:min(int64(len(buf)), size-n)])
			n += int64(k)
			if err != nil {
				return
			}
		}
		io.Copy(io.Discard, c) // until the session ends
	})
	s, end := nullSession(b, opts)
	defer end()
	first, last, err := s.Receive(size)
	if err != nil {
		b.Fatalf("null client download: %v", err)
	}
	return float64(size) / last.Sub(first).Seconds()
}

// nullUpload measures the emulator's upload rate (bytes/s) from the null
// client in 1 KiB messages: the client sends without waiting for acks (the
// websocket's own back-pressure is the only limit), a TCP sink counts.
func nullUpload(b *testing.B, size int64) float64 {
	b.Helper()
	got := make(chan time.Time, 1)
	sink := testenv.ServeTCP(b, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for n := int64(0); n < size; {
			k, err := c.Read(buf)
			n += int64(k)
			if err != nil {
				return
			}
		}
		got <- time.Now()
	})
	s, end := nullSession(b, ssmtest.Options{TargetAddr: sink})
	defer end()
	if _, _, err := s.Receive(-1); err != nil {
		b.Fatalf("null client handshake: %v", err)
	}
	// The agent acks nothing until it has dialled the target (§5.3); a
	// client that never resends must wait for that.
	time.Sleep(100 * time.Millisecond)
	go s.Receive(1 << 62) // records the acks; ends when the websocket closes
	payload := make([]byte, protocol.MaxStreamPayload)
	start := time.Now()
	for n := int64(0); n < size; n += int64(len(payload)) {
		if err := s.Send(protocol.PayloadOutput, payload[:min(int64(len(payload)), size-n)]); err != nil {
			b.Fatalf("null client upload: %v", err)
		}
	}
	select {
	case done := <-got:
		return float64(size) / done.Sub(start).Seconds()
	case <-time.After(10 * time.Minute):
		b.Fatal("null client upload did not finish")
	}
	return 0
}
