package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/palisade-sec/palisade/internal/apiv1"
)

// credsLeaked is `palisadectl creds leaked add|list|blast-radius ...`, the
// issue's spelling of the leaked-credentials commands.
func (c *cli) credsLeaked(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"creds leaked takes add KEY_ID, list or blast-radius ID"}
	}
	switch args[0] {
	case "add":
		return c.leaksAdd(ctx, args[1:])
	case "list":
		return c.leaksList(ctx, args[1:])
	case "blast-radius":
		return c.leaksBlastRadius(ctx, args[1:])
	}
	return usageError{fmt.Sprintf("unknown command %q for creds leaked", args[0])}
}

// leaksBlastRadius shows where agents found a leaked key.
func (c *cli) leaksBlastRadius(ctx context.Context, args []string) error {
	rest, err := c.leaf("leaked-credentials blast-radius", args, nil, 1, "one leaked credential id")
	if err != nil {
		return err
	}
	var br apiv1.BlastRadius
	return c.do(ctx, http.MethodGet, "/api/v1/leaked-credentials/"+rest[0]+"/blast-radius", nil, nil, &br, func() {
		fmt.Fprintf(c.out, "%s %s: %d host(s) %s\n", br.ID, br.Key, len(br.Hosts), strings.Join(br.Hosts, " "))
		tw := c.tw()
		fmt.Fprintln(tw, "HOST\tWHERE\tDETAIL")
		for _, f := range br.Files {
			fmt.Fprintf(tw, "%s\tfile\t%s:%s\n", f.Host, f.Path, f.Line)
		}
		for _, p := range br.Processes {
			state := "running"
			if p.Killed {
				state = "killed"
			}
			fmt.Fprintf(tw, "%s\tprocess\t%s pid %d (%s) %s\n", p.Host, p.Exe, p.PID, p.Where, state)
		}
		tw.Flush()
	})
}

// incidentAlerts shows the alerts of an incident.
func (c *cli) incidentAlerts(ctx context.Context, args []string) error {
	rest, err := c.leaf("incidents alerts", args, nil, 1, "one incident id")
	if err != nil {
		return err
	}
	var out struct {
		Incident string            `json:"incident"`
		Alerts   []json.RawMessage `json:"alerts"`
	}
	return c.do(ctx, http.MethodGet, "/api/v1/incidents/"+rest[0]+"/alerts", nil, nil, &out, func() {
		tw := c.tw()
		fmt.Fprintln(tw, "ALERT\tRULE\tSEVERITY\tPROCESS\tRESPONSE")
		for _, raw := range out.Alerts {
			var a struct {
				ID       string            `json:"id"`
				Rule     string            `json:"rule"`
				Severity string            `json:"severity"`
				Response string            `json:"response"`
				Taken    bool              `json:"response_taken"`
				Labels   map[string]string `json:"labels"`
			}
			_ = json.Unmarshal(raw, &a)
			resp := a.Response
			if a.Taken {
				resp += " (taken)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Rule, a.Severity, a.Labels["process"], resp)
		}
		tw.Flush()
	})
}
