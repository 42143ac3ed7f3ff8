// Package metrics exposes what a running imds does in the Prometheus text
// format: metadata requests by instance, API version, category and status,
// their latency, IMDSv2 tokens, credential refreshes and ages, instances by
// origin, unknown requesters, dnsmasq restarts and build information.
//
// Requests are counted on the request path with atomic adds into counters
// kept per instance (no locks, no label hashing); everything else is read
// from its owner when /metrics is scraped. Label values are bounded: at
// most MaxInstances instance names get series of their own (the rest are
// counted under instance_name="_other"), series of instances that are no
// longer served are dropped at the next scrape, and roles are capped the
// same way. No metric carries a secret, an address or user-data.
package metrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imdsdev/imds/internal/ec2"
)

// DefaultMaxInstances is how many instance names get series of their own
// unless Options say otherwise.
const DefaultMaxInstances = 1000

// OtherInstance is the instance_name under which requests of instances
// beyond MaxInstances are counted.
const OtherInstance = "_other"

// Options are what Metrics reads besides the requests it is given.
type Options struct {
	// MaxInstances bounds the instance_name label (DefaultMaxInstances
	// when zero).
	MaxInstances int
	// Version and Commit are the build's, for imds_build_info.
	Version, Commit string
	// Now is the clock for credential ages.
	Now func() time.Time
	// Instances counts the served instances by origin; Served tells
	// whether a name is still served. Both are read at scrape time.
	Instances func() map[string]int
	Served    func(name string) bool
	// Roles reports every role's credential state (creds.Roles.Status).
	Roles func() []ec2.RoleStatus
	// DNSMasq reports dnsmasq's restarts; nil without a VM network.
	DNSMasq func() (crashes, requested int64)
	// Store names the store's backend (bolt, etcd) and tells whether it
	// answered at the last check; nil leaves imds_store_up out.
	Store func() (backend string, up bool)
	// Logger receives errors met while serving /metrics.
	Logger *slog.Logger
}

// Metrics counts requests (Record) and serves the exposition (Handler).
// Its methods are safe for concurrent use.
type Metrics struct {
	opt      Options
	registry *prometheus.Registry

	mu        sync.Mutex // guards the creation and removal of instance series
	instances sync.Map   // instance name → *series
	count     atomic.Int64
	other     *series
	latency   [nAPIs][nCategories]prometheus.Observer

	tokensIssued   atomic.Uint64
	tokensRefused  [nRefusals]atomic.Uint64
	unknown        atomic.Uint64
	droppedSeries  atomic.Uint64
	recordedFaults atomic.Uint64
}

// The fixed label values, indexed on the request path.
const (
	nAPIs       = 2 // v1, v2
	nCategories = 6 // see ec2.Categories
	nRefusals   = 3 // see refusalReasons
)

func apiLabel(i int) string { return [nAPIs]string{"v1", "v2"}[i] }

// refusalLabel is why a token was refused: none sent where IMDSv2 is
// required, an invalid or expired one, or a token PUT refused.
func refusalLabel(i int) string { return [nRefusals]string{"missing", "invalid", "put_refused"}[i] }

// statusCodes are the statuses imds answers with; any other is counted as
// "other". 0 stands for no response at all (a fault that drops the
// request, a token not sent beyond the hop limit).
func statusCodes() [nCodes - 1]int {
	return [...]int{200, 400, 401, 403, 404, 405, 408, 413, 429, 500, 503, 0}
}

const nCodes = 13 // statusCodes and "other"

// series are one instance's request counters.
type series struct {
	name  string
	count [nAPIs][nCategories][nCodes]atomic.Uint64
}

// New returns Metrics with its collectors registered.
func New(opt Options) *Metrics {
	if opt.MaxInstances <= 0 {
		opt.MaxInstances = DefaultMaxInstances
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{opt: opt, registry: prometheus.NewRegistry(), other: &series{name: OtherInstance}}
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imds_metadata_request_duration_seconds",
		Help:    "Time from reading a metadata request to its response, injected latency included.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"api", "category"})
	for a := range nAPIs {
		for c, cat := range ec2.Categories() {
			m.latency[a][c] = hist.WithLabelValues(apiLabel(a), cat)
		}
	}
	m.registry.MustRegister(hist, &collector{m: m, d: newDescs()},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors are registered, for tests and for
// adding more.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the exposition (text format, or what the scraper
// negotiates).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{m.opt.Logger},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}

// Record counts one metadata request (it implements the metadata server's
// Recorder). It never blocks: atomic adds only, and a map lookup.
func (m *Metrics) Record(rec ec2.RequestRecord) {
	a := 0
	if rec.API == "v2" {
		a = 1
	}
	c := categoryIndex(rec.Category)
	m.series(rec.Instance).count[a][c][codeIndex(rec.Status)].Add(1)
	m.latency[a][c].Observe(rec.Latency.Seconds())
	if rec.Fault != "" {
		m.recordedFaults.Add(1)
	}
	switch {
	case rec.Instance == "" && rec.Status == http.StatusNotFound:
		m.unknown.Add(1)
	case rec.Category == ec2.CategoryToken && rec.Method == http.MethodPut:
		if rec.Status == http.StatusOK {
			m.tokensIssued.Add(1)
		} else if rec.Status != 0 {
			m.tokensRefused[2].Add(1)
		}
	case rec.Status == http.StatusUnauthorized:
		// A request without a token is v1: refused because the instance
		// requires IMDSv2; with one, its token was refused.
		m.tokensRefused[a].Add(1)
	}
}

// series returns the counters of the named instance, creating them while
// fewer than MaxInstances exist.
func (m *Metrics) series(name string) *series {
	if v, ok := m.instances.Load(name); ok {
		return v.(*series)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.instances.Load(name); ok {
		return v.(*series)
	}
	if int(m.count.Load()) >= m.opt.MaxInstances {
		return m.other
	}
	s := &series{name: name}
	m.instances.Store(name, s)
	m.count.Add(1)
	return s
}

// prune drops the series of instances that are no longer served, so that
// their names free room for new ones. Requests from unknown requesters
// (name "") are kept.
func (m *Metrics) prune() {
	if m.opt.Served == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances.Range(func(k, _ any) bool {
		if name := k.(string); name != "" && !m.opt.Served(name) {
			m.instances.Delete(name)
			m.count.Add(-1)
			m.droppedSeries.Add(1)
		}
		return true
	})
}

func categoryIndex(cat string) int {
	switch cat {
	case ec2.CategoryCredentials:
		return 0
	case ec2.CategoryIdentity:
		return 1
	case ec2.CategoryUserData:
		return 2
	case ec2.CategoryListing:
		return 3
	case ec2.CategoryToken:
		return 4
	}
	return 5
}

func codeIndex(status int) int {
	for i, c := range statusCodes() {
		if c == status {
			return i
		}
	}
	return nCodes - 1
}

func codeLabel(i int) string {
	if i == nCodes-1 {
		return "other"
	}
	return strconv.Itoa(statusCodes()[i])
}

// slogPrinter adapts the logger to promhttp's ErrorLog.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("serving metrics", "err", v) }
