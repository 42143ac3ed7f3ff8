package imds_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// TestResolveMatchesHTTP walks the whole tree of an instance with Resolve,
// as the dashboard does, and checks every answer against what a request to
// the metadata listener gets.
func TestResolveMatchesHTTP(t *testing.T) {
	inst := richInstance()
	f := newFixture(t, inst)
	req, _ := http.NewRequest("PUT", f.url+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", f.url+"/"+path, nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(tok))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ctx := context.Background()
	seen, binary := 0, 0
	var walk func(path string)
	walk = func(path string) {
		r, err := f.srv.Resolve(ctx, inst, path)
		if err != nil {
			t.Errorf("Resolve(%q): %v", path, err)
			return
		}
		seen++
		code, body := get(path)
		if code != http.StatusOK || body != string(r.Body) {
			t.Errorf("Resolve(%q) = %q, the listener answers %d %q", path, r.Body, code, body)
		}
		if r.Binary {
			binary++
		}
		if !r.Dir {
			return
		}
		for _, e := range strings.Split(string(r.Body), "\n") {
			if e == "" {
				continue
			}
			e, _, _ = strings.Cut(e, "=") // public-keys lists 0=name
			walk(strings.TrimSuffix(path, "/") + "/" + e)
		}
	}
	walk("latest/")
	t.Logf("walked %d paths", seen)
	if seen < 50 || binary != 1 {
		t.Errorf("walked %d paths, %d binary; want the whole tree and user-data", seen, binary)
	}
	for _, tt := range []struct {
		path, code string
	}{
		{"1999-01-01/meta-data/", ec2.ENOTFOUND},
		{"latest/meta-data/no-such", ec2.ENOTFOUND},
		{"latest/meta-data/instance-id/more", ec2.ENOTFOUND},
	} {
		if _, err := f.srv.Resolve(ctx, inst, tt.path); ec2.ErrorCode(err) != tt.code {
			t.Errorf("Resolve(%q) = %v, want %s", tt.path, err, tt.code)
		}
	}
	off := *inst
	off.Metadata.HTTPEndpoint = ec2.EndpointDisabled
	if _, err := f.srv.Resolve(ctx, &off, "latest/meta-data/"); ec2.ErrorCode(err) != ec2.EFORBIDDEN {
		t.Errorf("Resolve with the endpoint disabled = %v, want EFORBIDDEN", err)
	}
	if r, err := f.srv.Resolve(ctx, inst, ""); err != nil || !r.Dir || !strings.HasSuffix(string(r.Body), "\nlatest") {
		t.Errorf("Resolve(\"\") = %q, %v, want the version list", r.Body, err)
	}
}
