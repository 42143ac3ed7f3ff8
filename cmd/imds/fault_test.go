package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// faultService keeps the faults it is given and counts the calls; it knows
// the instance "web-1" and every instance ("").
type faultService struct {
	mu     sync.Mutex
	faults map[string]ec2.Faults
	calls  []string // "set NAME" or "get NAME"
}

func (f *faultService) SetFaults(_ context.Context, name string, faults ec2.Faults) error {
	if name != "" && name != "web-1" {
		return ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = map[string]ec2.Faults{}
	}
	f.faults[name] = faults
	f.calls = append(f.calls, "set "+name)
	return nil
}

func (f *faultService) GetFaults(_ context.Context, name string) (ec2.Faults, error) {
	if name != "" && name != "web-1" {
		return ec2.Faults{}, ec2.Errorf(ec2.ENOTFOUND, "no instance named %q", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "get "+name)
	return f.faults[name], nil
}

func (f *faultService) state(name string) (ec2.Faults, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := ""
	if len(f.calls) > 0 {
		last = f.calls[len(f.calls)-1]
	}
	return f.faults[name], last
}

func TestFaultCommands(t *testing.T) {
	fake := &faultService{}
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, func(s *admin.Server) { s.Faults = fake })
	sock := "--admin-socket=" + srv.SocketPath

	for _, tt := range []struct {
		args []string
		name string
		want ec2.Faults
		out  string
	}{
		{[]string{"set", "web-1", "--latency", "200ms", "--latency-max", "1s"}, "web-1",
			ec2.Faults{Latency: 200 * time.Millisecond, LatencyMax: time.Second}, "web-1: latency=200ms-1s\n"},
		{[]string{"set", "web-1", "--error-rate", "0.2"}, "web-1", ec2.Faults{ErrorRate: 0.2}, "web-1: errors=0.2×503\n"},
		{[]string{"set", "web-1", "--error-rate=0.2", "--error-status=500", "--latency=1s"}, "web-1",
			ec2.Faults{ErrorRate: 0.2, ErrorStatus: 500, Latency: time.Second}, "web-1: latency=1s,errors=0.2×500\n"},
		{[]string{"set", "--all", "--rate-limit", "10", "--burst", "5"}, "", ec2.Faults{RateLimit: 10, Burst: 5}, "all instances: rate-limit=10/s,burst=5\n"},
		{[]string{"set", "web-1", "--token", "timeout", "--expired-credentials", "--drop-rate", "0.1"}, "web-1",
			ec2.Faults{Token: ec2.TokenTimeout, ExpiredCredentials: true, DropRate: 0.1}, "web-1: token=timeout,expired-credentials,drop=0.1\n"},
		// set replaces: what the flags leave out is off.
		{[]string{"set", "web-1", "--token", "refuse"}, "web-1", ec2.Faults{Token: ec2.TokenRefuse}, "web-1: token=refuse\n"},
		{[]string{"set", "web-1"}, "web-1", ec2.Faults{}, "web-1: no faults\n"},
	} {
		args := append(append([]string{"fault"}, tt.args...), sock)
		out, errOut, code := runArgs(args...)
		if code != 0 {
			t.Errorf("imds %s: exit %d: %s", strings.Join(args, " "), code, errOut)
			continue
		}
		if got, call := fake.state(tt.name); got != tt.want || call != "set "+tt.name {
			t.Errorf("imds %s: the server got %+v (last call %q), want %+v", strings.Join(args, " "), got, call, tt.want)
		}
		if out != tt.out {
			t.Errorf("imds %s: stdout %q, want %q", strings.Join(args, " "), out, tt.out)
		}
	}

	// get and clear, of one instance and of all.
	runArgs("fault", "set", "web-1", "--latency", "50ms", sock)
	runArgs("fault", "set", "--all", "--error-rate", "1", sock)
	if out, errOut, code := runArgs("fault", "get", "web-1", sock); code != 0 || out != "web-1: latency=50ms\n" {
		t.Errorf("get web-1: exit %d, %s, stdout %q", code, errOut, out)
	}
	if out, errOut, code := runArgs("fault", "get", "--all", sock); code != 0 || out != "all instances: errors=1×503\n" {
		t.Errorf("get --all: exit %d, %s, stdout %q", code, errOut, out)
	}
	if out, errOut, code := runArgs("fault", "clear", "web-1", sock); code != 0 || out != "web-1: no faults\n" {
		t.Errorf("clear web-1: exit %d, %s, stdout %q", code, errOut, out)
	}
	if got, call := fake.state("web-1"); got.Active() || call != "set web-1" {
		t.Errorf("clear web-1: the server has %+v (last call %q)", got, call)
	}
	if got, _ := fake.state(""); got != (ec2.Faults{ErrorRate: 1}) {
		t.Errorf("clear web-1 changed the faults of every instance: %+v", got)
	}
	if out, errOut, code := runArgs("fault", "clear", "--all", sock); code != 0 || out != "all instances: no faults\n" {
		t.Errorf("clear --all: exit %d, %s, stdout %q", code, errOut, out)
	}
	if got, call := fake.state(""); got.Active() || call != "set " {
		t.Errorf("clear --all: the server has %+v (last call %q)", got, call)
	}

	for _, args := range [][]string{{"get", "db-1"}, {"clear", "db-1"}, {"set", "db-1", "--latency", "1s"}} {
		_, errOut, code := runArgs(append(append([]string{"fault"}, args...), sock)...)
		if code == 0 || errOut != "imds: no instance named \"db-1\"\n" {
			t.Errorf("fault %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}

func TestFaultOutput(t *testing.T) {
	fake := &faultService{}
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, func(s *admin.Server) { s.Faults = fake })
	sock := "--admin-socket=" + srv.SocketPath

	out, errOut, code := runArgs("fault", "get", "web-1", "-o", "json", sock)
	if code != 0 || out != "{}\n" {
		t.Errorf("get -o json without faults: exit %d, %s\n%s", code, errOut, out)
	}
	out, errOut, code = runArgs("fault", "set", "web-1", "--latency", "200ms", "--error-rate", "0.25", "--error-status", "500",
		"--token", "refuse", "--expired-credentials", "-o", "json", sock)
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || !strings.HasSuffix(out, "}\n") || len(doc) != 5 ||
		doc["latency"] != "200ms" || doc["error_rate"] != 0.25 || doc["error_status"] != 500.0 || doc["token"] != "refuse" ||
		doc["expired_credentials"] != true {
		t.Errorf("set -o json: exit %d, %s\n%s", code, errOut, out)
	}
	out, _, code = runArgs("fault", "get", "web-1", "-o", "yaml", sock)
	if want := "latency: 200ms\nerror_rate: 0.25\nerror_status: 500\ntoken: refuse\nexpired_credentials: true\n"; code != 0 || out != want {
		t.Errorf("get -o yaml: exit %d\n%s\nwant\n%s", code, out, want)
	}
}

func TestFaultFlagValidation(t *testing.T) {
	// No server: every one of these must fail before trying to reach it.
	sock := "--admin-socket=" + filepath.Join(admintest.SocketDir(t), "none.sock")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"set", "--latency", "1s"}, "NAME or --all: say which instance's faults"},
		{[]string{"get"}, "NAME or --all"},
		{[]string{"clear"}, "NAME or --all"},
		{[]string{"set", "web-1", "--all"}, `NAME and --all: give one of them`},
		{[]string{"clear", "web-1", "--all"}, `NAME and --all: give one of them`},
		{[]string{"get", "web-1", "db-1"}, `fault get needs one instance NAME or --all, got 2 arguments: "web-1" "db-1"`},
		{[]string{"get", ""}, "NAME: must not be empty"},
		{[]string{"set", "web-1", "--latency", "soon"}, `--latency: must be a duration like 30s, 5m or 1h, got "soon"`},
		{[]string{"set", "web-1", "--latency", "-1s"}, "--latency: must be between 0 and 1m, got -1s"},
		{[]string{"set", "web-1", "--latency", "2m"}, "--latency: must be between 0 and 1m, got 2m0s"},
		{[]string{"set", "web-1", "--latency-max", "90s"}, "--latency-max: must be between 0 and 1m"},
		{[]string{"set", "web-1", "--latency", "1s", "--latency-max", "500ms"}, "--latency-max: must not be below --latency (1s), got 500ms"},
		{[]string{"set", "web-1", "--error-rate", "1.5"}, "--error-rate: must be a share between 0 and 1, got 1.5"},
		{[]string{"set", "web-1", "--error-rate", "NaN"}, "--error-rate: must be a share between 0 and 1"},
		{[]string{"set", "web-1", "--error-rate", "lots"}, `--error-rate: must be a number, got "lots"`},
		{[]string{"set", "web-1", "--drop-rate", "-0.1"}, "--drop-rate: must be a share between 0 and 1, got -0.1"},
		{[]string{"set", "web-1", "--error-rate", "0.1", "--error-status", "502"}, "--error-status: must be 500 or 503, got 502"},
		{[]string{"set", "web-1", "--error-status", "500"}, "--error-status: only used with --error-rate"},
		{[]string{"set", "web-1", "--rate-limit", "-1"}, "--rate-limit: must be a number of requests a second, 0 or more, got -1"},
		{[]string{"set", "web-1", "--rate-limit", "Inf"}, "--rate-limit: must be a number of requests a second"},
		{[]string{"set", "web-1", "--rate-limit", "1", "--burst", "-1"}, "--burst: must not be negative, got -1"},
		{[]string{"set", "web-1", "--burst", "5"}, "--burst: only used with --rate-limit"},
		{[]string{"set", "web-1", "--token", "slow"}, `--token: must be refuse or timeout, got "slow"`},
		{[]string{"set", "web-1", "--token", ""}, `--token: must be refuse or timeout, got ""`},
		{[]string{"get", "web-1", "-o", "xml"}, `-o/--output: must be table, json or yaml, got "xml"`},
	} {
		args := append(append([]string{"fault"}, tt.args...), sock)
		_, errOut, code := runArgs(args...)
		if code == 0 || !strings.HasPrefix(errOut, "imds: ") || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 ||
			strings.Contains(errOut, "cannot reach") {
			t.Errorf("imds %s: exit %d, stderr %q, want one line with %q", strings.Join(args, " "), code, errOut, tt.want)
		}
	}
}

func TestFaultUnsupported(t *testing.T) {
	srv := admintest.MustOpenServer(t, admintest.NewService(testConfigInstance()), nil, nil)
	for _, args := range [][]string{{"get", "web-1"}, {"set", "--all", "--latency", "1s"}, {"clear", "web-1"}} {
		_, errOut, code := runArgs(append(append([]string{"fault"}, args...), "--admin-socket", srv.SocketPath)...)
		if code == 0 || errOut != "imds: this server cannot inject faults\n" {
			t.Errorf("fault %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
		}
	}
}
