package sensor_test

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
)

// flow is an established TCP connection between a pingpong helper inside
// the test cgroup and a server in the test process.
type flow struct {
	t      *testing.T
	in     io.WriteCloser // helper stdin: lines to send
	out    chan string    // helper stdout lines
	server net.Conn       // server side
	recv   chan string    // lines the server received
}

func newFlow(t *testing.T, e *env, addr string) *flow {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := e.cg.Command(testBinary(t), "pingpong", ln.Addr().String())
	cmd.Args = []string{cmd.Path, ln.Addr().String()}
	cmd.Env = append(os.Environ(), "PALISADE_SENSOR_HELPER=pingpong")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	f := &flow{t: t, in: in, out: make(chan string, 16), recv: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f.out <- sc.Text()
		}
		close(f.out)
	}()
	f.server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.server.Close() })
	go func() {
		sc := bufio.NewScanner(f.server)
		for sc.Scan() {
			f.recv <- sc.Text()
		}
		close(f.recv)
	}()
	f.expectOut("connected")
	return f
}

func (f *flow) expectOut(want string) {
	f.t.Helper()
	select {
	case got := <-f.out:
		if got != want {
			f.t.Fatalf("helper printed %q, want %q", got, want)
		}
	case <-timeout():
		f.t.Fatalf("helper did not print %q", want)
	}
}

func (f *flow) expectRecv(want string) {
	f.t.Helper()
	select {
	case got := <-f.recv:
		if got != want {
			f.t.Fatalf("server received %q, want %q", got, want)
		}
	case <-timeout():
		f.t.Fatalf("server did not receive %q", want)
	}
}

func (f *flow) clientSends(line string) {
	if _, err := io.WriteString(f.in, line+"\n"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *flow) serverSends(line string) {
	if _, err := io.WriteString(f.server, line+"\n"); err != nil {
		f.t.Fatal(err)
	}
}

func (e *env) stats() sensor.Stats {
	st, err := e.s.Stats()
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) mustConnect(addr netip.AddrPort) {
	e.t.Helper()
	if out, _, err := helperIn(e.cg, testBinary(e.t), "connect", addr.String()); err != nil {
		e.t.Fatalf("connect %s: out %q err %v", addr, out, err)
	}
}

func (e *env) mustNotConnect(addr netip.AddrPort) {
	e.t.Helper()
	out, _, err := helperIn(e.cg, testBinary(e.t), "connect", addr.String())
	if err == nil || !strings.Contains(out, "operation not permitted") {
		e.t.Fatalf("connect %s: out %q err %v, want EPERM", addr, out, err)
	}
}

func TestQuarantine_BlocksNewAndEstablished_ReleaseRestores(t *testing.T) {
	e := newEnv(t)
	allowed := bpftest.Listen(t, "127.0.5.1:0")
	other := bpftest.Listen(t, "127.0.5.2:0")
	f := newFlow(t, e, "127.0.6.1:0")
	f.clientSends("a")
	f.expectRecv("a")
	f.serverSends("b")
	f.expectOut("recv b")

	if err := e.s.SetQuarantine(true, []netip.AddrPort{allowed}); err != nil {
		t.Fatal(err)
	}
	if q, err := e.s.Quarantined(); err != nil || !q {
		t.Fatalf("Quarantined() = %v, %v", q, err)
	}
	e.mustNotConnect(other)
	e.mustConnect(allowed)

	// Established flow: data in both directions is dropped. Wait until the
	// kernel has dropped at least two transmissions each way (the first
	// send and a retransmission) and check nothing got through.
	before := e.stats()
	f.clientSends("c")
	f.serverSends("d")
	waitFor(t, "egress and ingress drops", func() bool {
		st := e.stats()
		return st.SKBEgressDrop >= before.SKBEgressDrop+2 && st.SKBIngressDrop >= before.SKBIngressDrop+2
	})
	select {
	case got := <-f.recv:
		t.Fatalf("server received %q during quarantine", got)
	case got := <-f.out:
		t.Fatalf("helper printed %q during quarantine", got)
	default:
	}

	if err := e.s.SetQuarantine(false, nil); err != nil {
		t.Fatal(err)
	}
	f.expectRecv("c")
	f.expectOut("recv d")
	e.mustConnect(other)
}

// Quarantine survives the agent's death (a real kill -9 of a process that
// set it, then a Close without Cleanup), and a restarted sensor adopts the
// pins — without duplicating attachments — and can release it.
func TestQuarantine_SurvivesAgentKill_AdoptedAndReleased(t *testing.T) {
	e := newEnvNoSensor(t)
	allowed := bpftest.Listen(t, "127.0.7.1:0")
	other := bpftest.Listen(t, "127.0.7.2:0")

	agent := exec.Command(testBinary(t), e.cg.Path, e.pinDir, allowed.String())
	agent.Env = append(os.Environ(), "PALISADE_SENSOR_HELPER=quarantine")
	stdin, _ := agent.StdinPipe()
	stdout, _ := agent.StdoutPipe()
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); agent.Process.Kill(); agent.Wait() })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("agent helper: %q", line)
	}
	if err := agent.Process.Kill(); err != nil { // SIGKILL, by pid
		t.Fatal(err)
	}
	agent.Wait()

	e.mustNotConnect(other)
	e.mustConnect(allowed)

	e.open()
	if !e.s.Adopted() {
		t.Fatal("sensor did not adopt the pins")
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInetEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: e.cg.FD(), Attach: at})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(res.Programs); n != 1 {
			t.Errorf("%v: %d programs attached, want 1", at, n)
		}
	}
	e.mustNotConnect(other)
	if err := e.s.SetQuarantine(false, nil); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(other)

	// Close without Cleanup: quarantine set by this sensor holds too.
	if err := e.s.SetQuarantine(true, []netip.AddrPort{allowed}); err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	e.mustNotConnect(other)
	e.open()
	if err := e.s.SetQuarantine(false, nil); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(other)
}

func TestQuarantine_IPv6AllowlistByPort(t *testing.T) {
	probe, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	probe.Close()
	e := newEnv(t)
	allowed := bpftest.Listen(t, "[::1]:0")
	other := bpftest.Listen(t, "[::1]:0")
	if err := e.s.SetQuarantine(true, []netip.AddrPort{allowed}); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(allowed)
	e.mustNotConnect(other)
	if err := e.s.SetQuarantine(false, nil); err != nil {
		t.Fatal(err)
	}
	e.mustConnect(other)
}
