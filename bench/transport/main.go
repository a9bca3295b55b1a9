// Command transport-bench measures Palisade's transport and containment
// loop on loopback, inside one run (no fixed wall-clock thresholds are
// asserted; targets are reported beside the numbers):
//
//   - time to contain: from POST /api/v1/hosts/{id}/quarantine returning
//     to the kernel quarantine flag of a REAL agent (real sensors, in a
//     child cgroup this program creates, never the root) being set; p50,
//     p99 and max over -contain-trials quarantine/release pairs. Needs
//     root and BPF; skipped (and said so) otherwise;
//   - controller ingest with zero loss: simulated agents (internal/sim)
//     spool events and drain them through JetStream into the leader's
//     ingest; every host sequence number must arrive exactly once;
//   - a fleet of simulated agents heartbeating against a controller run
//     as its own process (bin/palisade-controller), so its CPU time and
//     RSS are its own; then a policy change and an IOC pushed through the
//     API, timed until every simulated agent verified and applied it.
//
// Usage (root for the containment part):
//
//	go run ./bench/transport [-out bench/results/transport.json] [-fleet 1000,10000]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/bpftest"
	"github.com/palisade-sec/palisade/internal/sim"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

type latency struct {
	Trials int     `json:"trials"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MinMs  float64 `json:"min_ms"`
}

func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		i = min(max(i, 0), len(s)-1)
		return ms(s[i])
	}
	return latency{Trials: len(s), P50Ms: q(0.50), P90Ms: q(0.90), P99Ms: q(0.99), MaxMs: ms(s[len(s)-1]), MinMs: ms(s[0])}
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }
func round(f float64) float64    { return float64(int64(f*100+0.5)) / 100 }

type containResult struct {
	Skipped     string  `json:"skipped,omitempty"`
	Quarantine  latency `json:"quarantine"`
	Release     latency `json:"release"`
	TargetP99Ms float64 `json:"target_p99_ms"`
	Met         bool    `json:"met"`
	Measured    string  `json:"measured"`
}

type ingestResult struct {
	Agents        int     `json:"agents"`
	EventsPerHost int     `json:"events_per_agent"`
	Events        int     `json:"events"`
	Seconds       float64 `json:"seconds"`
	EventsPerSec  float64 `json:"events_per_sec"`
	Duplicates    int     `json:"duplicates"`
	Missing       int     `json:"missing"`
	SpoolLost     uint64  `json:"spool_lost"`
	ExactlyOnce   bool    `json:"exactly_once"`
	Target        float64 `json:"target_events_per_sec"`
	Met           bool    `json:"met"`
	Measured      string  `json:"measured"`
	BenchCPUCores float64 `json:"bench_process_cpu_cores"`
}

type fleetStep struct {
	Agents            int     `json:"agents"`
	Online            int     `json:"online"`
	EnrolSeconds      float64 `json:"enrol_and_connect_seconds"`
	HeartbeatInterval string  `json:"heartbeat_interval"`
	WindowSeconds     float64 `json:"window_seconds"`
	ControllerCPU     float64 `json:"controller_cpu_cores"`
	ControllerRSSMB   float64 `json:"controller_rss_mb"`
	ControllerHWMMB   float64 `json:"controller_peak_rss_mb"`
	SimCPU            float64 `json:"sim_cpu_cores"`
	SimRSSMB          float64 `json:"sim_rss_mb"`
	SimKBPerAgent     float64 `json:"sim_kb_per_agent"`
	CPUTargetCores    float64 `json:"controller_cpu_target_cores"`
	CPUMet            bool    `json:"controller_cpu_met"`
	Policy            *push   `json:"policy_change,omitempty"`
	IOC               *push   `json:"ioc_block,omitempty"`
	Reconnects        uint64  `json:"sim_nats_reconnects"`
	Note              string  `json:"note,omitempty"`
}

type push struct {
	Reached     int     `json:"agents_reached"`
	AllMs       float64 `json:"all_agents_ms"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	TargetAllMs float64 `json:"target_all_ms"`
	Met         bool    `json:"met"`
}

type result struct {
	Time    time.Time     `json:"time"`
	CPUs    int           `json:"cpus"`
	Kernel  string        `json:"kernel"`
	Contain containResult `json:"time_to_contain"`
	Ingest  ingestResult  `json:"ingest"`
	Fleet   []fleetStep   `json:"fleet"`
	Notes   []string      `json:"notes"`
}

func main() {
	out := flag.String("out", "bench/results/transport.json", "result file")
	trials := flag.Int("contain-trials", 100, "quarantine/release pairs")
	ingAgents := flag.Int("ingest-agents", 32, "simulated agents for the ingest benchmark")
	ingEvents := flag.Int("ingest-events", 10000, "events per agent for the ingest benchmark")
	fleetSizes := flag.String("fleet", "1000,10000", "fleet sizes, comma-separated, grown in one controller")
	hbInterval := flag.Duration("heartbeat-interval", 10*time.Second, "simulated agents' heartbeat interval")
	window := flag.Duration("window", 30*time.Second, "CPU measurement window per fleet size")
	enrolBudget := flag.Duration("enrol-budget", 3*time.Minute, "longest time to spend growing the fleet to one size")
	controllerBin := flag.String("controller", "bin/palisade-controller", "controller binary for the fleet benchmark")
	skip := flag.String("skip", "", "comma-separated parts to skip: contain, ingest, fleet")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("BENCH_LOG") == "1" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var sizes []int
	for _, s := range strings.Split(*fleetSizes, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("-fleet: %q", s))
		}
		sizes = append(sizes, n)
	}
	if len(sizes) > 0 {
		if err := sim.RaiseFileLimit(slices.Max(sizes) * 2); err != nil {
			fmt.Fprintln(os.Stderr, "warning:", err)
		}
	}
	res := result{Time: time.Now().UTC(), CPUs: runtime.NumCPU(), Kernel: kernel()}
	res.Notes = append(res.Notes,
		"loopback only; controller, NATS and the simulated or real agents share this machine's CPUs",
		"simulated agents (internal/sim) speak the real protocol with real identities but enforce nothing")
	skipped := func(p string) bool { return slices.Contains(strings.Split(*skip, ","), p) }

	if !skipped("contain") {
		fmt.Println("== time to contain")
		res.Contain = benchContain(log, *trials)
		fmt.Printf("   quarantine p50 %.2f ms p99 %.2f ms; release p50 %.2f ms (%s)\n",
			res.Contain.Quarantine.P50Ms, res.Contain.Quarantine.P99Ms, res.Contain.Release.P50Ms, res.Contain.Skipped)
	}
	if !skipped("ingest") {
		fmt.Println("== ingest")
		r, err := benchIngest(log, *ingAgents, *ingEvents)
		if err != nil {
			fatal(fmt.Errorf("ingest: %w", err))
		}
		res.Ingest = r
		fmt.Printf("   %d events in %.2fs: %.0f events/s, exactly once: %v\n", r.Events, r.Seconds, r.EventsPerSec, r.ExactlyOnce)
	}
	if !skipped("fleet") && len(sizes) > 0 {
		fmt.Println("== fleet")
		steps, err := benchFleet(log, *controllerBin, sizes, *hbInterval, *window, *enrolBudget)
		res.Fleet = steps
		if err != nil {
			res.Notes = append(res.Notes, "fleet: "+err.Error())
			fmt.Fprintln(os.Stderr, "fleet:", err)
		}
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fatal(err)
	}
	fmt.Println("wrote", *out)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "transport-bench:", err)
	os.Exit(1)
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return ""
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func randName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startController runs a single-node controller in this process.
func startController(log *slog.Logger, dir string, onEvents func(string, []*palisadev1.Event)) (*server.Controller, *apiclient.Client, string, error) {
	c, err := server.Start(context.Background(), server.Config{
		NodeID: "n1", DataDir: dir, APIAddr: "127.0.0.1:0", RaftAddr: freeAddr(), NATSListen: "127.0.0.1:-1",
		Bootstrap: true, Logger: log, OnIngestEvents: onEvents,
	})
	if err != nil {
		return nil, nil, "", err
	}
	tok, err := os.ReadFile(c.AdminTokenPath())
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	cl, err := apiclient.New(c.APIURL(), strings.TrimSpace(string(tok)))
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	return c, cl, strings.TrimSpace(string(tok)), nil
}

// ---- time to contain ----

func benchContain(log *slog.Logger, trials int) containResult {
	r := containResult{TargetP99Ms: 100,
		Measured: "POST /api/v1/hosts/{id}/quarantine (or /release) returned → the agent's pinned BPF quarantine flag read back set (cleared), polled every 50µs; a real agent (agent/daemon) with real sensors in a child cgroup"}
	if os.Geteuid() != 0 {
		r.Skipped = "not root: needs BPF"
		return r
	}
	if err := bpftest.EnsureMounts(); err != nil {
		r.Skipped = "mounts: " + err.Error()
		return r
	}
	cg := filepath.Join(bpftest.CgroupRoot, randName("palisade-bench-"))
	if err := os.Mkdir(cg, 0o755); err != nil {
		r.Skipped = "create cgroup: " + err.Error()
		return r
	}
	defer func() {
		if err := syscall.Rmdir(cg); err != nil {
			fmt.Fprintln(os.Stderr, "remove cgroup:", err)
		}
	}()
	pins := filepath.Join(bpftest.BPFFS, randName("palisade-bench-"))
	defer func() {
		_ = sensor.Cleanup(pins)
		_ = os.RemoveAll(pins)
	}()
	tmp, err := os.MkdirTemp("", "palisade-bench-contain-")
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	defer os.RemoveAll(tmp)
	c, cl, _, err := startController(log, filepath.Join(tmp, "controller"), nil)
	if err != nil {
		r.Skipped = "controller: " + err.Error()
		return r
	}
	defer c.Close()
	ctx := context.Background()
	tok, err := cl.CreateEnrollToken(ctx, apiv1.CreateEnrollTokenRequest{TTL: "1h"})
	if err != nil {
		r.Skipped = "enrolment token: " + err.Error()
		return r
	}
	a, err := daemon.Start(ctx, daemon.Config{
		StateDir: filepath.Join(tmp, "agent"), ControllerURL: c.APIURL(), EnrollToken: tok.Token,
		HeartbeatInterval: time.Second, CgroupPath: cg, PinDir: pins, Logger: log,
	})
	if err != nil {
		r.Skipped = "agent: " + err.Error()
		return r
	}
	defer a.Close()
	host := a.HostID()
	flag := func() bool {
		q, err := a.Sensor().Quarantined()
		return err == nil && q
	}
	waitState := func(id, want string) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var act apiv1.Action
			if err := cl.Do(ctx, http.MethodGet, "/api/v1/actions/"+id, nil, nil, &act); err != nil {
				return err
			}
			if act.State == want {
				return nil
			}
			if act.State == "failed" || act.State == "expired" || time.Now().After(deadline) {
				return fmt.Errorf("action %s: %s %s", id, act.State, act.Error)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// The first command waits for the agent's command consumer; warm up.
	var q, rel []time.Duration
	for i := -1; i < trials; i++ {
		for _, on := range []bool{true, false} {
			path := "/release"
			if on {
				path = "/quarantine"
			}
			var act apiv1.Action
			if err := cl.Do(ctx, http.MethodPost, "/api/v1/hosts/"+host+path, nil,
				apiv1.QuarantineRequest{Reason: "bench"}, &act); err != nil {
				r.Skipped = "request: " + err.Error()
				return r
			}
			t0 := time.Now()
			deadline := t0.Add(30 * time.Second)
			for flag() != on {
				if time.Now().After(deadline) {
					r.Skipped = fmt.Sprintf("trial %d: flag not %v after 30s", i, on)
					return r
				}
				time.Sleep(50 * time.Microsecond)
			}
			d := time.Since(t0)
			if i >= 0 {
				if on {
					q = append(q, d)
				} else {
					rel = append(rel, d)
				}
			}
			if err := waitState(act.ID, "acked"); err != nil {
				r.Skipped = err.Error()
				return r
			}
		}
	}
	r.Quarantine, r.Release = summarize(q), summarize(rel)
	r.Met = r.Quarantine.P99Ms <= r.TargetP99Ms
	return r
}

// ---- ingest ----

func benchIngest(log *slog.Logger, agents, perAgent int) (ingestResult, error) {
	r := ingestResult{Agents: agents, EventsPerHost: perAgent, Events: agents * perAgent, Target: 50000,
		Measured: "events spooled up front by every simulated agent (batches of 256), then the time until the leader's ingest handed the last one to OnIngestEvents: spool → JetStream (acked publish) → durable consumer → ingest de-duplication; controller in this process"}
	tmp, err := os.MkdirTemp("", "palisade-bench-ingest-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	var (
		mu    sync.Mutex
		seen  = map[string][]uint8{}
		first = map[string]uint64{}
		total atomic.Int64
		dups  atomic.Int64
	)
	onEvents := func(host string, evs []*palisadev1.Event) {
		mu.Lock()
		defer mu.Unlock()
		s, f := seen[host], first[host]
		if s == nil {
			return // not one of the measured hosts (or not yet registered)
		}
		for _, ev := range evs {
			i := ev.GetSeq() - f
			if ev.GetSeq() < f || i >= uint64(len(s)) {
				continue
			}
			if s[i] > 0 {
				dups.Add(1)
			}
			s[i]++
			total.Add(1)
		}
	}
	c, _, tok, err := startController(log, filepath.Join(tmp, "controller"), onEvents)
	if err != nil {
		return r, err
	}
	defer c.Close()
	f, err := sim.Start(context.Background(), sim.Config{
		API: c.APIURL(), AdminToken: tok, StateDir: filepath.Join(tmp, "sim"),
		HeartbeatInterval: time.Second, SpoolBytes: 256 << 20, SegmentBytes: 8 << 20, Logger: log,
	}, agents)
	if err != nil {
		return r, err
	}
	defer f.Close()
	mu.Lock()
	for _, a := range f.Agents() {
		seen[a.HostID()] = make([]uint8, perAgent)
		first[a.HostID()] = a.NextSeq()
	}
	mu.Unlock()
	cpu0 := selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, agents)
	for _, a := range f.Agents() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.AppendEvents(perAgent); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return r, err
	}
	deadline := start.Add(3 * time.Minute)
	for total.Load() < int64(r.Events) {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	r.BenchCPUCores = round((selfCPU() - cpu0).Seconds() / el.Seconds())
	r.Seconds = round(el.Seconds())
	r.EventsPerSec = float64(int64(float64(total.Load()) / el.Seconds()))
	time.Sleep(500 * time.Millisecond) // late duplicates would show up here
	mu.Lock()
	for _, s := range seen {
		for _, n := range s {
			if n == 0 {
				r.Missing++
			}
		}
	}
	mu.Unlock()
	r.Duplicates = int(dups.Load())
	r.SpoolLost = f.Stats().Lost
	r.ExactlyOnce = r.Missing == 0 && r.Duplicates == 0 && r.SpoolLost == 0
	r.Met = r.ExactlyOnce && r.EventsPerSec >= r.Target
	return r, nil
}

// ---- fleet ----

// proc is a child process's CPU time and memory, from /proc.
type proc struct{ pid int }

func (p proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ
}

func (p proc) mem() (rssMB, hwmMB float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			rssMB = round(kb / 1024)
		case "VmHWM":
			hwmMB = round(kb / 1024)
		}
	}
	return
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchFleet(log *slog.Logger, bin string, sizes []int, hb, window, budget time.Duration) ([]fleetStep, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (make bench builds it)", bin, err)
	}
	tmp, err := os.MkdirTemp("", "palisade-bench-fleet-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dataDir := filepath.Join(tmp, "controller")
	api := freeAddr()
	logFile, err := os.Create(filepath.Join(tmp, "controller.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "--node-id", "n1", "--data-dir", dataDir, "--api-addr", api,
		"--raft-addr", freeAddr(), "--nats-listen", freeAddr(), "--bootstrap", "--log-level", "warn",
		"--config", filepath.Join(tmp, "controller.yaml"))
	// An empty configuration file: nothing from /etc/palisade applies.
	if err := os.WriteFile(filepath.Join(tmp, "controller.yaml"), nil, 0o600); err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "PALISADE_CONTROLLER_CONFIG=")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ctrl := proc{cmd.Process.Pid}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	var tok []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		tok, err = os.ReadFile(filepath.Join(dataDir, server.AdminTokenFile))
		if err == nil && len(tok) > 0 {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("controller exited: %v (log %s)", waitErr, tail(logFile.Name()))
		default:
		}
		if time.Now().After(deadline) {
			return nil, errors.New("controller did not write its admin token within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl, err := apiclient.New("http://"+api, strings.TrimSpace(string(tok)))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()

	var (
		target   atomic.Uint64 // policy version, or 0
		iocValue atomic.Value  // string
		pushT0   atomic.Int64
		polMu    sync.Mutex
		polTimes []time.Duration
		iocTimes []time.Duration
		polSeen  = map[*sim.Agent]bool{}
		iocSeen  = map[*sim.Agent]bool{}
	)
	iocValue.Store("")
	onPolicy := func(a *sim.Agent, b *palisadev1.PolicyBundle) {
		t0 := pushT0.Load()
		if t0 == 0 {
			return
		}
		d := time.Since(time.Unix(0, t0))
		polMu.Lock()
		defer polMu.Unlock()
		if v := target.Load(); v != 0 && b.GetVersion() == v && !polSeen[a] {
			polSeen[a] = true
			polTimes = append(polTimes, d)
		}
		if v := iocValue.Load().(string); v != "" && !iocSeen[a] {
			for _, i := range b.GetIocs() {
				if strings.Contains(i, v) {
					iocSeen[a] = true
					iocTimes = append(iocTimes, d)
					break
				}
			}
		}
	}
	f, err := sim.New(sim.Config{
		API: "http://" + api, AdminToken: strings.TrimSpace(string(tok)), StateDir: filepath.Join(tmp, "sim"),
		HeartbeatInterval: hb, EnrollConcurrency: 32, OnPolicy: onPolicy, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var steps []fleetStep
	for si, n := range sizes {
		st := fleetStep{Agents: n, HeartbeatInterval: hb.String(), CPUTargetCores: 1}
		have := len(f.Agents())
		t0 := time.Now()
		actx, cancel := context.WithTimeout(ctx, budget)
		err := f.Add(actx, n-have)
		cancel()
		st.EnrolSeconds = round(time.Since(t0).Seconds())
		fmt.Printf("   %d agents: enrolled and connected %d in %.0fs\n", n, len(f.Agents()), st.EnrolSeconds)
		if err != nil {
			st.Note = fmt.Sprintf("only %d of %d agents started within the %s budget: %v", len(f.Agents()), n, budget, err)
		}
		// Every simulated agent online in the controller's view.
		wait := time.Now().Add(2*hb + 30*time.Second)
		for {
			st.Online = onlineCount(ctx, cl)
			if st.Online >= len(f.Agents()) || time.Now().After(wait) {
				break
			}
			time.Sleep(time.Second)
		}
		time.Sleep(min(hb, 10*time.Second)) // settle after the enrolment burst
		c0, s0, w0 := ctrl.cpu(), selfCPU(), time.Now()
		time.Sleep(window)
		el := time.Since(w0).Seconds()
		st.WindowSeconds = round(el)
		st.ControllerCPU = round((ctrl.cpu() - c0).Seconds() / el)
		st.SimCPU = round((selfCPU() - s0).Seconds() / el)
		st.ControllerRSSMB, st.ControllerHWMMB = ctrl.mem()
		st.SimRSSMB, _ = proc{os.Getpid()}.mem()
		if k := len(f.Agents()); k > 0 {
			st.SimKBPerAgent = round(st.SimRSSMB * 1024 / float64(k))
		}
		st.CPUMet = st.ControllerCPU <= st.CPUTargetCores
		fmt.Printf("   %d agents online %d: controller %.2f cores, %.0f MB; sim %.2f cores, %.0f MB\n",
			n, st.Online, st.ControllerCPU, st.ControllerRSSMB, st.SimCPU, st.SimRSSMB)

		// A policy change, then an IOC, each until every agent applied it.
		k := len(f.Agents())
		polMu.Lock()
		polTimes, iocTimes = nil, nil
		clear(polSeen)
		clear(iocSeen)
		polMu.Unlock()
		var pol apiv1.Policy
		src := fmt.Sprintf("apiVersion: palisade/v1\nkind: Policy\nmetadata: {name: bench}\nspec:\n  mode: enforce\n  network:\n    deny: [\"203.0.113.%d/32\"]\n", si+1)
		pushT0.Store(0)
		err = cl.Do(ctx, http.MethodPost, "/api/v1/policies", nil, apiv1.ApplyPolicyRequest{Name: "bench.yaml", Source: src}, &pol)
		if err != nil {
			return append(steps, st), fmt.Errorf("apply policy: %w", err)
		}
		target.Store(pol.Version)
		pushT0.Store(time.Now().UnixNano())
		st.Policy = waitPush(&polMu, &polTimes, k, 60*time.Second)
		target.Store(0)
		fmt.Printf("   policy v%d on %d/%d agents in %.0f ms\n", pol.Version, st.Policy.Reached, k, st.Policy.AllMs)

		ioc := fmt.Sprintf("198.51.100.%d", si+1)
		pushT0.Store(0)
		iocValue.Store(ioc)
		if err := cl.Do(ctx, http.MethodPost, "/api/v1/iocs", nil, apiv1.AddIOCRequest{Type: "ip", Value: ioc, Source: "bench"}, nil); err != nil {
			return append(steps, st), fmt.Errorf("add ioc: %w", err)
		}
		pushT0.Store(time.Now().UnixNano())
		st.IOC = waitPush(&polMu, &iocTimes, k, 60*time.Second)
		iocValue.Store("")
		fmt.Printf("   IOC %s on %d/%d agents in %.0f ms\n", ioc, st.IOC.Reached, k, st.IOC.AllMs)
		st.Reconnects = f.Stats().Reconnects
		steps = append(steps, st)
		if err != nil {
			break
		}
	}
	return steps, nil
}

func waitPush(mu *sync.Mutex, times *[]time.Duration, want int, timeout time.Duration) *push {
	p := &push{TargetAllMs: 2000}
	deadline := time.Now().Add(timeout)
	for {
		mu.Lock()
		n := len(*times)
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	l := summarize(*times)
	p.Reached, p.P50Ms, p.P99Ms = len(*times), l.P50Ms, l.P99Ms
	if p.Reached >= want {
		p.AllMs = l.MaxMs
		p.Met = p.AllMs <= p.TargetAllMs
	} else {
		p.AllMs = -1
	}
	return p
}

func onlineCount(ctx context.Context, cl *apiclient.Client) int {
	hl, err := cl.Hosts(ctx)
	if err != nil {
		return 0
	}
	n := 0
	for _, h := range hl.Hosts {
		if h.Online {
			n++
		}
	}
	return n
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
