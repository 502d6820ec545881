package forward

// Tests of the forward spec (spec.go): -L style specs parsed into bind
// address, ports and remote host, with the document and parameters each
// needs; and MuxConfig's smux settings per agent version (tunnel.go). The
// forwarder and the tunnel themselves run in e2e/forward_test.go, with real
// psql and ssh against the emulator's smux agent, whose side is
// internal/ssmtest/mux_test.go's.

import "testing"

func TestParseSpec(t *testing.T) {
	cases := []struct {
		in   string
		want Spec
		doc  string
	}{
		{"5432:5432", Spec{Bind: "127.0.0.1", LocalPort: 5432, Port: 5432}, DocumentPortForwarding},
		{"0:22", Spec{Bind: "127.0.0.1", LocalPort: 0, Port: 22}, DocumentPortForwarding},
		{"15432:mydb.abc.eu-west-1.rds.amazonaws.com:5432", Spec{Bind: "127.0.0.1", LocalPort: 15432, Host: "mydb.abc.eu-west-1.rds.amazonaws.com", Port: 5432}, DocumentPortForwardingToRemoteHost},
		{"127.0.0.2:8080:80", Spec{Bind: "127.0.0.2", LocalPort: 8080, Port: 80}, DocumentPortForwarding},
		{"0.0.0.0:8080:10.0.0.5:80", Spec{Bind: "0.0.0.0", LocalPort: 8080, Host: "10.0.0.5", Port: 80}, DocumentPortForwardingToRemoteHost},
		{"*:8080:db:80", Spec{Bind: "0.0.0.0", LocalPort: 8080, Host: "db", Port: 80}, DocumentPortForwardingToRemoteHost},
		{"localhost:8080:80", Spec{Bind: "127.0.0.1", LocalPort: 8080, Port: 80}, DocumentPortForwarding},
		{"[::1]:8080:80", Spec{Bind: "::1", LocalPort: 8080, Port: 80}, DocumentPortForwarding},
		{"[::1]:8080:[fd00::5]:5432", Spec{Bind: "::1", LocalPort: 8080, Host: "fd00::5", Port: 5432}, DocumentPortForwardingToRemoteHost},
		{"8080:[fd00::5]:5432", Spec{Bind: "127.0.0.1", LocalPort: 8080, Host: "fd00::5", Port: 5432}, DocumentPortForwardingToRemoteHost},
	}
	for _, c := range cases {
		got, err := ParseSpec(c.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", c.in, err)
			continue
		}
		if got != c.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", c.in, got, c.want)
		}
		if got.Document() != c.doc {
			t.Errorf("ParseSpec(%q).Document() = %s, want %s", c.in, got.Document(), c.doc)
		}
	}
	for _, bad := range []string{"", "5432", "a:b", "5432:0", "70000:22", "1:2:3:4:5", "host.example:80:22", "[::1:80:22", "[::1]x:80:22", "1.2.3.4::22", "8080::5432", "8080:[]:5432", "8080:5432:", "[::1]:8080:[]:22"} {
		if sp, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) = %+v, want an error", bad, sp)
		}
	}
}

func TestSpecParameters(t *testing.T) {
	sp := Spec{Bind: "127.0.0.1", Host: "db", Port: 5432}
	p := sp.Parameters(15432)
	if p["host"][0] != "db" || p["portNumber"][0] != "5432" || p["localPortNumber"][0] != "15432" {
		t.Errorf("parameters %v", p)
	}
	if sp.Destination("i-1") != "db:5432" || (Spec{Port: 22}).Destination("i-1") != "i-1:22" {
		t.Error("Destination")
	}
	if (Spec{Bind: "::1"}).Loopback() != true || (Spec{Bind: "0.0.0.0"}).Loopback() {
		t.Error("Loopback")
	}
}

func TestMuxConfig(t *testing.T) {
	if c := MuxConfig("3.3.1142.0"); !c.KeepAliveDisabled || c.Version != 1 {
		t.Errorf("current agent: %+v, want keep-alive off, version 1", c)
	}
	// As the agent has it (§9.3): on before 3.1.1446.0, off whatever the
	// client in 3.1.1446.0–3.1.1475.x, on again until 3.1.1575.0.
	for v, off := range map[string]bool{"3.1.1300.0": false, "3.1.1446.0": true, "3.1.1470.0": true, "3.1.1476.0": false, "3.1.1574.0": false, "3.1.1575.0": true} {
		if c := MuxConfig(v); c.KeepAliveDisabled != off {
			t.Errorf("agent %s: keep-alive disabled %v, want %v", v, c.KeepAliveDisabled, off)
		}
	}
}

// TestSpecNetwork: an IPv4 bind listens on IPv4 only (0.0.0.0 is not also
// [::]), an IPv6 one on IPv6.
func TestSpecNetwork(t *testing.T) {
	for bind, want := range map[string]string{"127.0.0.1": "tcp4", "0.0.0.0": "tcp4", "::1": "tcp6", "::": "tcp6", "localhost": "tcp"} {
		if got := (Spec{Bind: bind}).Network(); got != want {
			t.Errorf("bind %s: network %s, want %s", bind, got, want)
		}
	}
}
