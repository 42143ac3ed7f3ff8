//go:build unix

package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/ec2"
)

// script writes an executable /bin/sh script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helper.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func newSource(t *testing.T, body string, args ...string) *Source {
	t.Helper()
	s, err := New(append([]string{script(t, body)}, args...), 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return testNow }
	return s
}

// retrieveErr runs s and returns its error, failing if there is none or if
// the error shows a secret.
func retrieveErr(t *testing.T, s *Source) error {
	t.Helper()
	c, err := s.Retrieve(context.Background())
	if err == nil {
		t.Fatalf("Retrieve succeeded: %v", c)
	}
	if strings.Contains(err.Error(), "SECRETMARKER") || strings.Contains(err.Error(), "TOKENMARKER") {
		t.Errorf("error %q shows a secret", err)
	}
	return err
}

func wantContains(t *testing.T, err error, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

const validJSON = `{"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "` + marker + `", "SessionToken": "TOKENMARKER", "Expiration": "2026-11-22T16:00:00Z"}`

func TestRetrieve(t *testing.T) {
	exp := time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC) // fixed instant: parsed from the script's output and compared
	lastUpdated := testNow.Truncate(time.Second)
	for _, tc := range []struct {
		name string
		body string
		args []string
		env  []string
		want ec2.Credentials
	}{
		{name: "full", body: `echo '` + validJSON + `'`,
			want: ec2.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: marker, SessionToken: "TOKENMARKER", Expiration: exp}},
		{name: "no expiration", body: `echo '{"Version":1,"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"s","SessionToken":"t"}'`,
			want: ec2.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "s", SessionToken: "t"}},
		{name: "no session token", body: `echo '{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s","Expiration":"2026-11-22T16:00:00Z"}'`,
			want: ec2.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s", Expiration: exp}},
		{name: "neither", body: `printf '{"Version":1,"AccessKeyId":"AKIAEXAMPLE","SecretAccessKey":"s"}'`,
			want: ec2.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s"}},
		{name: "args env and stderr chatter", args: []string{"--key", "AKIA FROM ARG"}, env: []string{"HELPER_SECRET=from env"},
			body: `echo "fetching for $1" >&2; printf '{"Version":1,"AccessKeyId":"%s","SecretAccessKey":"%s","Home":"%s"}' "$2" "$HELPER_SECRET" "$HOME"`,
			want: ec2.Credentials{AccessKeyID: "AKIA FROM ARG", SecretAccessKey: "from env"}},
		{name: "stdin is empty", body: `cat; echo '{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"s"}'`,
			want: ec2.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, tc.body, tc.args...)
			s.Env = tc.env
			got, err := s.Retrieve(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tc.want.LastUpdated = lastUpdated
			if got != tc.want {
				t.Errorf("got %v (%q, %q), want %v (%q, %q)", got, got.SecretAccessKey, got.SessionToken, tc.want, tc.want.SecretAccessKey, tc.want.SessionToken)
			}
		})
	}
}

func TestRetrieveInheritsEnvironmentAndDir(t *testing.T) {
	t.Setenv("IMDS_PROCESS_TEST", "inherited")
	dir := t.TempDir()
	s := newSource(t, `printf '{"Version":1,"AccessKeyId":"%s","SecretAccessKey":"%s"}' "$IMDS_PROCESS_TEST" "$(pwd -P)"`)
	s.Env = []string{"OTHER=1"}
	s.Dir = dir
	c, err := s.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resolved, _ := filepath.EvalSymlinks(dir)
	if c.AccessKeyID != "inherited" || c.SecretAccessKey != resolved {
		t.Errorf("env var %q, dir %q; want inherited and %q", c.AccessKeyID, c.SecretAccessKey, resolved)
	}
}

func TestRetrieveExitStatus(t *testing.T) {
	s := newSource(t, `echo; echo "  An error occurred (ExpiredToken): the SSO session has expired  " >&2; echo "second line" >&2; exit 3`)
	err := retrieveErr(t, s)
	if got, want := err.Error(), "credential_process helper.sh exited with status 3: An error occurred (ExpiredToken): the SSO session has expired"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}

	s = newSource(t, `exit 1`)
	if got, want := retrieveErr(t, s).Error(), "credential_process helper.sh exited with status 1"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

func TestRetrieveKilledBySignal(t *testing.T) {
	s := newSource(t, `echo dying >&2; kill -TERM $$`)
	wantContains(t, retrieveErr(t, s), "credential_process helper.sh was terminated (signal: terminated): dying")
}

// A command that fails after printing its credentials must not get them
// into the error, even when it echoes them on stderr.
func TestRetrieveSecretOnStdoutExit1(t *testing.T) {
	s := newSource(t, `echo '`+validJSON+`'; echo "could not cache `+marker+` / TOKENMARKER" >&2; exit 1`)
	err := retrieveErr(t, s)
	if got, want := err.Error(), "credential_process helper.sh exited with status 1: could not cache [redacted] / [redacted]"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	s = newSource(t, `echo '`+validJSON+`'; exit 1`)
	if got, want := retrieveErr(t, s).Error(), "credential_process helper.sh exited with status 1"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

func TestRetrieveBadOutput(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unterminated", `echo '{'`, "credential_process helper.sh printed invalid JSON: unexpected end of input"},
		{"not json", `echo not json`, "credential_process helper.sh printed invalid JSON: syntax error at byte 2"},
		{"cut", `printf '{"Version":1,"SecretAccessKey":"` + marker + `'`, "printed invalid JSON: unexpected end of input"},
		{"secret as the whole output", `echo ` + marker, "printed invalid JSON: syntax error at byte 1"},
		{"version 2", `echo '{"Version":2,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `"}'`, "credential_process helper.sh printed invalid credentials: Version is 2, want 1"},
		{"missing secret", `echo '{"Version":1,"AccessKeyId":"AKIA","SessionToken":"TOKENMARKER"}'`, "printed invalid credentials: SecretAccessKey is missing"},
		{"expired", `echo '{"Version":1,"AccessKeyId":"AKIA","SecretAccessKey":"` + marker + `","Expiration":"2026-11-22T09:59:59Z"}'`, "printed invalid credentials: Expiration 2026-11-22T09:59:59Z is in the past"},
		{"nothing", `echo "no cached credentials" >&2`, "credential_process helper.sh printed nothing on stdout; stderr: no cached credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantContains(t, retrieveErr(t, newSource(t, tc.body)), tc.want)
		})
	}
	var oe *OutputError
	if err := retrieveErr(t, newSource(t, `echo '{'`)); !errors.As(err, &oe) || !oe.JSON {
		t.Errorf("error %v does not unwrap to an *OutputError", err)
	}
}

func TestRetrieveStderrLine(t *testing.T) {
	long := strings.Repeat("é", 300)
	s := newSource(t, `printf '\n   \n\033[31mred\tline\033[0m\n' >&2; exit 2`)
	wantContains(t, retrieveErr(t, s), "exited with status 2:  [31mred line [0m")

	s = newSource(t, `echo `+long+` >&2; exit 2`)
	err := retrieveErr(t, s)
	_, line, _ := strings.Cut(err.Error(), "status 2: ")
	if want := strings.Repeat("é", 199) + "…"; line != want {
		t.Errorf("long line shown as %q (%d runes), want 199 runes and …", line, len([]rune(line)))
	}

	// Only the last 4 KiB of stderr are kept: the first whole line of those.
	s = newSource(t, `i=0; while [ $i -lt 1000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 4`)
	err = retrieveErr(t, s)
	_, line, _ = strings.Cut(err.Error(), "status 4: ")
	n, convErr := strconv.Atoi(strings.TrimPrefix(line, "line "))
	if convErr != nil || n < 500 || n > 999 {
		t.Errorf("first kept stderr line %q, want a whole line from the last 4 KiB", line)
	}
}

func TestRetrieveHugeOutput(t *testing.T) {
	for _, body := range []string{
		`head -c 2000000 /dev/zero`,
		`exec yes ` + marker, // endless: must be stopped, not read to the end
		`echo '` + validJSON + `'; head -c 1048576 /dev/zero | tr '\0' ' '`,
	} {
		start := time.Now()
		err := retrieveErr(t, newSource(t, body))
		wantContains(t, err, "credential_process helper.sh printed more than 1048576 bytes on stdout")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", body, d)
		}
	}
	// Exactly MaxStdout is fine.
	pad := MaxStdout - len(validJSON) - 1
	s := newSource(t, `echo '`+validJSON+`'; head -c `+strconv.Itoa(pad)+` /dev/zero | tr '\0' ' '`)
	if _, err := s.Retrieve(context.Background()); err != nil {
		t.Errorf("output of exactly MaxStdout bytes: %v", err)
	}
}

// gone reports whether pid has exited. A zombie counts as gone: an orphan is
// reparented to init, which in a container may never reap it.
func gone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(after, "Z")
}

// waitGone waits up to a second for the pids the script wrote to pidfile to
// be gone.
func waitGone(t *testing.T, pidfile string) {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(b))
	if len(pids) != 2 {
		t.Fatalf("pid file holds %q, want the script's and its child's pids", b)
	}
	deadline := time.Now().Add(10 * time.Second) // generous: a poll, not a measurement
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		for !gone(pid) {
			if time.Now().After(deadline) {
				t.Errorf("process %d still runs", pid)
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// sleeper is a script that records its pid and its child's, then waits.
const sleeper = `sleep 30 & echo $$ $! > "$1"; wait`

func TestRetrieveTimeoutKillsProcessGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	s := newSource(t, sleeper, pidfile)
	s.Timeout = 200 * time.Millisecond
	start := time.Now()
	err := retrieveErr(t, s)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Retrieve returned after %v, want about 200ms", d)
	}
	if got, want := err.Error(), "credential_process helper.sh timed out after 200ms"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not context.DeadlineExceeded", err)
	}
	waitGone(t, pidfile)
}

func TestRetrieveCancel(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pids")
	s := newSource(t, sleeper, pidfile)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Retrieve(ctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Retrieve returned after %v, want about 100ms", d)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "credential_process helper.sh interrupted: context deadline exceeded") {
		t.Errorf("error %v, want interrupted by the caller's context", err)
	}
	waitGone(t, pidfile)

	// Canceled before it starts: the command never runs.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	ran := filepath.Join(t.TempDir(), "ran")
	s = newSource(t, `touch "$1"`, ran)
	if _, err := s.Retrieve(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("the command ran with a canceled context")
	}
}

func TestRetrieveConcurrent(t *testing.T) {
	s := newSource(t, `echo '`+validJSON+`'`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Retrieve(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestNew(t *testing.T) {
	s, err := New([]string{"sh", "-c", "exit 0"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Timeout != DefaultTimeout || !filepath.IsAbs(s.path) || s.Command[0] != "sh" {
		t.Errorf("New = %+v (path %q), want DefaultTimeout, sh resolved", s.Command, s.path)
	}

	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		command []string
		timeout time.Duration
		want    string
	}{
		{"nil", nil, 0, "credential_process: empty command"},
		{"empty name", []string{"", "x"}, 0, "credential_process: empty command"},
		{"NUL in name", []string{"s\x00h"}, 0, "the command name contains a NUL byte"},
		{"NUL in arg", []string{"sh", "-c", marker + "\x00"}, 0, "credential_process sh (2 args): argument 2 contains a NUL byte"},
		{"negative timeout", []string{"sh", marker}, -time.Second, "credential_process sh (1 arg): negative timeout -1s"},
		{"not in PATH", []string{"no-such-imds-helper", marker}, 0, `credential_process no-such-imds-helper (1 arg): exec: "no-such-imds-helper": executable file not found in $PATH`},
		{"no such file", []string{filepath.Join(dir, "missing"), marker}, 0, "no such file or directory"},
		{"not executable", []string{plain, marker}, 0, "permission denied"},
		{"directory", []string{dir, marker}, 0, "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.command, tc.timeout)
			if err == nil {
				t.Fatalf("New(%q) = %v, want an error", tc.command, s)
			}
			wantContains(t, err, tc.want)
			if strings.Contains(err.Error(), "SECRETMARKER") {
				t.Errorf("error %q shows an argument", err)
			}
		})
	}
}

func TestNewResolvesOnce(t *testing.T) {
	dir := t.TempDir()
	body := "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIA\",\"SecretAccessKey\":\"s\"}'\n"
	if err := os.WriteFile(filepath.Join(dir, "helper"), []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("PATH", ".")
	if _, err := New([]string{"helper"}, 0); err == nil || !strings.Contains(err.Error(), "write ./helper") {
		t.Errorf("bare name found through . in PATH: %v", err)
	}
	s, err := New([]string{"./helper"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Neither Dir nor the working directory change what runs.
	s.Dir = t.TempDir()
	t.Chdir(t.TempDir())
	if _, err := s.Retrieve(context.Background()); err != nil {
		t.Errorf("relative command after chdir: %v", err)
	}
	// A Source made without New looks its command up at each run.
	missing := &Source{Command: []string{"no-such-imds-helper"}}
	wantContains(t, retrieveErr(t, missing), `credential_process no-such-imds-helper could not start: exec: "no-such-imds-helper": executable file not found in $PATH`)
}

func TestStringHidesArguments(t *testing.T) {
	s, err := New([]string{"/bin/sh", "-c", "fetch --secret " + marker}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Env = []string{"TOKEN=TOKENMARKER"}
	if got, want := s.String(), "credential_process sh (2 args)"; got != want {
		t.Errorf("String()=%q, want %q", got, want)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, arg := range []any{s, *s, struct{ S Source }{*s}} {
			out := fmt.Sprintf(verb, arg)
			if strings.Contains(out, "MARKER") || strings.Contains(out, fmt.Sprintf("%x", "MARKER")) {
				t.Errorf("Sprintf(%q, %T) = %q shows an argument", verb, arg, out)
			}
		}
	}
	if got := (Source{}).String(); got != "credential_process (no command)" {
		t.Errorf("zero String()=%q", got)
	}
	if got := (Source{Command: []string{"x"}}).String(); got != "credential_process x (0 args)" {
		t.Errorf("String()=%q", got)
	}
}
