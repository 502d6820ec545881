package awscfg

import (
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// sdkLogger carries the SDK's own log lines (a retry, IMDS falling back to
// IMDSv1, a deprecated setting) into ours, at debug level, so that they
// appear with -v and start with "ssm-proxy:" like every other line,
// instead of reaching ssh's stderr as the SDK's default logger writes them.
// Redacted like everything else logged: the SDK does not promise that a
// line never quotes a credential.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	l.log.Debug("aws sdk: "+textutil.Redact(fmt.Sprintf(format, v...)), "level", string(c))
}
