package ssmtest

// The faults of Options that act on API calls rather than on the data
// channel: calls that never answer (HangOperations) and SSM's API rate
// limits (ThrottleRate). Refused signatures are in sigv4.go.

import (
	"net/http"
	"time"
)

// hangIfAsked holds a call to op without answering, if op is one of
// HangOperations, and reports whether it did. It returns when the client
// gives up (its connection closes, which cancels r's context once the body
// has been read) or the server closes, and then closes the connection:
// nothing is written, so to the client the call never ends (a handler
// that just returned would send an empty 200).
func (s *Server) hangIfAsked(w http.ResponseWriter, r *http.Request, op string) bool {
	if !s.hang[op] {
		return false
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		closeUnanswered(w) // Close is under way: no answer either
		return true
	}
	s.hung.Add(1)
	s.stats.HungCalls++
	s.changedLocked()
	s.mu.Unlock()
	defer s.hung.Done()
	s.logf("api: %s: holding the call without an answer (HangOperations)", op)
	select {
	case <-r.Context().Done():
		s.logf("api: %s: the client gave up on the held call", op)
	case <-s.closing:
	}
	closeUnanswered(w)
	return true
}

// closeUnanswered closes the connection of a call without writing a
// response.
func closeUnanswered(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
}

// throttledOperations are the calls ThrottleRate limits, each with its own
// bucket as AWS limits each API on its own.
var throttledOperations = map[string]bool{"StartSession": true, "ResumeSession": true}

// throttled takes one call of op from its token bucket and reports whether
// the bucket was empty, counting Throttled if so.
func (s *Server) throttled(op string) bool {
	if s.opts.ThrottleRate <= 0 || !throttledOperations[op] {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[op]
	if b == nil {
		b = &tokenBucket{tokens: float64(s.opts.ThrottleBurst), last: time.Now()}
		s.buckets[op] = b
	}
	if b.take(s.opts.ThrottleRate, s.opts.ThrottleBurst, time.Now()) {
		return false
	}
	s.stats.Throttled++
	s.changedLocked()
	return true
}

// errThrottled is SSM's answer beyond its rate limit (§1.2, §10).
var errThrottled = &apiError{Status: http.StatusBadRequest, Code: "ThrottlingException", Message: "Rate exceeded"}

// tokenBucket is a token bucket: it holds up to burst calls and refills at
// rate calls per second. Guarded by Server.mu.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// take refills the bucket for the time since the last call and takes one
// call from it, reporting whether there was one.
func (b *tokenBucket) take(rate float64, burst int, now time.Time) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(float64(burst), b.tokens+d.Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
