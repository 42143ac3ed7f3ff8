package fastlog

import (
	"io"
	"sync"
	"time"
)

// Writer batches writes to an underlying writer. It is safe for concurrent
// use; each Write is kept whole.
type Writer struct {
	out      io.Writer
	maxBatch int

	mu    sync.Mutex // guards buf and serialises writes to out
	buf   []byte
	spare []byte

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewWriter returns a Writer that flushes to out every interval, and sooner
// when 64 KiB have accumulated. Call Close to stop it and flush the rest.
func NewWriter(out io.Writer, interval time.Duration) *Writer {
	w := &Writer{out: out, maxBatch: 64 << 10, stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(interval)
	return w
}

func (w *Writer) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write appends p to the batch.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.maxBatch
	w.mu.Unlock()
	if full {
		if err := w.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the batch to the underlying writer.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.out.Write(w.buf)
	w.buf, w.spare = w.spare[:0], w.buf
	return err
}

// Close stops the background flushes and flushes what is left.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.Flush()
}
