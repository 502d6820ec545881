//go:build windows

package awscfg

import (
	"io"
	"os"
)

// console is the Windows console: input from CONIN$, output to CONOUT$.
type console struct {
	in, out *os.File
}

func (c *console) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *console) Write(p []byte) (int, error) { return c.out.Write(p) }

func (c *console) Close() error {
	c.in.Close()
	return c.out.Close()
}

// openTTY opens the console of the process, which fails in a process
// without one.
func openTTY() (io.ReadWriteCloser, error) {
	in, err := os.OpenFile("CONIN$", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	out, err := os.OpenFile("CONOUT$", os.O_WRONLY, 0)
	if err != nil {
		in.Close()
		return nil, err
	}
	return &console{in: in, out: out}, nil
}
