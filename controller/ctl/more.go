package ctl

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/palisade-sec/palisade/internal/apiv1"
)

type handler func(ctx context.Context, args []string) error

// extra maps the commands beyond the skeleton's to their handlers.
func (c *cli) extra(cmd, sub string) (handler, bool) {
	h, ok := map[string]handler{
		"hosts label":                     c.hostsLabel,
		"hosts quarantine":                func(ctx context.Context, a []string) error { return c.hostsQuarantine(ctx, a, "quarantine") },
		"hosts release":                   func(ctx context.Context, a []string) error { return c.hostsQuarantine(ctx, a, "release") },
		"hosts kill":                      c.hostsKill,
		"actions list":                    c.actionsList,
		"actions show":                    c.actionsShow,
		"incidents list":                  c.incidentsList,
		"incidents show":                  func(ctx context.Context, a []string) error { return c.incidentOp(ctx, a, "") },
		"incidents ack":                   func(ctx context.Context, a []string) error { return c.incidentOp(ctx, a, "acknowledge") },
		"incidents acknowledge":           func(ctx context.Context, a []string) error { return c.incidentOp(ctx, a, "acknowledge") },
		"incidents resolve":               func(ctx context.Context, a []string) error { return c.incidentOp(ctx, a, "resolve") },
		"incidents create":                c.incidentsCreate,
		"policies apply":                  c.policiesApply,
		"policies list":                   c.policiesList,
		"policies show":                   c.policiesShow,
		"policies rollback":               c.policiesRollback,
		"iocs add":                        c.iocsAdd,
		"iocs list":                       c.iocsList,
		"iocs remove":                     c.iocsRemove,
		"leaked-credentials add":          c.leaksAdd,
		"leaked-credentials list":         c.leaksList,
		"leaked-credentials blast-radius": c.leaksBlastRadius,
		"creds leaked":                    c.credsLeaked,
		"incidents alerts":                c.incidentAlerts,
		"tokens create":                   c.tokensCreate,
		"tokens list":                     c.tokensList,
		"tokens revoke":                   c.tokensRevoke,
		"cluster status":                  c.clusterStatus,
		"cluster remove-node":             c.clusterRemove,
	}[cmd+" "+sub]
	return h, ok
}

// leaf parses a leaf command's flags and checks its positional count.
func (c *cli) leaf(name string, args []string, fs *flag.FlagSet, nargs int, what string) ([]string, error) {
	rest, err := c.parseLeaf(name, args, fs)
	if err != nil {
		return nil, err
	}
	if len(rest) != nargs && !(nargs < 0 && len(rest) >= -nargs) {
		return nil, usageError{fmt.Sprintf("%s takes %s", name, what)}
	}
	return rest, nil
}

// do calls the API and prints out as JSON with -o json, else table(out).
func (c *cli) do(ctx context.Context, method, path string, q url.Values, body, out any, table func()) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.Do(ctx, method, path, q, body, out); err != nil {
		return err
	}
	if c.output == "json" && out != nil {
		return c.json(out)
	}
	if table != nil {
		table()
	}
	return nil
}

func (c *cli) tw() *tabwriter.Writer { return tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0) }

func (c *cli) hostsLabel(ctx context.Context, args []string) error {
	rest, err := c.leaf("hosts label", args, nil, -1, "a host id and key=value labels (none: clear)")
	if err != nil {
		return err
	}
	labels := labelFlag{}
	for _, l := range rest[1:] {
		if err := labels.Set(l); err != nil {
			return usageError{err.Error()}
		}
	}
	var h apiv1.Host
	return c.do(ctx, http.MethodPut, "/api/v1/hosts/"+url.PathEscape(rest[0])+"/labels", nil,
		apiv1.SetLabelsRequest{Labels: labels}, &h, func() { fmt.Fprintf(c.out, "%s labels: %v\n", h.ID, h.Labels) })
}

func (c *cli) printAction(a *apiv1.Action) {
	tw := c.tw()
	fmt.Fprintf(tw, "Action\t%s\nHost\t%s\nKind\t%s\nState\t%s\nActor\t%s\nReason\t%s\nRequested\t%s\n",
		a.ID, a.HostID, a.Kind, a.State, a.Actor, a.Reason, stamp(a.RequestedAt))
	if a.Error != "" {
		fmt.Fprintf(tw, "Error\t%s\n", a.Error)
	}
	tw.Flush()
}

func (c *cli) hostsQuarantine(ctx context.Context, args []string, verb string) error {
	fs := c.flags("hosts " + verb)
	reason := fs.String("reason", "", "why (required; recorded in the action and the audit log)")
	incident := fs.String("incident", "", "incident this answers")
	rest, err := c.leaf("hosts "+verb, args, fs, 1, "one host id")
	if err != nil {
		return err
	}
	var a apiv1.Action
	return c.do(ctx, http.MethodPost, "/api/v1/hosts/"+url.PathEscape(rest[0])+"/"+verb, nil,
		apiv1.QuarantineRequest{Reason: *reason, IncidentID: *incident}, &a, func() { c.printAction(&a) })
}

func (c *cli) hostsKill(ctx context.Context, args []string) error {
	fs := c.flags("hosts kill")
	pid := fs.Uint("pid", 0, "process id")
	reason := fs.String("reason", "", "why (required)")
	tree := fs.Bool("tree", false, "kill its descendants too")
	rest, err := c.leaf("hosts kill", args, fs, 1, "one host id")
	if err != nil {
		return err
	}
	var a apiv1.Action
	return c.do(ctx, http.MethodPost, "/api/v1/hosts/"+url.PathEscape(rest[0])+"/kill", nil,
		apiv1.KillRequest{PID: uint32(*pid), Reason: *reason, Tree: *tree}, &a, func() { c.printAction(&a) })
}

func (c *cli) actionsList(ctx context.Context, args []string) error {
	fs := c.flags("actions list")
	host := fs.String("host", "", "only this host")
	kind := fs.String("kind", "", "quarantine, release, kill, block or hunt-credential")
	state := fs.String("state", "", "requested, sent, acked, failed or expired")
	limit := fs.Int("limit", 100, "at most this many")
	if _, err := c.leaf("actions list", args, fs, 0, "no arguments"); err != nil {
		return err
	}
	q := url.Values{"limit": {fmt.Sprint(*limit)}}
	for k, v := range map[string]string{"host": *host, "kind": *kind, "state": *state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out apiv1.ActionList
	return c.do(ctx, http.MethodGet, "/api/v1/actions", q, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tHOST\tKIND\tSTATE\tREQUESTED\tACTOR\tREASON")
		for _, a := range out.Actions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.HostID, a.Kind, a.State, stamp(a.RequestedAt), a.Actor, a.Reason)
		}
		tw.Flush()
	})
}

func (c *cli) actionsShow(ctx context.Context, args []string) error {
	rest, err := c.leaf("actions show", args, nil, 1, "one action id")
	if err != nil {
		return err
	}
	var a apiv1.Action
	return c.do(ctx, http.MethodGet, "/api/v1/actions/"+url.PathEscape(rest[0]), nil, nil, &a, func() { c.printAction(&a) })
}

func (c *cli) printIncident(i *apiv1.Incident) {
	tw := c.tw()
	fmt.Fprintf(tw, "Incident\t%s\nHost\t%s\nRule\t%s\nSeverity\t%s\nStatus\t%s\nCreated\t%s by %s\nAlerts\t%s\nActions\t%s\n",
		i.ID, i.HostID, i.Rule, i.Severity, i.Status, stamp(i.CreatedAt), i.CreatedBy, strings.Join(i.AlertIDs, ", "), strings.Join(i.ActionIDs, ", "))
	if i.Note != "" {
		fmt.Fprintf(tw, "Note\t%s\n", i.Note)
	}
	tw.Flush()
}

func (c *cli) incidentsList(ctx context.Context, args []string) error {
	fs := c.flags("incidents list")
	host := fs.String("host", "", "only this host")
	status := fs.String("status", "", "open, acknowledged or resolved")
	if _, err := c.leaf("incidents list", args, fs, 0, "no arguments"); err != nil {
		return err
	}
	q := url.Values{}
	if *host != "" {
		q.Set("host", *host)
	}
	if *status != "" {
		q.Set("status", *status)
	}
	var out apiv1.IncidentList
	return c.do(ctx, http.MethodGet, "/api/v1/incidents", q, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tHOST\tRULE\tSEVERITY\tSTATUS\tCREATED")
		for _, i := range out.Incidents {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.HostID, i.Rule, i.Severity, i.Status, stamp(i.CreatedAt))
		}
		tw.Flush()
	})
}

func (c *cli) incidentOp(ctx context.Context, args []string, verb string) error {
	name := "incidents " + verb
	fs := c.flags(name)
	note := fs.String("note", "", "a note kept with the incident")
	rest, err := c.leaf(name, args, fs, 1, "one incident id")
	if err != nil {
		return err
	}
	var i apiv1.Incident
	path := "/api/v1/incidents/" + url.PathEscape(rest[0])
	if verb == "" {
		return c.do(ctx, http.MethodGet, path, nil, nil, &i, func() { c.printIncident(&i) })
	}
	return c.do(ctx, http.MethodPost, path+"/"+verb, nil, apiv1.IncidentUpdateRequest{Note: *note}, &i, func() { c.printIncident(&i) })
}

func (c *cli) incidentsCreate(ctx context.Context, args []string) error {
	fs := c.flags("incidents create")
	host := fs.String("host", "", "host id")
	rule := fs.String("rule", "", "rule or reason")
	sev := fs.String("severity", "medium", "low, medium, high or critical")
	title := fs.String("title", "", "title")
	if _, err := c.leaf("incidents create", args, fs, 0, "no arguments"); err != nil {
		return err
	}
	var i apiv1.Incident
	return c.do(ctx, http.MethodPost, "/api/v1/incidents", nil,
		apiv1.CreateIncidentRequest{HostID: *host, Rule: *rule, Severity: *sev, Title: *title}, &i, func() { c.printIncident(&i) })
}

func (c *cli) policiesApply(ctx context.Context, args []string) error {
	fs := c.flags("policies apply")
	comment := fs.String("comment", "", "why this version")
	dry := fs.Bool("dry-run", false, "validate and compile only")
	rest, err := c.leaf("policies apply", args, fs, 1, "one policy file")
	if err != nil {
		return err
	}
	data, err := os.ReadFile(rest[0])
	if err != nil {
		return fmt.Errorf("read policy: %w", err)
	}
	var p apiv1.Policy
	return c.do(ctx, http.MethodPost, "/api/v1/policies", nil,
		apiv1.ApplyPolicyRequest{Source: string(data), Name: rest[0], Comment: *comment, DryRun: *dry}, &p, func() {
			if *dry {
				fmt.Fprintf(c.out, "%s is valid (policy %q)\n", rest[0], p.Name)
				return
			}
			fmt.Fprintf(c.out, "applied %s as version %d\n", rest[0], p.Version)
		})
}

func (c *cli) policiesList(ctx context.Context, args []string) error {
	if _, err := c.leaf("policies list", args, nil, 0, "no arguments"); err != nil {
		return err
	}
	var out apiv1.PolicyList
	return c.do(ctx, http.MethodGet, "/api/v1/policies", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "VERSION\tNAME\tCURRENT\tCREATED\tBY\tFROM\tCOMMENT")
		for _, p := range out.Policies {
			from := ""
			if p.RolledBackFrom > 0 {
				from = fmt.Sprintf("rollback to %d", p.RolledBackFrom)
			}
			fmt.Fprintf(tw, "%d\t%s\t%t\t%s\t%s\t%s\t%s\n", p.Version, p.Name, p.Current, stamp(p.CreatedAt), p.CreatedBy, from, p.Comment)
		}
		tw.Flush()
	})
}

func (c *cli) policiesShow(ctx context.Context, args []string) error {
	rest, err := c.leaf("policies show", args, nil, 1, "one version")
	if err != nil {
		return err
	}
	var p apiv1.Policy
	return c.do(ctx, http.MethodGet, "/api/v1/policies/"+url.PathEscape(rest[0]), nil, nil, &p, func() {
		fmt.Fprintf(c.out, "# version %d (%s), created %s by %s\n%s", p.Version, p.Name, stamp(p.CreatedAt), p.CreatedBy, p.Source)
	})
}

func (c *cli) policiesRollback(ctx context.Context, args []string) error {
	fs := c.flags("policies rollback")
	comment := fs.String("comment", "", "why")
	rest, err := c.leaf("policies rollback", args, fs, 1, "the version to return to")
	if err != nil {
		return err
	}
	var p apiv1.Policy
	return c.do(ctx, http.MethodPost, "/api/v1/policies/"+url.PathEscape(rest[0])+"/rollback", nil,
		apiv1.RollbackRequest{Comment: *comment}, &p, func() {
			fmt.Fprintf(c.out, "version %d now carries version %d's policy\n", p.Version, p.RolledBackFrom)
		})
}

func (c *cli) iocsAdd(ctx context.Context, args []string) error {
	fs := c.flags("iocs add")
	typ := fs.String("type", "", "ip, cidr or sha256")
	value := fs.String("value", "", "the indicator")
	source := fs.String("source", "", "where it came from")
	ttl := fs.String("ttl", "", "expire after (Go duration; default never)")
	if _, err := c.leaf("iocs add", args, fs, 0, "no arguments"); err != nil {
		return err
	}
	var i apiv1.IOC
	return c.do(ctx, http.MethodPost, "/api/v1/iocs", nil,
		apiv1.AddIOCRequest{Type: *typ, Value: *value, Source: *source, TTL: *ttl}, &i, func() { fmt.Fprintln(c.out, i.ID) })
}

func (c *cli) iocsList(ctx context.Context, args []string) error {
	if _, err := c.leaf("iocs list", args, nil, 0, "no arguments"); err != nil {
		return err
	}
	var out apiv1.IOCList
	return c.do(ctx, http.MethodGet, "/api/v1/iocs", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tTYPE\tVALUE\tSOURCE\tEXPIRES")
		for _, i := range out.IOCs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.ID, i.Type, i.Value, i.Source, stamp(i.ExpiresAt))
		}
		tw.Flush()
	})
}

func (c *cli) iocsRemove(ctx context.Context, args []string) error {
	rest, err := c.leaf("iocs remove", args, nil, 1, "one IOC id")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/api/v1/iocs/"+url.PathEscape(rest[0]), nil, nil, nil, func() { fmt.Fprintln(c.out, "removed", rest[0]) })
}

func (c *cli) leaksAdd(ctx context.Context, args []string) error {
	fs := c.flags("leaked-credentials add")
	source := fs.String("source", "", "where the leak was found")
	provider := fs.String("provider", "", "alibaba or aws (default: from the key id)")
	rest, err := c.leaf("leaked-credentials add", args, fs, 1, "one access key id")
	if err != nil {
		return err
	}
	var l apiv1.LeakedCredential
	return c.do(ctx, http.MethodPost, "/api/v1/leaked-credentials", nil,
		apiv1.AddLeakedCredentialRequest{KeyID: rest[0], Source: *source, Provider: *provider}, &l,
		func() { fmt.Fprintf(c.out, "%s %s (%s)\n", l.ID, l.KeyIDMasked, l.Provider) })
}

func (c *cli) leaksList(ctx context.Context, args []string) error {
	if _, err := c.leaf("leaked-credentials list", args, nil, 0, "no arguments"); err != nil {
		return err
	}
	var out apiv1.LeakedCredentialList
	return c.do(ctx, http.MethodGet, "/api/v1/leaked-credentials", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tKEY\tPROVIDER\tSTATUS\tREPORTED BY\tCREATED")
		for _, l := range out.Credentials {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.KeyIDMasked, l.Provider, l.Status, l.ReportedBy, stamp(l.CreatedAt))
		}
		tw.Flush()
	})
}

func (c *cli) tokensCreate(ctx context.Context, args []string) error {
	fs := c.flags("tokens create")
	role := fs.String("role", "", "viewer, responder or admin")
	name := fs.String("name", "", "who or what uses it")
	ttl := fs.String("ttl", "", "lifetime (Go duration; default no expiry)")
	if _, err := c.leaf("tokens create", args, fs, 0, "no arguments"); err != nil {
		return err
	}
	var tok apiv1.APIToken
	return c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, apiv1.CreateAPITokenRequest{Name: *name, Role: *role, TTL: *ttl}, &tok,
		func() { fmt.Fprintln(c.out, tok.Token) })
}

func (c *cli) tokensList(ctx context.Context, args []string) error {
	if _, err := c.leaf("tokens list", args, nil, 0, "no arguments"); err != nil {
		return err
	}
	var out apiv1.APITokenList
	return c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tREVOKED")
		for _, t := range out.Tokens {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\n", t.ID, t.Name, t.Role, stamp(t.CreatedAt), stamp(t.ExpiresAt), t.Revoked)
		}
		tw.Flush()
	})
}

func (c *cli) tokensRevoke(ctx context.Context, args []string) error {
	rest, err := c.leaf("tokens revoke", args, nil, 1, "one token id")
	if err != nil {
		return err
	}
	var t apiv1.APIToken
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+url.PathEscape(rest[0]), nil, nil, &t, func() { fmt.Fprintln(c.out, "revoked", t.ID) })
}

func (c *cli) clusterStatus(ctx context.Context, args []string) error {
	if _, err := c.leaf("cluster status", args, nil, 0, "no arguments"); err != nil {
		return err
	}
	var out apiv1.Cluster
	return c.do(ctx, http.MethodGet, "/api/v1/cluster", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ID\tRAFT ADDRESS\tVOTER\tSTATE\tAPPLIED\tAPI")
		for _, n := range out.Nodes {
			fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%d\t%s\n", n.ID, n.Address, n.Voter, n.State, n.AppliedIndex, n.APIURL)
		}
		tw.Flush()
		fmt.Fprintf(c.out, "leader: %s\n", out.Leader)
	})
}

func (c *cli) clusterRemove(ctx context.Context, args []string) error {
	rest, err := c.leaf("cluster remove-node", args, nil, 1, "one node id")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/api/v1/cluster/nodes/"+url.PathEscape(rest[0]), nil, nil, nil,
		func() { fmt.Fprintln(c.out, "removed", rest[0]) })
}
