package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCredsCommand() *cobra.Command {
	c := &cobra.Command{Use: "creds", Short: "Manage the credentials a running server hands out"}
	af := &adminFlags{}
	af.register(c.PersistentFlags())
	c.AddCommand(&cobra.Command{
		Use:   "rotate [ROLE]",
		Short: "Replace the credentials of ROLE (all roles without one) in the running server now",
		Args:  needArgs(0, 1, "at most one ROLE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			role := ""
			if len(args) == 1 {
				role = args[0]
			}
			if err := client.RotateCredentials(cmd.Context(), role); err != nil {
				return err
			}
			what := "every role"
			if role != "" {
				what = "role " + role
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rotated the credentials of %s\n", what)
			return err
		},
	})
	return c
}
