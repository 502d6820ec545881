package ssmtest

// EC2 Instance Connect: SendSSHPublicKey (JSON 1.1 over POST /, X-Amz-Target
// AWSEC2InstanceConnectService.SendSSHPublicKey, SigV4 service
// ec2-instance-connect) and the list of keys currently valid for an
// instance and OS user, which a test sshd reads through
// AuthorizedKeysCommand as the ec2-instance-connect package reads instance
// metadata (managed-ssh-keys/active-keys/USER/) on an instance.
//
// Request checks follow the API reference and the service model
// (ec2-instance-connect-2018-04-02): InstanceId 10–32 characters matching
// ^i-[a-f0-9]+$, InstanceOSUser 1–32 matching the model's pattern,
// SSHPublicKey 80–4096 characters, AvailabilityZone 6–32 matching
// ^(\w+-){2,3}\d+\w+$. Length and pattern violations are
// ValidationException, worded as the AWS front end words them; a key
// Instance Connect cannot use (not OpenSSH format, a type other than
// ssh-ed25519 and ssh-rsa, RSA under 2048 bits) is InvalidArgsException
// with the service's "Invalid input parameter received for Illegal argument
// exception: …" wording. An IAM denial (no Allow for the instance, or an
// ec2:osuser condition that excludes the user) is AccessDeniedException,
// as the service answers it. Error statuses are the model's httpError
// values. The key listing is not signed: the real one is not either (it is
// instance metadata), and the signature lines of that format are left out.

import (
	"context"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// instanceConnectTargetPrefix is the X-Amz-Target prefix of the EC2
// Instance Connect API.
const instanceConnectTargetPrefix = "AWSEC2InstanceConnectService."

// InstanceConnectKeysPath is where the emulator lists the keys currently
// valid for an instance and OS user (see serveInstanceConnectKeys).
const InstanceConnectKeysPath = "/ssmtest/instance-connect/keys"

// DefaultKeyLifetime is how long SendSSHPublicKey makes a key valid, as
// EC2 Instance Connect does.
const DefaultKeyLifetime = 60 * time.Second

// minRSABits is the smallest RSA key Instance Connect accepts.
const minRSABits = 2048

// EC2 instance states (InstanceConnectOptions.InstanceStates).
const (
	StateRunning = "running"
	StatePending = "pending"
	StateStopped = "stopped"
)

// InstanceConnectOptions select the EC2 Instance Connect emulation. The
// zero value is a well-behaved service: every i- instance of the inventory
// is running and every caller may push keys for every OS user.
type InstanceConnectOptions struct {
	// KeyLifetime is how long a pushed key is listed (DefaultKeyLifetime).
	KeyLifetime time.Duration
	// ThrottleRate, if positive, limits SendSSHPublicKey to this many calls
	// a second for all callers together, in bursts of up to ThrottleBurst
	// (default 1); calls beyond fail with ThrottlingException, as the real
	// service's per-account rate limit does.
	ThrottleRate  float64
	ThrottleBurst int
	// DeniedUsers and DeniedInstances make SendSSHPublicKey fail with
	// AccessDeniedException for these OS users (a policy whose ec2:osuser
	// condition excludes them) and these instance ids (no Allow on their
	// ARN).
	DeniedUsers, DeniedInstances []string
	// InstanceStates gives instances an EC2 state other than StateRunning
	// (StateStopped is the default for PingStatus Inactive): StatePending
	// fails with EC2InstanceUnavailableException, any other state with
	// EC2InstanceStateInvalidException.
	InstanceStates map[string]string
	// FailFirst makes the first FailFirst SendSSHPublicKey calls fail with
	// ServiceException (HTTP 500).
	FailFirst int

	// state is created on first use (see Server.instanceConnect).
	state *eicState
}

// InstanceConnectStats are the EC2 Instance Connect counters, totals since
// Start.
type InstanceConnectStats struct {
	Calls         int64 // SendSSHPublicKey calls with a valid signature
	Pushed        int64 // keys accepted
	Throttled     int64 // ThrottlingException
	Denied        int64 // AccessDeniedException
	Invalid       int64 // ValidationException, InvalidArgsException
	NotFound      int64 // EC2InstanceNotFoundException
	StateInvalid  int64 // EC2InstanceStateInvalidException
	Unavailable   int64 // EC2InstanceUnavailableException
	ServiceErrors int64 // ServiceException (FailFirst)
	Listings      int64 // requests to the key listing
	EmptyListings int64 // listings that found no valid key (404)
	KeysListed    int64 // keys returned by listings
}

// pushedKey is one key made valid by SendSSHPublicKey.
type pushedKey struct {
	key       string // "type base64 [comment]", one line
	expires   time.Time
	requestID string
}

// eicState is the emulator's Instance Connect state: valid keys, the
// throttle's token bucket and the counters.
type eicState struct {
	owner *Server                // the server it belongs to (Options copies the pointer)
	opts  InstanceConnectOptions // the knobs, copied once

	mu      sync.Mutex
	keys    map[keyOwner][]pushedKey
	tokens  float64
	refill  time.Time
	failed  int // FailFirst calls failed so far
	stats   InstanceConnectStats
	changed chan struct{} // closed and replaced when keys are added
}

// keyOwner is whom a key was pushed for.
type keyOwner struct{ instance, user string }

// instanceConnect returns the server's Instance Connect state, creating it
// on first use. The state hangs off s.opts so that it needs no field of its
// own in Server; a state found there that belongs to another server (its
// Options passed to Start again) is replaced. Everything else reads the
// knobs from the state, never from s.opts, which this writes.
func (s *Server) instanceConnect() *eicState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ic := &s.opts.InstanceConnect
	if ic.state == nil || ic.state.owner != s {
		opts := *ic
		opts.state = nil
		if opts.KeyLifetime <= 0 {
			opts.KeyLifetime = DefaultKeyLifetime
		}
		opts.ThrottleBurst = max(opts.ThrottleBurst, 1)
		ic.state = &eicState{
			owner:   s,
			opts:    opts,
			keys:    make(map[keyOwner][]pushedKey),
			tokens:  float64(opts.ThrottleBurst),
			refill:  time.Now(),
			changed: make(chan struct{}),
		}
	}
	return ic.state
}

// InstanceConnectStats returns a snapshot of the Instance Connect counters.
func (s *Server) InstanceConnectStats() InstanceConnectStats {
	st := s.instanceConnect()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.stats
}

// InstanceConnectKeys returns the keys currently valid for an instance and
// OS user, oldest first.
func (s *Server) InstanceConnectKeys(instanceID, user string) []string {
	st := s.instanceConnect()
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []string
	for _, k := range st.valid(keyOwner{instanceID, user}, time.Now()) {
		out = append(out, k.key)
	}
	return out
}

// WaitInstanceConnectKeysExpired waits until no key is valid for the
// instance and OS user any more, or ctx ends.
func (s *Server) WaitInstanceConnectKeysExpired(ctx context.Context, instanceID, user string) error {
	st := s.instanceConnect()
	for {
		st.mu.Lock()
		keys := st.valid(keyOwner{instanceID, user}, time.Now())
		changed := st.changed
		st.mu.Unlock()
		if len(keys) == 0 {
			return nil
		}
		last := keys[0].expires
		for _, k := range keys[1:] {
			last = later(last, k.expires)
		}
		t := time.NewTimer(time.Until(last))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ssmtest: %d Instance Connect keys still valid for %s on %s: %w", len(keys), user, instanceID, ctx.Err())
		case <-changed: // a key was added: look again
		case <-t.C:
		}
		t.Stop()
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// valid prunes the expired keys of o and returns the others. Call with
// st.mu held.
func (st *eicState) valid(o keyOwner, now time.Time) []pushedKey {
	keys := slices.DeleteFunc(st.keys[o], func(k pushedKey) bool { return !now.Before(k.expires) })
	if len(keys) == 0 {
		delete(st.keys, o)
		return nil
	}
	st.keys[o] = keys
	return keys
}

// take takes a token from the throttle's bucket, reporting false when the
// call must be throttled. Call with st.mu held.
func (st *eicState) take(now time.Time) bool {
	o := st.opts
	if o.ThrottleRate <= 0 {
		return true
	}
	st.tokens = min(float64(o.ThrottleBurst), st.tokens+now.Sub(st.refill).Seconds()*o.ThrottleRate)
	st.refill = now
	if st.tokens < 1 {
		return false
	}
	st.tokens--
	return true
}

// serveInstanceConnect serves the EC2 Instance Connect API.
func (s *Server) serveInstanceConnect(w http.ResponseWriter, r *http.Request) {
	requestID := newRequestID()
	w.Header().Set("x-amzn-RequestId", requestID)
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), instanceConnectTargetPrefix)
	out, err := s.handleInstanceConnect(r, requestID)
	if err != nil {
		ae := toAPIError(err)
		if ae.Code == "InternalServerError" {
			s.logf("ec2-instance-connect: %s: request %s: internal error: %v", op, requestID, err)
		}
		s.logf("ec2-instance-connect: %s: request %s: %d %s: %s", op, requestID, ae.Status, ae.Code, ae.Message)
		writeAPIJSON(w, ae.Status, struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}{ae.Code, ae.Message})
		return
	}
	s.logf("ec2-instance-connect: %s: request %s: ok", op, requestID)
	writeAPIJSON(w, http.StatusOK, out)
}

// handleInstanceConnect checks the request as handleAPI does for SSM —
// transport, signature, content type, operation — and runs it.
func (s *Server) handleInstanceConnect(r *http.Request, requestID string) (any, error) {
	body, err := s.readSignedRequest(r, "ec2-instance-connect")
	if err != nil {
		return nil, err
	}
	target := r.Header.Get("X-Amz-Target")
	if op := strings.TrimPrefix(target, instanceConnectTargetPrefix); op != "SendSSHPublicKey" {
		return nil, newAPIError("UnknownOperationException", "unknown operation %q", target)
	}
	return callAPI(body, func(in *sendSSHPublicKeyInput) (*sendSSHPublicKeyOutput, error) {
		return s.apiSendSSHPublicKey(in, requestID)
	})
}

// sendSSHPublicKeyInput is the SendSSHPublicKey request.
type sendSSHPublicKeyInput struct {
	InstanceId       *string
	InstanceOSUser   *string
	SSHPublicKey     *string
	AvailabilityZone *string
}

// sendSSHPublicKeyOutput is the SendSSHPublicKey response.
type sendSSHPublicKeyOutput struct {
	RequestId string
	Success   bool
}

var (
	eicInstanceIDPattern = regexp.MustCompile(`^i-[a-f0-9]+$`)
	// eicOSUserPatterns are the two alternatives of the model's pattern
	//
	//	(^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$)|(^(?=.{2,32}$)[0-9]{1,32}[A-Za-z\@\._-][A-Za-z0-9\@\._-]*[A-Za-z0-9\$_-]?$)
	//
	// without the second one's look-ahead, which RE2 lacks: it only repeats
	// the 32-character limit, checked as a length.
	eicOSUserPatterns = []*regexp.Regexp{
		regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`),
		regexp.MustCompile(`^[0-9]{1,32}[A-Za-z@._-][A-Za-z0-9@._-]*[A-Za-z0-9$_-]?$`),
	}
	eicAZPattern = regexp.MustCompile(`^(\w+-){2,3}\d+\w+$`)
)

// eicOSUserPattern is the model's InstanceOSUser pattern, as error texts
// quote it.
const eicOSUserPattern = `(^[A-Za-z_][A-Za-z0-9\@\._-]{0,30}[A-Za-z0-9\$_-]?$)|(^(?=.{2,32}$)[0-9]{1,32}[A-Za-z\@\._-][A-Za-z0-9\@\._-]*[A-Za-z0-9\$_-]?$)`

// validateSendSSHPublicKey applies the model's constraints.
func validateSendSSHPublicKey(in *sendSSHPublicKeyInput) error {
	var v validation
	v.length("instanceId", in.InstanceId, 10, 32)
	if in.InstanceId != nil {
		v.pattern("instanceId", *in.InstanceId, eicInstanceIDPattern)
	}
	v.length("instanceOSUser", in.InstanceOSUser, 1, 32)
	if u := in.InstanceOSUser; u != nil && !slices.ContainsFunc(eicOSUserPatterns, func(re *regexp.Regexp) bool { return re.MatchString(*u) }) {
		v.add(*u, "instanceOSUser", "Member must satisfy regular expression pattern: "+eicOSUserPattern)
	}
	v.length("sSHPublicKey", in.SSHPublicKey, 80, 4096)
	if in.AvailabilityZone != nil {
		v.length("availabilityZone", in.AvailabilityZone, 6, 32)
		v.pattern("availabilityZone", *in.AvailabilityZone, eicAZPattern)
	}
	return v.err()
}

// checkInstanceConnectKey refuses keys Instance Connect cannot use.
func checkInstanceConnectKey(key string) error {
	invalid := func(why string) error {
		return newAPIError("InvalidArgsException", "Invalid input parameter received for Illegal argument exception: %s", why)
	}
	if strings.ContainsAny(key, "\r\n") {
		return invalid("SSH Public key must be a single line")
	}
	pub, _, options, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil || len(options) > 0 {
		return invalid("SSH Public key is not in OpenSSH public key format")
	}
	switch pub.Type() {
	case ssh.KeyAlgoED25519:
		return nil
	case ssh.KeyAlgoRSA:
		if ck, ok := pub.(ssh.CryptoPublicKey); ok {
			if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() >= minRSABits {
				return nil
			}
		}
		return invalid("RSA - SSH Public key is invalid")
	}
	return invalid(fmt.Sprintf("SSH Public key type %s is not supported", pub.Type()))
}

// apiSendSSHPublicKey checks the call in the order the service does —
// throttle, syntax, permission, key, instance — and records the key.
func (s *Server) apiSendSSHPublicKey(in *sendSSHPublicKeyInput, requestID string) (*sendSSHPublicKeyOutput, error) {
	st := s.instanceConnect()
	o := st.opts
	now := time.Now()
	count := func(f func(*InstanceConnectStats)) {
		st.mu.Lock()
		f(&st.stats)
		st.mu.Unlock()
	}

	st.mu.Lock()
	st.stats.Calls++
	throttled := !st.take(now)
	failing := !throttled && st.failed < o.FailFirst
	if throttled {
		st.stats.Throttled++
	} else if failing {
		st.failed++
		st.stats.ServiceErrors++
	}
	st.mu.Unlock()
	switch {
	case throttled:
		return nil, &apiError{Status: http.StatusTooManyRequests, Code: "ThrottlingException",
			Message: "The requests were made too frequently and have been throttled. Wait a while and try again."}
	case failing:
		return nil, &apiError{Status: http.StatusInternalServerError, Code: "ServiceException",
			Message: "The service encountered an error. Follow the instructions in the error message and try again."}
	}

	if err := validateSendSSHPublicKey(in); err != nil {
		count(func(c *InstanceConnectStats) { c.Invalid++ })
		return nil, err
	}
	id, user, key := *in.InstanceId, *in.InstanceOSUser, strings.TrimSpace(*in.SSHPublicKey)
	if slices.Contains(o.DeniedInstances, id) || slices.Contains(o.DeniedUsers, user) {
		count(func(c *InstanceConnectStats) { c.Denied++ })
		return nil, newAPIError("AccessDeniedException", "%s", accessDeniedMessage("ec2-instance-connect:SendSSHPublicKey", s.instanceARN(id)))
	}
	if err := checkInstanceConnectKey(key); err != nil {
		count(func(c *InstanceConnectStats) { c.Invalid++ })
		return nil, err
	}
	inst, known := s.inventoryInstance(id)
	zone := s.opts.Region + "a"
	if !known || (in.AvailabilityZone != nil && *in.AvailabilityZone != zone) {
		count(func(c *InstanceConnectStats) { c.NotFound++ })
		msg := "The specified instance was not found."
		if in.AvailabilityZone != nil {
			msg = "The instance ID requested was not found in the given zone. Check that you have provided a valid instance ID and the correct zone."
		}
		return nil, &apiError{Status: http.StatusNotFound, Code: "EC2InstanceNotFoundException", Message: msg}
	}
	switch state := instanceState(o, inst); state {
	case StateRunning:
	case StatePending:
		count(func(c *InstanceConnectStats) { c.Unavailable++ })
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: "EC2InstanceUnavailableException",
			Message: "The instance is currently unavailable. Wait a few minutes and try again."}
	default:
		count(func(c *InstanceConnectStats) { c.StateInvalid++ })
		return nil, newAPIError("EC2InstanceStateInvalidException",
			"Unable to connect because the instance is not in a valid state (%s). Connecting to a stopped or terminated instance is not supported. If the instance is stopped, start your instance, and try to connect again.", state)
	}

	lifetime := o.KeyLifetime
	st.mu.Lock()
	owner := keyOwner{id, user}
	st.keys[owner] = append(st.valid(owner, now), pushedKey{key: key, expires: now.Add(lifetime), requestID: requestID})
	st.stats.Pushed++
	close(st.changed)
	st.changed = make(chan struct{})
	st.mu.Unlock()
	s.logf("ec2-instance-connect: key for %s on %s valid for %s", user, id, lifetime)
	return &sendSSHPublicKeyOutput{RequestId: requestID, Success: true}, nil
}

// instanceState is the EC2 state of inst.
func instanceState(o InstanceConnectOptions, inst Instance) string {
	if state, ok := o.InstanceStates[inst.ID]; ok {
		return state
	}
	if inst.PingStatus == pingInactive {
		return StateStopped
	}
	return StateRunning
}

// serveInstanceConnectKeys lists the keys currently valid for an instance
// and OS user: GET InstanceConnectKeysPath?instance=ID&user=USER. The
// answer has the layout of instance metadata's
// managed-ssh-keys/active-keys/USER/, one block per key,
//
//	#Timestamp=<expiry, Unix seconds>
//	#Instance=<instance id>
//	#Caller=<caller ARN>
//	#Request=<request id>
//	<key>
//	<empty line>
//
// without the signature lines that follow the key there; 404 when no key
// is valid, as instance metadata answers.
func (s *Server) serveInstanceConnectKeys(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	owner := keyOwner{q.Get("instance"), q.Get("user")}
	if owner.instance == "" || owner.user == "" {
		http.Error(w, "want ?instance=ID&user=USER", http.StatusBadRequest)
		return
	}
	st := s.instanceConnect()
	st.mu.Lock()
	keys := slices.Clone(st.valid(owner, time.Now()))
	st.stats.Listings++
	if len(keys) == 0 {
		st.stats.EmptyListings++
	}
	st.stats.KeysListed += int64(len(keys))
	st.mu.Unlock()
	if len(keys) == 0 {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	var b strings.Builder
	for _, k := range keys {
		// Rounded up, so that a reader comparing whole seconds never
		// drops a key before it expires.
		expiry := (k.expires.UnixNano() + int64(time.Second) - 1) / int64(time.Second)
		fmt.Fprintf(&b, "#Timestamp=%d\n#Instance=%s\n#Caller=%s\n#Request=%s\n%s\n\n",
			expiry, owner.instance, callerARN, k.requestID, k.key)
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, b.String())
}
