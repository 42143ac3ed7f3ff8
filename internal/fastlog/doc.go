// Package fastlog is a log/slog handler for the metadata request path.
//
// It writes the same logfmt lines as slog.TextHandler but formats them
// without reflection and hands them to a Writer that batches them, so that
// logging every request costs a fraction of a system call. Records at Warn or
// above are handed to the output at once; the rest reach it within the
// flush interval, and all of them on Close.
//
// Logging never blocks the caller: when the output stalls (stderr on a pipe
// nobody reads), lines beyond MaxPending waiting bytes are dropped and
// counted, and one line reports the count once the output recovers.
package fastlog
