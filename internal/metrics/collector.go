package metrics

import (
	"runtime"
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imdsdev/imds/internal/ec2"
)

// descs describe the metrics read at scrape time.
type descs struct {
	requests      *prometheus.Desc
	tokensIssued  *prometheus.Desc
	tokensRefused *prometheus.Desc
	unknown       *prometheus.Desc
	faults        *prometheus.Desc
	instances     *prometheus.Desc
	series        *prometheus.Desc
	seriesLimit   *prometheus.Desc
	refreshes     *prometheus.Desc
	credAge       *prometheus.Desc
	credLeft      *prometheus.Desc
	credValid     *prometheus.Desc
	dnsmasq       *prometheus.Desc
	storeUp       *prometheus.Desc
	build         *prometheus.Desc
}

func newDescs() descs {
	return descs{
		requests: prometheus.NewDesc("imds_metadata_requests_total",
			"Metadata requests answered, by instance (instance_name, \"\" for requesters no instance matched, \""+OtherInstance+"\" beyond the series cap), API version, category and status code.",
			[]string{"instance_name", "api", "category", "code"}, nil),
		tokensIssued: prometheus.NewDesc("imds_tokens_issued_total",
			"IMDSv2 session tokens issued.", nil, nil),
		tokensRefused: prometheus.NewDesc("imds_tokens_refused_total",
			"Requests refused for their token: missing (IMDSv2 required), invalid (unknown, expired or another instance's), put_refused (a token PUT refused).",
			[]string{"reason"}, nil),
		unknown: prometheus.NewDesc("imds_unknown_requests_total",
			"Metadata requests from requesters that no instance matched (404).", nil, nil),
		faults: prometheus.NewDesc("imds_faulted_requests_total",
			"Metadata requests into which a fault was injected.", nil, nil),
		instances: prometheus.NewDesc("imds_instances",
			"Instances served, by where they are declared (config, api, ...).", []string{"origin"}, nil),
		series: prometheus.NewDesc("imds_metrics_instance_series",
			"Instances that have request series of their own (at most the cap, see imds_metrics_instance_series_limit).", nil, nil),
		seriesLimit: prometheus.NewDesc("imds_metrics_instance_series_limit",
			"The most instances that get request series of their own; the others count under instance_name=\""+OtherInstance+"\".", nil, nil),
		refreshes: prometheus.NewDesc("imds_credential_refreshes_total",
			"Credential fetches of a role from its source (fake roles: sets generated), by kind of source (fake, static, aws, process) and result.",
			[]string{"role", "source", "result"}, nil),
		credAge: prometheus.NewDesc("imds_credentials_age_seconds",
			"Age of the credentials a role serves now (fake roles: the newest set).", []string{"role"}, nil),
		credLeft: prometheus.NewDesc("imds_credentials_remaining_seconds",
			"Time until the credentials a role serves now expire; 0 once expired.", []string{"role"}, nil),
		credValid: prometheus.NewDesc("imds_credentials_valid",
			"1 if the role has valid credentials to serve now, else 0.", []string{"role"}, nil),
		dnsmasq: prometheus.NewDesc("imds_dnsmasq_restarts_total",
			"Restarts of the VM network's dnsmasq: after it exited on its own (crash), or to drop a removed host (requested).",
			[]string{"reason"}, nil),
		storeUp: prometheus.NewDesc("imds_store_up",
			"1 if the store of registered instances answered at the last check (etcd: the follower's probe; bolt: always), else 0.",
			[]string{"backend"}, nil),
		build: prometheus.NewDesc("imds_build_info",
			"Always 1; the labels say which imds this is.", []string{"version", "commit", "goversion"}, nil),
	}
}

// collector reads, at scrape time, the counters of Metrics and the state
// of the components that own the rest.
type collector struct {
	m *Metrics
	d descs
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := c.d
	for _, d := range []*prometheus.Desc{d.requests, d.tokensIssued, d.tokensRefused, d.unknown, d.faults,
		d.instances, d.series, d.seriesLimit, d.refreshes, d.credAge, d.credLeft, d.credValid, d.dnsmasq, d.storeUp, d.build} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m, d := c.m, c.d
	m.prune()
	m.instances.Range(func(_, v any) bool {
		collectSeries(ch, d.requests, v.(*series))
		return true
	})
	collectSeries(ch, d.requests, m.other)

	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(d.tokensIssued, m.tokensIssued.Load())
	for i := range nRefusals {
		counter(d.tokensRefused, m.tokensRefused[i].Load(), refusalLabel(i))
	}
	counter(d.unknown, m.unknown.Load())
	counter(d.faults, m.recordedFaults.Load())
	gauge(d.series, float64(m.count.Load()))
	gauge(d.seriesLimit, float64(m.opt.MaxInstances))

	if m.opt.Instances != nil {
		for origin, n := range m.opt.Instances() {
			gauge(d.instances, float64(n), origin)
		}
	}
	if m.opt.Roles != nil {
		now := m.opt.Now()
		roles := m.opt.Roles()
		sort.Slice(roles, func(i, j int) bool { return roles[i].Role < roles[j].Role })
		// Role names come from instances too: cap them as instance names are.
		if len(roles) > m.opt.MaxInstances {
			roles = roles[:m.opt.MaxInstances]
		}
		for _, r := range roles {
			counter(d.refreshes, uint64(r.Refreshes), r.Role, r.Kind, "success")
			counter(d.refreshes, uint64(r.Failures), r.Role, r.Kind, "failure")
			valid := 0.0
			if r.Valid {
				valid = 1
			}
			gauge(d.credValid, valid, r.Role)
			if !r.LastUpdated.IsZero() {
				gauge(d.credAge, now.Sub(r.LastUpdated).Seconds(), r.Role)
				gauge(d.credLeft, max(r.Expiration.Sub(now).Seconds(), 0), r.Role)
			}
		}
	}
	if m.opt.DNSMasq != nil {
		crashes, requested := m.opt.DNSMasq()
		counter(d.dnsmasq, uint64(crashes), "crash")
		counter(d.dnsmasq, uint64(requested), "requested")
	}
	if m.opt.Store != nil {
		backend, up := m.opt.Store()
		v := 0.0
		if up {
			v = 1
		}
		gauge(d.storeUp, v, backend)
	}
	gauge(d.build, 1, m.opt.Version, m.opt.Commit, runtime.Version())
}

// collectSeries sends the non-zero counters of one instance.
func collectSeries(ch chan<- prometheus.Metric, desc *prometheus.Desc, s *series) {
	for a := range nAPIs {
		for cat := range nCategories {
			for code := range nCodes {
				if v := s.count[a][cat][code].Load(); v > 0 {
					ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v),
						s.name, apiLabel(a), categoryLabel(cat), codeLabel(code))
				}
			}
		}
	}
}

func categoryLabel(i int) string { return ec2.Categories()[i] }
