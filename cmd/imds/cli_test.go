package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/clock"
)

// TestCLIUsageErrors covers the mistakes a user makes on the command line:
// each fails before any server is reached, with one line that says what
// the command needs, in the same words everywhere.
func TestCLIUsageErrors(t *testing.T) {
	t.Setenv("IMDS_ADMIN_SOCKET", filepath.Join(admintest.SocketDir(t), "none.sock"))
	const badName = `the instance name "Bad_Name!" contains '!'`
	for _, tt := range []struct {
		args []string
		want string
	}{
		// Missing or extra positional arguments.
		{[]string{"instance", "get"}, "instance get needs an instance NAME"},
		{[]string{"instance", "get", "a", "b"}, `instance get needs an instance NAME, got 2 arguments: "a" "b"`},
		{[]string{"instance", "set"}, "instance set needs an instance NAME"},
		{[]string{"instance", "rm"}, "instance rm needs one or more instance NAMEs"},
		{[]string{"instance", "add"}, "instance add needs an instance NAME, --from-file FILE or --from-libvirt DOMAIN.xml"},
		{[]string{"instance", "add", "a", "b"}, `instance add needs one instance NAME, got 2 arguments`},
		{[]string{"instance", "list", "x"}, `instance list takes no arguments, got "x"`},
		{[]string{"event", "spot"}, "event spot needs an instance NAME"},
		{[]string{"event", "rebalance"}, "event rebalance needs an instance NAME"},
		{[]string{"event", "maintenance"}, "event maintenance needs an instance NAME"},
		{[]string{"event", "clear"}, "event clear needs an instance NAME"},
		{[]string{"event", "asg", "web-1"}, "event asg needs an instance NAME and a STATE (Detached, InService,"},
		{[]string{"fault", "get", "a", "b"}, `fault get needs one instance NAME or --all, got 2 arguments`},
		{[]string{"fault", "get"}, "NAME or --all: say which instance's faults"},
		{[]string{"logs", "a", "b"}, `logs needs at most one instance NAME, got 2 arguments`},
		{[]string{"report"}, "report needs an instance NAME"},
		{[]string{"creds", "rotate", "a", "b"}, `creds rotate needs at most one ROLE, got 2 arguments`},
		{[]string{"db", "restore"}, "db restore needs a DUMP file (from imds db dump)"},
		{[]string{"libvirt", "hook", "vm-1"}, "libvirt hook needs a DOMAIN and an OPERATION"},
		{[]string{"serve", "extra"}, `serve takes no arguments, got "extra"`},
		{[]string{"version", "extra"}, `version takes no arguments, got "extra"`},
		{[]string{"net", "status", "extra"}, `net status takes no arguments, got "extra"`},

		// Unknown commands and flags: the closest one, on the same line.
		{[]string{"instnce"}, `unknown command "instnce" for "imds"; did you mean instance?`},
		{[]string{"instance", "lst"}, `unknown command "lst" for "imds instance"; did you mean list?`},
		{[]string{"event", "spto", "web-1"}, `unknown command "spto" for "imds event"; did you mean spot?`},
		{[]string{"instance", "frobnicate"}, `unknown command "frobnicate" for "imds instance"; see imds instance --help`},
		{[]string{"instance", "list", "--outptu", "json"}, "unknown flag --outptu; did you mean --output?"},
		{[]string{"fault", "set", "web-1", "--rate", "1"}, "unknown flag --rate; did you mean --rate-limit?"},
		{[]string{"net", "up", "--brige", "br0"}, "unknown flag --brige; did you mean --bridge?"},
		{[]string{"instance", "list", "--zzz"}, "unknown flag --zzz; see imds instance list --help"},
		{[]string{"instance", "list", "-x"}, "unknown flag -x; see imds instance list --help"},

		// Flag values: named by the flag, with what it takes.
		{[]string{"net", "status", "--port", "x"}, `--port: must be an integer, got "x"`},
		{[]string{"net", "status", "--port"}, "--port: needs a value"},
		{[]string{"fault", "set", "web-1", "--latency", "5"}, `--latency: must be a duration like 30s, 5m or 1h, got "5"`},
		{[]string{"instance", "set", "web-1", "--hop-limit", "0"}, "--hop-limit: must be between 1 and 64, got 0"},
		{[]string{"instance", "add", "web-1", "--hop-limit", "65"}, "--hop-limit: must be between 1 and 64, got 65"},
		{[]string{"instance", "set", "web-1", "--hop-limit", "two"}, `--hop-limit: must be an integer, got "two"`},
		{[]string{"logs", "-o", "xml"}, `-o/--output: must be table, json or yaml, got "xml"`},

		// Instance names are checked wherever one enters, before sending.
		{[]string{"instance", "add", "Bad_Name!"}, badName},
		{[]string{"instance", "get", "Bad_Name!"}, badName},
		{[]string{"instance", "set", "Bad_Name!", "--tag", "a=b"}, badName},
		{[]string{"instance", "rm", "ok", "Bad_Name!"}, badName},
		{[]string{"event", "spot", "Bad_Name!"}, badName},
		{[]string{"event", "asg", "Bad_Name!", "InService"}, badName},
		{[]string{"fault", "set", "Bad_Name!", "--latency", "1s"}, badName},
		{[]string{"fault", "get", "Bad_Name!"}, badName},
		{[]string{"logs", "Bad_Name!"}, badName},
		{[]string{"report", "Bad_Name!"}, badName},
		{[]string{"instance", "get", "--", "-bad"}, `must start with a letter, a digit or '_'`},
	} {
		errOut := mustFailCLI(t, tt.want, tt.args...)
		if strings.Count(errOut, "\n") != 1 {
			t.Errorf("imds %s: stderr %q, want one line", strings.Join(tt.args, " "), errOut)
		}
	}
}

// TestCLIEnvErrors: a bad value from an IMDS_* variable is blamed on the
// variable, not on a flag the user never typed.
func TestCLIEnvErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		env, value string
		args       []string
		want       string
	}{
		{"IMDS_ADMIN_URL", "ftp://host", []string{"instance", "list"}, `environment variable IMDS_ADMIN_URL: must be an http:// or https:// URL`},
		{"IMDS_ADMIN_TOKEN_FILE", "token", []string{"fault", "get", "--all"}, "environment variable IMDS_ADMIN_TOKEN_FILE: only used with --admin-url"},
		{"IMDS_IMDSV2", "maybe", []string{"serve", "--data-dir", dir}, `environment variable IMDS_IMDSV2: must be optional or required, got "maybe"`},
		{"IMDS_LOG_FORMAT", "xml", []string{"serve", "--data-dir", dir}, `environment variable IMDS_LOG_FORMAT: must be text or json, got "xml"`},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			mustFailCLI(t, tt.want, tt.args...)
		})
	}
	// The flag, when given, wins and is the one named.
	t.Setenv("IMDS_IMDSV2", "maybe")
	mustFailCLI(t, `--imdsv2: must be optional or required, got "never"`, "serve", "--imdsv2", "never", "--data-dir", dir)
}

// TestCLIConventions checks what every command shares: --version, help on
// a group alone, serve's help, repeatable flags that are repeatable
// everywhere.
func TestCLIConventions(t *testing.T) {
	if out := mustRunCLI(t, "--version"); !strings.HasPrefix(out, "imds ") {
		t.Errorf("imds --version: %q", out)
	}
	if out := mustRunCLI(t, "instance"); !strings.Contains(out, "Available Commands:") {
		t.Errorf("imds instance: %q, want its help", out)
	}

	help := mustRunCLI(t, "serve", "--help")
	if !strings.Contains(help, "Examples:\n  imds serve\n") || !strings.Contains(help, "docs/configuration.md") {
		t.Errorf("serve --help has no examples or no pointer to the configuration reference:\n%s", help)
	}
	root := newRootCommand(io.Discard, io.Discard, clock.Real{})
	serve, _, err := root.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	serve.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" && (!strings.Contains(f.Usage, "default") || !strings.Contains(f.Usage, "env IMDS_")) {
			t.Errorf("serve --%s: usage %q does not say its default and its environment variable", f.Name, f.Usage)
		}
	})

	// The first go run compiles for a while in silence: the quick start says so.
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, quick, _ := strings.Cut(string(readme), "## Quick start")
	quick, _, _ = strings.Cut(quick, "```sh")
	if !strings.Contains(quick, "the first `go run`") {
		t.Errorf("README's quick start does not warn that the first go run compiles silently:\n%s", quick)
	}

	// A flag that can be given several times somewhere can be everywhere.
	repeatable := map[string]bool{"netns": true, "bridge": true, "ip": true, "tag": true}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if repeatable[f.Name] && f.Value.Type() != "stringArray" {
				t.Errorf("%s --%s is %s, not repeatable like elsewhere", c.CommandPath(), f.Name, f.Value.Type())
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, path := range [][]string{{"net", "up"}, {"net", "down"}, {"net", "status"}} {
		c, _, err := root.Find(path)
		if err != nil || c.Flags().Lookup("netns") == nil {
			t.Errorf("imds %s has no --netns (%v)", strings.Join(path, " "), err)
		}
	}
}

// TestCLIAgainstServer covers what needs a real server: the hop limit set
// through instance add and set, faults echoed whole, and the refusal to
// remove the zero-configuration instance saying what it is.
func TestCLIAgainstServer(t *testing.T) {
	srv := startServer(t, "")
	sock := "--admin-socket=" + srv.d.Admin.SocketPath

	hopLimit := func(out string) float64 {
		t.Helper()
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		insts, _ := doc["instances"].([]any)
		if len(insts) != 1 {
			t.Fatalf("want one instance:\n%s", out)
		}
		n, _ := insts[0].(map[string]any)["hop_limit"].(float64)
		return n
	}
	for _, tt := range []struct {
		name string
		args []string
		want float64
	}{
		{"add", []string{"instance", "add", "web-1", "--ip", "10.0.0.5", "--hop-limit", "3", "-o", "json"}, 3},
		{"set", []string{"instance", "set", "web-1", "--hop-limit", "2", "-o", "json"}, 2},
	} {
		if got := hopLimit(mustRunCLI(t, append(tt.args, sock)...)); got != tt.want {
			t.Errorf("%s: hop_limit %v, want %v", tt.name, got, tt.want)
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"fault", "set", "web-1", "--rate-limit", "10", "--burst", "5"}, "web-1: rate-limit=10/s,burst=5\n"},
		{[]string{"fault", "get", "web-1"}, "web-1: rate-limit=10/s,burst=5\n"},
	} {
		if out := mustRunCLI(t, append(tt.args, sock)...); out != tt.want {
			t.Errorf("imds %s: %q, want %q", strings.Join(tt.args, " "), out, tt.want)
		}
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"instance", "rm", "default"}, `instance "default" is the zero-configuration instance (no config file declares instances); it cannot be removed at run time`},
		{[]string{"instance", "set", "default", "--hop-limit", "2"}, `instance "default" is the zero-configuration instance (no config file declares instances); it cannot be changed at run time`},
	} {
		errOut := mustFailCLI(t, tt.want, append(tt.args, sock)...)
		if strings.Contains(errOut, "config file;") {
			t.Errorf("imds %s blames a config file there is none of: %s", strings.Join(tt.args, " "), errOut)
		}
	}
}
