// Package ctl is palisadectl: the admin CLI over the controller's API.
// It is a package (not only a main) so tests run it in-process.
package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/version"
)

const usage = `usage: palisadectl [--api URL] [--token-file FILE] <command> [flags]

  enroll-token create [--ttl 24h] [--label k=v]...   create a one-time enrolment token
  enroll-token list                                   list enrolment tokens
  hosts list [-o table|json]                          list hosts
  hosts show HOST [-o table|json]                     show one host
  hosts events HOST [--kind exec|exit|file|connect] [--limit N] [-o table|json]
                                                      a host's recent events, newest first
  audit list [--after N] [--limit N] [--actor A] [--action A] [--target T]
                                                      read the audit log
  hosts label HOST k=v...                             replace a host's labels
  hosts quarantine HOST --reason TEXT                 request quarantine (prints the action)
  hosts release HOST --reason TEXT                    request release
  hosts kill HOST --pid N --reason TEXT [--tree]      kill a process
  actions list [--host H] [--kind K] [--state S]      list actions
  actions show ID                                     show one action
  incidents list [--host H] [--status S]              list incidents
  incidents show|ack|resolve ID [--note TEXT]         show, acknowledge, resolve
  incidents create --host H --rule R --severity S     open an incident by hand
  policies apply FILE [--comment C] [--dry-run]       validate and apply a policy file
  policies list | show VERSION | rollback VERSION     policy versions
  iocs add --type ip|cidr|sha256 --value V [--source S] [--ttl D]
  iocs list | remove ID                               indicators of compromise
  leaked-credentials add KEY_ID [--source S] | list   leaked access keys
  creds leaked add KEY_ID | list | blast-radius ID      the same; blast-radius: hosts, files, processes
  incidents alerts ID                                   the alerts of an incident
  tokens create --role ROLE --name NAME [--ttl D]     create an API token (prints it)
  tokens list | revoke ID                             API tokens
  cluster status                                      members, their state, the leader
  cluster remove-node ID                              remove a member
  version                                             print the version

Every command takes -o json. --api may list several nodes (comma-separated).

The API URL comes from --api or PALISADE_API (default http://127.0.0.1:8080),
an https controller's CA from --ca-file or PALISADE_CA_FILE;
the token from --token-file, PALISADE_TOKEN_FILE or PALISADE_TOKEN.
`

// Env reads environment variables (os.Getenv in main; a map in tests).
type Env func(string) string

// Run executes one palisadectl invocation and returns its exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, env Env) int {
	c := &cli{out: stdout, errw: stderr, env: env}
	if err := c.run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "palisadectl:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg + "\n" + usage }

type cli struct {
	out, errw io.Writer
	env       Env
	api       string
	tokenFile string
	caFile    string
	output    string
}

// flags returns a flag set that also accepts the global flags, so they may
// come before or after the command.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errw)
	fs.StringVar(&c.api, "api", c.api, "controller API URL")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "file holding the API token")
	fs.StringVar(&c.caFile, "ca-file", c.caFile, "CA certificate of an https controller (its ca.pem)")
	fs.StringVar(&c.output, "o", c.output, "output: table or json")
	return fs
}

func (c *cli) run(ctx context.Context, args []string) error {
	c.output = "table"
	fs := c.flags("palisadectl")
	fs.Usage = func() { fmt.Fprint(c.errw, usage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{"no command"}
	}
	cmd := rest[0]
	sub := ""
	if len(rest) > 1 {
		sub = rest[1]
	}
	switch {
	case cmd == "version":
		fmt.Fprintln(c.out, version.Version)
		return nil
	case cmd == "hosts" && sub == "list":
		return c.hostsList(ctx, rest[2:])
	case cmd == "hosts" && sub == "show":
		return c.hostsShow(ctx, rest[2:])
	case cmd == "hosts" && sub == "events":
		return c.hostsEvents(ctx, rest[2:])
	case cmd == "enroll-token" && sub == "create":
		return c.enrollTokenCreate(ctx, rest[2:])
	case cmd == "enroll-token" && sub == "list":
		return c.enrollTokenList(ctx, rest[2:])
	case cmd == "audit" && sub == "list":
		return c.auditList(ctx, rest[2:])
	}
	if h, ok := c.extra(cmd, sub); ok {
		return h(ctx, rest[2:])
	}
	return usageError{fmt.Sprintf("unknown command %q", strings.TrimSpace(cmd+" "+sub))}
}

func (c *cli) client() (*apiclient.Client, error) {
	api := c.api
	if api == "" {
		api = c.env("PALISADE_API")
	}
	if api == "" {
		api = "http://127.0.0.1:8080"
	}
	tf := c.tokenFile
	if tf == "" {
		tf = c.env("PALISADE_TOKEN_FILE")
	}
	token := ""
	if tf != "" {
		b, err := os.ReadFile(tf)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	} else {
		token = strings.TrimSpace(c.env("PALISADE_TOKEN"))
	}
	if token == "" {
		return nil, errors.New("no API token: pass --token-file or set PALISADE_TOKEN")
	}
	cl, err := apiclient.New(api, token)
	if err != nil {
		return nil, err
	}
	caFile := c.caFile
	if caFile == "" {
		caFile = c.env("PALISADE_CA_FILE")
	}
	if caFile != "" {
		pemCA, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		if err := cl.TrustCA(pemCA); err != nil {
			return nil, fmt.Errorf("%s: %w", caFile, err)
		}
	}
	return cl, nil
}

func (c *cli) parseLeaf(name string, args []string, fs *flag.FlagSet) ([]string, error) {
	if fs == nil {
		fs = c.flags(name)
	}
	// Flags may follow positional arguments (hosts quarantine HOST
	// --reason TEXT): parse, take one positional, parse the rest again.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if c.output != "table" && c.output != "json" {
		return nil, usageError{fmt.Sprintf("-o %q: want table or json", c.output)}
	}
	return pos, nil
}

func (c *cli) json(v any) error {
	enc := json.NewEncoder(c.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) hostsList(ctx context.Context, args []string) error {
	fs := c.flags("hosts list")
	var labels stringsFlag
	fs.Var(&labels, "label", "only hosts with this label (key or key=value; repeatable)")
	online := fs.String("online", "", "true or false")
	quarantined := fs.String("quarantined", "", "true or false")
	rest, err := c.parseLeaf("hosts list", args, fs)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{"hosts list takes no arguments"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := map[string][]string{}
	if len(labels) > 0 {
		q["label"] = labels
	}
	if *online != "" {
		q["online"] = []string{*online}
	}
	if *quarantined != "" {
		q["quarantined"] = []string{*quarantined}
	}
	hl := &apiv1.HostList{}
	if err := cl.Do(ctx, "GET", "/api/v1/hosts", q, nil, hl); err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(hl)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOSTNAME\tSTATUS\tQUARANTINED\tLAST SEEN\tAGENT\tKERNEL")
	for _, h := range hl.Hosts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\t%s\t%s\n", h.ID, h.Hostname, onlineWord(h.Online), h.Quarantined,
			ago(h.LastSeen), h.AgentVersion, h.Kernel)
	}
	return tw.Flush()
}

func (c *cli) hostsShow(ctx context.Context, args []string) error {
	rest, err := c.parseLeaf("hosts show", args, nil)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{"hosts show takes one host id"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var h apiv1.Host
	if err := cl.Do(ctx, "GET", "/api/v1/hosts/"+rest[0], nil, nil, &h); err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(h)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\t%s\nHostname\t%s\nStatus\t%s\nLast seen\t%s\nQuarantined\t%t %s\nOS\t%s (%s)\nKernel\t%s\nAgent\t%s\nPolicy\t%d\n",
		h.ID, h.Hostname, onlineWord(h.Online), ago(h.LastSeen), h.Quarantined, h.QuarantineReason, h.OS, h.Arch, h.Kernel, h.AgentVersion, h.PolicyVersion)
	keys := make([]string, 0, len(h.Labels))
	for k := range h.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "Label\t%s=%s\n", k, h.Labels[k])
	}
	for _, f := range h.Features {
		state := "available"
		if !f.Available {
			state = "missing: " + f.Error
		}
		fmt.Fprintf(tw, "Feature\t%s: %s\n", f.Name, state)
	}
	return tw.Flush()
}

type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

type labelFlag map[string]string

func (l labelFlag) String() string { return "" }
func (l labelFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want key=value", v)
	}
	l[k] = val
	return nil
}

func (c *cli) enrollTokenCreate(ctx context.Context, args []string) error {
	fs := c.flags("enroll-token create")
	ttl := fs.String("ttl", "", "token lifetime (default 24h, at most 720h)")
	labels := labelFlag{}
	fs.Var(labels, "label", "label given to the enrolled host (key=value, repeatable)")
	rest, err := c.parseLeaf("enroll-token create", args, fs)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{"enroll-token create takes no arguments"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	req := apiv1.CreateEnrollTokenRequest{TTL: *ttl}
	if len(labels) > 0 {
		req.Labels = labels
	}
	tok, err := cl.CreateEnrollToken(ctx, req)
	if err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(tok)
	}
	fmt.Fprintln(c.out, tok.Token)
	return nil
}

func (c *cli) enrollTokenList(ctx context.Context, args []string) error {
	rest, err := c.parseLeaf("enroll-token list", args, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{"enroll-token list takes no arguments"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out apiv1.EnrollTokenList
	if err := cl.Do(ctx, "GET", "/api/v1/enroll-tokens", nil, nil, &out); err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(out)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEXPIRES\tUSED BY")
	for _, t := range out.Tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, stamp(t.ExpiresAt), t.UsedByHost)
	}
	return tw.Flush()
}

func (c *cli) auditList(ctx context.Context, args []string) error {
	fs := c.flags("audit list")
	after := fs.Uint64("after", 0, "only entries after this index")
	limit := fs.Int("limit", 100, "at most this many entries")
	actor := fs.String("actor", "", "only this actor (token:NAME, agent:HOST, ...)")
	action := fs.String("action", "", "only this action (host.quarantine; \"host.\" for every host action)")
	target := fs.String("target", "", "only this target")
	rest, err := c.parseLeaf("audit list", args, fs)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{"audit list takes no arguments"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := map[string][]string{"after": {fmt.Sprint(*after)}, "limit": {fmt.Sprint(*limit)}}
	for k, v := range map[string]string{"actor": *actor, "action": *action, "target": *target} {
		if v != "" {
			q[k] = []string{v}
		}
	}
	var out apiv1.AuditList
	if err := cl.Do(ctx, "GET", "/api/v1/audit", q, nil, &out); err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(out)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tTIME\tACTOR\tACTION\tTARGET\tREQUEST")
	for _, e := range out.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Index, stamp(e.Time), e.Actor, e.Action, e.Target, e.RequestID)
	}
	return tw.Flush()
}

func onlineWord(b bool) string {
	if b {
		return "online"
	}
	return "offline"
}

func stamp(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return time.Since(*t).Round(time.Second).String() + " ago"
}
