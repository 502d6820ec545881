package pushkey

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// agentTimeout bounds the connection to the agent and each exchange on it:
// a local agent answers at once, one that does not is stuck (or waiting for
// a confirmation nobody will give).
const agentTimeout = 5 * time.Second

// ErrNoAgent reports that no ssh-agent is configured: SSH_AUTH_SOCK is not
// set and ssh_config names no IdentityAgent.
var ErrNoAgent = errors.New("no ssh-agent: SSH_AUTH_SOCK is not set")

// AgentError reports an ssh-agent that could not be reached or refused a
// request.
type AgentError struct {
	Socket string
	Err    error
	// Refused: the agent answered, with a failure (a locked agent, or one
	// such as 1Password's that takes no added keys), rather than not
	// answering at all.
	Refused bool
}

func (e *AgentError) Error() string { return fmt.Sprintf("ssh-agent at %s: %v", e.Socket, e.Err) }

func (e *AgentError) Unwrap() error { return e.Err }

// Agent is a connection to a running ssh-agent. It is not safe for
// concurrent use.
type Agent struct {
	Socket string
	conn   net.Conn
	client agent.ExtendedAgent
}

// DialAgent connects to the agent listening on socket.
func DialAgent(ctx context.Context, socket string) (*Agent, error) {
	if socket == "" {
		return nil, ErrNoAgent
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, &AgentError{Socket: socket, Err: err}
	}
	return &Agent{Socket: socket, conn: conn, client: agent.NewClient(conn)}, nil
}

// Close closes the connection; keys added stay in the agent.
func (a *Agent) Close() error { return a.conn.Close() }

// Keys lists the agent's keys, in the order the agent offers them.
func (a *Agent) Keys() ([]*Key, error) {
	a.conn.SetDeadline(time.Now().Add(agentTimeout))
	list, err := a.client.List()
	if err != nil {
		return nil, &AgentError{Socket: a.Socket, Err: fmt.Errorf("list keys: %w", err)}
	}
	keys := make([]*Key, 0, len(list))
	for _, k := range list {
		pub, err := ssh.ParsePublicKey(k.Marshal())
		if err != nil {
			continue // a type x/crypto does not know; ssh may, Instance Connect will not
		}
		source := "ssh-agent key"
		if k.Comment != "" {
			source += " " + k.Comment
		}
		keys = append(keys, &Key{Public: pub, Source: source})
	}
	return keys, nil
}

// AddEphemeral adds k, made by NewEphemeral, to the agent for Lifetime,
// the time Instance Connect keeps it valid; the agent then forgets it.
func (a *Agent) AddEphemeral(k *Key, comment string) error {
	if k.private == nil {
		return errors.New("only ephemeral keys are added to the agent")
	}
	a.conn.SetDeadline(time.Now().Add(agentTimeout))
	err := a.client.Add(agent.AddedKey{
		PrivateKey:   k.private,
		Comment:      comment,
		LifetimeSecs: uint32(Lifetime / time.Second),
	})
	if err != nil {
		return &AgentError{Socket: a.Socket, Err: fmt.Errorf("add key: %w", err), Refused: answered(err)}
	}
	return nil
}

// Remove takes k out of the agent again: added before a push that then
// failed, it would only be offered in vain.
func (a *Agent) Remove(k *Key) error {
	a.conn.SetDeadline(time.Now().Add(agentTimeout))
	if err := a.client.Remove(k.Public); err != nil {
		return &AgentError{Socket: a.Socket, Err: fmt.Errorf("remove key: %w", err), Refused: answered(err)}
	}
	return nil
}

// answered says whether err from an agent request is the agent's reply
// (SSH_AGENT_FAILURE) rather than a connection that failed or timed out.
func answered(err error) bool {
	var ne net.Error
	return !errors.As(err, &ne) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed)
}
