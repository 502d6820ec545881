package main

// --push-key: make a public key valid on the instance for 60 seconds with
// EC2 Instance Connect's SendSSHPublicKey before the session starts, so that
// ssh logs in with a key that is in no authorized_keys file. The key
// selection, the agent and the retries are internal/pushkey's; this file
// decides the OS user, maps failures to hints and exit codes, and holds
// doctor's check.

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/aws/smithy-go"

	"github.com/ssm-proxy/ssm-proxy/internal/awscfg"
	"github.com/ssm-proxy/ssm-proxy/internal/pushkey"
	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// pushKeyFlag is the value of --push-key: absent, given bare (the key ssh
// would use), or given a value (a key file, or "ephemeral").
type pushKeyFlag struct {
	set   bool
	value string // "" for bare --push-key
}

func (f *pushKeyFlag) String() string { return f.value }

// IsBoolFlag lets --push-key stand alone; --push-key=PATH gives a value.
func (f *pushKeyFlag) IsBoolFlag() bool { return true }

func (f *pushKeyFlag) Set(s string) error {
	if s == "false" {
		*f = pushKeyFlag{} // --push-key=false: no push, not a file named false
		return nil
	}
	f.set = true
	if s == "true" {
		s = ""
	}
	f.value = s
	return nil
}

// ephemeralKey is the --push-key value that generates a key in memory.
const ephemeralKey = "ephemeral"

// pushKeyFlags registers --push-key and --os-user.
func (o *options) pushKeyFlags(fs *flag.FlagSet) {
	fs.Var(&o.pushKey, "push-key", "")
	fs.StringVar(&o.osUser, "os-user", "", "")
}

// Hints about --push-key.
const (
	hintEICPackage = "if ssh then fails with \"Permission denied (publickey)\", the instance lacks the ec2-instance-connect package " +
		"(preinstalled on Amazon Linux 2 and 2023 and on Ubuntu 20.04 and later; see examples/instance-connect.md), " +
		"or the key was pushed for another user than ssh logs in as (pass --os-user %r)"
	hintGoodKey = "EC2 Instance Connect accepts ssh-ed25519 keys and ssh-rsa keys of 2048 bits or more: make one with `ssh-keygen -t ed25519` " +
		"and name it with --push-key=PATH or IdentityFile in ~/.ssh/config, or use --push-key=ephemeral with a running ssh-agent"
)

// pushKeyError is a --push-key failure: the cause, the hints that go with
// it and the exit status (exitUsage for targets Instance Connect cannot
// serve, else exitError), for exitCode (main.go) and hints (hints.go) to
// return.
type pushKeyError struct {
	err   error
	hints []string
	code  int
}

func (e *pushKeyError) Error() string { return e.err.Error() }

func (e *pushKeyError) Unwrap() error { return e.err }

// notEC2Error reports a target that is not an EC2 instance.
type notEC2Error struct{ id string }

func (e *notEC2Error) Error() string {
	kind := "not an EC2 instance"
	switch {
	case strings.HasPrefix(e.id, "mi-"):
		kind = "a managed node (hybrid activation), not an EC2 instance"
	case strings.HasPrefix(e.id, "ecs:"):
		kind = "an ECS task, not an EC2 instance"
	case strings.HasPrefix(e.id, "eks_"):
		kind = "an EKS target, not an EC2 instance"
	}
	return fmt.Sprintf("--push-key: %s is %s: EC2 Instance Connect pushes keys to EC2 instances only", e.id, kind)
}

// ec2InstanceID matches EC2 instance ids, the only targets Instance
// Connect serves.
var ec2InstanceID = textutil.LazyRegexp(`^i-[0-9a-f]{8}([0-9a-f]{9})?$`)

// pushPlan is what one --push-key pushes: the key, for whom, and the agent
// an ephemeral key goes to.
type pushPlan struct {
	user, userFrom string // the OS user and where it came from
	host           string // TARGET as ssh passed it, for ssh_config
	key            *pushkey.Key
	agent          *pushkey.Agent // --push-key=ephemeral only; Close it
}

func (p *pushPlan) close() {
	if p.agent != nil {
		p.agent.Close()
	}
}

// pushKey pushes the key --push-key names for u.id, if asked to.
func (c *cli) pushKey(ctx context.Context, o options, u *used, cfg aws.Config, log *slog.Logger) error {
	if !o.pushKey.set {
		return nil
	}
	p, err := planPush(ctx, o, u, log)
	if err != nil {
		return explainPush(err, o, u, p)
	}
	defer p.close()
	if p.agent != nil {
		// Into the agent first: an agent that refuses it is found out
		// before a push (logged in CloudTrail) is made for nothing.
		comment := fmt.Sprintf("ssm-proxy ephemeral key for %s@%s", p.user, u.id)
		if err := p.agent.AddEphemeral(p.key, comment); err != nil {
			return explainPush(err, o, u, p)
		}
	}
	log.Debug("pushing key with EC2 Instance Connect", "instance", u.id, "os_user", p.user, "os_user_from", p.userFrom,
		"key", p.key.Type()+" "+p.key.Fingerprint(), "key_from", p.key.Source)
	res, err := pushkey.Send(ctx, instanceConnectAPI(cfg), pushkey.Request{InstanceID: u.id, OSUser: p.user, Key: p.key}, pushkey.Retry{}, log)
	if err != nil {
		if p.agent != nil {
			if rerr := p.agent.Remove(p.key); rerr != nil {
				log.Debug("the ephemeral key stays in the agent until it expires", "err", rerr)
			}
		}
		return explainPush(fmt.Errorf("push key for %s to %s: %w", p.user, u.id, err), o, u, p)
	}
	log.Debug("pushed key", "key", p.key.Type()+" "+p.key.Fingerprint(), "key_from", p.key.Source,
		"os_user", p.user, "instance", u.id, "valid_for", pushkey.Lifetime, "attempts", res.Attempts, "throttled", res.Throttled, "request_id", res.RequestID)
	log.Debug(hintEICPackage)
	return nil
}

// instanceConnectAPI is an EC2 Instance Connect client with cfg's
// credentials, region and endpoint resolution (AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT,
// or ec2_instance_connect's endpoint_url in the profile's services
// section). It does not retry: pushkey.Send does, with its own bounds.
func instanceConnectAPI(cfg aws.Config) *ec2instanceconnect.Client {
	return ec2instanceconnect.NewFromConfig(cfg, func(o *ec2instanceconnect.Options) {
		o.Retryer = aws.NopRetryer{}
	})
}

// planPush checks the target and works out the OS user and the key. On
// error the plan (for its user) is still returned.
func planPush(ctx context.Context, o options, u *used, log *slog.Logger) (*pushPlan, error) {
	p := &pushPlan{host: o.stripPrefix + u.target + o.stripSuffix}
	if !ec2InstanceID().MatchString(u.id) {
		return p, &notEC2Error{id: u.id}
	}
	home, err := os.UserHomeDir()
	if err != nil {
		log.Debug("no home directory: ssh_config and ~/.ssh not read", "err", err)
	}
	var sc *pushkey.SSHConfig
	if home != "" {
		sc = pushkey.LoadSSHConfig(pushkey.DefaultSSHConfigFiles(home), home, log)
	}
	p.user, p.userFrom = pushUser(o, p.host, sc)
	kc := pushkey.Config{
		Host: p.host, User: p.user, Home: home, LocalUser: localUser(), SSH: sc,
		AgentSocket: os.Getenv("SSH_AUTH_SOCK"), Logger: log,
	}
	switch v := o.pushKey.value; v {
	case "":
		p.key, err = pushkey.Find(ctx, kc)
	case ephemeralKey:
		if err = kc.AgentKeysOffered(); err != nil {
			return p, err
		}
		var socket string
		if socket, err = kc.AgentSocketFor(); err != nil {
			return p, err
		}
		if p.agent, err = pushkey.DialAgent(ctx, socket); err != nil {
			return p, err
		}
		var held []*pushkey.Key
		if held, err = p.agent.Keys(); err != nil {
			p.close()
			return p, err
		}
		if len(held) >= sshdMaxAuthTries {
			p.close()
			return p, &crowdedAgentError{socket: socket, keys: len(held)}
		}
		p.key, err = pushkey.NewEphemeral(rand.Reader)
	default:
		if v == "~" || strings.HasPrefix(v, "~/") {
			v = filepath.Join(home, v[1:])
		}
		p.key, err = pushkey.FromFile(v)
	}
	if err != nil {
		p.close()
		p.agent = nil
	}
	return p, err
}

// pushUser is the OS user to push the key for: --os-user (ssh's %r), else
// the User ssh_config gives for the host, else the local user name, which
// is what ssh logs in as when neither the command line nor ssh_config
// names a user. A user given to ssh on its command line (ssh admin@host)
// is seen only through --os-user %r.
func pushUser(o options, host string, sc *pushkey.SSHConfig) (name, from string) {
	if o.osUser != "" {
		return o.osUser, "--os-user"
	}
	if v := sc.Get(host, "User"); v != "" {
		return v, "ssh_config User (no --os-user)"
	}
	return localUser(), "local user name (no --os-user, no User in ssh_config)"
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// explainPush turns a --push-key failure into a *pushKeyError with hints.
// Credential failures and ctx's end are returned as they are: the usual
// hints and handling apply to them.
func explainPush(err error, o options, u *used, p *pushPlan) error {
	var (
		ce      *awscfg.CredentialsError
		ne      *notEC2Error
		te      *pushkey.ThrottledError
		ue      *pushkey.UnsupportedKeyError
		kfe     *pushkey.KeyFileError
		ife     *pushkey.IdentityFileError
		nke     *pushkey.NoKeyError
		age     *pushkey.AgentError
		crowded *crowdedAgentError
		ae      smithy.APIError
	)
	fail := func(hints ...string) error { return &pushKeyError{err: err, hints: hints, code: exitError} }
	switch {
	case errors.As(err, &ce), errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &ne):
		return &pushKeyError{err: err, code: exitUsage, hints: []string{
			"connect without --push-key, with your key in the node's authorized_keys; in ssh_config, give --push-key only to Host patterns of EC2 instances (i-*)",
		}}
	case errors.Is(err, pushkey.ErrNoAgent):
		return fail("--push-key=ephemeral puts the key in the running ssh-agent, which ssh then offers: start one (eval \"$(ssh-agent)\") where ssh runs, or push a key file with --push-key=PATH")
	case errors.Is(err, pushkey.ErrIdentitiesOnly):
		return fail(fmt.Sprintf("ssh would not offer the ephemeral key: remove IdentitiesOnly yes for %s, or push the IdentityFile it names with --push-key (no =ephemeral)", p.host))
	case errors.Is(err, pushkey.ErrAgentDisabled):
		return fail(fmt.Sprintf("ssh would not use the ephemeral key: remove IdentityAgent none for %s, or use --push-key=PATH", p.host))
	case errors.As(err, &crowded):
		return fail(fmt.Sprintf("ssh offers the agent's %d keys before the ephemeral one, and sshd gives up after %d attempts (MaxAuthTries): use bare --push-key, which pushes the agent's first key, or --push-key=PATH with IdentitiesOnly yes; ephemeral keys of other connections leave the agent within %s",
			crowded.keys, sshdMaxAuthTries, pushkey.Lifetime))
	case errors.As(err, &age) && age.Refused:
		return fail(fmt.Sprintf("the ssh-agent at %s refused the key (a locked agent, or one that takes no added keys, as 1Password's): unlock it, or push a key file with --push-key=PATH or bare --push-key", age.Socket))
	case errors.As(err, &age):
		return fail(fmt.Sprintf("the ssh-agent at %s does not answer: check that it runs and that SSH_AUTH_SOCK (or IdentityAgent) points at it", age.Socket))
	case errors.As(err, &te):
		return fail(fmt.Sprintf("SendSSHPublicKey is rate-limited per account and region; ssm-proxy kept retrying for %s: run fewer connections at once (Ansible: --forks), or ask AWS Support to raise the limit",
			te.Waited.Round(time.Second)))
	case errors.As(err, &nke):
		return fail("make a key with `ssh-keygen -t ed25519`, name one with --push-key=PATH or IdentityFile in ~/.ssh/config, or use --push-key=ephemeral with a running ssh-agent")
	case errors.Is(err, pushkey.ErrEncrypted) && errors.As(err, &kfe):
		return fail(fmt.Sprintf("write its public half beside it once: `ssh-keygen -y -f %s > %s.pub` (asks for the passphrase)", kfe.Path, kfe.Path))
	case errors.As(err, &ue):
		if errors.As(err, &ife) {
			return fail(fmt.Sprintf("ssh offers this IdentityFile for %s, so ssm-proxy pushes no other key; %s", p.host, hintGoodKey))
		}
		return fail(hintGoodKey)
	case errors.As(err, &kfe):
		return fail("--push-key=PATH wants a public key (.pub) or a private key file; bare --push-key uses the key ssh would")
	case errors.As(err, &ae):
		return explainPushAPI(err, ae, o, u, p)
	}
	return err
}

// explainPushAPI explains EC2 Instance Connect's errors; ae is the API
// error in err. Errors not about the push itself (signatures, tokens) are
// returned as they are, for the usual credential hints.
func explainPushAPI(err error, ae smithy.APIError, o options, u *used, p *pushPlan) error {
	fail := func(hints ...string) error { return &pushKeyError{err: err, hints: hints, code: exitError} }
	region := orRegion(u.aws.Region)
	switch ae.ErrorCode() {
	case "AccessDeniedException", "AuthException":
		hs := []string{fmt.Sprintf("your identity needs ec2-instance-connect:SendSSHPublicKey on arn:aws:ec2:%s:ACCOUNT:instance/%s, with a condition ec2:osuser that allows %q (examples/iam/instance-connect-policy.json)",
			region, u.id, p.user)}
		if p.userFrom != "--os-user" {
			hs = append(hs, fmt.Sprintf("the OS user %q is the %s: pass the user ssh logs in as with --os-user %%r", p.user, p.userFrom))
		}
		return fail(hs...)
	case "EC2InstanceNotFoundException":
		return fail(fmt.Sprintf("EC2 knows no instance %s in %s for this account: check the region and the credentials' account", u.id, region))
	case "EC2InstanceStateInvalidException":
		return fail(fmt.Sprintf("the instance is stopped or terminated: start it (`aws ec2 start-instances --instance-ids %s`), or connect to another", u.id))
	case "EC2InstanceUnavailableException":
		return fail("the instance is not ready for EC2 Instance Connect yet (still starting?): retry in a few minutes")
	case "InvalidArgsException":
		return fail("EC2 Instance Connect refused the key: " + hintGoodKey)
	case "ValidationException":
		if strings.Contains(ae.ErrorMessage(), "instanceOSUser") {
			return fail(fmt.Sprintf("%q (the %s) is not a valid OS user name: pass the user ssh logs in as with --os-user %%r", p.user, p.userFrom))
		}
		return fail("EC2 Instance Connect refused the request as malformed")
	case "ServiceException":
		return fail("EC2 Instance Connect failed on its side; retry in a moment")
	}
	return err
}

// checkPushKey is doctor's "push-key" check, run with --push-key: which
// key ssm-proxy would push and for whom, and whether this identity may push
// keys to the instance, found out with a real SendSSHPublicKey of a
// throw-away ed25519 key whose private half is discarded.
func (d *doctorRun) checkPushKey(ctx context.Context) bool {
	const check = "push-key"
	if !d.o.pushKey.set {
		return true
	}
	u := d.used
	if u.id == "" {
		u.id = d.inst.ID
	}
	p, err := planPush(ctx, d.o, u, d.log)
	if err != nil {
		return d.failPush(check, explainPush(err, d.o, u, p))
	}
	defer p.close()
	throwaway, err := pushkey.NewEphemeral(rand.Reader)
	if err != nil {
		return d.fail(check, err.Error())
	}
	_, err = pushkey.Send(ctx, instanceConnectAPI(d.cfg), pushkey.Request{InstanceID: u.id, OSUser: p.user, Key: throwaway}, pushkey.Retry{}, d.log)
	if err != nil {
		return d.failPush(check, explainPush(fmt.Errorf("push a throw-away key for %s to %s: %w", p.user, u.id, err), d.o, u, p))
	}
	d.pass(check, "permitted for %s (%s) on %s; would push %s %s from %s; sshd there needs the ec2-instance-connect package to accept it",
		p.user, p.userFrom, u.id, p.key.Type(), p.key.Fingerprint(), p.key.Source)
	return true
}

// failPush prints a ✗ line for a --push-key failure with its hints.
func (d *doctorRun) failPush(check string, err error) bool {
	var pke *pushKeyError
	if errors.As(err, &pke) {
		return d.fail(check, errorText(err), pke.hints...)
	}
	return d.failErr(check, err)
}

// sshdMaxAuthTries is sshd's default MaxAuthTries: it disconnects after
// that many refused keys.
const sshdMaxAuthTries = 6

// crowdedAgentError reports an agent that already holds so many keys that
// ssh would be cut off before it offers the ephemeral one, added last.
type crowdedAgentError struct {
	socket string
	keys   int
}

func (e *crowdedAgentError) Error() string {
	return fmt.Sprintf("--push-key=ephemeral: the ssh-agent at %s already holds %d keys", e.socket, e.keys)
}
