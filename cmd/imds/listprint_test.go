package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// TestListPrinterPagesAsWhole: a list printed page by page reads as the
// same document printed whole.
func TestListPrinterPagesAsWhole(t *testing.T) {
	var list []*ec2.Instance
	for i := range 7 {
		inst := ec2.NewDefaultInstance()
		inst.Name = fmt.Sprintf("vm-%d", i)
		inst.SourceAddrs = []string{fmt.Sprintf("10.0.0.%d", i+1)}
		ec2.Derive(inst, ec2.DeriveOptions{Seed: []byte("list")})
		list = append(list, inst)
	}
	for _, format := range []string{"json", "yaml", "table"} {
		for _, pages := range [][]int{{0}, {7}, {3, 3, 1}, {1, 6}} {
			if format == "table" && len(pages) > 1 {
				continue // columns are sized per page
			}
			var whole, paged bytes.Buffer
			n := 0
			for _, size := range pages {
				n += size
			}
			if err := printInstances(&whole, format, list[:n], false); err != nil {
				t.Fatal(err)
			}
			p := &listPrinter{w: &paged, format: format}
			at := 0
			for _, size := range pages {
				if err := p.page(list[at : at+size]); err != nil {
					t.Fatal(err)
				}
				at += size
			}
			if err := p.end(); err != nil {
				t.Fatal(err)
			}
			if whole.String() != paged.String() {
				t.Errorf("%s in pages %v:\n%s\nwant, as printed whole:\n%s", format, pages, paged.String(), whole.String())
			}
		}
	}
}

// TestListPrinterHostColumn: the table has a HOST column only while its
// instances are pinned; a page that changes that starts a new header.
func TestListPrinterHostColumn(t *testing.T) {
	inst := func(name, host string) *ec2.Instance {
		i := ec2.NewDefaultInstance()
		i.Name, i.Host = name, host
		ec2.Derive(i, ec2.DeriveOptions{Seed: []byte("list")})
		return i
	}
	var b bytes.Buffer
	p := &listPrinter{w: &b, format: "table"}
	for _, page := range [][]*ec2.Instance{
		{inst("a", "")}, {inst("b", "")}, {inst("c", "hv-1"), inst("d", "")}, {inst("e", "hv-2")},
	} {
		if err := p.page(page); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.end(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var heads []string
	for _, l := range lines {
		if strings.HasPrefix(l, "NAME") {
			heads = append(heads, strings.Fields(l)[len(strings.Fields(l))-1])
		}
	}
	if want := []string{"IMDSV2", "HOST"}; !slices.Equal(heads, want) || len(lines) != 7 ||
		!strings.HasSuffix(lines[2], " optional") || !strings.HasSuffix(lines[5], " -") || !strings.HasSuffix(lines[6], " hv-2") {
		t.Errorf("headers end with %v, want %v; table:\n%s", heads, want, b.String())
	}
}
