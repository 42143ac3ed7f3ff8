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

func TestServer_Metadata(t *testing.T) {
	ctx := context.Background()
	tree := map[string]struct {
		body        string
		dir, binary bool
	}{
		"latest/meta-data/":                           {"instance-id\niam/", true, false},
		"latest/meta-data/iam/security-credentials/r": {`{"Code" : "Success", "SecretAccessKey" : "s3cr3t", "Token" : "t0k3n"}`, false, false},
		"latest/user-data":                            {"#!/bin/sh\necho hidden\n", false, true},
		"latest/meta-data/id":                         {"i-1", false, false},
	}
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.Metadata = func(_ context.Context, inst *ec2.Instance, path string) ([]byte, bool, bool, error) {
			n, ok := tree[path]
			if !ok {
				return nil, false, false, ec2.Errorf(ec2.ENOTFOUND, "no such path")
			}
			return []byte(n.body), n.dir, n.binary, nil
		}
	})
	c := admin.NewClient(srv.SocketPath)
	doc, err := c.Metadata(ctx, "cfg", "latest/meta-data/")
	if err != nil || !doc.Dir || strings.Join(doc.Entries, ",") != "instance-id,iam/" || doc.Path != "/latest/meta-data/" {
		t.Errorf("directory: %+v, %v", doc, err)
	}
	doc, err = c.Metadata(ctx, "cfg", "latest/meta-data/iam/security-credentials/r")
	if err != nil || !doc.Masked || strings.Contains(doc.Body, "s3cr3t") || strings.Contains(doc.Body, "t0k3n") || !strings.Contains(doc.Body, `"Code" : "Success"`) {
		t.Errorf("credentials: %+v, %v", doc, err)
	}
	doc, err = c.Metadata(ctx, "cfg", "latest/user-data")
	if err != nil || !doc.Hidden || doc.Body != "" || doc.Size != 22 {
		t.Errorf("user-data: %+v, %v", doc, err)
	}
	if _, err := c.Metadata(ctx, "cfg", "latest/nope"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("missing path: %v, want ENOTFOUND", err)
	}
	if _, err := c.Metadata(ctx, "nobody", "latest/"); ec2.ErrorCode(err) != ec2.ENOTFOUND {
		t.Errorf("unknown instance: %v, want ENOTFOUND", err)
	}
	r := do(t, unixHTTP(srv.SocketPath), "POST", "http://imds/v1/instances/cfg/metadata", nil, "")
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST metadata = %d (Allow %q), want 405", r.status, r.header.Get("Allow"))
	}
}

func TestServer_StatusAndUnsupported(t *testing.T) {
	ctx := context.Background()
	srv := admintest.MustOpenServer(t, admintest.NewService(configInstance()), nil, func(s *admin.Server) {
		s.Status = func(context.Context) (admin.StatusDocument, error) {
			return admin.StatusDocument{Listen: []string{"127.0.0.1:1338"}, Instances: 1,
				Roles: []admin.RoleStatus{{Name: "r", Source: "fake", State: "ok"}}}, nil
		}
	})
	c := admin.NewClient(srv.SocketPath)
	st, err := c.Status(ctx)
	if err != nil || st.AdminSocket != srv.SocketPath || len(st.Listen) != 1 || len(st.Roles) != 1 || st.Unknown == nil {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if _, err := c.Metadata(ctx, "cfg", "latest/"); ec2.ErrorCode(err) != ec2.EUNSUPPORTED {
		t.Errorf("Metadata without a resolver = %v, want EUNSUPPORTED", err)
	}
}
