package testenv

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
)

// ConnectProxy is a local HTTP proxy that answers CONNECT: with Refuse, a
// 403; otherwise it tunnels every CONNECT to Upstream, whatever host it
// names. It records each CONNECT's host and Proxy-Authorization.
type ConnectProxy struct {
	Addr string // host:port to put in HTTPS_PROXY as http://Addr

	upstream string
	refuse   bool
	mu       sync.Mutex
	targets  []string
	auth     []string
}

// StartConnectProxy serves a ConnectProxy on loopback until the test ends.
func StartConnectProxy(tb testing.TB, upstream string, refuse bool) *ConnectProxy {
	p := &ConnectProxy{upstream: upstream, refuse: refuse}
	p.Addr = ServeTCP(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Method != http.MethodConnect {
			return
		}
		p.mu.Lock()
		p.targets = append(p.targets, req.Host)
		p.auth = append(p.auth, req.Header.Get("Proxy-Authorization"))
		p.mu.Unlock()
		if p.refuse {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		defer up.Close()
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		done := make(chan struct{})
		go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(c, up)
		<-done
	})
	return p
}

// Seen returns the hosts CONNECT named and the Proxy-Authorization each
// carried, in order.
func (p *ConnectProxy) Seen() (targets, auth []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...), append([]string(nil), p.auth...)
}
