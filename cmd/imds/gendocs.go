package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/imdsdev/imds/internal/clock"
)

// newGendocsCommand writes man pages and shell completions generated from
// the command tree, so that packages ship documentation that cannot drift
// from the flags. Hidden: it is a build step (make deb), not a user command.
func newGendocsCommand() *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gendocs",
		Short:  "Write man pages and shell completions generated from the commands",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && complDir == "" {
				return fmt.Errorf("nothing to do: give --man-dir and/or --completion-dir")
			}
			root := cmd.Root()
			if manDir != "" {
				date, err := sourceDate()
				if err != nil {
					return err
				}
				if err := os.MkdirAll(manDir, 0o755); err != nil {
					return err
				}
				hdr := &doc.GenManHeader{Title: "IMDS", Section: "1", Source: "imds " + currentBuild().Version, Manual: "imds manual", Date: &date}
				root.DisableAutoGenTag = true
				if err := doc.GenManTree(root, hdr, manDir); err != nil {
					return fmt.Errorf("man pages: %w", err)
				}
			}
			if complDir != "" {
				if err := os.MkdirAll(complDir, 0o755); err != nil {
					return err
				}
				for name, gen := range map[string]func(string) error{
					"imds.bash": func(f string) error { return root.GenBashCompletionFileV2(f, true) },
					"_imds":     root.GenZshCompletionFile,
					"imds.fish": func(f string) error { return root.GenFishCompletionFile(f, true) },
				} {
					if err := gen(filepath.Join(complDir, name)); err != nil {
						return fmt.Errorf("completion %s: %w", name, err)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man-dir", "", "write the man pages (section 1) into `directory`")
	cmd.Flags().StringVar(&complDir, "completion-dir", "", "write the bash, zsh and fish completions into `directory`")
	return cmd
}

// sourceDate is the date printed in man pages: SOURCE_DATE_EPOCH when set
// (reproducible builds), else today.
func sourceDate() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return clock.Real{}.Now().UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}
