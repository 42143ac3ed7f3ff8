package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// TestListPages: GET /v1/instances pages with limit and continue, in name
// order; without limit it answers every instance in the old shape; bad
// parameters are refused, naming the parameter.
func TestListPages(t *testing.T) {
	ctx := t.Context()
	svc := admintest.NewService()
	srv := admintest.MustOpenServer(t, svc, nil, nil)
	c := admin.NewClient(srv.SocketPath)
	for i := range 25 {
		if _, err := c.AddInstance(ctx, admintest.Instance(fmt.Sprintf("vm-%02d", i), fmt.Sprintf("10.0.0.%d", i+10))); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	after, pages := "", 0
	for {
		page, more, err := c.ListInstancesPage(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, inst := range page {
			got = append(got, inst.Name)
		}
		if !more {
			break
		}
		after = page[len(page)-1].Name
	}
	if pages != 3 || len(got) != 25 || got[0] != "vm-00" || got[24] != "vm-24" {
		t.Errorf("%d pages: %v", pages, got)
	}
	all, err := c.ListInstances(ctx)
	if err != nil || len(all) != 25 {
		t.Fatalf("ListInstances: %d, %v", len(all), err)
	}

	hc := unixHTTP(srv.SocketPath)
	whole := do(t, hc, "GET", "http://imds/v1/instances", nil, "")
	var body struct {
		Instances []json.RawMessage `json:"instances"`
		Continue  *string           `json:"continue"`
	}
	if err := json.Unmarshal([]byte(whole.body), &body); err != nil || whole.status != 200 || len(body.Instances) != 25 || body.Continue != nil {
		t.Errorf("GET /v1/instances: %d, %d instances, continue %v, %v", whole.status, len(body.Instances), body.Continue, err)
	}

	for _, tt := range []struct{ query, want string }{
		{"limit=0", "limit: must be a number from 1 to 10000"},
		{"limit=10001", "limit: must be a number from 1 to 10000"},
		{"limit=ten", "limit: must be a number from 1 to 10000"},
		{"continue=dm0tMDk", "continue: only with limit"},
		{"limit=5&continue=***", `is not a token of this API`},
	} {
		resp := do(t, hc, "GET", "http://imds/v1/instances?"+tt.query, nil, "")
		if resp.status != http.StatusBadRequest || !strings.Contains(resp.body, tt.want) {
			t.Errorf("?%s: %d %s, want 400 saying %q", tt.query, resp.status, resp.body, tt.want)
		}
	}
	if _, _, err := c.ListInstancesPage(ctx, "", 0); ec2.ErrorCode(err) != ec2.EINVALID {
		t.Errorf("ListInstancesPage(limit 0): %v, want EINVALID", err)
	}
}
