//go:build !unix

package main

import "io"

// pollableStdio leaves stdin and stdout as they are where there is no
// non-blocking pipe mode to switch to.
func pollableStdio(in io.Reader, out io.Writer) (io.Reader, io.Writer, func()) {
	return in, out, func() {}
}

// catchSIGPIPE: no SIGPIPE here.
func catchSIGPIPE() {}
