package sensor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// The test binary doubles as a workload program: with PALISADE_SENSOR_HELPER
// set it runs one of the helper modes below instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PALISADE_SENSOR_HELPER"); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func runHelper(mode string, args []string) int {
	switch mode {
	case "connect": // connect ADDR: dial TCP, say hi, exit 0; or print the error and exit 3
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Fprintln(c, "hi")
		c.Close()
		fmt.Println("ok")
		return 0
	case "udp": // udp ADDR: unconnected sendto
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		ap := netip.MustParseAddrPort(args[0])
		if _, err := c.WriteTo([]byte("hi"), net.UDPAddrFromAddrPort(ap)); err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Println("ok")
		return 0
	case "pingpong": // pingpong ADDR: each stdin line is sent; each received line is printed
		c, err := net.Dial("tcp", args[0])
		if err != nil {
			fmt.Println("error:", err)
			return 3
		}
		fmt.Println("connected")
		go func() {
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Println("recv", sc.Text())
			}
		}()
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Fprintln(c, sc.Text())
		}
		return 0
	case "quarantine": // quarantine CGROUP PINDIR ALLOW: open a sensor, quarantine, wait to be killed
		s, err := sensor.Open(context.Background(), sensor.Config{CgroupPath: args[0], PinDir: args[1],
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			fmt.Println("error:", err)
			return 2
		}
		if err := s.SetQuarantine(true, []netip.AddrPort{netip.MustParseAddrPort(args[2])}); err != nil {
			fmt.Println("error:", err)
			return 2
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // until killed
		return 0
	}
	return 1
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// env is one test's sensor in its own cgroup and pin dir.
type env struct {
	t      *testing.T
	cg     *bpftest.Cgroup
	pinDir string
	s      *sensor.Sensor
	log    *eventLog
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := newEnvNoSensor(t)
	e.open()
	return e
}

// newEnvNoSensor prepares the cgroup and pin dir without opening a sensor.
func newEnvNoSensor(t *testing.T) *env {
	t.Helper()
	bpftest.RequireBPF(t)
	e := &env{t: t, cg: bpftest.NewCgroup(t), pinDir: bpftest.PinDir(t)}
	t.Cleanup(func() {
		if err := sensor.Cleanup(e.pinDir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	s, err := sensor.Open(context.Background(), sensor.Config{
		CgroupPath: e.cg.Path, PinDir: e.pinDir, Logger: testLogger(e.t),
	})
	if err != nil {
		e.t.Fatalf("open sensor: %v", err)
	}
	e.s = s
	e.log = newEventLog(s)
	e.t.Cleanup(func() { s.Close() })
}

func (e *env) apply(r *sensor.Resolved) {
	e.t.Helper()
	if err := e.s.Apply(r); err != nil {
		e.t.Fatalf("apply: %v", err)
	}
}

// run runs a command inside the test cgroup and returns its output and
// the signal that killed it (0 if none).
func (e *env) run(name string, args ...string) (string, syscall.Signal, error) {
	return runIn(e.cg, nil, name, args...)
}

func runIn(cg *bpftest.Cgroup, env []string, name string, args ...string) (string, syscall.Signal, error) {
	cmd := cg.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return string(out), ws.Signal(), nil
		}
	}
	return string(out), 0, err
}

// helper runs the test binary (or a copy of it) in helper mode.
func helperIn(cg *bpftest.Cgroup, bin, mode string, args ...string) (string, syscall.Signal, error) {
	return runIn(cg, []string{"PALISADE_SENSOR_HELPER=" + mode}, bin, args...)
}

// eventLog collects a sensor's events so tests can wait for one.
type eventLog struct {
	mu     sync.Mutex
	events []*palisadev1.Event
	notify chan struct{}
}

func newEventLog(s *sensor.Sensor) *eventLog {
	l := &eventLog{notify: make(chan struct{})}
	go func() {
		for ev := range s.Events() {
			l.mu.Lock()
			l.events = append(l.events, ev)
			close(l.notify)
			l.notify = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// waitTimeout bounds every wait so a broken sensor fails the test instead
// of hanging it; it is not a threshold anything is measured against.
const waitTimeout = 20 * time.Second

func (l *eventLog) wait(t *testing.T, what string, pred func(*palisadev1.Event) bool) *palisadev1.Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for i := 0; ; {
		l.mu.Lock()
		for ; i < len(l.events); i++ {
			if pred(l.events[i]) {
				ev := l.events[i]
				l.mu.Unlock()
				return ev
			}
		}
		ch := l.notify
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %s event", what)
		}
	}
}

func (l *eventLog) all() []*palisadev1.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*palisadev1.Event(nil), l.events...)
}

// waitFor polls cond until it holds (bounded by waitTimeout).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
}

func execOf(pathSuffix string) func(*palisadev1.Event) bool {
	return func(ev *palisadev1.Event) bool {
		return ev.GetExec() != nil && strings.HasSuffix(ev.GetProcess().GetExePath(), pathSuffix)
	}
}

func timeout() <-chan time.Time { return time.After(waitTimeout) }

func copyFile(t *testing.T, src, dst string) string { return bpftest.CopyExe(t, src, dst) }

func lookPath(t *testing.T, name string) string { return bpftest.LookPath(t, name) }

func fileID(t *testing.T, path string) sensor.FileID {
	dev, ino := bpftest.DevIno(t, path)
	return sensor.FileID{Dev: dev, Ino: ino}
}
