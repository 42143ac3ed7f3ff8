package dashboard

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/ec2"
)

func TestCheckRequest(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		path    string
		host    string
		headers map[string]string
		want    string // a part of the refusal, "" for none
	}{
		{"page", "GET", "/", "127.0.0.1:8080", nil, ""},
		{"localhost", "GET", "/", "localhost:8080", nil, ""},
		{"IPv6", "GET", "/", "[::1]:8080", nil, ""},
		{"rebinding", "GET", "/", "evil.example:8080", nil, "host name evil.example:8080 is not allowed"},
		{"same origin read", "GET", "/api/overview", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, ""},
		{"other origin read", "GET", "/api/overview", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:9999"}, "another origin"},
		{"null origin", "POST", "/api/instances", "127.0.0.1:8080", map[string]string{"Origin": "null"}, "another origin"},
		{"change without origin", "POST", "/api/instances", "127.0.0.1:8080", nil, "no Origin header"},
		{"change same origin", "DELETE", "/api/v1/instances/x", "127.0.0.1:8080", map[string]string{"Origin": "http://127.0.0.1:8080"}, ""},
		{"cross-site fetch", "GET", "/api/overview", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}, "another site"},
		{"cross-site navigation to the API", "GET", "/api/overview", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, "another site"},
		{"cross-site navigation to the page", "GET", "/", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, ""},
		{"typed address", "GET", "/login", "127.0.0.1:8080", map[string]string{"Sec-Fetch-Site": "none"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://"+tt.host+tt.path, nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			got := checkRequest(r)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("checkRequest = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHideUserData(t *testing.T) {
	got, err := hideUserData([]byte(`{"instances":[{"name":"a","user_data":"#!/bin/sh\necho secret\n"},{"name":"b","user_data_base64":"AAECAw=="}],"n":12345678901234567890}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"instances":[{"name":"a","user_data_size":22},{"name":"b","user_data_size":4}],"n":12345678901234567890}`
	if string(got) != want {
		t.Errorf("hideUserData = %s, want %s", got, want)
	}
}

func FuzzHideUserData(f *testing.F) {
	f.Add([]byte(`{"user_data":"secret"}`))
	f.Add([]byte(`[{"a":{"user_data_base64":"c2VjcmV0"}}]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := hideUserData(doc)
		if err != nil {
			return
		}
		if bytes.Contains(out, []byte(`"user_data":`)) || bytes.Contains(out, []byte(`"user_data_base64":`)) {
			t.Fatalf("hideUserData(%q) = %q keeps user data", doc, out)
		}
	})
}

func TestOneTimeLogin(t *testing.T) {
	l, token, err := NewOneTimeLogin(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(token) < 40 {
		t.Errorf("token %q is short", token)
	}
	if l.Check("x" + token) {
		t.Errorf("a wrong token logged in")
	}
	if !l.Check(token) {
		t.Fatalf("the token did not log in")
	}
	if l.Check(token) {
		t.Errorf("the token logged in twice")
	}
	if TokenLogin("")("") {
		t.Errorf("an empty admin token logged in")
	}
	tl := TokenLogin("abc")
	for i := 0; i < 2; i++ {
		if !tl("abc") {
			t.Errorf("TokenLogin refuses its token (try %d)", i+1)
		}
	}
	if tl("abd") {
		t.Errorf("TokenLogin accepts another token")
	}
}

func TestInstanceForm(t *testing.T) {
	p := func(s string) *string { return &s }
	tests := []struct {
		name string
		form instanceForm
		set  bool
		want string // the error, "" for none
	}{
		{"bad ip", instanceForm{IP: &[]string{"10.0.0.300"}}, false, `--ip: "10.0.0.300" is not an IP address`},
		{"zoned ip", instanceForm{IP: &[]string{"fe80::1%eth0"}}, false, `--ip: "fe80::1%eth0" is not an IP address`},
		{"bad mac", instanceForm{MAC: p("02:00")}, false, `--mac: "02:00" is not a MAC address like 02:00:00:00:00:01`},
		{"bad tag", instanceForm{Tags: []string{"env"}}, false, `--tag: "env" must be KEY=VALUE`},
		{"bad tag on set", instanceForm{Tags: []string{"=x"}}, true, `--tag: "=x" must be KEY=VALUE, or KEY- to remove a tag`},
		{"bad imdsv2", instanceForm{IMDSv2: p("v2")}, false, `--imdsv2: must be optional or required, got "v2"`},
		{"empty type", instanceForm{InstanceType: p("")}, false, `--instance-type: must not be empty`},
		{"empty region", instanceForm{Region: p("")}, false, `--region: must not be empty`},
		{"bad host", instanceForm{Host: p("hv/1")}, false, `--host: must be a host name without / or spaces, got "hv/1"`},
		{"good", instanceForm{IP: &[]string{"10.0.0.5", " "}, MAC: p("02:00:00:00:00:AB"), Tags: []string{"env=dev", "old-"}, IMDSv2: p("required"), Host: p("")}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := tt.form.update(tt.set)
			if tt.want != "" {
				if ec2.ErrorMessage(err) != tt.want || ec2.ErrorCode(err) != ec2.EINVALID {
					t.Errorf("update = %v, want EINVALID %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(*u.SourceAddrs) != 1 || *u.MAC != "02:00:00:00:00:ab" || len(u.Tags) != 2 || !u.Tags[1].Remove || *u.HTTPTokens != "required" || u.Host == nil || *u.Host != "" {
				t.Errorf("update = %+v", u)
			}
		})
	}
}

func TestSessionExpires(t *testing.T) {
	clk := clock.NewFake(time.Now())
	d := New(nil, clk, rand.Reader)
	d.Login = TokenLogin("login-token")
	srv := httptest.NewServer(d)
	defer srv.Close()
	c := srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Get(srv.URL + "/login?token=login-token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login = %d with %d cookies", resp.StatusCode, len(cookies))
	}
	session := func() int {
		req, _ := http.NewRequest("GET", srv.URL+"/api/session", nil)
		req.AddCookie(cookies[0])
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := session(); got != http.StatusOK {
		t.Fatalf("api/session = %d, want 200", got)
	}
	// Used within the TTL, it lasts; unused past it, it is gone.
	clk.Advance(DefaultSessionTTL - time.Minute)
	if got := session(); got != http.StatusOK {
		t.Errorf("api/session after %v = %d, want 200", DefaultSessionTTL-time.Minute, got)
	}
	clk.Advance(DefaultSessionTTL + time.Second)
	if got := session(); got != http.StatusUnauthorized {
		t.Errorf("api/session after %v unused = %d, want 401", DefaultSessionTTL+time.Second, got)
	}
}

// TestOffline checks that the pages load nothing from elsewhere.
func TestOffline(t *testing.T) {
	for _, name := range []string{"index.html", "login.html", "app.js", "style.css"} {
		b, err := staticFiles.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"http://", "https://", "//cdn", "@import", "url("} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s contains %q: the dashboard must work without a network", name, bad)
			}
		}
	}
}
