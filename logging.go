package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ssm-proxy/ssm-proxy/internal/textutil"
)

// newLogger returns the logger of a command: warnings and errors on w,
// debug lines too with verbose. Every line starts with "ssm-proxy:" (see
// lineHandler).
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(newLineHandler(w, level))
}

// lineHandler is the slog.Handler behind every diagnostic ssm-proxy
// prints: one line per record,
//
//	ssm-proxy: resumed session=alice-0a1b2c after=1.2s
//	ssm-proxy: warning: could not terminate the session; … session=… err="…"
//
// the message lower-cased, then key=value attributes (values quoted when
// they hold spaces), with no time or level for debug lines: ssh shows them
// among its own. Each line is scrubbed by textutil.Redact before it is
// written, so no token, signature or credential reaches stderr whatever an
// attribute holds (each value before it is quoted, and the whole line). It
// is safe for concurrent use; a line is one Write.
type lineHandler struct {
	out   *lineOutput
	level slog.Leveler
	attrs string // " k=v" of WithAttrs, already formatted
	group string // "g." prefix of WithGroup
}

// lineOutput is the writer the handlers derived from one logger share.
type lineOutput struct {
	mu sync.Mutex
	w  io.Writer
}

var _ slog.Handler = (*lineHandler)(nil)

func newLineHandler(w io.Writer, level slog.Leveler) *lineHandler {
	return &lineHandler{out: &lineOutput{w: w}, level: level}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("ssm-proxy: ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(lowerFirst(textutil.Redact(textutil.OneLine(r.Message))))
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, h.group, a)
		return true
	})
	line := textutil.Redact(b.String()) + "\n"
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := io.WriteString(h.out.w, line)
	return err
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		appendAttr(&b, h.group, a)
	}
	h2 := *h
	h2.attrs = b.String()
	return &h2
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

// appendAttr writes " key=value" for a, groups flattened to "g.key".
func appendAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			appendAttr(b, prefix, ga)
		}
		return
	}
	// Redacted before quoting: quoting escapes the quotes a pattern needs
	// to see (`{"TokenValue":"…"}`).
	b.WriteString(" " + prefix + a.Key + "=" + quoteValue(textutil.Redact(valueText(a.Value))))
}

// valueText is v as text: durations and times in their usual forms,
// errors by their message.
func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
		return fmt.Sprint(v.Any())
	}
	return v.String()
}

// quoteValue quotes s when it is empty or holds spaces, quotes, '=' or
// control characters, so that a line splits back into its attributes.
func quoteValue(s string) string {
	s = textutil.OneLine(s)
	if s == "" || strings.ContainsAny(s, " \"=") || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// lowerFirst lower-cases the first letter of a message unless it starts
// an acronym ("TLS handshake" stays).
func lowerFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if !unicode.IsUpper(r) {
		return s
	}
	if next, _ := utf8.DecodeRuneInString(s[n:]); unicode.IsUpper(next) {
		return s
	}
	return string(unicode.ToLower(r)) + s[n:]
}
