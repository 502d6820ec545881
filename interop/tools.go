//go:build tools

package interop

// The official plugin's main package cannot be imported, so these blank
// imports of its non-main packages keep the module (and every dependency the
// main package needs) in the build list when go mod tidy runs.
import (
	_ "github.com/aws/session-manager-plugin/src/message"
	_ "github.com/aws/session-manager-plugin/src/sessionmanagerplugin/session"
	_ "github.com/aws/session-manager-plugin/src/sessionmanagerplugin/session/portsession"
	_ "github.com/aws/session-manager-plugin/src/sessionmanagerplugin/session/shellsession"
)
