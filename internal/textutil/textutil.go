// Package textutil holds the small text helpers the packages share.
package textutil

import "strings"

// OneLine collapses every run of white space in s, newlines included, to
// one space and trims the ends: a remote text fit for a one-line message.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
