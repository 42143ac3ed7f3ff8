package fastlog

import (
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Writer batches writes to an underlying writer. It is safe for concurrent
// use; each Write is kept whole.
//
// Write never waits for the underlying writer: a background goroutine does
// the writing, and when the output is slow or stalled (stderr on a pipe
// nobody reads) and MaxPending bytes are waiting, further writes are
// dropped and counted. Once the output takes writes again, the Writer says
// once how many lines it dropped.
type Writer struct {
	out        io.Writer
	maxBatch   int
	maxPending int
	// Now stamps the line that reports dropped lines; time.Now by default.
	Now func() time.Time

	mu      sync.Mutex // guards buf and dropped; never held while writing to out
	buf     []byte
	dropped int // lines dropped since the last report

	wmu   sync.Mutex // serialises writes to out
	spare []byte     // guarded by wmu

	total atomic.Uint64 // lines dropped since NewWriter

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// MaxPending is the most bytes a Writer holds for an output that does not
// keep up; beyond it, lines are dropped.
const MaxPending = 1 << 20

// closeWait bounds how long Close waits for a stalled output.
const closeWait = 2 * time.Second

// NewWriter returns a Writer that flushes to out every interval, and sooner
// when 64 KiB have accumulated. Call Close to stop it and flush the rest.
func NewWriter(out io.Writer, interval time.Duration) *Writer {
	w := &Writer{out: out, maxBatch: 64 << 10, maxPending: MaxPending, Now: time.Now,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
		case <-w.kick:
		case <-w.stop:
			return
		}
		_ = w.Flush()
	}
}

// Write appends p to the batch, or drops it when MaxPending bytes are
// already waiting for the output. It never blocks on the output and never
// fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if len(w.buf)+len(p) > w.maxPending {
		w.dropped++
		w.mu.Unlock()
		w.total.Add(1)
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	full := len(w.buf) >= w.maxBatch
	w.mu.Unlock()
	if full {
		w.Kick()
	}
	return len(p), nil
}

// Kick asks the background goroutine to flush soon, without waiting.
func (w *Writer) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Dropped returns the number of lines dropped since NewWriter because the
// output did not keep up.
func (w *Writer) Dropped() uint64 { return w.total.Load() }

// Flush writes the batch to the underlying writer and waits until it is
// written (for tests and shutdown; the request path only Kicks).
func (w *Writer) Flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	b := w.buf
	w.buf = w.spare[:0]
	dropped := w.dropped
	w.dropped = 0
	w.mu.Unlock()
	var err error
	if len(b) > 0 {
		_, err = w.out.Write(b)
	}
	w.spare = b
	if dropped > 0 {
		if err == nil {
			_, err = w.out.Write(w.droppedLine(dropped))
		}
		if err != nil { // still stalled or broken: report them next time
			w.mu.Lock()
			w.dropped += dropped
			w.mu.Unlock()
		}
	}
	return err
}

// droppedLine is the line, in the Handler's format, that reports n lines
// dropped.
func (w *Writer) droppedLine(n int) []byte {
	b := []byte("time=")
	b = w.Now().AppendFormat(b, timeFormat)
	b = append(b, ` level=WARN msg="log lines dropped: the log output did not keep up" dropped=`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\n')
}

// Close stops the background flushes and flushes what is left, waiting at
// most a few seconds for an output that does not take it.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	errc := make(chan error, 1)
	go func() {
		<-w.done
		errc <- w.Flush()
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case err := <-errc:
		return err
	case <-t.C:
		return errors.New("log output stalled: the last log lines were not written")
	}
}
