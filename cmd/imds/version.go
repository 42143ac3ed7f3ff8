package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version and commit are stamped by the release build (make dist, make deb):
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=0123abc"
//
// Left empty, they are read from the module and VCS information the Go
// toolchain records, so `go install .../cmd/imds@v1.2.3` reports v1.2.3.
var (
	version string
	commit  string
)

// buildInfo is what `imds version` prints.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// currentBuild returns the stamped values, filled in from the binary's own
// build information where the build did not stamp them.
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if b.Commit == "" {
					b.Commit = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && commit == "" && b.Commit != "" {
			b.Commit += "-dirty"
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// details are the lines after the version line.
func (b buildInfo) details() string {
	return fmt.Sprintf("commit: %s\ngo: %s\nplatform: %s\n", b.Commit, b.Go, b.Platform)
}

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and platform of imds",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			switch strings.ToLower(output) {
			case "text":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "imds %s\n%s", b.Version, b.details())
				return err
			case "json", "yaml":
				doc, err := json.Marshal(b)
				if err != nil {
					return err
				}
				return writeDocument(cmd.OutOrStdout(), output, doc)
			}
			return fmt.Errorf("-o/--output: must be text, json or yaml, got %q", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output `format`: text, json or yaml")
	return cmd
}
