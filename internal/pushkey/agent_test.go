package pushkey

// Tests of the ssh-agent client (agent.go) against an in-process agent on a
// unix socket: the ephemeral key added with its 60 s lifetime and able to
// sign, a key without its private half refused, dial errors, and the order
// of the agent's keys. --push-key with such an agent through run is the root
// package's pushkey_test.go; with a real ssh-agent and ssh e2e/pushkey_test.go.

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/ssm-proxy/ssm-proxy/internal/testenv"
)

func agentContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAgentAddEphemeral(t *testing.T) {
	ta := testenv.StartSSHAgent(t)
	ag, err := DialAgent(agentContext(t), ta.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	k, err := NewEphemeral(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := ag.AddEphemeral(k, "ssm-proxy ephemeral"); err != nil {
		t.Fatal(err)
	}
	added := ta.Added()
	if len(added) != 1 || added[0].LifetimeSecs != 60 || added[0].Comment != "ssm-proxy ephemeral" {
		t.Fatalf("added %+v, want one key with a 60 s lifetime", added)
	}
	keys, err := ag.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Fingerprint() != k.Fingerprint() || keys[0].Source != "ssh-agent key ssm-proxy ephemeral" {
		t.Errorf("agent lists %v", keys)
	}
	// The agent can sign with it: it is the private half of what was pushed.
	signers, err := agent.NewClient(mustDial(t, ta.Socket)).Signers()
	if err != nil || len(signers) != 1 {
		t.Fatalf("signers %v %v", signers, err)
	}
	sig, err := signers[0].Sign(rand.Reader, []byte("data"))
	if err != nil || k.Public.Verify([]byte("data"), sig) != nil {
		t.Errorf("signature by the agent's key does not verify with the pushed key: %v", err)
	}

	file := &Key{Public: k.Public, Source: "file"}
	if err := ag.AddEphemeral(file, "x"); err == nil {
		t.Error("a key without its private half was added")
	}
}

func mustDial(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialAgentErrors(t *testing.T) {
	ctx := agentContext(t)
	if _, err := DialAgent(ctx, ""); !errors.Is(err, ErrNoAgent) {
		t.Errorf("no socket: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "none.sock")
	_, err := DialAgent(ctx, missing)
	var ae *AgentError
	if !errors.As(err, &ae) || ae.Socket != missing {
		t.Errorf("missing socket: %v", err)
	}
}

func TestAgentKeysOrder(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ta := testenv.StartSSHAgent(t, ec, ed)
	ag, err := DialAgent(agentContext(t), ta.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	keys, err := ag.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Type() != "ecdsa-sha2-nistp256" || keys[1].Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("keys %v", keys)
	}
}
