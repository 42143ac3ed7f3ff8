package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/imdsdev/imds/internal/ec2"
	"github.com/imdsdev/imds/internal/suggest"
)

// Positional arguments are checked by these validators rather than
// cobra's, so that every command says in one style what it needs
// ("instance get needs an instance NAME") instead of "accepts 1 arg(s),
// received 0", and so that an instance name is checked with ec2.CheckName
// before anything is sent.

// commandName is the command as the user typed it, without "imds".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// noArgs refuses every positional argument.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %s", commandName(cmd), quoteArgs(args))
	}
	return nil
}

// needArgs accepts min to max arguments (max < 0: no limit); what says
// what they are ("an instance NAME", "a DOMAIN and an OPERATION").
func needArgs(min, max int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return fmt.Errorf("%s needs %s", commandName(cmd), what)
		case max >= 0 && len(args) > max:
			return fmt.Errorf("%s needs %s, got %d arguments: %s", commandName(cmd), what, len(args), quoteArgs(args))
		}
		return nil
	}
}

// instanceArgs is needArgs for commands whose first n arguments (n < 0:
// all of them) are instance names, each checked as the server would.
func instanceArgs(min, max, n int, what string) cobra.PositionalArgs {
	count := needArgs(min, max, what)
	return func(cmd *cobra.Command, args []string) error {
		if err := count(cmd, args); err != nil {
			return err
		}
		names := args
		if n >= 0 && n < len(args) {
			names = args[:n]
		}
		for _, name := range names {
			if err := ec2.CheckName(name); err != nil {
				return fmt.Errorf("%s: %s", commandName(cmd), ec2.ErrorMessage(err))
			}
		}
		return nil
	}
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return strings.Join(q, " ")
}

// groupArgs is the Args of a command that only holds subcommands: an
// argument that is none of them is an unknown command, with the closest
// one on the same line.
func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	best, bestDist := "", 3
	for _, sub := range cmd.Commands() {
		if !sub.IsAvailableCommand() {
			continue
		}
		for _, n := range append([]string{sub.Name()}, sub.Aliases...) {
			d := suggest.Distance(args[0], n)
			if strings.HasPrefix(n, args[0]) {
				d = 1
			}
			if d < bestDist && d <= max(1, len(n)/2) {
				best, bestDist = sub.Name(), d
			}
		}
	}
	if best != "" {
		return fmt.Errorf("unknown command %q for %q; did you mean %s?", args[0], cmd.CommandPath(), best)
	}
	return fmt.Errorf("unknown command %q for %q; see %s --help", args[0], cmd.CommandPath(), cmd.CommandPath())
}

// groupCommands makes every command of the tree that only holds
// subcommands refuse an unknown one (cobra would print the help and exit
// 0), and show its help when called alone.
func groupCommands(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = groupArgs
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
	for _, sub := range c.Commands() {
		groupCommands(sub)
	}
}

// flagError says a flag error in the style of the other errors: naming
// the flag and what it needs, and for an unknown flag the closest one the
// command has.
func flagError(cmd *cobra.Command, err error) error {
	var (
		notExist *pflag.NotExistError
		noValue  *pflag.ValueRequiredError
		invalid  *pflag.InvalidValueError
	)
	switch {
	case errors.As(err, &notExist):
		flag := notExist.GetSpecifiedName()
		if short := notExist.GetSpecifiedShortnames(); short != "" {
			if short != flag {
				flag += " (in -" + short + ")"
			}
			return fmt.Errorf("unknown flag -%s; see %s --help", flag, cmd.CommandPath())
		}
		if s := closestFlag(cmd.Flags(), flag); s != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s?", flag, s)
		}
		return fmt.Errorf("unknown flag --%s; see %s --help", flag, cmd.CommandPath())
	case errors.As(err, &noValue):
		return fmt.Errorf("--%s: needs a value", noValue.GetFlag().Name)
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		want := map[string]string{
			"int": "an integer", "float64": "a number", "duration": "a duration like 30s, 5m or 1h",
			"bool": "true or false",
		}[f.Value.Type()]
		if want == "" {
			return fmt.Errorf("--%s: %v", f.Name, errors.Unwrap(err))
		}
		return fmt.Errorf("--%s: must be %s, got %q", f.Name, want, invalid.GetValue())
	}
	return err
}

// closestFlag returns the flag of fs nearest to name (a prefix of it, or
// within half its length in edits), or "".
func closestFlag(fs *pflag.FlagSet, name string) string {
	name, _, _ = strings.Cut(name, "=")
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	slices.Sort(names)
	best, bestDist := "", 3
	for _, n := range names {
		if len(name) >= 3 && strings.HasPrefix(n, name) {
			return n
		}
		if d := suggest.Distance(name, n); d < bestDist && d <= max(1, len(n)/2) {
			best, bestDist = n, d
		}
	}
	return best
}
