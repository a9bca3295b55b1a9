// Command raft benchmarks the controller's replicated state: write
// throughput on a 3-node loopback cluster, failover time (leader killed →
// next successful write) with default and tuned Raft timeouts, and FSM
// snapshot and restore time at 100,000 hosts. It writes JSON to -out.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/controller/fsm"
	"github.com/palisade-sec/palisade/controller/store"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

type throughput struct {
	Proposers     int     `json:"proposers"`
	Writes        int64   `json:"writes"`
	Seconds       float64 `json:"seconds"`
	WritesPerSec  float64 `json:"writes_per_sec"`
	BatchApply    bool    `json:"batch_apply"`
	MaxAppendEnts int     `json:"max_append_entries"`
}

type failover struct {
	Timeouts  string    `json:"timeouts"`
	Heartbeat string    `json:"heartbeat_timeout"`
	Election  string    `json:"election_timeout"`
	Lease     string    `json:"leader_lease_timeout"`
	Trials    int       `json:"trials"`
	P50ms     float64   `json:"p50_ms"`
	P99ms     float64   `json:"p99_ms"`
	Maxms     float64   `json:"max_ms"`
	Samplesms []float64 `json:"samples_ms"`
}

type snapshotResult struct {
	Hosts       int     `json:"hosts"`
	Bytes       int64   `json:"bytes"`
	SnapshotMs  float64 `json:"snapshot_ms"`
	PersistMs   float64 `json:"persist_ms"`
	RestoreMs   float64 `json:"restore_ms"`
	RecordsKept int     `json:"hosts_after_restore"`
}

type results struct {
	Throughput []throughput    `json:"throughput"`
	Failover   []failover      `json:"failover"`
	Snapshot   *snapshotResult `json:"snapshot"`
	Notes      []string        `json:"notes"`
}

var logger = slog.New(slog.NewTextHandler(io.Discard, nil))

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type node struct {
	cfg store.Config
	st  *store.Store
}

type cluster struct {
	nodes []*node
}

func newCluster(dir string, tune func(*store.Config)) (*cluster, error) {
	c := &cluster{}
	for i := range 3 {
		cfg := store.Config{NodeID: fmt.Sprintf("n%d", i+1), DataDir: filepath.Join(dir, fmt.Sprint(i)), RaftAddr: freeAddr(),
			Bootstrap: i == 0, Logger: logger, RaftLogOutput: io.Discard}
		tune(&cfg)
		st, err := store.Open(cfg)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{cfg: cfg, st: st})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !c.nodes[0].st.IsLeader() {
		if ctx.Err() != nil {
			return nil, errors.New("bootstrap node never led")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range c.nodes[1:] {
		if err := c.nodes[0].st.AddVoter(ctx, n.cfg.NodeID, n.st.Addr()); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) close() {
	for _, n := range c.nodes {
		if n.st != nil {
			_ = n.st.Close()
		}
	}
}

func (c *cluster) leader() *node {
	for {
		for _, n := range c.nodes {
			if n.st != nil && n.st.IsLeader() {
				return n
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func cmd(c any) *palisadev1.FSMCommand {
	out := &palisadev1.FSMCommand{Time: timestamppb.Now(), Actor: "bench"}
	switch c := c.(type) {
	case *palisadev1.InitClusterCmd:
		out.Cmd = &palisadev1.FSMCommand_InitCluster{InitCluster: c}
	case *palisadev1.CreateEnrollTokenCmd:
		out.Cmd = &palisadev1.FSMCommand_CreateEnrollToken{CreateEnrollToken: c}
	case *palisadev1.EnrollHostCmd:
		out.Cmd = &palisadev1.FSMCommand_EnrollHost{EnrollHost: c}
	case *palisadev1.CreateActionCmd:
		out.Cmd = &palisadev1.FSMCommand_CreateAction{CreateAction: c}
	}
	return out
}

func seed(ctx context.Context, st *store.Store) error {
	for _, c := range []*palisadev1.FSMCommand{
		cmd(&palisadev1.InitClusterCmd{Info: &palisadev1.ClusterInfo{ClusterId: "c-bench"}}),
		cmd(&palisadev1.CreateEnrollTokenCmd{Token: &palisadev1.EnrollToken{Id: "et", Sha256: "h"}}),
		cmd(&palisadev1.EnrollHostCmd{TokenSha256: "h", Host: &palisadev1.Host{Id: "host-1", Nkey: "U1"}}),
	} {
		if _, err := st.Apply(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

var actionSeq atomic.Int64

func killCmd() *palisadev1.FSMCommand {
	id := actionSeq.Add(1)
	return cmd(&palisadev1.CreateActionCmd{Action: &palisadev1.Action{Id: fmt.Sprintf("act-%d", id), HostId: "host-1",
		Kind: palisadev1.ActionKind_ACTION_KIND_KILL, Pid: uint32(id), Reason: "bench"}})
}

func measureThroughput(dir string, proposers int, d time.Duration, batch bool, maxAppend int) (throughput, error) {
	c, err := newCluster(dir, func(cfg *store.Config) {
		cfg.BatchApply, cfg.MaxAppendEntries = batch, maxAppend
		cfg.SnapshotThreshold = 1 << 30
	})
	if err != nil {
		return throughput{}, err
	}
	defer c.close()
	ctx := context.Background()
	l := c.leader()
	if err := seed(ctx, l.st); err != nil {
		return throughput{}, err
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	start := time.Now()
	for range proposers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := l.st.Apply(ctx, killCmd()); err == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return throughput{Proposers: proposers, Writes: n.Load(), Seconds: el, WritesPerSec: float64(n.Load()) / el,
		BatchApply: batch, MaxAppendEnts: maxAppend}, nil
}

func measureFailover(dir, name string, trials int, hb, el, lease time.Duration) (failover, error) {
	c, err := newCluster(dir, func(cfg *store.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = hb, el, lease
	})
	if err != nil {
		return failover{}, err
	}
	defer c.close()
	ctx := context.Background()
	if err := seed(ctx, c.leader().st); err != nil {
		return failover{}, err
	}
	var samples []float64
	for range trials {
		l := c.leader()
		// Everyone caught up before the kill, so the measure is the
		// election, not replication lag.
		if _, err := l.st.Apply(ctx, killCmd()); err != nil {
			return failover{}, err
		}
		killed := time.Now()
		_ = l.st.Close()
		l.st = nil
		for {
			ok := false
			for _, n := range c.nodes {
				if n.st == nil || !n.st.IsLeader() {
					continue
				}
				actx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := n.st.Apply(actx, killCmd())
				cancel()
				ok = err == nil
			}
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
		samples = append(samples, float64(time.Since(killed).Microseconds())/1000)
		// Restart the killed node from its data dir and let it catch up.
		st, err := store.Open(l.cfg)
		if err != nil {
			return failover{}, err
		}
		l.st = st
		want := c.leader().st.AppliedIndex()
		for st.AppliedIndex() < want {
			time.Sleep(5 * time.Millisecond)
		}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	pct := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return failover{Timeouts: name, Heartbeat: hb.String(), Election: el.String(), Lease: lease.String(), Trials: trials,
		P50ms: pct(0.5), P99ms: pct(0.99), Maxms: s[len(s)-1], Samplesms: samples}, nil
}

type fileSink struct {
	*os.File
}

func (f fileSink) ID() string    { return "bench" }
func (f fileSink) Cancel() error { return f.Close() }

func measureSnapshot(dir string, hosts int) (*snapshotResult, error) {
	f := fsm.New(logger)
	idx := uint64(0)
	apply := func(c *palisadev1.FSMCommand) error {
		data, err := proto.Marshal(c)
		if err != nil {
			return err
		}
		idx++
		if r := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: data}).(*fsm.Result); r.Err != nil {
			return r.Err
		}
		return nil
	}
	if err := apply(cmd(&palisadev1.InitClusterCmd{Info: &palisadev1.ClusterInfo{ClusterId: "c-bench"}})); err != nil {
		return nil, err
	}
	for i := range hosts {
		h := fmt.Sprintf("h%d", i)
		if err := apply(cmd(&palisadev1.CreateEnrollTokenCmd{Token: &palisadev1.EnrollToken{Id: "et" + h, Sha256: h}})); err != nil {
			return nil, err
		}
		if err := apply(cmd(&palisadev1.EnrollHostCmd{TokenSha256: h, Host: &palisadev1.Host{Id: "host-" + h, Hostname: h + ".example",
			Nkey: "U" + h, Labels: map[string]string{"env": "prod", "team": "t" + fmt.Sprint(i%50)}}})); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, "snap.bin")
	start := time.Now()
	snap, err := f.Snapshot()
	if err != nil {
		return nil, err
	}
	snapMs := float64(time.Since(start).Microseconds()) / 1000
	file, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := snap.Persist(fileSink{file}); err != nil {
		return nil, err
	}
	persistMs := float64(time.Since(start).Microseconds()) / 1000
	fi, _ := os.Stat(path)
	g := fsm.New(logger)
	rf, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := g.Restore(rf); err != nil {
		return nil, err
	}
	restoreMs := float64(time.Since(start).Microseconds()) / 1000
	n := 0
	g.Read(func(s *fsm.State) { n = len(s.Hosts()) })
	return &snapshotResult{Hosts: hosts, Bytes: fi.Size(), SnapshotMs: snapMs, PersistMs: persistMs, RestoreMs: restoreMs, RecordsKept: n}, nil
}

func main() {
	out := flag.String("out", "bench/results/raft.json", "where to write the JSON results")
	trials := flag.Int("trials", 20, "failover trials per timeout setting")
	dur := flag.Duration("duration", 5*time.Second, "throughput run length")
	hosts := flag.Int("hosts", 100000, "hosts in the snapshot benchmark")
	flag.Parse()
	if err := run(*out, *trials, *dur, *hosts); err != nil {
		fmt.Fprintln(os.Stderr, "bench/raft:", err)
		os.Exit(1)
	}
}

func run(out string, trials int, dur time.Duration, hosts int) error {
	dir, err := os.MkdirTemp("", "bench-raft-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var r results
	for _, tc := range []struct {
		proposers int
		batch     bool
		maxAppend int
	}{{1, false, 0}, {64, false, 0}, {64, true, 256}, {256, true, 1024}} {
		tp, err := measureThroughput(filepath.Join(dir, fmt.Sprintf("tp-%d-%t", tc.proposers, tc.batch)), tc.proposers, dur, tc.batch, tc.maxAppend)
		if err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		fmt.Printf("throughput: %4d proposers batch=%-5t max_append=%4d: %8.0f writes/s\n", tp.Proposers, tp.BatchApply, tp.MaxAppendEnts, tp.WritesPerSec)
		r.Throughput = append(r.Throughput, tp)
	}
	for _, tc := range []struct {
		name          string
		hb, el, lease time.Duration
	}{
		{"default", 1000 * time.Millisecond, 1000 * time.Millisecond, 500 * time.Millisecond},
		{"tuned", 250 * time.Millisecond, 250 * time.Millisecond, 150 * time.Millisecond},
	} {
		fo, err := measureFailover(filepath.Join(dir, "fo-"+tc.name), tc.name, trials, tc.hb, tc.el, tc.lease)
		if err != nil {
			return fmt.Errorf("failover %s: %w", tc.name, err)
		}
		fmt.Printf("failover %-7s (heartbeat %s, election %s): p50 %.0f ms, p99 %.0f ms over %d trials\n", tc.name, tc.hb, tc.el, fo.P50ms, fo.P99ms, fo.Trials)
		r.Failover = append(r.Failover, fo)
	}
	sn, err := measureSnapshot(dir, hosts)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	fmt.Printf("snapshot at %d hosts: %d bytes, snapshot %.0f ms + persist %.0f ms, restore %.0f ms\n", sn.Hosts, sn.Bytes, sn.SnapshotMs, sn.PersistMs, sn.RestoreMs)
	r.Snapshot = sn
	r.Notes = []string{
		"3 nodes on loopback in one process; raft-boltdb fsyncs every log batch, so throughput is bound by fsync latency times batch size",
		"failover: leader's store closed (its transport too), time until a write commits on the new leader; the old node is restarted and caught up between trials",
		"snapshot: FSM snapshot (copy under the read lock), persist (length-delimited protobuf to a file) and restore (decode into fresh state)",
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}
