package registry

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// TestAddInstanceBatch: a batch is added whole, or not at all with every
// refused entry named by its place and name.
func TestAddInstanceBatch(t *testing.T) {
	ctx := t.Context()
	r, _, db := openRegistryDB(t, "")
	if err := r.SetConfig(ctx, []*ec2.Instance{configInstance("cfg", "10.0.0.1")}, Default{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.AddInstanceBatch(ctx, []*ec2.Instance{spec("a", "10.0.0.2"), spec("b", "10.0.0.3")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" || got[0].ID == "" {
		t.Fatalf("AddInstanceBatch returned %v", names(got))
	}
	if inst, err := locate(r, "10.0.0.3"); err != nil || inst.Name != "b" {
		t.Fatalf("10.0.0.3 located %v, %v; want b", inst, err)
	}

	tests := []struct {
		name  string
		batch []*ec2.Instance
		code  string
		want  []string // lines of the message
	}{
		{"clashes", []*ec2.Instance{spec("c", "10.0.0.4"), spec("a", "10.0.0.5"), spec("d", "10.0.0.2"), spec("e", "10.0.0.4")}, ec2.ECONFLICT,
			[]string{`3 of 4 instances refused, nothing was added:`,
				`instance 2 of 4 ("a"): an instance named "a" already exists`,
				`instance 3 of 4 ("d"): address 10.0.0.2 already belongs to instance a`,
				`instance 4 of 4 ("e"): address 10.0.0.4 already belongs to instance c`}},
		{"mixed", []*ec2.Instance{spec("cfg", "10.0.0.9"), spec("f", "not-an-ip"), spec("", "10.0.0.8"), spec("g", "10.0.0.7")}, ec2.EINVALID,
			[]string{`3 of 4 instances refused, nothing was added:`,
				`instance 1 of 4 ("cfg"): instance "cfg" is declared in the config file; change it there`,
				`instance 2 of 4 ("f"): `,
				`instance 3 of 4 (""): `}},
		{"twice in the batch", []*ec2.Instance{spec("h", "10.0.1.1"), spec("h", "10.0.1.2")}, ec2.ECONFLICT,
			[]string{`1 of 2 instances refused, nothing was added:`,
				`instance 2 of 2 ("h"): an instance named "h" already exists`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := r.idx.Load()
			_, err := r.AddInstanceBatch(ctx, tt.batch)
			if code := ec2.ErrorCode(err); code != tt.code {
				t.Fatalf("error %v, code %s; want %s", err, code, tt.code)
			}
			lines := strings.Split(ec2.ErrorMessage(err), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("message has %d lines, want %d:\n%s", len(lines), len(tt.want), ec2.ErrorMessage(err))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("line %d: %q, want it to start with %q", i+1, lines[i], w)
				}
			}
			if r.idx.Load() != before {
				t.Error("a refused batch changed the index")
			}
			stored, err := db.Instances().FindInstances(ctx)
			if err != nil || len(stored) != 2 {
				t.Errorf("store holds %v (%v) after a refused batch, want a and b", names(stored), err)
			}
		})
	}
}

// TestIndexVersionsAreImmutable: a change makes a new index and leaves the
// one requests may still hold as it was.
func TestIndexVersionsAreImmutable(t *testing.T) {
	ctx := t.Context()
	r, _ := openRegistry(t, "")
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var batch []*ec2.Instance
	for i := range 2000 {
		batch = append(batch, scaleSpec(i))
	}
	if _, err := r.AddInstanceBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	old := r.idx.Load()
	if _, err := r.AddInstance(ctx, scaleSpec(5000)); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveInstance(ctx, "vm-000007"); err != nil {
		t.Fatal(err)
	}
	cur := r.idx.Load()
	if old.len() != 2000 || old.byName.get("vm-005000") != nil || old.byName.get("vm-000007") == nil ||
		old.byAddr.get(netip.MustParseAddr("10.0.0.7")) == nil || len(old.names()) != 2000 {
		t.Error("the old index changed")
	}
	if cur.len() != 2000 || cur.byName.get("vm-005000") == nil || cur.byName.get("vm-000007") != nil ||
		cur.byAddr.get(netip.MustParseAddr("10.0.0.7")) != nil || cur.counts[ec2.OriginAPI] != 2000 {
		t.Errorf("the new index is wrong: %d instances, counts %v", cur.len(), cur.counts)
	}
	page, more, err := r.ListInstancesPage(ctx, "vm-001998", 5)
	if err != nil || more || len(page) != 2 || page[0].Name != "vm-001999" || page[1].Name != "vm-005000" {
		t.Errorf("last page: %v, more %v, %v", names(page), more, err)
	}
}

func names(list []*ec2.Instance) []string {
	out := make([]string, len(list))
	for i, inst := range list {
		out[i] = inst.Name
	}
	return out
}
