package testenv

import (
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh/agent"
)

// SSHAgent is an ssh-agent served in-process on a unix socket until the
// test ends, holding the keys it was started with and recording every key
// added to it. Point SSH_AUTH_SOCK (or a client) at Socket.
type SSHAgent struct {
	agent.Agent
	Socket string

	mu    sync.Mutex
	added []agent.AddedKey
}

// StartSSHAgent serves a keyring holding keys (private keys, as
// agent.AddedKey takes them), each with the comment "keyN".
func StartSSHAgent(tb testing.TB, keys ...any) *SSHAgent {
	tb.Helper()
	a := &SSHAgent{Agent: agent.NewKeyring(), Socket: filepath.Join(tb.TempDir(), "agent.sock")}
	for i, k := range keys {
		if err := a.Agent.Add(agent.AddedKey{PrivateKey: k, Comment: "key" + strconv.Itoa(i)}); err != nil {
			tb.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", a.Socket)
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				agent.ServeAgent(a, c)
			}()
		}
	}()
	return a
}

// Add records k and adds it to the keyring.
func (a *SSHAgent) Add(k agent.AddedKey) error {
	a.mu.Lock()
	a.added = append(a.added, k)
	a.mu.Unlock()
	return a.Agent.Add(k)
}

// Added is every key added since the agent started, in order.
func (a *SSHAgent) Added() []agent.AddedKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]agent.AddedKey(nil), a.added...)
}
