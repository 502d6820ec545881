//go:build !unix

package main

import (
	"context"
	"errors"
	"log/slog"
)

// shareServeCommand is the hidden command of the shared process (Unix
// only: it is reached through a Unix socket).
const shareServeCommand = "__share"

func (c *cli) proxyShared(ctx context.Context, o options, args []string, log *slog.Logger) int {
	reportError(c.stderr, errors.New("--share needs Unix sockets, which this build does not have; leave it out"), o, &used{}, false)
	return exitUsage
}

func (c *cli) shareServe(ctx context.Context, args []string) int {
	return c.proxyShared(ctx, options{}, args, nil)
}
