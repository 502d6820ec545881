package nullclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/ssm-proxy/ssm-proxy/internal/ssmtest"
	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

// TestProxyEcho carries 1 MiB through Proxy to an echo target and back, as
// nullproxy does for ssh, and ends the session: the pacing ceiling is only
// as good as the bytes it carries.
func TestProxyEcho(t *testing.T) {
	echo := testenv.ServeTCP(t, func(c net.Conn) { io.Copy(c, c) })
	emu, err := ssmtest.Start(ssmtest.Options{TargetAddr: echo})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, ssmtest.APIClient(emu.Endpoint()), "i-0123456789abcdef0", map[string][]string{"portNumber": {"22"}})
	if err != nil {
		t.Fatal(err)
	}

	want := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{7}).Read(want)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	context.AfterFunc(ctx, func() { outR.CloseWithError(ctx.Err()) })
	done := make(chan error, 1)
	go func() { done <- s.Proxy(inR, outW) }()
	go inW.Write(want) // all at once, without waiting for acks
	got := make([]byte, len(want))
	if _, err := io.ReadFull(outR, got); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) || !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ from those sent")
	}
	inW.Close() // ends the stdin reader
	if err := s.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Proxy did not return after Terminate")
	}
	if err := emu.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}
