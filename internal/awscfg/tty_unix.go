//go:build !windows

package awscfg

import (
	"io"
	"os"
)

// openTTY opens the controlling terminal for reading and writing. It fails
// (ENXIO) in a process without one.
func openTTY() (io.ReadWriteCloser, error) {
	return os.OpenFile("/dev/tty", os.O_RDWR, 0)
}
