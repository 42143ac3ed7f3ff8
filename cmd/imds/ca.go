package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

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
		Long: `imds ca cert prints the certificate of the key that signs the identity
documents of the server using --data-dir. It never creates one: the server
creates the key and certificate on its first start.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			dir := firstNonEmpty(dataDir, daemon.DefaultDataDir())
			pem, err := identity.ReadCertificate(filepath.Join(dir, "identity"))
			if errors.Is(err, identity.ErrNoCertificate) {
				return fmt.Errorf("data directory %s has no identity certificate: imds serve creates one there on its first start; give imds ca cert the --data-dir (or IMDS_DATA_DIR) of the server", dir)
			}
			if err != nil {
				return fmt.Errorf("data directory %s: %w", dir, err)
			}
			_, err = cmd.OutOrStdout().Write(pem)
			return err
		},
	}
	cert.Flags().StringVar(&dataDir, "data-dir", "", "`directory` of the server whose certificate to print (env IMDS_DATA_DIR)")
	ca.AddCommand(cert)
	return ca
}
