package textutil

import (
	"regexp"
	"sync"
)

// LazyRegexp returns expr compiled on first use: a pattern that only some
// commands need is not compiled at the start of every process.
func LazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
