package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/store/storetest"
)

// sampleFile writes a database of several pages: enough instances for a
// branch page over several leaves.
func sampleFile(t *testing.T) (string, []*ec2.Instance) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "imds.db")
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []*ec2.Instance
	for i := range 60 {
		inst := storetest.FullInstance(fmt.Sprintf("inst-%02d", i))
		if err := db.Instances().CreateInstance(t.Context(), inst); err != nil {
			t.Fatal(err)
		}
		want = append(want, inst)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, want
}

// TestDamagedFiles damages a database every way a disk or an operator
// does and checks the one property that matters: Open either refuses the
// file with a DamagedError naming it, leaving every byte as it was, or
// serves every record exactly as written. Nothing is ever lost silently,
// nothing panics, and nothing re-initialises the file.
func TestDamagedFiles(t *testing.T) {
	orig, want := sampleFile(t)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	pages := len(data) / page
	type damage struct {
		name     string
		mutate   func([]byte) []byte
		mustFail bool
	}
	cases := []damage{
		{"empty", func([]byte) []byte { return nil }, true},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2/page*page] }, true},
		{"truncated by one page", func(b []byte) []byte { return b[:len(b)-page] }, false},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)-page/2] }, false},
		{"both meta pages zeroed", func(b []byte) []byte { clear(b[:2*page]); return b }, true},
		{"garbage", func(b []byte) []byte { return bytes.Repeat([]byte("not a database "), len(b)/15) }, true},
	}
	// bbolt checksums its meta pages only: the bytes of a value on an
	// overflow page can change undetected, so flips go where bbolt keeps
	// structure (the pages that start with a page header: branches, leaves
	// and the freelist, with their element headers and keys).
	headerPages := map[int]bool{}
	for p := 2; p < pages; {
		off := p * page
		id := binary.LittleEndian.Uint64(data[off:])
		overflow := int(binary.LittleEndian.Uint32(data[off+12:]))
		if id != uint64(p) {
			break // past the last page in use: the file grows in chunks
		}
		headerPages[p] = true
		p += 1 + overflow
	}
	for p := 2; p < pages; p++ {
		cases = append(cases,
			damage{fmt.Sprintf("page %d zeroed", p), func(b []byte) []byte { clear(b[p*page : (p+1)*page]); return b }, false})
		if !headerPages[p] {
			continue
		}
		cases = append(cases,
			damage{fmt.Sprintf("page %d header flipped", p), func(b []byte) []byte {
				for i := p * page; i < p*page+16; i++ {
					b[i] ^= 0xff
				}
				return b
			}, false},
			damage{fmt.Sprintf("page %d body flipped", p), func(b []byte) []byte {
				for i := p*page + 16; i < p*page+64; i++ {
					b[i] ^= 0x55
				}
				return b
			}, false})
	}
	refused := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "imds.db")
			damaged := tc.mutate(bytes.Clone(data))
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path)
			if err != nil {
				refused++
				var de *DamagedError
				if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), "imds db check") {
					t.Errorf("Open: %v; want a DamagedError naming the file and the way out", err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("the error spans lines: %q", err)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
					t.Errorf("Open changed the damaged file (%d bytes, was %d)", len(after), len(damaged))
				}
				return
			}
			defer db.Close()
			if tc.mustFail {
				t.Fatal("Open accepted the file")
			}
			got, err := db.Instances().FindInstances(t.Context())
			if err != nil {
				t.Fatalf("Open accepted the file, then: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Open accepted the file but the records differ (-want +got):\n%s", diff)
			}
		})
	}
	t.Logf("%d of %d damaged files refused, the others read back whole", refused, len(cases))
}
