// Package fastlog is a log/slog handler for the metadata request path.
//
// It writes the same logfmt lines as slog.TextHandler but formats them
// without reflection and hands them to a Writer that batches them, so that
// logging every request costs a fraction of a system call. Records at Warn or
// above are flushed at once; the rest reach the output within the flush
// interval, and all of them on Close.
package fastlog
