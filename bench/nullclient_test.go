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

// nullStart starts a null-client session on emu.
func nullStart(ctx context.Context, emu *ssmtest.Server) (*nullclient.Session, error) {
	return nullclient.Start(ctx, ssmtest.APIClient(emu.Endpoint()), "i-0123456789abcdef0", map[string][]string{"portNumber": {"22"}})
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
	emu, err := ssmtest.Start(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := nullStart(ctx, emu)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
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
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: sink})
	if err != nil {
		b.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := nullStart(ctx, emu)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
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
	case end := <-got:
		return float64(size) / end.Sub(start).Seconds()
	case <-ctx.Done():
		b.Fatal("null client upload did not finish")
	}
	return 0
}
