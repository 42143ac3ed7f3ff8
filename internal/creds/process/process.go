// Package process gets a role's credentials from an external command, like
// the AWS CLI's credential_process setting.
//
// The command runs without a shell, with stdin from /dev/null, the server's
// environment plus Env, and a timeout. It prints a JSON document on stdout
// (see ParseOutput); a non-zero exit is a failure, reported with the first
// line of stderr. On Unix the command runs in its own process group, and the
// whole group is killed on timeout or cancellation, so the children of a
// shell script die with it.
//
// Whatever the command prints on stdout holds secrets: no error ever quotes
// it, and secrets found there are also blanked out of the stderr line shown
// in errors. Arguments may hold secrets too: String and errors show only the
// base name of the command.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/imdsdev/imds/internal/ec2"
)

// Limits on a run.
const (
	DefaultTimeout = time.Minute
	MaxStdout      = 1 << 20 // bytes of stdout; more fails the run
	keepStderr     = 4 << 10 // bytes kept from the end of stderr
	maxStderrLine  = 200     // runes of stderr shown in an error
	// waitDelay bounds how long Retrieve waits for stdout and stderr to
	// close once the command has exited or been killed: a grandchild that
	// left the process group may hold them open.
	waitDelay = 2 * time.Second
)

// Source runs a credential_process command. It implements
// ec2.CredentialSource; Retrieve may be called concurrently. Fields must not
// change while Retrieve runs.
type Source struct {
	Command []string      // argv; run without a shell
	Timeout time.Duration // per run; DefaultTimeout when zero or negative
	Env     []string      // "KEY=value" added to the server's environment
	Dir     string        // working directory; the server's when empty
	Now     func() time.Time

	path string // Command[0] resolved by New
}

var _ ec2.CredentialSource = (*Source)(nil)

// New returns a Source running command, which New checks: argv must not be
// empty or hold NUL bytes, and argv[0] must name an executable file, either a
// bare name found in $PATH (not in the current directory) or a path. The file
// New found is the one every run executes, whatever PATH or Dir become; a
// relative path is taken from the current directory, not Dir. A zero timeout
// means DefaultTimeout.
func New(command []string, timeout time.Duration) (*Source, error) {
	if len(command) == 0 || command[0] == "" {
		return nil, errors.New("credential_process: empty command")
	}
	s := &Source{Command: slices.Clone(command), Timeout: timeout, Now: time.Now}
	for i, a := range command {
		if strings.IndexByte(a, 0) >= 0 {
			if i == 0 {
				return nil, errors.New("credential_process: the command name contains a NUL byte")
			}
			return nil, fmt.Errorf("%s: argument %d contains a NUL byte", s, i)
		}
	}
	if timeout < 0 {
		return nil, fmt.Errorf("%s: negative timeout %v", s, timeout)
	} else if timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	path, err := exec.LookPath(command[0])
	if errors.Is(err, exec.ErrDot) {
		return nil, fmt.Errorf("%s: %q is found only in the current directory; write ./%s to run it from there", s, command[0], command[0])
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	s.path = path
	return s, nil
}

// name is the base name of the command, safe to show.
func (s *Source) name() string {
	if len(s.Command) == 0 || s.Command[0] == "" {
		return "(no command)"
	}
	return sanitize(filepath.Base(s.Command[0]), 100)
}

// String is "credential_process NAME (N args)": arguments may hold secrets.
func (s Source) String() string {
	n := len(s.Command) - 1
	switch {
	case n < 0:
		return "credential_process " + s.name()
	case n == 1:
		return "credential_process " + s.name() + " (1 arg)"
	default:
		return "credential_process " + s.name() + " (" + strconv.Itoa(n) + " args)"
	}
}

// GoString is String, for %#v.
func (s Source) GoString() string { return s.String() }

// Format prints String for every verb, so that no verb (%+v, %d…) can reach
// the arguments or Env through reflection.
func (s Source) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// runError is an error with its own message that still matches its cause
// (context.Canceled, context.DeadlineExceeded, *OutputError…) with errors.Is
// and errors.As.
type runError struct {
	msg string
	err error
}

func (e *runError) Error() string { return e.msg }
func (e *runError) Unwrap() error { return e.err }

// Retrieve runs the command and parses what it prints. It returns when the
// command and all of its process group are gone.
func (s *Source) Retrieve(ctx context.Context) (ec2.Credentials, error) {
	name := s.name()
	if len(s.Command) == 0 || s.Command[0] == "" {
		return ec2.Credentials{}, errors.New("credential_process: empty command")
	}
	if err := ctx.Err(); err != nil {
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s not run: %v", name, err), err}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	path := s.path
	if path == "" {
		path = s.Command[0] // a Source not made by New: exec looks it up
	}
	cmd := exec.CommandContext(runCtx, path, s.Command[1:]...)
	cmd.Args[0] = s.Command[0]
	cmd.Dir = s.Dir
	if len(s.Env) > 0 {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	stdout := &limitedBuffer{max: MaxStdout}
	stderr := &tailBuffer{max: keepStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = waitDelay
	configure(cmd)

	if err := cmd.Start(); err != nil {
		// exec's errors name the program's path, never its arguments.
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s could not start: %v", name, err), err}
	}
	err := cmd.Wait()
	ps := cmd.ProcessState
	switch {
	case stdout.overflow:
		return ec2.Credentials{}, fmt.Errorf("credential_process %s printed more than %d bytes on stdout", name, MaxStdout)
	case ps != nil && ps.Success():
		// A command that succeeded is believed even if ctx ended meanwhile.
	case ctx.Err() != nil:
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s interrupted: %v", name, ctx.Err()), ctx.Err()}
	case errors.Is(runCtx.Err(), context.DeadlineExceeded):
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s timed out after %v", name, timeout), context.DeadlineExceeded}
	case ps != nil && ps.Exited():
		msg := fmt.Sprintf("credential_process %s exited with status %d", name, ps.ExitCode())
		if line := stderr.firstLine(stdout.buf); line != "" {
			msg += ": " + line
		}
		return ec2.Credentials{}, &runError{msg, err}
	case ps != nil:
		msg := fmt.Sprintf("credential_process %s was terminated (%v)", name, ps)
		if line := stderr.firstLine(stdout.buf); line != "" {
			msg += ": " + line
		}
		return ec2.Credentials{}, &runError{msg, err}
	default:
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s failed: %v", name, err), err}
	}

	if len(bytes.TrimSpace(stdout.buf)) == 0 {
		msg := fmt.Sprintf("credential_process %s printed nothing on stdout", name)
		if line := stderr.firstLine(nil); line != "" {
			msg += "; stderr: " + line
		}
		return ec2.Credentials{}, errors.New(msg)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	c, err := ParseOutput(stdout.buf, now())
	if err != nil {
		return ec2.Credentials{}, &runError{fmt.Sprintf("credential_process %s printed %v", name, err), err}
	}
	return c, nil
}

// limitedBuffer keeps up to max bytes and fails the write that would pass
// max, which stops exec's copying and closes the pipe: the command gets
// SIGPIPE rather than running on.
type limitedBuffer struct {
	buf      []byte
	max      int
	overflow bool
}

var errTooMuch = errors.New("too much output")

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if len(b.buf)+len(p) > b.max {
		b.overflow = true
		return 0, errTooMuch
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf       []byte
	max       int
	truncated bool
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= b.max {
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		b.truncated = true
		return n, nil
	}
	if over := len(b.buf) + len(p) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.truncated = true
	}
	b.buf = append(b.buf, p...)
	return n, nil
}

// firstLine returns the first non-blank line of what was kept of stderr,
// skipping a line cut by truncation, trimmed, made printable and cut to
// maxStderrLine runes, with any secret found in stdout blanked out.
func (b *tailBuffer) firstLine(stdout []byte) string {
	rest := b.buf
	if b.truncated {
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			rest = rest[i+1:]
		}
	}
	var line string
	for len(rest) > 0 && line == "" {
		l := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = strings.TrimSpace(string(l))
	}
	for _, secret := range secretsIn(stdout) {
		line = strings.ReplaceAll(line, secret, "[redacted]")
	}
	return sanitize(line, maxStderrLine)
}

// secretsIn returns the secret fields of stdout when it is a JSON object.
func secretsIn(stdout []byte) []string {
	var m map[string]json.RawMessage
	if len(stdout) == 0 || json.Unmarshal(stdout, &m) != nil {
		return nil
	}
	var secrets []string
	for _, k := range []string{"SecretAccessKey", "SessionToken"} {
		var v string
		if json.Unmarshal(m[k], &v) == nil && v != "" {
			secrets = append(secrets, v)
		}
	}
	return secrets
}

// sanitize makes s valid UTF-8 without control characters, at most max runes.
func sanitize(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max-1]) + "…"
	}
	return s
}
