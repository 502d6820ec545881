package main

// --push-key: make a public key valid on the instance for 60 seconds with
// EC2 Instance Connect's SendSSHPublicKey before the session starts, so that
// ssh logs in with a key that is in no authorized_keys file.

import (
	"context"
	"errors"
	"flag"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
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
	f.set = true
	if s == "true" {
		s = ""
	}
	f.value = s
	return nil
}

// pushKeyFlags registers --push-key and --os-user.
func (o *options) pushKeyFlags(fs *flag.FlagSet) {
	fs.Var(&o.pushKey, "push-key", "")
	fs.StringVar(&o.osUser, "os-user", "", "")
}

// pushKey pushes the key --push-key names for u.id, if asked to.
func (c *cli) pushKey(ctx context.Context, o options, u *used, cfg aws.Config, log *slog.Logger) error {
	if !o.pushKey.set {
		return nil
	}
	return errors.New("--push-key is not implemented yet")
}
