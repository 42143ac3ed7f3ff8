package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/daemon"
	"github.com/imdsdev/imds/internal/store/bolt"
)

// newDBCommand is `imds db check|dump|restore`: offline tools for the
// database of a stopped server.
func newDBCommand() *cobra.Command {
	var dataDir string
	file := func() string {
		return filepath.Join(firstNonEmpty(dataDir, os.Getenv("IMDS_DATA_DIR"), daemon.DefaultDataDir()), "imds.db")
	}
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Check, dump and restore the instance database of a stopped server",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "", "data `directory` of the server (default as for imds serve; env IMDS_DATA_DIR)")
	check := &cobra.Command{
		Use:   "check",
		Short: "Verify every page and record of DATA_DIR/imds.db, changing nothing",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, found, err := bolt.Check(file())
			if err != nil {
				return err
			}
			for _, p := range found {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", file(), p)
			}
			if len(found) > 0 {
				return fmt.Errorf("%s is damaged (%d problems; %d records readable): save them with imds db dump, move the file aside and imds db restore", file(), len(found), n)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok, %d instances\n", file(), n)
			return nil
		},
	}
	dump := &cobra.Command{
		Use:   "dump",
		Short: "Write every readable instance record of DATA_DIR/imds.db to stdout as JSON",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, skipped, err := bolt.Dump(file(), cmd.OutOrStdout())
			for _, s := range skipped {
				fmt.Fprintf(cmd.ErrOrStderr(), "imds db dump: skipped %s\n", s)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imds db dump: %d instances written, %d skipped\n", n, len(skipped))
			return nil
		},
	}
	restore := &cobra.Command{
		Use:   "restore DUMP",
		Short: "Create DATA_DIR/imds.db from the output of imds db dump (never replaces a file)",
		Args:  needArgs(1, 1, "a DUMP file (from imds db dump)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := bolt.Restore(file(), f)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: restored %d instances\n", file(), n)
			return nil
		},
	}
	cmd.AddCommand(check, dump, restore)
	return cmd
}
