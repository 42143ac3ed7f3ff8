package fastlog

import (
	"context"
	"encoding"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// timeFormat is slog.TextHandler's: RFC 3339 with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// Handler formats records as slog.TextHandler does: key=value pairs, values
// quoted when they contain spaces, quotes, '=' or non-printable characters.
type Handler struct {
	out    io.Writer
	flush  func() error // called after records at Warn or above; may be nil; never blocks
	level  slog.Leveler
	prefix []byte // pre-rendered attributes of WithAttrs
	group  string // dotted group prefix for keys
	clock  *secondCache
}

// secondCache keeps the formatted time of the current second, so that most
// records only format their milliseconds and zone.
type secondCache struct {
	last atomic.Pointer[cachedSecond]
}

type cachedSecond struct {
	unix int64
	loc  *time.Location
	text []byte // "2006-01-02T15:04:05."
}

func (c *secondCache) append(b []byte, t time.Time) []byte {
	sec := t.Unix()
	cs := c.last.Load()
	if cs == nil || cs.unix != sec || cs.loc != t.Location() {
		cs = &cachedSecond{unix: sec, loc: t.Location(), text: t.AppendFormat(nil, "2006-01-02T15:04:05.")}
		c.last.Store(cs)
	}
	b = append(b, cs.text...)
	ms := t.Nanosecond() / 1e6
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return t.AppendFormat(b, "Z07:00")
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a Handler writing to out. If out is a *Writer, records at
// Warn or above flush it so that problems are never held back.
func NewHandler(out io.Writer, level slog.Leveler) *Handler {
	h := &Handler{out: out, level: level, clock: &secondCache{}}
	if w, ok := out.(*Writer); ok {
		// Kick, not Flush: a record must never wait for the output.
		h.flush = func() error { w.Kick(); return nil }
	}
	if h.level == nil {
		h.level = slog.LevelInfo
	}
	return h
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	return h.handle(r.Time, r.Level, r.Message, func(b []byte) []byte {
		r.Attrs(func(a slog.Attr) bool {
			b = appendAttr(b, h.group, a)
			return true
		})
		return b
	})
}

// HandleAttrs writes the record Handle would write for a slog.Record of t,
// level, msg and attrs, without building one: a slog.Record holds five
// attributes and allocates for more, and a server's access log has more
// on every request. The caller keeps attrs.
func (h *Handler) HandleAttrs(t time.Time, level slog.Level, msg string, attrs []slog.Attr) error {
	return h.handle(t, level, msg, func(b []byte) []byte {
		for _, a := range attrs {
			b = appendAttr(b, h.group, a)
		}
		return b
	})
}

func (h *Handler) handle(t time.Time, level slog.Level, msg string, appendAttrs func([]byte) []byte) error {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	if !t.IsZero() {
		b = append(b, "time="...)
		b = h.clock.append(b, t)
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = append(b, level.String()...)
	b = append(b, " msg="...)
	b = appendString(b, msg)
	b = append(b, h.prefix...)
	b = appendAttrs(b)
	b = append(b, '\n')
	_, err := h.out.Write(b)
	*bp = b
	bufPool.Put(bp)
	if err == nil && h.flush != nil && level >= slog.LevelWarn {
		err = h.flush()
	}
	return err
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.prefix = append([]byte(nil), h.prefix...)
	for _, a := range attrs {
		c.prefix = appendAttr(c.prefix, h.group, a)
	}
	return &c
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "."
	return &c
}

func appendAttr(b []byte, group string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			b = appendAttr(b, g, ga)
		}
		return b
	}
	b = append(b, ' ')
	b = appendString(b, group+a.Key)
	b = append(b, '=')
	switch v.Kind() {
	case slog.KindString:
		b = appendString(b, v.String())
	case slog.KindInt64:
		b = strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		b = strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		b = strconv.AppendFloat(b, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		b = strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		b = appendString(b, v.Duration().String())
	case slog.KindTime:
		b = v.Time().AppendFormat(b, timeFormat)
	default:
		switch x := v.Any().(type) {
		case error:
			b = appendString(b, x.Error())
		case encoding.TextMarshaler:
			t, err := x.MarshalText()
			if err != nil {
				t = []byte("!ERROR:" + err.Error())
			}
			b = appendString(b, string(t))
		default:
			b = appendString(b, fmt.Sprint(x))
		}
	}
	return b
}

// appendString quotes s when slog.TextHandler would.
func appendString(b []byte, s string) []byte {
	if needsQuoting(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == '=' || c == '"' || c == 0x7f {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || !strconv.IsPrint(r) || r == '\u00a0' {
			return true
		}
		i += size
	}
	return false
}
