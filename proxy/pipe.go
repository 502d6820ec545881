package proxy

import (
	"context"
	"errors"
	"io"
	"time"
)

// stdinChunk is the largest read from stdin; it is split into
// protocol.MaxStreamPayload messages by the loop.
const stdinChunk = 32 << 10

// stdinEvent is one read from stdin: data, or the error that ended it.
type stdinEvent struct {
	data []byte
	err  error // io.EOF at the end
}

// readStdin copies r to ch in fresh buffers until r fails. It is never
// waited for: a read of os.Stdin cannot be cancelled, so on shutdown it is
// simply abandoned (x/crypto/ssh does the same).
func readStdin(ctx context.Context, r io.Reader, ch chan<- stdinEvent) {
	for {
		buf := make([]byte, stdinChunk)
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case ch <- stdinEvent{data: buf[:n]}:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				err = io.EOF
			}
			select {
			case ch <- stdinEvent{err: err}:
			case <-ctx.Done():
			}
			return
		}
	}
}

// stdoutWriter writes delivered payloads to stdout on its own goroutine, so
// that the event loop keeps acknowledging while stdout is momentarily slow.
// Payloads handed to it count as delivered (§5.3: acknowledged only once
// delivered or kept to deliver).
type stdoutWriter struct {
	w      io.Writer
	ch     chan []byte
	failed chan struct{} // closed when a write fails
	done   chan struct{} // closed when the goroutine exits
	err    error         // set before failed is closed
}

func newStdoutWriter(w io.Writer) *stdoutWriter {
	o := &stdoutWriter{
		w:      w,
		ch:     make(chan []byte, 256),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	go o.run()
	return o
}

// coalesceMax bounds how many queued payload bytes one stdout write joins:
// the agent's 1 KiB messages would otherwise cost a system call each.
const coalesceMax = 64 << 10

func (o *stdoutWriter) run() {
	defer close(o.done)
	buf := make([]byte, 0, coalesceMax)
	for p := range o.ch {
		buf = append(buf[:0], p...)
	more:
		for len(buf) < coalesceMax {
			select {
			case q, ok := <-o.ch:
				if !ok {
					break more
				}
				buf = append(buf, q...)
			default:
				break more
			}
		}
		if _, err := o.w.Write(buf); err != nil {
			o.err = err
			close(o.failed)
			for range o.ch { // discard the rest so senders never block
			}
			return
		}
	}
}

// finish closes the queue and waits up to timeout for it to drain. It
// returns the write error, if any.
func (o *stdoutWriter) finish(timeout time.Duration) error {
	close(o.ch)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-o.done:
	case <-t.C:
		return errors.New("stdout: timed out flushing session output")
	}
	return o.err
}
