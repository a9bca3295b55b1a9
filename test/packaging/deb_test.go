// Package packaging_test builds the .deb and .rpm packages, checks them
// with lintian, installs, upgrades, removes and purges them on this machine
// with dpkg, and checks the systemd units. It needs root, dpkg-deb and
// lintian (.ci/run installs it); it is skipped otherwise, and with -short.
//
// Where PID 1 is not systemd (our VMs) the units cannot be started: the
// test says so and checks them with systemd-analyze instead.
package packaging_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	root, _ = filepath.Abs("../..")
	pkgs    = []string{"palisade-agent", "palisade-controller"}
)

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and installs packages: not in -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("installs packages with dpkg: needs root")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "lintian", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install -y lintian systemd)", tool)
		}
	}
	for _, p := range pkgs {
		if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", p).Output(); err == nil && len(out) > 0 && !strings.Contains(string(out), "not-installed") {
			t.Skipf("%s is installed on this machine (%s): not touching it", p, out)
		}
	}
}

func systemdIsPID1() (bool, string) {
	comm, _ := os.ReadFile("/proc/1/comm")
	_, err := os.Stat("/run/systemd/system")
	return err == nil, strings.TrimSpace(string(comm))
}

// run runs a command, logs it, and returns its combined output and exit code.
func run(t *testing.T, env []string, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s %v: %v", name, args, err)
		}
		code = ee.ExitCode()
	}
	t.Logf("$ %s %s (exit %d)\n%s", name, strings.Join(args, " "), code, out)
	return string(out), code
}

func must(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, code := run(t, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d", name, args, code)
	}
	return out
}

// buildPackages builds mkpkg once and the packages of each version.
func buildPackages(t *testing.T, versions ...string) map[string]string {
	t.Helper()
	tmp := t.TempDir()
	mkpkg := filepath.Join(tmp, "mkpkg")
	cmd := exec.Command("go", "build", "-o", mkpkg, ".")
	cmd.Dir = filepath.Join(root, "packaging", "cmd", "mkpkg")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build mkpkg: %v\n%s", err, out)
	}
	debs := map[string]string{}
	for i, v := range versions {
		formats := "deb"
		if i == len(versions)-1 {
			formats = "deb,rpm" // the rpm of the newest build, to see it builds
		}
		out := filepath.Join(tmp, v)
		start := time.Now()
		listing := must(t, nil, mkpkg, "-root", root, "-version", v, "-out", out, "-arch", runtime.GOARCH, "-format", formats)
		t.Logf("packages %s built in %v", v, time.Since(start).Round(time.Second))
		for _, line := range strings.Fields(listing) {
			for _, p := range pkgs {
				if strings.HasPrefix(filepath.Base(line), p+"_") && strings.HasSuffix(line, ".deb") {
					debs[p+"@"+v] = line
				}
			}
			if strings.HasSuffix(line, ".rpm") {
				if st, err := os.Stat(line); err != nil || st.Size() < 1<<20 {
					t.Errorf("rpm %s: %v", line, err)
				}
			}
		}
	}
	return debs
}

type want struct {
	path       string
	mode       os.FileMode // permission bits, plus os.ModeDir for a directory
	owner, grp string
}

func checkFiles(t *testing.T, files []want) {
	t.Helper()
	for _, w := range files {
		st, err := os.Stat(w.path)
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		if got := st.Mode() & (os.ModeDir | os.ModePerm); got != w.mode {
			t.Errorf("%s: mode %v, want %v", w.path, got, w.mode)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if u, _ := user.LookupId(strconv.Itoa(int(sys.Uid))); u == nil || u.Username != w.owner {
			t.Errorf("%s: owner uid %d, want %s", w.path, sys.Uid, w.owner)
		}
		if g, _ := user.LookupGroupId(strconv.Itoa(int(sys.Gid))); g == nil || g.Name != w.grp {
			t.Errorf("%s: group gid %d, want %s", w.path, sys.Gid, w.grp)
		}
	}
}

func TestDeb_InstallUpgradeRemovePurge(t *testing.T) {
	requireRoot(t)
	up, pid1 := systemdIsPID1()
	if !up {
		t.Logf("PID 1 is %q, not systemd: the units are checked with systemd-analyze, not started", pid1)
	}
	debs := buildPackages(t, "0.1.0", "0.2.0")

	// A stand-in for the agent's pins, so the package tests never touch the
	// real /sys/fs/bpf/palisade that the sensor tests use at the same time.
	pinRoot := filepath.Join(t.TempDir(), "bpf", "palisade")
	if st, err := os.Stat("/sys/fs/bpf"); err == nil && st.IsDir() {
		pinRoot = fmt.Sprintf("/sys/fs/bpf/palisade-pkgtest-%d", os.Getpid())
	}
	env := []string{"PALISADE_PIN_ROOT=" + pinRoot, "DEBIAN_FRONTEND=noninteractive"}
	t.Cleanup(func() {
		// Whatever happened, leave nothing installed.
		exec.Command("dpkg", "--purge", pkgs[0], pkgs[1]).Run()
		os.RemoveAll(pinRoot)
	})

	t.Run("lintian", func(t *testing.T) {
		out, _ := run(t, nil, "lintian", "--tag-display-limit", "0", debs["palisade-agent@0.2.0"], debs["palisade-controller@0.2.0"])
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "E: ") {
				t.Errorf("lintian error: %s", line)
			}
		}
	})

	must(t, env, "dpkg", "-i", debs["palisade-agent@0.1.0"], debs["palisade-controller@0.1.0"])
	if err := os.MkdirAll(filepath.Join(pinRoot, "scope", "links"), 0o700); err != nil {
		t.Fatal(err)
	}

	t.Run("files", func(t *testing.T) {
		dir, r, p := os.ModeDir, "root", "palisade"
		checkFiles(t, []want{
			{"/usr/bin/palisade-agent", 0o755, r, r},
			{"/usr/bin/palisade-controller", 0o755, r, r},
			{"/usr/bin/palisadectl", 0o755, r, r},
			{"/lib/systemd/system/palisade-agent.service", 0o644, r, r},
			{"/lib/systemd/system/palisade-controller.service", 0o644, r, r},
			{"/etc/palisade", dir | 0o755, r, r},
			{"/etc/palisade/agent.yaml", 0o640, r, r},
			{"/etc/palisade/controller.yaml", 0o640, r, p},
			{"/var/lib/palisade-agent", dir | 0o700, r, r},
			{"/var/lib/palisade-controller", dir | 0o700, p, p},
		})
		u, err := user.Lookup("palisade")
		if err != nil {
			t.Fatalf("user palisade: %v", err)
		}
		if uid, _ := strconv.Atoi(u.Uid); uid >= 1000 {
			t.Errorf("palisade uid %d is not a system uid", uid)
		}
		if pw := must(t, nil, "getent", "passwd", "palisade"); !strings.HasSuffix(strings.TrimSpace(pw), "nologin") {
			t.Errorf("palisade has a login shell: %s", pw)
		}
		for _, p := range pkgs {
			conf := must(t, nil, "dpkg-query", "-W", "-f", "${Conffiles}", p)
			if !strings.Contains(conf, "/etc/palisade/"+strings.TrimPrefix(p, "palisade-")+".yaml") {
				t.Errorf("%s conffiles: %q", p, conf)
			}
		}
		if v := strings.TrimSpace(must(t, nil, "palisade-agent", "version")); v != "0.1.0" {
			t.Errorf("version %q", v)
		}
	})

	t.Run("config", func(t *testing.T) {
		if out := must(t, nil, "palisade-agent", "config", "check"); !strings.Contains(out, "/etc/palisade/agent.yaml: ok") {
			t.Errorf("agent config check: %s", out)
		}
		// The packaged controller config lacks node_id on purpose.
		out, code := run(t, nil, "palisade-controller", "config", "check")
		if code == 0 || !strings.Contains(out, "node_id: required") {
			t.Errorf("controller config check: exit %d\n%s", code, out)
		}
	})

	t.Run("units", func(t *testing.T) {
		for _, p := range pkgs {
			unit := "/lib/systemd/system/" + p + ".service"
			if out, code := run(t, nil, "systemd-analyze", "verify", unit); code != 0 || strings.TrimSpace(out) != "" {
				t.Errorf("systemd-analyze verify %s: exit %d: %s", unit, code, out)
			}
			out, _ := run(t, nil, "systemd-analyze", "security", "--offline=yes", "--no-pager", unit)
			m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
			if m == nil {
				t.Errorf("no exposure score for %s", unit)
				continue
			}
			score, _ := strconv.ParseFloat(m[1], 64)
			t.Logf("systemd-analyze security %s: %.1f", p, score)
			if limit := map[string]float64{"palisade-agent": 4.5, "palisade-controller": 2.0}[p]; score > limit {
				t.Errorf("%s exposure %.1f, above %.1f", p, score, limit)
			}
		}
		unit, _ := os.ReadFile("/lib/systemd/system/palisade-agent.service")
		for _, cap := range []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_KILL", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"} {
			// Each capability is granted and has a comment saying why.
			if !regexp.MustCompile(`(?m)^#\s+` + cap + `\s+\S`).Match(unit) {
				t.Errorf("agent unit: no comment explaining %s", cap)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		for _, p := range pkgs {
			out, code := run(t, nil, p, "status")
			if !strings.Contains(out, p+": installed (/lib/systemd/system/"+p+".service") {
				t.Errorf("%s status: %s", p, out)
			}
			if !up {
				if code != 3 || !strings.Contains(out, "systemd is not running as PID 1") {
					t.Errorf("%s status without systemd: exit %d\n%s", p, code, out)
				}
				if _, code := run(t, nil, p, "start"); code == 0 {
					t.Errorf("%s start succeeded without systemd", p)
				}
			}
		}
	})

	// Edit both configs the way an operator would: through install (the
	// values equal the defaults, so binaries other tests run at the same
	// time behave the same) and by hand.
	must(t, nil, "palisade-agent", "install", "--heartbeat-interval", "10s")
	must(t, nil, "palisade-controller", "install", "--node-id", "pkgtest-1")
	appendLine(t, "/etc/palisade/agent.yaml", "# edited by the package test")
	agentConf := readFile(t, "/etc/palisade/agent.yaml")
	controllerConf := readFile(t, "/etc/palisade/controller.yaml")
	if !strings.Contains(agentConf, "heartbeat_interval: 10s") || !strings.Contains(controllerConf, "node_id: pkgtest-1") {
		t.Fatalf("install did not write the flags:\n%s\n%s", agentConf, controllerConf)
	}
	checkFiles(t, []want{{"/etc/palisade/controller.yaml", 0o640, "root", "palisade"}})

	t.Run("upgrade", func(t *testing.T) {
		must(t, env, "dpkg", "-i", debs["palisade-agent@0.2.0"], debs["palisade-controller@0.2.0"])
		if v := strings.TrimSpace(must(t, nil, "palisade-agent", "version")); v != "0.2.0" {
			t.Errorf("version after upgrade %q", v)
		}
		if got := readFile(t, "/etc/palisade/agent.yaml"); got != agentConf {
			t.Errorf("agent.yaml changed by the upgrade:\n%s", got)
		}
		if got := readFile(t, "/etc/palisade/controller.yaml"); got != controllerConf {
			t.Errorf("controller.yaml changed by the upgrade:\n%s", got)
		}
		checkFiles(t, []want{{"/etc/palisade/controller.yaml", 0o640, "root", "palisade"}})
		if _, err := os.Stat(filepath.Join(pinRoot, "scope", "links")); err != nil {
			t.Errorf("pins gone after upgrade: %v", err)
		}
		must(t, nil, "palisade-controller", "config", "check")
	})

	t.Run("remove", func(t *testing.T) {
		must(t, env, "dpkg", "-r", pkgs[0], pkgs[1])
		for _, gone := range []string{"/usr/bin/palisade-agent", "/usr/bin/palisade-controller", "/usr/bin/palisadectl",
			"/lib/systemd/system/palisade-agent.service", "/lib/systemd/system/palisade-controller.service"} {
			if _, err := os.Stat(gone); err == nil {
				t.Errorf("%s left after dpkg -r", gone)
			}
		}
		// Configuration and the pinned enforcement stay until purge.
		for _, kept := range []string{"/etc/palisade/agent.yaml", "/etc/palisade/controller.yaml", filepath.Join(pinRoot, "scope")} {
			if _, err := os.Stat(kept); err != nil {
				t.Errorf("%s gone after dpkg -r: %v", kept, err)
			}
		}
	})

	t.Run("purge", func(t *testing.T) {
		must(t, env, "dpkg", "-P", pkgs[0], pkgs[1])
		for _, gone := range []string{"/etc/palisade", "/var/lib/palisade-agent", "/var/lib/palisade-controller", pinRoot,
			"/etc/systemd/system/palisade-agent.service", "/etc/systemd/system/palisade-controller.service"} {
			if _, err := os.Stat(gone); err == nil {
				t.Errorf("%s left after purge", gone)
			}
		}
		if _, err := user.Lookup("palisade"); err == nil {
			t.Error("user palisade left after purge")
		}
		for _, p := range pkgs {
			if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", p).Output(); len(out) > 0 && !strings.Contains(string(out), "not-installed") {
				t.Errorf("%s: dpkg status %q after purge", p, out)
			}
		}
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	b := []byte(readFile(t, path))
	if !bytes.HasSuffix(b, []byte("\n")) {
		b = append(b, '\n')
	}
	b = append(b, line+"\n"...)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
}
