package interop

import (
	"errors"
	"fmt"

	"github.com/aws/session-manager-plugin/src/log"
)

// DiscardLog returns a logger for the official packages' functions (they all
// take a log.T) that writes nothing. Use it instead of the plugin's
// log.NewMockLog, which prints every call to stdout, and instead of a logger
// whose Errorf returns nil: DeserializeHandshakeRequest and
// DeserializeHandshakeComplete return the logger's Errorf result as their
// error, so that result must be non-nil.
func DiscardLog() log.T { return discardLog{} }

type discardLog struct{}

var _ log.T = discardLog{}

func (discardLog) WithContext(...string) log.T { return discardLog{} }

func (discardLog) Tracef(string, ...any) {}
func (discardLog) Debugf(string, ...any) {}
func (discardLog) Infof(string, ...any)  {}
func (discardLog) Trace(...any)          {}
func (discardLog) Debug(...any)          {}
func (discardLog) Info(...any)           {}
func (discardLog) Flush()                {}
func (discardLog) Close()                {}

func (discardLog) Warnf(format string, params ...any) error {
	return fmt.Errorf(format, params...)
}

func (discardLog) Errorf(format string, params ...any) error {
	return fmt.Errorf(format, params...)
}

func (discardLog) Criticalf(format string, params ...any) error {
	return fmt.Errorf(format, params...)
}

func (discardLog) Warn(v ...any) error     { return errors.New(fmt.Sprint(v...)) }
func (discardLog) Error(v ...any) error    { return errors.New(fmt.Sprint(v...)) }
func (discardLog) Critical(v ...any) error { return errors.New(fmt.Sprint(v...)) }
