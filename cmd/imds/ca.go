package main

import (
	"crypto/rand"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/imdsdev/imds/internal/clock"
	"github.com/imdsdev/imds/internal/daemon"
	"github.com/imdsdev/imds/internal/identity"
)

func newCACommand() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "The certificate that signs instance identity documents",
	}
	var dataDir string
	cert := &cobra.Command{
		Use:   "cert",
		Short: "Print the PEM certificate to verify identity document signatures with (openssl smime -verify ... -certfile)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			dir := firstNonEmpty(dataDir, daemon.DefaultDataDir())
			s, err := identity.Open(filepath.Join(dir, "identity"), clock.Real{}.Now, rand.Reader)
			if err != nil {
				return fmt.Errorf("data directory %s: %w", dir, err)
			}
			_, err = cmd.OutOrStdout().Write(s.CertificatePEM())
			return err
		},
	}
	cert.Flags().StringVar(&dataDir, "data-dir", "", "`directory` of the server whose certificate to print (env IMDS_DATA_DIR)")
	ca.AddCommand(cert)
	return ca
}
