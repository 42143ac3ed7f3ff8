package main

import (
	"bytes"
	"fmt"
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
