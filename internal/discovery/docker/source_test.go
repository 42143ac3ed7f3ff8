package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/registry"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fakeEngine serves the Engine API from responses recorded from a real
// engine (testdata/engine, Docker 20.10, API 1.41): the container list,
// one inspect document per container, and event streams, one script per
// connection to /events. A container whose die or destroy event was sent
// is no longer found, as on the engine.
type fakeEngine struct {
	t       *testing.T
	mu      sync.Mutex
	list    []json.RawMessage
	inspect map[string]json.RawMessage // ID → document
	scripts [][]string                 // event lines, one script per connection
	lists   int                        // list requests so far
	streams int                        // event connections so far
	srv     *httptest.Server
	release chan struct{} // closed once the source has synchronised
}

func newFakeEngine(t *testing.T, scripts ...[]string) *fakeEngine {
	f := &fakeEngine{t: t, inspect: map[string]json.RawMessage{}, scripts: scripts, release: make(chan struct{})}
	if err := json.Unmarshal(readFile(t, "testdata/engine/list.json"), &f.list); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/engine/inspect-*.json")
	for _, file := range files {
		var doc struct{ Id string }
		b := readFile(t, file)
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		f.inspect[doc.Id] = b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	})
	mux.HandleFunc("GET /v1.41/containers/json", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.lists++
		var out []json.RawMessage
		for _, c := range f.list {
			var s struct{ Id string }
			json.Unmarshal(c, &s)
			if _, ok := f.inspect[s.Id]; ok {
				out = append(out, c)
			}
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /v1.41/containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		doc, ok := f.inspect[r.PathValue("id")]
		f.mu.Unlock()
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such container: %s"}`, r.PathValue("id"))
			return
		}
		w.Write(doc)
	})
	mux.HandleFunc("GET /v1.41/events", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := f.streams
		f.streams++
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		// Events follow the list of this connection, as a real engine's
		// would come after the containers it lists; the first stream waits
		// for the source's first sync.
		if n == 0 {
			select {
			case <-f.release:
			case <-r.Context().Done():
			}
		}
		for {
			lists, _ := f.counts()
			if lists > n || r.Context().Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n < len(f.scripts) {
			for _, line := range f.scripts[n] {
				f.apply(line)
				fmt.Fprintln(w, line)
				w.(http.Flusher).Flush()
			}
			if n < len(f.scripts)-1 {
				return // the stream breaks: the source must reconnect
			}
		}
		<-r.Context().Done()
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// apply makes the engine's state follow an event it sends.
func (f *fakeEngine) apply(line string) {
	var m struct {
		Action string
		Actor  struct{ ID string }
	}
	if json.Unmarshal([]byte(line), &m) != nil {
		return
	}
	if m.Action == "die" || m.Action == "destroy" {
		f.mu.Lock()
		delete(f.inspect, m.Actor.ID)
		f.mu.Unlock()
	}
}

func (f *fakeEngine) counts() (lists, streams int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists, f.streams
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lines(t *testing.T, path string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// syncLog is a log buffer safe for the source's goroutine.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// startSource follows the fake engine into a real registry.
func startSource(t *testing.T, f *fakeEngine) (*registry.Registry, *syncLog) {
	reg, log, _ := startSourceRoles(t, f, func(name string) bool { return name == "app-role" })
	return reg, log
}

func startSourceRoles(t *testing.T, f *fakeEngine, known func(string) bool) (*registry.Registry, *syncLog, *Source) {
	t.Helper()
	engine, err := Dial("tcp://" + strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	reg := registry.New(nil, ec2.DeriveOptions{Seed: []byte("docker-test")})
	log := &syncLog{}
	src := &Source{Engine: engine, Registry: reg, Networks: []string{"shop_apps"},
		Logger:     slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Role: func(name string) (*ec2.Role, bool) {
			return &ec2.Role{Name: name}, known(name)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	src.Start(ctx)
	t.Cleanup(func() { cancel(); src.Wait() })
	select {
	case <-src.Synced():
	case <-time.After(10 * time.Second):
		t.Fatalf("no first sync after 10 s; log:\n%s", log)
	}
	close(f.release)
	return reg, log, src
}

// summary renders the docker instances one per line, for golden files.
func summary(t *testing.T, reg *registry.Registry) string {
	list, err := reg.ListInstances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, inst := range list {
		role := "-"
		if inst.Role != nil {
			role = inst.Role.Name
		}
		var tags []string
		for _, tg := range inst.Tags {
			tags = append(tags, tg.Key+"="+tg.Value)
		}
		fmt.Fprintf(&b, "%s origin=%s id=%s type=%s imdsv2=%s role=%s addrs=%s mac=%s subnet=%s launched=%s tags=%s user-data=%q\n",
			inst.Name, inst.Origin, inst.ID, inst.InstanceType, inst.Metadata.HTTPTokens, role, strings.Join(inst.SourceAddrs, ","),
			inst.Primary().MAC, inst.Primary().SubnetIPv4CIDR, inst.PendingTime.Format(time.RFC3339), strings.Join(tags, ","), inst.UserData)
	}
	return b.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(got, string(readFile(t, path))); diff != "" {
		t.Errorf("%s (-got +want):\n%s", path, diff)
	}
}

// poll waits up to 10 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10 s", what)
		}
	}
}

func TestListDecoding(t *testing.T) {
	f := newFakeEngine(t)
	reg, log := startSource(t, f)
	golden(t, "testdata/engine/list.golden", summary(t, reg))
	for _, want := range []string{
		`container not served: bad imds labels" container="\"d808fa38b75f\"" name="\"typo\"" err="label \"imds.rol\": unknown label; did you mean imds.role?`,
		`container not served: it has no address on the networks imds watches" container="\"893318a8715e\"" name="\"elsewhere\""`,
		`container served without credentials: its imds.role names no role of the config" container="\"ffd8beac891f\"" instance=worker-1 role=no-such-role`,
		`container instance served" container="\"667820c39a8a\"" instance=web instance_id=i-0667820c39a8a68e9`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, log)
		}
	}
	if strings.Contains(log.String(), `"plain"`) {
		t.Errorf("an unlabelled container is logged about:\n%s", log)
	}
}

func TestEventDecoding(t *testing.T) {
	f := newFakeEngine(t, lines(t, "testdata/engine/events.jsonl"))
	reg, log := startSource(t, f)
	// The recording ends with worker's kill, die, disconnect, stop, destroy.
	poll(t, "worker's instance gone", func() bool { return !strings.Contains(summary(t, reg), "worker-1") })
	golden(t, "testdata/engine/events.golden", summary(t, reg))
	if got := strings.Count(log.String(), `container instance gone" container="\"ffd8beac891f\""`); got != 1 {
		t.Errorf("worker's instance said gone %d times, want 1; log:\n%s", got, log)
	}
	// create and kill are not asked for; an engine that sends them anyway
	// is logged, not obeyed.
	if !strings.Contains(log.String(), `unexpected Docker event skipped" type=container action="\"create\""`) {
		t.Errorf("no log line for an unexpected event; log:\n%s", log)
	}
}

func TestMalformedEvents(t *testing.T) {
	f := newFakeEngine(t, lines(t, "testdata/engine/events-malformed.jsonl"), []string{`{"Type":"container","Act`}, nil)
	reg, log := startSource(t, f)
	before := summary(t, reg)
	// Each malformed stream breaks the connection: the source reconnects
	// and resynchronises from a fresh list, twice.
	poll(t, "two reconnections", func() bool { lists, streams := f.counts(); return lists >= 3 && streams >= 3 })
	poll(t, "the third list applied", func() bool { return strings.Count(log.String(), "Docker engine synchronised") >= 3 })
	if after := summary(t, reg); after != before {
		t.Errorf("instances changed across malformed events and reconnections (-before +after):\n%s", cmp.Diff(before, after))
	}
	for _, want := range []string{
		`unexpected Docker event skipped" type="\"volume\"" action="\"mount\"" id="\"\""`,
		`unexpected Docker event skipped" type="\"container\"" action="\"start\"" id="\"../../etc/passwd\""`,
		`unexpected Docker event skipped" type="\"container\"" action="\"start\"" id="\"\""`,
		`unexpected Docker event skipped" type=container action="\"health_status: healthy\""`,
		`unexpected Docker event skipped" type="\"network\"" action="\"connect\""`,
		`reconnecting" err="json: cannot unmarshal array`,
		`reconnecting" err="invalid character '\\n' in string literal"`,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, log)
		}
	}
	// A start event for a container the engine does not know is dropped.
	if strings.Contains(summary(t, reg), "ffffffffffff") {
		t.Errorf("an unknown container became an instance")
	}
}

func TestEngineAway(t *testing.T) {
	// Nothing listens there: the source keeps retrying, says so, and is
	// stopped by its context.
	engine, err := Dial("tcp://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	log := &syncLog{}
	src := &Source{Engine: engine, Registry: registry.New(nil, ec2.DeriveOptions{}),
		Logger: slog.New(slog.NewTextHandler(log, nil)), MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	src.Start(ctx)
	poll(t, "three retries logged", func() bool { return strings.Count(log.String(), "reconnecting") >= 3 })
	cancel()
	src.Wait()
	select {
	case <-src.Synced():
		t.Error("Synced without an engine")
	default:
	}
}

func TestResyncTakesNewRoles(t *testing.T) {
	var mu sync.Mutex
	roles := map[string]bool{"app-role": true}
	f := newFakeEngine(t)
	reg, _, src := startSourceRoles(t, f, func(name string) bool { mu.Lock(); defer mu.Unlock(); return roles[name] })
	if strings.Contains(summary(t, reg), "role=no-such-role") {
		t.Fatal("an unknown role was served")
	}
	// A reloaded config defines the role: the next look gives it.
	mu.Lock()
	roles["no-such-role"] = true
	mu.Unlock()
	src.Resync()
	poll(t, "worker-1 with its role", func() bool { return strings.Contains(summary(t, reg), "role=no-such-role") })
}
