package bpftest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// CopyExe copies the executable src to dst (mode 0755), so a deny or kill
// rule can match the test's own copy and never a system binary.
func CopyExe(t testing.TB, src, dst string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// LookPath finds a program and resolves its symlinks; the test is
// skipped when the program is not installed.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// DevIno returns a file's device and inode (following symlinks).
func DevIno(t testing.TB, path string) (dev, ino uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev, st.Ino
}

// Listen serves TCP on addr (a loopback address, port 0 for any) until the
// test ends: it accepts, reads until the peer closes, and closes. The test
// is skipped if the address cannot be bound.
func Listen(t testing.TB, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// CanDial reports whether a process inside the cgroup can open a TCP
// connection to addr (bash's /dev/tcp, so the connect is the workload's).
func (c *Cgroup) CanDial(addr netip.AddrPort) bool {
	return c.Command("/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", addr.Addr(), addr.Port())).Run() == nil
}
