package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// maxInputFile limits the files the instance commands read (user data,
// --from-file, the token file); the server refuses bodies above 1 MiB anyway.
const maxInputFile = 1 << 20

// adminFlags say how to reach the admin API of a running server. Each has an
// IMDS_<FLAG> environment variable, like the flags of serve.
type adminFlags struct {
	socket    string
	url       string
	tokenFile string
}

func (f *adminFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.socket, "admin-socket", "", "Unix `socket` of the server's admin API (env IMDS_ADMIN_SOCKET; default $XDG_RUNTIME_DIR/imds/admin.sock, /run/imds/admin.sock as root, else /tmp/imds-UID/admin.sock)")
	fs.StringVar(&f.url, "admin-url", "", "`URL` of the admin API on TCP, e.g. http://127.0.0.1:1339, instead of the socket (env IMDS_ADMIN_URL)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "`file` holding the bearer token for --admin-url (env IMDS_ADMIN_TOKEN_FILE)")
}

// client returns a client of the admin API the flags (or their environment
// variables) name.
func (f *adminFlags) client(fs *pflag.FlagSet) (*admin.Client, error) {
	// source names where a value came from, so that a bad one is blamed
	// on the variable when the user never typed the flag.
	source := map[string]string{}
	value := func(flag, cur string) string {
		source[flag] = "--" + flag
		if fs.Changed(flag) {
			return cur
		}
		env := "IMDS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
		if v := os.Getenv(env); v != "" {
			source[flag] = "environment variable " + env
			return v
		}
		return cur
	}
	socket := value("admin-socket", f.socket)
	base := value("admin-url", f.url)
	tokenFile := value("admin-token-file", f.tokenFile)
	if base == "" {
		if tokenFile != "" {
			return nil, fmt.Errorf("%s: only used with --admin-url", source["admin-token-file"])
		}
		return admin.NewClient(firstNonEmpty(socket, admin.DefaultSocket())), nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: must be an http:// or https:// URL like http://127.0.0.1:1339, got %q", source["admin-url"], base)
	}
	if tokenFile == "" {
		return nil, fmt.Errorf("%s: the admin API on TCP needs --admin-token-file", source["admin-url"])
	}
	token, err := admin.ReadTokenFile(tokenFile, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source["admin-token-file"], err)
	}
	return admin.NewTCPClient(base, token), nil
}

// instanceFlags are the settings add and set take from the command line.
// load checks them and reads the user data file; apply then changes a spec.
type instanceFlags struct {
	ips          []string
	mac          string
	role         string
	userData     string
	tags         []string
	imdsv2       string
	instanceType string
	region       string
	hopLimit     int
	host         string

	// Set by load.
	addrs    []string
	userDoc  []byte
	tagEdits []ec2.TagEdit
}

func (f *instanceFlags) register(fs *pflag.FlagSet, set bool) {
	ip, tag := "source `address` of the instance's metadata requests, repeatable", "tag `KEY=VALUE`, repeatable"
	if set {
		ip += " (replaces the list; --ip \"\" clears it)"
		tag += "; KEY- removes the tag"
	}
	fs.StringArrayVar(&f.ips, "ip", nil, ip)
	fs.StringVar(&f.mac, "mac", "", "`MAC` of the primary interface; requests are also recognised by it (neighbour table)")
	fs.StringVar(&f.role, "role", "", "IAM `role` of the instance profile (\"\" for none; default "+ec2.DefaultRoleName+")")
	fs.StringVar(&f.userData, "user-data", "", "user data `file` (- for standard input; \"\" for none)")
	fs.StringArrayVar(&f.tags, "tag", nil, tag)
	fs.StringVar(&f.imdsv2, "imdsv2", "", "IMDSv2 `mode`: optional or required")
	fs.StringVar(&f.instanceType, "instance-type", "", "instance `type`, e.g. t3.small")
	fs.StringVar(&f.region, "region", "", "`region`, e.g. eu-west-1")
	fs.IntVar(&f.hopLimit, "hop-limit", 0, "`hops` a token response may travel, 1-64 (HttpPutResponseHopLimit; default 1, 2 for containers behind a bridge)")
	pin := "imds `host` that alone serves the instance (store.etcd.host, else its host name; see imds host list)"
	if set {
		pin += "; \"\" unpins it"
	}
	fs.StringVar(&f.host, "host", "", pin)
}

// flagNames are the flags of instanceFlags, for messages.
var flagNames = []string{"ip", "mac", "role", "user-data", "tag", "imdsv2", "instance-type", "region", "hop-limit", "host"}

// changed reports whether any instance flag was given.
func (f *instanceFlags) changed(fs *pflag.FlagSet) bool {
	for _, n := range flagNames {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

// load checks the given flags, each error naming its flag, and reads the
// user data. With set, a tag KEY- removes KEY.
func (f *instanceFlags) load(fs *pflag.FlagSet, stdin io.Reader, set bool) error {
	f.addrs = nil
	for _, s := range f.ips {
		if s == "" {
			continue
		}
		a, err := ec2.ParseSourceAddr(s)
		if err != nil {
			return fmt.Errorf("--ip: %w", err)
		}
		f.addrs = append(f.addrs, a)
	}
	if f.mac != "" {
		mac, err := ec2.ParseMACAddr(f.mac)
		if err != nil {
			return fmt.Errorf("--mac: %w", err)
		}
		f.mac = mac
	}
	f.tagEdits = nil
	for _, t := range f.tags {
		e, err := ec2.ParseTagEdit(t, set)
		if err != nil {
			return fmt.Errorf("--tag: %w", err)
		}
		f.tagEdits = append(f.tagEdits, e)
	}
	if fs.Changed("imdsv2") {
		if err := ec2.CheckTokensMode(f.imdsv2); err != nil {
			return fmt.Errorf("--imdsv2: %w", err)
		}
	}
	if fs.Changed("instance-type") {
		if err := ec2.CheckNotEmpty(f.instanceType); err != nil {
			return fmt.Errorf("--instance-type: %w", err)
		}
	}
	if fs.Changed("region") {
		if err := ec2.CheckNotEmpty(f.region); err != nil {
			return fmt.Errorf("--region: %w", err)
		}
	}
	if fs.Changed("host") && f.host != "" {
		if err := ec2.CheckHostName(f.host); err != nil {
			return fmt.Errorf("--host: %w", err)
		}
	}
	if fs.Changed("hop-limit") && (f.hopLimit < 1 || f.hopLimit > 64) {
		return fmt.Errorf("--hop-limit: must be between 1 and 64, got %d", f.hopLimit)
	}
	f.userDoc = nil
	if fs.Changed("user-data") && f.userData != "" {
		data, err := readInput(f.userData, stdin)
		if err != nil {
			return fmt.Errorf("--user-data: %w", err)
		}
		if len(data) > 0 {
			f.userDoc = data
		}
	}
	return nil
}

// update is the change the given flags ask for, and only that; load must
// have succeeded.
func (f *instanceFlags) update(fs *pflag.FlagSet) ec2.InstanceUpdate {
	var u ec2.InstanceUpdate
	if fs.Changed("ip") {
		u.SourceAddrs = ec2.Ptr(append([]string{}, f.addrs...))
	}
	if fs.Changed("mac") {
		u.MAC = &f.mac
	}
	if fs.Changed("role") {
		u.Role = &f.role
	}
	if fs.Changed("user-data") {
		u.UserData = ec2.Ptr(append([]byte{}, f.userDoc...))
	}
	u.Tags = f.tagEdits
	if fs.Changed("imdsv2") {
		u.HTTPTokens = &f.imdsv2
	}
	if fs.Changed("instance-type") {
		u.InstanceType = &f.instanceType
	}
	if fs.Changed("region") {
		u.Region = &f.region
	}
	if fs.Changed("hop-limit") {
		u.HopLimit = &f.hopLimit
	}
	if fs.Changed("host") {
		u.Host = &f.host
	}
	return u
}

// readInput reads a file given on the command line ("-" is stdin when
// stdin is not nil), refusing one larger than maxInputFile.
func readInput(path string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if path == "-" && stdin != nil {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxInputFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxInputFile)
	}
	return data, nil
}

// outputFlag validates -o.
func outputFormat(format string) error {
	switch format {
	case "table", "json", "yaml":
		return nil
	}
	return fmt.Errorf("-o/--output: must be table, json or yaml, got %q", format)
}

func newInstanceCommand() *cobra.Command {
	var af adminFlags
	c := &cobra.Command{
		Use:   "instance",
		Short: "Manage the instances of a running server (through its admin API)",
	}
	af.register(c.PersistentFlags())
	c.AddCommand(newInstanceAddCommand(&af), newInstanceListCommand(&af), newInstanceGetCommand(&af),
		newInstanceSetCommand(&af), newInstanceRmCommand(&af))
	return c
}

func newInstanceAddCommand(af *adminFlags) *cobra.Command {
	var (
		f           instanceFlags
		fromFile    string
		fromLibvirt string
		network     string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "add NAME [flags] | add --from-file FILE | add --from-libvirt DOMAIN.xml",
		Short: "Register an instance (or every instance of a YAML or JSON file) with the running server",
		Example: `  imds instance add web-1 --ip 10.0.0.5 --role web-role --tag env=dev --user-data cloud-init.yaml
  imds instance add --from-file instances.yaml`,
		Args: instanceArgs(0, 1, -1, "one instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := outputFormat(output); err != nil {
				return err
			}
			if fs.Changed("from-libvirt") {
				// A domain definition (virsh dumpxml) registered as the libvirt hook would.
				if len(args) > 0 || f.changed(fs) || fs.Changed("from-file") {
					return errors.New("--from-libvirt: cannot be combined with NAME, --from-file or instance flags; use the domain's <metadata>")
				}
				spec, err := specFromLibvirtFile(fromLibvirt, network)
				if err != nil {
					return err
				}
				c, err := af.client(fs)
				if err != nil {
					return err
				}
				inst, err := c.AddInstance(cmd.Context(), spec)
				if err != nil {
					return err
				}
				return printInstances(cmd.OutOrStdout(), output, []*ec2.Instance{inst}, false)
			}
			if fs.Changed("from-file") {
				if len(args) > 0 || f.changed(fs) {
					return errors.New("--from-file: cannot be combined with NAME or instance flags; put everything in the file")
				}
				if fromFile == "" {
					return errors.New("--from-file: needs a file name (- for standard input)")
				}
			} else if len(args) == 0 {
				return errors.New("instance add needs an instance NAME, --from-file FILE or --from-libvirt DOMAIN.xml")
			}
			var spec *ec2.Instance
			if len(args) == 1 {
				if err := f.load(fs, cmd.InOrStdin(), false); err != nil {
					return err
				}
				spec = ec2.NewDefaultInstance()
				spec.Name = args[0]
				f.update(fs).Apply(spec)
			}
			c, err := af.client(fs)
			if err != nil {
				return err
			}
			var added []*ec2.Instance
			if spec != nil {
				inst, err := c.AddInstance(cmd.Context(), spec)
				if err != nil {
					return err
				}
				added = []*ec2.Instance{inst}
			} else {
				if added, err = addFromFile(cmd, c, fromFile); err != nil {
					return err
				}
				src, what := fromFile, "instances"
				if src == "-" {
					src = "standard input"
				}
				if len(added) == 1 {
					what = "instance"
				}
				// On stderr, so that -o json and -o yaml stay documents.
				fmt.Fprintf(cmd.ErrOrStderr(), "imds instance add: %d %s added from %s, all in one change\n", len(added), what, src)
			}
			return printInstances(cmd.OutOrStdout(), output, added, false)
		},
	}
	fs := cmd.Flags()
	f.register(fs, false)
	fs.StringVar(&fromFile, "from-file", "", "YAML or JSON `file` with one instance, a list, or instances: [...] (- for standard input)")
	fs.StringVar(&fromLibvirt, "from-libvirt", "", "libvirt domain XML `file` (virsh dumpxml NAME; - for standard input)")
	fs.StringVar(&network, "network", "default", "with --from-libvirt: the libvirt `network` whose interface gives the MAC (\"\" for the first interface)")
	fs.StringVarP(&output, "output", "o", "table", "output `format` of the added instances: table, json or yaml")
	return cmd
}

// addFromFile sends the instances of a file. The file is checked here
// first, so that messages point at its lines and user_data_file and
// key_file are read relative to it; it is then sent as it is when it needs
// no other file (so that the server's messages point at its lines too),
// else with those files inlined.
func addFromFile(cmd *cobra.Command, c *admin.Client, path string) ([]*ec2.Instance, error) {
	if path == "-" {
		data, err := readInput(path, cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("--from-file: %w", err)
		}
		return c.AddInstancesFile(cmd.Context(), "stdin", data)
	}
	specs, readFiles, err := config.LoadInstances(path)
	if err != nil {
		return nil, err
	}
	data, err := readInput(path, nil)
	if err != nil {
		return nil, fmt.Errorf("--from-file: %w", err)
	}
	if !readFiles {
		return c.AddInstancesFile(cmd.Context(), path, data)
	}
	docs := make([]json.RawMessage, len(specs))
	for i, spec := range specs {
		if docs[i], err = config.MarshalInstance(spec); err != nil {
			return nil, err
		}
	}
	body, err := json.Marshal(map[string]any{"instances": docs})
	if err != nil {
		return nil, err
	}
	return c.AddInstancesFile(cmd.Context(), path+" (files inlined)", body)
}

func newInstanceListCommand(af *adminFlags) *cobra.Command {
	var (
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the instances of the running server",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit: must be 0 (every instance) or more, got %d", limit)
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			return listInstances(cmd, c, output, limit)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output `format`: table, json or yaml")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` instances, the first by name (0: every instance)")
	return cmd
}

// listInstances prints the instances a page at a time, as they come, so
// that neither side holds the whole list: at 100,000 instances it is over
// 100 MB of documents.
func listInstances(cmd *cobra.Command, c *admin.Client, format string, limit int) error {
	p := &listPrinter{w: cmd.OutOrStdout(), format: format}
	after, n := "", 0
	for {
		size := admin.ClientPage
		if limit > 0 {
			size = min(size, limit-n)
		}
		page, more, err := c.ListInstancesPage(cmd.Context(), after, size)
		if err != nil {
			return err
		}
		if err := p.page(page); err != nil {
			return err
		}
		n += len(page)
		if !more || len(page) == 0 {
			break
		}
		if limit > 0 && n >= limit {
			if err := p.end(); err != nil {
				return err
			}
			first := fmt.Sprintf("the first %d instances", n)
			if n == 1 {
				first = "the first instance"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imds instance list: %s; more follow (--limit 0 lists every one)\n", first)
			return nil
		}
		after = page[len(page)-1].Name
	}
	return p.end()
}

// listPrinter writes a list page by page in the same form printInstances
// writes it whole: a table (its header once; columns sized per page), or
// the document {instances: [...]} in JSON or YAML.
type listPrinter struct {
	w       io.Writer
	format  string
	started bool // something was written
	// hosts tells whether the last table header had the HOST column: a
	// page that needs it (or no longer does) starts with a new header.
	hosts bool
}

func (p *listPrinter) page(list []*ec2.Instance) error {
	switch {
	case len(list) == 0:
		return nil
	case p.format == "table":
		hosts := anyPinned(list)
		err := printTableRows(p.w, list, !p.started || hosts != p.hosts, hosts)
		p.started, p.hosts = true, hosts
		return err
	}
	docs := make([]json.RawMessage, len(list))
	for i, inst := range list {
		var err error
		if docs[i], err = config.MarshalInstance(inst); err != nil {
			return err
		}
	}
	if p.format == "yaml" {
		doc, err := json.Marshal(map[string]any{"instances": docs})
		if err != nil {
			return err
		}
		out, err := jsonToYAML(doc)
		if err != nil {
			return err
		}
		if p.started {
			out = bytes.TrimPrefix(out, []byte("instances:\n"))
		}
		p.started = true
		_, err = p.w.Write(out)
		return err
	}
	var b bytes.Buffer
	if !p.started {
		b.WriteString("{\n  \"instances\": [\n")
	}
	for i, doc := range docs {
		if p.started || i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString("    ")
		if err := json.Indent(&b, doc, "    ", "  "); err != nil {
			return err
		}
	}
	p.started = true
	_, err := p.w.Write(b.Bytes())
	return err
}

func (p *listPrinter) end() error {
	if !p.started {
		return printInstances(p.w, p.format, nil, false)
	}
	if p.format == "json" {
		_, err := io.WriteString(p.w, "\n  ]\n}\n")
		return err
	}
	return nil
}

func newInstanceGetCommand(af *adminFlags) *cobra.Command {
	var (
		output string
		spec   bool
	)
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show an instance of the running server, with every derived value (--spec: as given)",
		Args:  instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFormat(output); err != nil {
				return err
			}
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			get := c.GetInstance
			if spec {
				get = c.GetInstanceSpec
			}
			inst, err := get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), output, []*ec2.Instance{inst}, true)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output `format`: yaml, json or table")
	cmd.Flags().BoolVar(&spec, "spec", false, "show the instance as registered, before derivation")
	return cmd
}

func newInstanceSetCommand(af *adminFlags) *cobra.Command {
	var (
		f      instanceFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "set NAME [flags]",
		Short: "Change some settings of an instance registered with the running server",
		Example: `  imds instance set web-1 --imdsv2 required --tag env=prod --tag scratch-
  imds instance set web-1 --ip 10.0.0.6 --ip fd00::6
  imds instance set web-1 --hop-limit 2`,
		Args: instanceArgs(1, 1, -1, "an instance NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			if err := outputFormat(output); err != nil {
				return err
			}
			if !f.changed(fs) {
				return fmt.Errorf("nothing to change: give at least one of --%s", strings.Join(flagNames, ", --"))
			}
			if err := f.load(fs, cmd.InOrStdin(), true); err != nil {
				return err
			}
			c, err := af.client(fs)
			if err != nil {
				return err
			}
			inst, err := c.UpdateInstance(cmd.Context(), args[0], f.update(fs))
			if err != nil {
				return err
			}
			return printInstances(cmd.OutOrStdout(), output, []*ec2.Instance{inst}, false)
		},
	}
	fs := cmd.Flags()
	f.register(fs, true)
	fs.StringVarP(&output, "output", "o", "table", "output `format` of the changed instance: table, json or yaml")
	return cmd
}

func newInstanceRmCommand(af *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"remove"},
		Short:   "Remove instances registered with the running server",
		Args:    instanceArgs(1, -1, -1, "one or more instance NAMEs"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client(cmd.Flags())
			if err != nil {
				return err
			}
			var errs []error
			for _, name := range args {
				if err := c.RemoveInstance(cmd.Context(), name); err != nil {
					errs = append(errs, err)
					if ec2.ErrorCode(err) == ec2.EUNAVAILABLE {
						break // the others would fail the same way
					}
					continue
				}
				if _, err := fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", name); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
}

// printInstances writes list in format. A single instance (one) is written
// as a document; otherwise json and yaml write {instances: [...]}, which
// add --from-file reads back.
func printInstances(w io.Writer, format string, list []*ec2.Instance, one bool) error {
	if format == "table" {
		return printTable(w, list)
	}
	var doc []byte
	if one && len(list) == 1 {
		var err error
		if doc, err = config.MarshalInstance(list[0]); err != nil {
			return err
		}
	} else {
		docs := make([]json.RawMessage, len(list))
		for i, inst := range list {
			var err error
			if docs[i], err = config.MarshalInstance(inst); err != nil {
				return err
			}
		}
		var err error
		if doc, err = json.Marshal(struct {
			Instances []json.RawMessage `json:"instances"`
		}{docs}); err != nil {
			return err
		}
	}
	return writeDocument(w, format, doc)
}

// writeDocument prints an admin API document as YAML, or as indented JSON
// ending in one newline.
func writeDocument(w io.Writer, format string, doc []byte) error {
	if format == "yaml" {
		out, err := jsonToYAML(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, doc, "", "  "); err != nil {
		return err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// printTable writes one line per instance.
func printTable(w io.Writer, list []*ec2.Instance) error {
	return printTableRows(w, list, true, anyPinned(list))
}

// anyPinned reports whether an instance of list is pinned to a host: the
// table shows the HOST column only then, so that a single-host setup sees
// the table it always saw.
func anyPinned(list []*ec2.Instance) bool {
	return slices.ContainsFunc(list, func(inst *ec2.Instance) bool { return inst.Host != "" })
}

// printTableRows writes one line per instance, after the header if asked,
// with the HOST column if asked.
func printTableRows(w io.Writer, list []*ec2.Instance, header, hosts bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if header {
		h := "NAME\tINSTANCE-ID\tORIGIN\tADDRESSES\tMAC\tROLE\tIMDSV2"
		if hosts {
			h += "\tHOST"
		}
		fmt.Fprintln(tw, h)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, inst := range list {
		role := ""
		if inst.Role != nil {
			role = inst.Role.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s", ec2.Printable(inst.Name), dash(inst.ID), dash(inst.Origin),
			dash(strings.Join(inst.SourceAddrs, ",")), dash(inst.Primary().MAC), dash(role), dash(inst.Metadata.HTTPTokens))
		if hosts {
			fmt.Fprintf(tw, "\t%s", dash(inst.Host))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// jsonToYAML renders a JSON document as block-style YAML, keeping the order
// of its keys.
func jsonToYAML(doc []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, err
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
