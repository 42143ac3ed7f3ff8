package imds_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/imds"
)

// TestRefusalsLogTheirReason: a refused request logs why and what setting
// allows it (the access log alone shows only the status), once a minute
// per requester and kind.
func TestRefusalsLogTheirReason(t *testing.T) {
	fx := prepareFixture(t, defaultInstance())
	log := &lockedBuffer{}
	fx.srv.Logger = slog.New(slog.NewTextHandler(log, nil))
	h, err := fx.srv.Handler()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	for _, tc := range []struct {
		name       string
		header     map[string]string
		wantStatus int
		wantLog    string
	}{
		{"compose service name", map[string]string{"Host": "imds"}, 403, `Host \"imds\" is not allowed: add it to allowed_hosts`},
		{"browser", map[string]string{"Origin": "http://evil.example"}, 403, "Origin header are refused: browsers send it"},
		{"bad token", map[string]string{"X-aws-ec2-metadata-token": "forged"}, 401, "reason="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 3; i++ {
				req, _ := http.NewRequest("GET", ts.URL+"/latest/meta-data/instance-id", nil)
				for k, v := range tc.header {
					if k == "Host" {
						req.Host = v
					} else {
						req.Header.Set(k, v)
					}
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
				}
			}
			var lines []string
			for _, l := range strings.Split(log.String(), "\n") {
				if strings.Contains(l, "metadata request refused") && strings.Contains(l, "status="+strconv.Itoa(tc.wantStatus)) && strings.Contains(l, tc.wantLog) {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 {
				t.Errorf("%d log lines for 3 refusals, want 1 containing %q:\n%s", len(lines), tc.wantLog, log.String())
			}
		})
	}
}

// TestRefusalLogBudget: a client that varies what it sends cannot get more
// than the budget of lines a minute; the next line says how many went unlogged.
func TestRefusalLogBudget(t *testing.T) {
	var l imds.RefusalLogForTest
	now := time.Unix(0, 0) // fixed instant: the limiter's injected clock only
	addr := netip.MustParseAddr("10.0.0.9")
	logged := 0
	for i := 0; i < 1000; i++ {
		if ok, _ := l.Allow(addr, "Host \""+strconv.Itoa(i)+"\" is not allowed", now); ok {
			logged++
		}
	}
	if logged != imds.RefusalLogBudget {
		t.Errorf("%d lines for 1000 different refusals in one minute, want the budget %d", logged, imds.RefusalLogBudget)
	}
	ok, suppressed := l.Allow(addr, "again", now.Add(time.Minute))
	if !ok || suppressed != 1000-imds.RefusalLogBudget {
		t.Errorf("after a minute: logged %v, unlogged %d; want true, %d", ok, suppressed, 1000-imds.RefusalLogBudget)
	}
	if ok, _ := l.Allow(addr, "again", now.Add(time.Minute+time.Second)); ok {
		t.Errorf("the same refusal logged twice within a minute")
	}
}
