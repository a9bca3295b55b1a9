package sensor_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/bpftest"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// listen starts a TCP listener on addr (port 0) in the test process, which
// is outside the test cgroup, draining every connection.

func testBinary(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func connectEvent(dst netip.AddrPort, v palisadev1.Verdict, reason string) func(*palisadev1.Event) bool {
	return func(ev *palisadev1.Event) bool {
		c := ev.GetConnect()
		return c != nil && c.GetDstAddr() == dst.Addr().String() && c.GetDstPort() == uint32(dst.Port()) &&
			c.GetVerdict() == v && c.GetReason() == reason
	}
}

func TestEgress_MetadataEndpointOnlyForAllowedClients(t *testing.T) {
	e := newEnv(t)
	md := bpftest.Listen(t, "127.0.0.77:0")
	other := bpftest.Listen(t, "127.0.0.78:0")
	self := testBinary(t)
	client := copyFile(t, self, filepath.Join(t.TempDir(), "metadata-client"))
	e.apply(&sensor.Resolved{
		Metadata:        []netip.AddrPort{md},
		MetadataClients: []sensor.FileID{fileID(t, client)},
		MetadataMode:    palisadev1.Mode_MODE_ENFORCE,
	})

	out, _, err := helperIn(e.cg, self, "connect", md.String())
	if err == nil || !strings.Contains(out, "operation not permitted") {
		t.Fatalf("non-client connect to metadata: out %q err %v, want EPERM", out, err)
	}
	if out, _, err := helperIn(e.cg, client, "connect", md.String()); err != nil {
		t.Fatalf("allowed client: out %q err %v", out, err)
	}
	if out, _, err := helperIn(e.cg, self, "connect", other.String()); err != nil {
		t.Fatalf("non-client to another address: out %q err %v", out, err)
	}
	ev := e.log.wait(t, "denied metadata connect", connectEvent(md, palisadev1.Verdict_VERDICT_DENIED, "metadata"))
	if ev.GetProcess().GetExePath() != self || ev.GetConnect().GetProtocol() != "tcp" {
		t.Errorf("event = %v", ev)
	}
	ev = e.log.wait(t, "allowed metadata connect", connectEvent(md, palisadev1.Verdict_VERDICT_ALLOWED, ""))
	if ev.GetProcess().GetExePath() != client {
		t.Errorf("allowed event exe = %q, want %q", ev.GetProcess().GetExePath(), client)
	}
}

func TestEgress_DenyCIDR(t *testing.T) {
	e := newEnv(t)
	denied := bpftest.Listen(t, "127.0.2.1:0")
	audited := bpftest.Listen(t, "127.0.4.1:0")
	allowed := bpftest.Listen(t, "127.0.3.1:0")
	rules := []sensor.CIDRRule{
		{Prefix: netip.MustParsePrefix("127.0.2.0/24"), Mode: palisadev1.Mode_MODE_ENFORCE},
		{Prefix: netip.MustParsePrefix("127.0.4.0/24"), Mode: palisadev1.Mode_MODE_AUDIT},
	}
	var v6 netip.AddrPort
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		v6 = bpftest.Listen(t, "[::1]:0")
		rules = append(rules, sensor.CIDRRule{Prefix: netip.MustParsePrefix("::1/128"), Mode: palisadev1.Mode_MODE_ENFORCE})
	}
	e.apply(&sensor.Resolved{DenyCIDRs: rules})
	self := testBinary(t)

	if out, _, err := helperIn(e.cg, self, "connect", denied.String()); err == nil || !strings.Contains(out, "operation not permitted") {
		t.Fatalf("connect to denied CIDR: out %q err %v", out, err)
	}
	if out, _, err := helperIn(e.cg, self, "udp", denied.String()); err == nil || !strings.Contains(out, "operation not permitted") {
		t.Fatalf("sendmsg to denied CIDR: out %q err %v", out, err)
	}
	if out, _, err := helperIn(e.cg, self, "connect", audited.String()); err != nil {
		t.Fatalf("connect to audited CIDR: out %q err %v", out, err)
	}
	if out, _, err := helperIn(e.cg, self, "connect", allowed.String()); err != nil {
		t.Fatalf("connect to allowed address: out %q err %v", out, err)
	}
	if v6.IsValid() {
		if out, _, err := helperIn(e.cg, self, "connect", v6.String()); err == nil || !strings.Contains(out, "operation not permitted") {
			t.Fatalf("connect to denied v6: out %q err %v", out, err)
		}
		e.log.wait(t, "denied v6 connect", connectEvent(v6, palisadev1.Verdict_VERDICT_DENIED, "deny_cidr"))
	}
	e.log.wait(t, "denied connect", connectEvent(denied, palisadev1.Verdict_VERDICT_DENIED, "deny_cidr"))
	e.log.wait(t, "audited connect", connectEvent(audited, palisadev1.Verdict_VERDICT_AUDITED, "deny_cidr"))
	e.log.wait(t, "allowed connect", connectEvent(allowed, palisadev1.Verdict_VERDICT_ALLOWED, ""))
	e.log.wait(t, "denied sendmsg", func(ev *palisadev1.Event) bool {
		return ev.GetConnect().GetProtocol() == "udp" && ev.GetConnect().GetVerdict() == palisadev1.Verdict_VERDICT_DENIED
	})
}
