package ssmtest

// EC2 Instance Connect: SendSSHPublicKey (JSON 1.1, SigV4 service
// ec2-instance-connect) and the list of keys currently valid for an
// instance and OS user, which a test sshd reads through
// AuthorizedKeysCommand as the ec2-instance-connect package does.

import "net/http"

// instanceConnectTargetPrefix is the X-Amz-Target prefix of the EC2
// Instance Connect API.
const instanceConnectTargetPrefix = "AWSEC2InstanceConnectService."

// InstanceConnectKeysPath is where the emulator lists the keys currently
// valid for an instance and OS user (see serveInstanceConnectKeys).
const InstanceConnectKeysPath = "/ssmtest/instance-connect/keys"

// InstanceConnectOptions select the EC2 Instance Connect emulation.
type InstanceConnectOptions struct{}

// serveInstanceConnect serves the EC2 Instance Connect API.
func (s *Server) serveInstanceConnect(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "EC2 Instance Connect is not emulated yet", http.StatusNotImplemented)
}

// serveInstanceConnectKeys lists the keys currently valid for an instance
// and OS user.
func (s *Server) serveInstanceConnectKeys(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "EC2 Instance Connect is not emulated yet", http.StatusNotImplemented)
}
