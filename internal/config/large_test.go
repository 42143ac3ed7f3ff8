package config

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/imdsdev/imds/internal/ec2"
)

// largeDoc writes a document of n instance entries under instances:, each
// with a name, an address, a MAC and a tag, as a fleet's generated file
// would.
func largeDoc(n int) []byte {
	var b strings.Builder
	b.WriteString("instances:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: vm-%d\n    source_addresses: [10.%d.%d.%d]\n    mac: 06:00:00:%02x:%02x:%02x\n    tags: {rack: r%d}\n",
			i, i>>16&0xff, i>>8&0xff, i&0xff, i>>16&0xff, i>>8&0xff, i&0xff, i%40)
	}
	return []byte(b.String())
}

// TestLargeDocuments loads 30,000 entries (the fixed budget refused more
// than about 21,844) as a config file and as a --from-file document: the
// work budget grows with the document, so only aliases that blow a document
// up are refused (TestTooManyAliases). BenchmarkParseInstances100k measures
// 100,000; under the race detector that many take minutes, too long for
// every run.
func TestLargeDocuments(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 30,000 instances twice")
	}
	const n = 30_000
	data := largeDoc(n)
	f, err := Parse("large.yaml", data, "")
	if err != nil {
		t.Fatalf("Parse: %.500v", err)
	}
	if len(f.Instances) != n {
		t.Fatalf("Parse: %d instances, want %d", len(f.Instances), n)
	}
	specs, err := ParseInstances("large.yaml", data)
	if err != nil {
		t.Fatalf("ParseInstances: %.500v", err)
	}
	if len(specs) != n || specs[n-1].Name != fmt.Sprintf("vm-%d", n-1) {
		t.Fatalf("ParseInstances: %d instances, last %q", len(specs), specs[len(specs)-1].Name)
	}
}

// TestMergedDefaults loads a fleet whose every entry merges one block of
// defaults: the budget must allow what anchors are for, not only documents
// without them.
func TestMergedDefaults(t *testing.T) {
	var b strings.Builder
	b.WriteString("instances:\n  - &defaults\n    name: base\n    instance_type: t3.small\n    tags:\n")
	for i := range 48 {
		fmt.Fprintf(&b, "      k%d: v%d\n", i, i)
	}
	const n = 10_000
	for i := range n {
		fmt.Fprintf(&b, "  - <<: *defaults\n    name: vm-%d\n", i)
	}
	specs, err := ParseInstances("merged.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("ParseInstances: %.500v", err)
	}
	if len(specs) != n+1 || len(specs[n].Tags) != 48 || specs[n].InstanceType != "t3.small" {
		t.Fatalf("got %d instances, the last %+v", len(specs), specs[len(specs)-1])
	}
}

// BenchmarkParseInstances100k decodes, derives and validates a document of
// 100,000 entries (about 10 MB), as `imds instance add --from-file` and the
// admin API do; it reports the heap in use after the decode besides the
// usual figures.
func BenchmarkParseInstances100k(b *testing.B) {
	data := largeDoc(100_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var specs []*ec2.Instance
	for b.Loop() {
		var err error
		if specs, err = ParseInstances("large.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB-heap-after")
	runtime.KeepAlive(specs)
}

// BenchmarkParse100k is the same document as a config file.
func BenchmarkParse100k(b *testing.B) {
	data := largeDoc(100_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("large.yaml", data, ""); err != nil {
			b.Fatal(err)
		}
	}
}
