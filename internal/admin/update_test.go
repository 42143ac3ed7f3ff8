package admin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/admin/admintest"
	"github.com/imdsdev/imds/internal/ec2"
)

// TestServer_Patch changes an instance with PATCH, through the client and
// by hand, and checks what a bad body is told.
func TestServer_Patch(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, nil)
	c := admin.NewClient(srv.SocketPath)
	spec := admintest.Instance("web-1", "10.0.0.5")
	spec.Tags = []ec2.Tag{{Key: "env", Value: "dev"}, {Key: "scratch", Value: "1"}}
	if _, err := c.AddInstance(ctx, spec); err != nil {
		t.Fatal(err)
	}
	got, err := c.UpdateInstance(ctx, "web-1", ec2.InstanceUpdate{HTTPTokens: ec2.Ptr(ec2.TokensRequired),
		Tags: []ec2.TagEdit{{Key: "team", Value: "a"}, {Key: "scratch", Remove: true}}})
	if err != nil {
		t.Fatalf("UpdateInstance: %v", err)
	}
	if got.Metadata.HTTPTokens != ec2.TokensRequired || len(got.Tags) != 2 || got.Tags[1].Key != "team" || strings.Join(got.SourceAddrs, ",") != "10.0.0.5" {
		t.Errorf("UpdateInstance = %+v, want imdsv2 required, tags env and team, the address kept", got)
	}
	if _, err := c.UpdateInstance(ctx, "cfg", ec2.InstanceUpdate{Region: ec2.Ptr("eu-west-2")}); ec2.ErrorCode(err) != ec2.EFORBIDDEN {
		t.Errorf("UpdateInstance of a config instance: err=%v, want EFORBIDDEN", err)
	}
	hc := unixHTTP(srv.SocketPath)
	for _, tt := range []struct {
		name, ctype, body string
		wantStatus        int
		wantBody          string
	}{
		{"user data as base64", "application/json", `{"user_data":"I2Nsb3VkLWNvbmZpZw=="}`, http.StatusOK, `"user_data":"#cloud-config"`},
		{"empty", "application/json", ``, http.StatusBadRequest, "fields to change"},
		{"nothing to change", "", `{}`, http.StatusBadRequest, "changes nothing"},
		{"unknown field", "application/json", `{"colour":"red"}`, http.StatusBadRequest, `unknown field \"colour\"`},
		{"wrong type", "application/json", `{"hop_limit":"two"}`, http.StatusBadRequest, "hop_limit: must be a number"},
		{"YAML", "application/yaml", `imdsv2: optional`, http.StatusBadRequest, "Content-Type must be application/json"},
		{"invalid result", "application/json", `{"imdsv2":"always"}`, http.StatusBadRequest, "imdsv2"},
	} {
		r := do(t, hc, "PATCH", "http://imds/v1/instances/web-1", map[string]string{"Content-Type": tt.ctype}, tt.body)
		if r.status != tt.wantStatus || !strings.Contains(r.body, tt.wantBody) {
			t.Errorf("%s: PATCH = %d %s, want %d with %q", tt.name, r.status, r.body, tt.wantStatus, tt.wantBody)
		}
	}
}
