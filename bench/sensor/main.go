// Command sensor-bench measures the cost of Palisade's kernel sensors, as
// ratios inside one run, in a child cgroup it creates (never the root):
//
//   - fork+exec loop of a tiny static binary, sensors attached vs detached
//     (rounds alternate, so drift on a shared VM hits both sides);
//   - TCP connect loop on loopback, likewise;
//   - the exec rate with parallel exec loops, and the ring-buffer drops;
//   - the agent's (this process's) RSS and CPU, idle and under the loop.
//
// Usage (root): go run ./bench/sensor [-runs 20000] [-out bench/results/sensor.json]
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/sensor"
)

const cgroupRoot = "/sys/fs/cgroup/unified"

// cost is what one helper loop took: wall time, and the CPU time (user +
// sys) of the helper and the children it waited for.
type cost struct{ wall, cpu time.Duration }

func printCost(start time.Time) {
	var self, kids unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self)
	unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	cpu := self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano()
	fmt.Println(time.Since(start).Nanoseconds(), cpu)
}

// ratio compares a loop with sensors detached, attached with the whole
// agent side running (event reader, enrichment: "attached"), and attached
// with the user-space side closed ("kernel_only": the programs alone; the
// ring buffer fills and further records are dropped, which is cheaper than
// a successful reserve, so this slightly underestimates the kernel cost).
type ratio struct {
	Runs                  int       `json:"runs_per_side"`
	Rounds                int       `json:"rounds"`
	DetachedNsPerOp       float64   `json:"detached_ns_per_op"`
	AttachedNsPerOp       float64   `json:"attached_ns_per_op"`
	KernelOnlyNsPerOp     float64   `json:"kernel_only_ns_per_op"`
	OverheadPct           float64   `json:"overhead_pct"`
	KernelOnlyOverheadPct float64   `json:"kernel_only_overhead_pct"`
	RoundOverheadPct      []float64 `json:"round_overhead_pct"`
	MedianRoundPct        float64   `json:"median_round_overhead_pct"`
	KernelOnlyMedianPct   float64   `json:"kernel_only_median_round_overhead_pct"`
	// CPU time (user+sys) the workload itself used per op: BPF programs run
	// in the workload's context, so this isolates their cost from the
	// scheduling noise of a shared VM. The agent's own CPU is reported
	// under "agent".
	DetachedCPUNsPerOp  float64 `json:"detached_cpu_ns_per_op"`
	AttachedCPUNsPerOp  float64 `json:"attached_cpu_ns_per_op"`
	CPUOverheadPct      float64 `json:"cpu_overhead_pct"`
	CPUMedianRoundPct   float64 `json:"cpu_median_round_overhead_pct"`
	KernelOnlyCPUMedian float64 `json:"kernel_only_cpu_median_round_overhead_pct"`
	// Exact in-kernel cost from the kernel's BPF run-time statistics
	// (kernel.bpf_stats_enabled, on only for a separate run): total program
	// run time per op, and that as a share of a detached op's wall time.
	BPFNsPerOp        float64            `json:"bpf_ns_per_op"`
	BPFPctOfOp        float64            `json:"bpf_pct_of_detached_op"`
	BPFProgramNsPerOp map[string]float64 `json:"bpf_program_ns_per_op"`
	TargetPct         float64            `json:"target_pct"`
	// Met: the median per-round wall-time overhead with the whole agent
	// running is within the target. KernelMet: the BPF programs' own run
	// time is within the target share of an op.
	Met       bool `json:"met"`
	KernelMet bool `json:"kernel_met"`
}

type result struct {
	Time     time.Time `json:"time"`
	Kernel   string    `json:"kernel"`
	CPUs     int       `json:"cpus"`
	Binary   string    `json:"exec_binary"`
	Exec     ratio     `json:"exec"`
	Connect  ratio     `json:"connect"`
	ExecRate struct {
		Parallel     int     `json:"parallel"`
		Execs        int     `json:"execs"`
		ExecsPerSec  float64 `json:"execs_per_sec"`
		Events       uint64  `json:"exec_events_received"`
		RingbufDrops uint64  `json:"ringbuf_drops"`
		Met          bool    `json:"met"`
	} `json:"exec_rate"`
	Agent struct {
		RSSBytes        uint64  `json:"rss_bytes"`
		RSSMB           float64 `json:"rss_mb"`
		RSSTargetMB     float64 `json:"rss_target_mb"`
		CPUIdlePct      float64 `json:"cpu_idle_pct"`
		CPUExecLoopPct  float64 `json:"cpu_exec_loop_pct"`
		Met             bool    `json:"met"`
		MeasuredProcess string  `json:"measured_process"`
	} `json:"agent"`
}

func main() {
	switch os.Getenv("PALISADE_BENCH_HELPER") {
	case "exec":
		os.Exit(helperExec(os.Args[1:]))
	case "connect":
		os.Exit(helperConnect(os.Args[1:]))
	}
	runs := flag.Int("runs", 20000, "fork+exec and connect runs per side (attached, detached)")
	rounds := flag.Int("rounds", 10, "alternating rounds the runs are split into")
	out := flag.String("out", "bench/results/sensor.json", "result file")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := run(*runs, *rounds, *out); err != nil {
		fmt.Fprintln(os.Stderr, "sensor-bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(runs, rounds int, out string) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	name := "palisade-bench-" + randHex()
	cg := filepath.Join(cgroupRoot, name)
	if err := os.Mkdir(cg, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	defer removeCgroup(cg)
	cgfd, err := unix.Open(cg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cgfd)
	pinDir := filepath.Join("/sys/fs/bpf", name)
	defer sensor.Cleanup(pinDir)

	tmp, err := os.MkdirTemp("", "palisade-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := tinyBinary(tmp)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go acceptLoop(ln)

	var res result
	res.Time = time.Now().UTC()
	res.Kernel = kernel()
	res.CPUs = runtime.NumCPU()
	res.Binary = bin

	helper := func(mode string, args ...string) (cost, error) {
		cmd := exec.Command(self, args...)
		cmd.Env = append(os.Environ(), "PALISADE_BENCH_HELPER="+mode)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgfd}
		cmd.Stderr = os.Stderr
		o, err := cmd.Output()
		if err != nil {
			return cost{}, fmt.Errorf("%s helper: %w", mode, err)
		}
		var c cost
		_, err = fmt.Sscan(string(o), &c.wall, &c.cpu)
		return c, err
	}

	ctx := context.Background()
	var s *sensor.Sensor
	var events atomic.Uint64
	attach := func() error {
		var err error
		s, err = sensor.Open(ctx, sensor.Config{CgroupPath: cg, PinDir: pinDir, Logger: log})
		if err != nil {
			return err
		}
		go func(s *sensor.Sensor) {
			for ev := range s.Events() {
				if ev.GetExec() != nil {
					events.Add(1)
				}
			}
		}(s)
		return nil
	}
	detach := func() error {
		if s == nil {
			return nil
		}
		s.Close()
		s = nil
		return sensor.Cleanup(pinDir)
	}
	defer detach()

	const (
		sideDetached = iota
		sideAgent
		sideKernel
	)
	measure := func(mode string, r *ratio, args ...string) error {
		per := runs / rounds
		r.Runs, r.Rounds = per*rounds, rounds
		var total [3]cost
		var agentPct, kernelPct, agentCPUPct, kernelCPUPct []float64
		// Warm up caches (page cache, dentries, ephemeral ports).
		if _, err := helper(mode, append([]string{strconv.Itoa(per / 10)}, args...)...); err != nil {
			return err
		}
		for i := 0; i < rounds; i++ {
			var el [3]cost
			for j := 0; j < 3; j++ {
				side := (i + j) % 3 // rotate the order between rounds
				if side != sideDetached {
					if err := attach(); err != nil {
						return err
					}
					if side == sideKernel {
						s.Close() // programs stay attached through their pins
					}
				}
				debug.FreeOSMemory() // GC and scavenging now, not during the measured loop
				c, err := helper(mode, append([]string{strconv.Itoa(per)}, args...)...)
				if err != nil {
					return err
				}
				el[side] = c
				if err := detach(); err != nil {
					return err
				}
			}
			for k := range el {
				total[k].wall += el[k].wall
				total[k].cpu += el[k].cpu
			}
			pct := func(a, b time.Duration) float64 { return round2(100 * (float64(a)/float64(b) - 1)) }
			agentPct = append(agentPct, pct(el[sideAgent].wall, el[sideDetached].wall))
			kernelPct = append(kernelPct, pct(el[sideKernel].wall, el[sideDetached].wall))
			agentCPUPct = append(agentCPUPct, pct(el[sideAgent].cpu, el[sideDetached].cpu))
			kernelCPUPct = append(kernelCPUPct, pct(el[sideKernel].cpu, el[sideDetached].cpu))
		}
		ns := func(d time.Duration) float64 { return round2(float64(d.Nanoseconds()) / float64(r.Runs)) }
		r.DetachedNsPerOp = ns(total[sideDetached].wall)
		r.AttachedNsPerOp = ns(total[sideAgent].wall)
		r.KernelOnlyNsPerOp = ns(total[sideKernel].wall)
		r.OverheadPct = round2(100 * (r.AttachedNsPerOp/r.DetachedNsPerOp - 1))
		r.KernelOnlyOverheadPct = round2(100 * (r.KernelOnlyNsPerOp/r.DetachedNsPerOp - 1))
		r.RoundOverheadPct = agentPct
		r.MedianRoundPct = median(agentPct)
		r.KernelOnlyMedianPct = median(kernelPct)
		r.DetachedCPUNsPerOp = ns(total[sideDetached].cpu)
		r.AttachedCPUNsPerOp = ns(total[sideAgent].cpu)
		r.CPUOverheadPct = round2(100 * (r.AttachedCPUNsPerOp/r.DetachedCPUNsPerOp - 1))
		r.CPUMedianRoundPct = median(agentCPUPct)
		r.KernelOnlyCPUMedian = median(kernelCPUPct)
		r.TargetPct = 5
		r.Met = r.MedianRoundPct <= r.TargetPct
		fmt.Fprintf(os.Stderr, "  %s: wall detached %.0f ns/op, agent %.0f (%.2f%%, median %.2f%%), kernel only %.0f (%.2f%%, median %.2f%%)\n",
			mode, r.DetachedNsPerOp, r.AttachedNsPerOp, r.OverheadPct, r.MedianRoundPct,
			r.KernelOnlyNsPerOp, r.KernelOnlyOverheadPct, r.KernelOnlyMedianPct)
		fmt.Fprintf(os.Stderr, "  %s: cpu  detached %.0f ns/op, agent %.0f (%.2f%%, median %.2f%%), kernel only median %.2f%%\n",
			mode, r.DetachedCPUNsPerOp, r.AttachedCPUNsPerOp, r.CPUOverheadPct, r.CPUMedianRoundPct, r.KernelOnlyCPUMedian)
		return nil
	}

	// bpfCost runs one loop with BPF run-time statistics on and reads the
	// pinned programs' counters.
	bpfCost := func(mode string, r *ratio, args ...string) error {
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			return fmt.Errorf("enable bpf stats: %w", err)
		}
		defer stats.Close()
		if err := attach(); err != nil {
			return err
		}
		defer detach()
		debug.FreeOSMemory()
		if _, err := helper(mode, append([]string{strconv.Itoa(runs / rounds)}, args...)...); err != nil {
			return err
		}
		pins, _ := filepath.Glob(filepath.Join(pinDir, "prog_*"))
		r.BPFProgramNsPerOp = map[string]float64{}
		var total time.Duration
		for _, pin := range pins {
			p, err := ebpf.LoadPinnedProgram(pin, nil)
			if err != nil {
				return err
			}
			st, err := p.Stats()
			p.Close()
			if err != nil {
				return err
			}
			if st.RunCount > 0 {
				r.BPFProgramNsPerOp[strings.TrimPrefix(filepath.Base(pin), "prog_")] = round2(float64(st.Runtime.Nanoseconds()) / float64(runs/rounds))
			}
			total += st.Runtime
		}
		r.BPFNsPerOp = round2(float64(total.Nanoseconds()) / float64(runs/rounds))
		r.BPFPctOfOp = round2(100 * r.BPFNsPerOp / r.DetachedNsPerOp)
		r.KernelMet = r.BPFPctOfOp <= r.TargetPct
		fmt.Fprintf(os.Stderr, "  %s: BPF programs %.0f ns/op = %.2f%% of a detached op %v\n", mode, r.BPFNsPerOp, r.BPFPctOfOp, r.BPFProgramNsPerOp)
		return nil
	}

	fmt.Fprintln(os.Stderr, "exec loop...")
	if err := measure("exec", &res.Exec, bin); err != nil {
		return err
	}
	if err := bpfCost("exec", &res.Exec, bin); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "connect loop...")
	if err := measure("connect", &res.Connect, ln.Addr().String()); err != nil {
		return err
	}
	if err := bpfCost("connect", &res.Connect, ln.Addr().String()); err != nil {
		return err
	}

	// Sustained exec rate: one loop per CPU, sensors attached, events read.
	fmt.Fprintln(os.Stderr, "exec rate...")
	if err := attach(); err != nil {
		return err
	}
	idleCPU := cpuOver(time.Second, func() {
		time.Sleep(time.Second) // measuring idle CPU over one second
	})
	par := runtime.NumCPU()
	per := runs / par
	events.Store(0)
	var wall time.Duration
	loopCPU := cpuOver(0, func() {
		start := time.Now()
		errc := make(chan error, par)
		for i := 0; i < par; i++ {
			go func() {
				_, err := helper("exec", strconv.Itoa(per), bin)
				errc <- err
			}()
		}
		for i := 0; i < par; i++ {
			if e := <-errc; e != nil && err == nil {
				err = e
			}
		}
		wall = time.Since(start)
	})
	if err != nil {
		return err
	}
	// Wait until the reader has drained what was produced.
	for deadline := time.Now().Add(10 * time.Second); events.Load() < uint64(per*par) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	res.ExecRate.Parallel = par
	res.ExecRate.Execs = per * par
	res.ExecRate.ExecsPerSec = round2(float64(per*par) / wall.Seconds())
	res.ExecRate.Events = events.Load()
	res.ExecRate.RingbufDrops = s.Drops()
	res.ExecRate.Met = res.ExecRate.RingbufDrops == 0
	res.Agent.RSSBytes = rss()
	res.Agent.RSSMB = round2(float64(res.Agent.RSSBytes) / (1 << 20))
	res.Agent.RSSTargetMB = 64
	res.Agent.CPUIdlePct = round2(idleCPU)
	res.Agent.CPUExecLoopPct = round2(loopCPU * float64(time.Second) / float64(wall))
	res.Agent.Met = res.Agent.RSSMB <= res.Agent.RSSTargetMB
	res.Agent.MeasuredProcess = "the benchmark process, which hosts the sensor, its process cache and event reader (VmRSS); CPU as % of one core"

	if err := detach(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	b = append(b, '\n')
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	os.Stdout.Write(b)
	return nil
}

// cpuOver returns this process's CPU use while f runs, as percent of one
// core over d (or, when d is 0, as CPU seconds used).
func cpuOver(d time.Duration, f func()) float64 {
	var a, b unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &a)
	f()
	unix.Getrusage(unix.RUSAGE_SELF, &b)
	used := time.Duration(b.Utime.Nano() + b.Stime.Nano() - a.Utime.Nano() - a.Stime.Nano())
	if d == 0 {
		return 100 * used.Seconds()
	}
	return 100 * used.Seconds() / d.Seconds()
}

func helperExec(args []string) int {
	n, _ := strconv.Atoi(args[0])
	bin := args[1]
	argv := []string{bin}
	attr := &syscall.ProcAttr{Env: []string{}}
	start := time.Now()
	for i := 0; i < n; i++ {
		pid, err := syscall.ForkExec(bin, argv, attr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	printCost(start)
	return 0
}

func helperConnect(args []string) int {
	n, _ := strconv.Atoi(args[0])
	addr := args[1]
	start := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		c.(*net.TCPConn).SetLinger(0) // RST on close: no TIME_WAIT pile-up
		c.Close()
	}
	printCost(start)
	return 0
}

func acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(io.Discard, c); c.Close() }()
	}
}

// tinyBinary writes a 129-byte static x86-64 ELF that calls exit(0), the
// cheapest possible exec; elsewhere it falls back to a copy of true(1).
func tinyBinary(dir string) (string, error) {
	path := filepath.Join(dir, "tiny")
	if runtime.GOARCH != "amd64" {
		t, err := exec.LookPath("true")
		if err != nil {
			return "", err
		}
		b, err := os.ReadFile(t)
		if err != nil {
			return "", err
		}
		return path, os.WriteFile(path, b, 0o755)
	}
	code := []byte{0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05} // mov eax,60; xor edi,edi; syscall
	const base = 0x400000
	size := uint64(64 + 56 + len(code))
	b := make([]byte, size)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // x86-64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], base+64+56) // entry
	le.PutUint64(b[32:], 64)         // phoff
	le.PutUint16(b[52:], 64)         // ehsize
	le.PutUint16(b[54:], 56)         // phentsize
	le.PutUint16(b[56:], 1)          // phnum
	ph := b[64:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 5) // R+X
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], size)
	le.PutUint64(ph[40:], size)
	le.PutUint64(ph[48:], 0x1000)
	copy(b[120:], code)
	return path, os.WriteFile(path, b, 0o755)
}

func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func removeCgroup(cg string) {
	// Only processes this benchmark started can be in its cgroup.
	for i := 0; i < 1000; i++ {
		b, _ := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		pids := strings.Fields(string(b))
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 1000 && unix.Rmdir(cg) == unix.EBUSY; i++ {
		time.Sleep(5 * time.Millisecond)
	}
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return round2((s[len(s)/2-1] + s[len(s)/2]) / 2)
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
