package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"google.golang.org/protobuf/encoding/protojson"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func (c *cli) hostsEvents(ctx context.Context, args []string) error {
	fs := c.flags("hosts events")
	kind := fs.String("kind", "", "exec, exit, file or connect (default: all)")
	limit := fs.Int("limit", 50, "at most this many events")
	// The host id may come before the flags.
	var host string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		host, args = args[0], args[1:]
	}
	rest, err := c.parseLeaf("hosts events", args, fs)
	if err != nil {
		return err
	}
	if host == "" && len(rest) == 1 {
		host, rest = rest[0], nil
	}
	if host == "" || len(rest) > 0 {
		return usageError{"hosts events takes one host id"}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := map[string][]string{"limit": {fmt.Sprint(*limit)}}
	if *kind != "" {
		q["kind"] = []string{*kind}
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := cl.Do(ctx, "GET", "/api/v1/hosts/"+host+"/events", q, nil, &out); err != nil {
		return err
	}
	if c.output == "json" {
		return c.json(out)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tPID\tPPID\tUID\tEXE\tVERDICT\tDETAIL")
	for _, raw := range out.Events {
		var ev palisadev1.Event
		if err := protojson.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		p := ev.GetProcess()
		k, verdict, detail := describe(&ev)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", ev.GetSeq(), ev.GetTime().AsTime().Format("15:04:05.000"),
			k, p.GetPid(), p.GetPpid(), p.GetUid(), p.GetExePath(), verdict, detail)
	}
	return tw.Flush()
}

func describe(ev *palisadev1.Event) (kind, verdict, detail string) {
	short := func(v palisadev1.Verdict) string { return strings.ToLower(strings.TrimPrefix(v.String(), "VERDICT_")) }
	switch k := ev.GetKind().(type) {
	case *palisadev1.Event_Exec:
		return "exec", short(k.Exec.GetVerdict()), strings.Join(ev.GetProcess().GetArgv(), " ")
	case *palisadev1.Event_Exit:
		return "exit", "", fmt.Sprintf("code=%d signal=%d", k.Exit.GetExitCode(), k.Exit.GetSignal())
	case *palisadev1.Event_FileOpen:
		return "file", short(k.FileOpen.GetVerdict()), k.FileOpen.GetPath()
	case *palisadev1.Event_Connect:
		return "connect", short(k.Connect.GetVerdict()), fmt.Sprintf("%s %s:%d %s", k.Connect.GetProtocol(), k.Connect.GetDstAddr(), k.Connect.GetDstPort(), k.Connect.GetReason())
	}
	return "?", "", ""
}
