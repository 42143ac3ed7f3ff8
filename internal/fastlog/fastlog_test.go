package fastlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMatchesTextHandler checks that the output is what slog.TextHandler
// writes for the same records, so the two formats are interchangeable.
func TestMatchesTextHandler(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC) // fixed instant: formatted only
	values := []slog.Attr{
		slog.String("plain", "GET"),
		slog.String("path", "/latest/meta-data/iam/security-credentials/"),
		slog.String("empty", ""),
		slog.String("space", "a b"),
		slog.String("quote", `say "hi"`),
		slog.String("eq", "a=b"),
		slog.String("nl", "line\nbreak"),
		slog.String("unicode", "héllo wörld"),
		slog.String("nbsp", "a\u00a0b"),
		slog.String("ctl", "\x00\x7f"),
		slog.String("bad-utf8", "\xff"),
		slog.Int("status", 200),
		slog.Int("neg", -5),
		slog.Uint64("u", 7),
		slog.Float64("f", 1.5),
		slog.Bool("b", true),
		slog.Duration("latency", 1234567*time.Nanosecond),
		slog.Time("t", when),
		slog.Any("err", errors.New("boom: x=1")),
		slog.Group("g", slog.String("a", "1"), slog.Int("b", 2)),
		slog.Any("slice", []string{"a", "b"}),
	}
	for _, a := range values {
		var want, got bytes.Buffer
		std := slog.New(slog.NewTextHandler(&want, nil)).With("k", "v").WithGroup("grp")
		fast := slog.New(NewHandler(&got, nil)).With("k", "v").WithGroup("grp")
		for _, l := range []*slog.Logger{std, fast} {
			r := slog.NewRecord(when, slog.LevelInfo, "request msg", 0)
			r.AddAttrs(a)
			if err := l.Handler().Handle(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		if got.String() != want.String() {
			t.Errorf("attr %s:\n got %q\nwant %q", a.Key, got.String(), want.String())
		}
	}
}

func TestLevel(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(&buf, slog.LevelWarn))
	l.Info("hidden")
	l.Warn("shown")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "msg=shown") {
		t.Errorf("output %q", got)
	}
}

type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestWriterBatchesAndFlushes(t *testing.T) {
	out := &lockedBuffer{}
	w := NewWriter(out, time.Hour) // no timed flush during the test
	l := slog.New(NewHandler(w, nil))
	for i := 0; i < 100; i++ {
		l.Info("request", "i", i)
	}
	if got := out.String(); got != "" {
		t.Fatalf("info lines written before a flush: %q", got)
	}
	l.Warn("trouble") // hands the batch to the writing goroutine at once
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 101 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	out.mu.Lock()
	writes := out.writes
	out.mu.Unlock()
	if got := out.String(); strings.Count(got, "\n") != 101 || writes != 1 {
		t.Errorf("after a warning: %d lines in %d writes, want 101 in 1", strings.Count(got, "\n"), writes)
	}
	l.Info("last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "msg=last\n") {
		t.Errorf("Close did not flush the last line")
	}
}

func TestWriterTimedFlushAndConcurrency(t *testing.T) {
	out := &lockedBuffer{}
	w := NewWriter(out, 5*time.Millisecond)
	l := slog.New(NewHandler(w, nil))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				l.Info("request", "path", "/latest/meta-data/instance-id", "n", i)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\n") < 16000 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 16000 {
		t.Fatalf("%d lines, want 16000", len(lines))
	}
	for _, line := range lines {
		if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " n=") {
			t.Fatalf("torn line %q", line)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkHandler(b *testing.B) {
	for _, tt := range []struct {
		name string
		h    slog.Handler
	}{
		{"fastlog", NewHandler(discard{}, nil)},
		{"slog.TextHandler", slog.NewTextHandler(discard{}, nil)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			now := time.Now()
			for i := 0; i < b.N; i++ {
				r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
				r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/latest/meta-data/instance-id"),
					slog.Int("status", 200), slog.String("api", "v2"), slog.Duration("latency", 35*time.Microsecond),
					slog.String("remote", "127.0.0.1:40000"), slog.String("instance", "default"), slog.String("ua", "aws-sdk-go-v2/1.0 os/linux"))
				_ = tt.h.Handle(context.Background(), r)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// A stalled output (a pipe nobody reads) never blocks logging: lines beyond
// MaxPending are dropped and counted, and once the output drains, one line
// says how many were lost.
func TestStalledOutputDropsAndReports(t *testing.T) {
	r, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer pw.Close()
	w := NewWriter(pw, time.Millisecond)
	w.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) } // fixed instant: only formatted into a log line, no real clock
	l := slog.New(NewHandler(w, nil))
	const lines = 50000 // about 4 MiB: far more than the pipe and MaxPending hold
	done := make(chan struct{})
	go func() {
		defer close(done)
		pad := strings.Repeat("x", 64)
		for i := range lines {
			l.Info("request", "i", i, "pad", pad)
			if i%1000 == 0 {
				l.Warn("warning on the request path")
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("logging blocked on a pipe nobody reads")
	}
	if w.Dropped() == 0 {
		t.Fatal("no line was dropped, yet the pipe was never read")
	}
	// The reader wakes up: everything kept arrives, then the report.
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		got <- string(b)
	}()
	if err := w.Close(); err != nil {
		t.Fatalf("Close once the output drains: %v", err)
	}
	pw.Close()
	out := <-got
	want := fmt.Sprintf(`time=2026-01-02T03:04:05.000Z level=WARN msg="log lines dropped: the log output did not keep up" dropped=%d`+"\n", w.Dropped())
	if strings.Count(out, "log lines dropped") != 1 || !strings.Contains(out, want) {
		t.Errorf("the report of dropped lines: want once %q, got %d in %d bytes", want, strings.Count(out, "log lines dropped"), len(out))
	}
	kept := strings.Count(out, "msg=request") + strings.Count(out, `msg="warning`)
	if uint64(kept)+w.Dropped() != lines+lines/1000 {
		t.Errorf("%d lines written + %d dropped, want %d logged", kept, w.Dropped(), lines+lines/1000)
	}
}

// HandleAttrs writes exactly what Handle writes for the same record.
func TestHandleAttrsMatchesHandle(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC) // fixed instant: formatted only
	attrs := []slog.Attr{
		slog.String("method", "GET"), slog.String("path", "/latest/meta-data/"), slog.Int("status", 200),
		slog.String("api", "v1"), slog.Duration("latency", 1500*time.Nanosecond), slog.String("remote", "127.0.0.1:4000"),
		slog.String("instance", "web 1"), slog.String("ua", `curl "8"`), slog.String("fault", "latency"),
	}
	var viaRecord, viaAttrs bytes.Buffer
	h1 := NewHandler(&viaRecord, nil).WithAttrs([]slog.Attr{slog.String("k", "v")})
	h2 := NewHandler(&viaAttrs, nil).WithAttrs([]slog.Attr{slog.String("k", "v")})
	r := slog.NewRecord(when, slog.LevelInfo, "request", 0)
	r.AddAttrs(attrs...)
	if err := h1.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := h2.(*Handler).HandleAttrs(when, slog.LevelInfo, "request", attrs); err != nil {
		t.Fatal(err)
	}
	if viaRecord.String() != viaAttrs.String() {
		t.Errorf("HandleAttrs wrote %q, Handle %q", viaAttrs.String(), viaRecord.String())
	}
}
