// Command rules measures the detection rules on real events: the default
// pack's evaluation cost per event, by kind, and its share of the agent's
// CPU while a shell in a bench cgroup runs an exec loop under a real
// sensor. Results: bench/results/rules.json. Needs root (eBPF); the cgroup
// and pins it creates are removed at the end.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/kernfs"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

type kindStats struct {
	Events    int     `json:"events"`
	MeanNs    float64 `json:"mean_ns"`
	MedianNs  float64 `json:"median_ns"`
	P99Ns     float64 `json:"p99_ns"`
	TargetNs  float64 `json:"target_ns"`
	MeanMetOK bool    `json:"mean_within_target"`
}

type result struct {
	Execs           int                  `json:"execs"`
	ByKind          map[string]kindStats `json:"by_kind"`
	AllMeanNs       float64              `json:"all_events_mean_ns"`
	RulesCPU        string               `json:"rules_cpu"`
	AgentCPU        string               `json:"agent_cpu"`
	RulesShareOfCPU float64              `json:"rules_share_of_agent_cpu_pct"`
	Alerts          uint64               `json:"alerts"`
	Note            string               `json:"note"`
	MeasuredAt      time.Time            `json:"measured_at"`
}

func main() {
	out := flag.String("out", "bench/results/rules.json", "where to write the JSON result")
	execs := flag.Int("execs", 5000, "exec loop length")
	flag.Parse()
	if err := run(*execs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench rules:", err)
		os.Exit(1)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func run(execs int, out string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (eBPF)")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	cg := filepath.Join(kernfs.CgroupRoot(), "palisade-bench-"+id)
	pins := "/sys/fs/bpf/palisade-bench-" + id
	if err := os.Mkdir(cg, 0o755); err != nil {
		return err
	}
	defer os.Remove(cg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sensor.Open(ctx, sensor.Config{CgroupPath: cg, PinDir: pins, Logger: log})
	if err != nil {
		return err
	}
	defer func() { s.Close(); _ = sensor.Cleanup(pins) }()
	eng, err := rules.NewEngine(rules.Config{Scope: cg, BootTime: s.Cache().BootTimeValue(), Logger: log})
	if err != nil {
		return err
	}
	pack, err := rules.DefaultRules(palisadev1.Mode_MODE_AUDIT)
	if err != nil {
		return err
	}
	if err := eng.Apply(pack); err != nil {
		return err
	}

	costs := map[string][]time.Duration{}
	var total time.Duration
	done := make(chan struct{})
	execSeen := 0
	go func() {
		defer close(done)
		// Evaluation is timed in this thread's CPU time, not wall time: on
		// a shared 2-core machine the exec loop preempts the consumer, and
		// wall time would count that as rule cost.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for ev := range s.Events() {
			kind := "other"
			switch ev.GetKind().(type) {
			case *palisadev1.Event_Exec:
				kind = "exec"
			case *palisadev1.Event_Exit:
				kind = "exit"
			case *palisadev1.Event_Connect:
				kind = "connect"
			case *palisadev1.Event_FileOpen:
				kind = "file"
			}
			t0 := threadCPU()
			eng.Evaluate(ev)
			d := threadCPU() - t0
			costs[kind] = append(costs[kind], d)
			total += d
			if kind == "exec" {
				execSeen++
				if execSeen >= execs {
					return
				}
			}
		}
	}()

	fd, err := syscall.Open(cg, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	// The loop runs in its own process, so this process's CPU time is the
	// agent's: reading events, the process cache and the rules.
	loop := exec.Command("/bin/sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", execs-1))
	loop.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	cpu0 := cpuTime()
	if err := loop.Run(); err != nil {
		return fmt.Errorf("exec loop: %w", err)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("saw %d of %d execs", execSeen, execs)
	}
	agentCPU := cpuTime() - cpu0

	res := result{Execs: execs, ByKind: map[string]kindStats{}, MeasuredAt: time.Now().UTC(),
		RulesCPU: total.Round(time.Millisecond).String(), AgentCPU: agentCPU.Round(time.Millisecond).String(),
		Alerts: eng.Stats().Matched,
		Note: "CPU time (thread clock) of the default pack (audit) evaluating the sensor's real events; " +
			"agent CPU is this process's CPU time during the loop (sensor reading, process cache, rules)"}
	n := 0
	for k, ds := range costs {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		ks := kindStats{Events: len(ds), MeanNs: float64(sum.Nanoseconds()) / float64(len(ds)),
			MedianNs: float64(ds[len(ds)/2].Nanoseconds()), P99Ns: float64(ds[len(ds)*99/100].Nanoseconds()), TargetNs: 2000}
		ks.MeanMetOK = ks.MeanNs <= ks.TargetNs
		res.ByKind[k] = ks
		n += len(ds)
	}
	if n > 0 {
		res.AllMeanNs = float64(total.Nanoseconds()) / float64(n)
	}
	if agentCPU > 0 {
		res.RulesShareOfCPU = float64(int(10000*float64(total)/float64(agentCPU))) / 100
	}
	data, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(data))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, append(data, '\n'), 0o644)
}
