// Package svc runs a Palisade binary as a system service through
// kardianos/service and answers install, uninstall, start, stop, restart
// and status.
//
// Palisade targets systemd only. kardianos picks its backend by probing the
// machine (here, where PID 1 is not systemd, it would pick System V init and
// write an init script), so New pins the systemd backend and every command
// first checks whether systemd is PID 1: where it is not, commands say so
// plainly instead of failing inside systemctl.
//
// The unit comes from packaging/systemd, the same file the packages
// install. When a package provides the unit (/lib/systemd/system or
// /usr/lib/systemd/system), install only enables it; otherwise it writes
// the unit to /etc/systemd/system with ExecStart pointing at the running
// executable.
package svc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/kardianos/service"
)

// Config describes one service.
type Config struct {
	Name        string // unit name without .service, also the binary's name
	Description string
	// Unit is the systemd unit, with ExecStart=/usr/bin/<Name> ….
	Unit string
	// ConfigFile is the binary's configuration file, shown by status.
	ConfigFile string
	// Root prefixes every file path (tests); "" is /.
	Root string
}

// Work runs the service until ctx ends and returns what to exit with.
type Work func(ctx context.Context) error

// program adapts Work to kardianos: Start returns at once, the work runs in
// a goroutine; Stop cancels it and waits.
type program struct {
	work   Work
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan struct{})
	go func() {
		defer close(p.done)
		p.err = p.work(ctx)
	}()
	return nil
}

func (p *program) Stop(service.Service) error {
	p.cancel()
	<-p.done
	return nil
}

// wait blocks until SIGINT/SIGTERM or until the work ends by itself (it
// failed to start, say), so the process exits instead of idling.
func (p *program) wait() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sig)
	select {
	case <-sig:
	case <-p.done:
	}
}

var pinOnce sync.Once

// pinSystemd makes kardianos use its systemd backend whatever the probe
// says; the commands below check for a running systemd themselves.
func pinSystemd() {
	pinOnce.Do(func() {
		for _, s := range service.AvailableSystems() {
			if s.String() == "linux-systemd" {
				service.ChooseSystem(always{s})
				return
			}
		}
	})
}

type always struct{ service.System }

func (always) Detect() bool { return true }

func (c Config) kardianos(i service.Interface, opts service.KeyValue) (service.Service, error) {
	pinSystemd()
	return service.New(i, &service.Config{
		Name: c.Name, DisplayName: c.Name, Description: c.Description,
		Arguments: []string{"run"}, Option: opts,
	})
}

// Run runs work under kardianos: in the foreground or under systemd alike.
// It returns work's error once a signal or the work itself ended it.
func Run(c Config, work Work) error {
	p := &program{work: work}
	s, err := c.kardianos(p, service.KeyValue{"RunWait": p.wait})
	if err != nil {
		return err
	}
	if err := s.Run(); err != nil {
		return err
	}
	return p.err
}

// Manager answers the service commands.
type Manager struct {
	c Config
	s service.Service
	// Systemctl runs systemctl (tests replace it).
	Systemctl func(args ...string) (string, error)
}

// New returns a Manager for c.
func New(c Config) (*Manager, error) {
	s, err := c.kardianos(&program{}, service.KeyValue{})
	if err != nil {
		return nil, err
	}
	return &Manager{c: c, s: s, Systemctl: systemctl}, nil
}

func systemctl(args ...string) (string, error) {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (m *Manager) path(p string) string { return filepath.Join(m.c.Root, p) }

// Systemd reports whether systemd is PID 1 (sd_booted: /run/systemd/system
// exists) and what PID 1 is.
func (m *Manager) Systemd() (running bool, pid1 string) {
	comm, _ := os.ReadFile(m.path("/proc/1/comm"))
	pid1 = strings.TrimSpace(string(comm))
	if pid1 == "" {
		pid1 = "unknown"
	}
	_, err := os.Stat(m.path("/run/systemd/system"))
	return err == nil, pid1
}

// ErrNoSystemd says the service manager cannot be asked.
var ErrNoSystemd = errors.New("systemd is not running as PID 1")

func (m *Manager) noSystemd() error {
	_, pid1 := m.Systemd()
	return fmt.Errorf("%w (PID 1 is %q): the service cannot be started, stopped or enabled on this machine; run `%s run` under your own supervisor instead",
		ErrNoSystemd, pid1, m.c.Name)
}

func (m *Manager) unitName() string { return m.c.Name + ".service" }

// PackagedUnit is the unit a package installed, or "".
func (m *Manager) PackagedUnit() string {
	for _, dir := range []string{"/lib/systemd/system", "/usr/lib/systemd/system"} {
		p := filepath.Join(dir, m.unitName())
		if _, err := os.Stat(m.path(p)); err == nil {
			return p
		}
	}
	return ""
}

// LocalUnit is where install writes the unit when no package provides it.
func (m *Manager) LocalUnit() string { return filepath.Join("/etc/systemd/system", m.unitName()) }

// InstalledUnit is the unit in effect (a local one overrides the package's), or "".
func (m *Manager) InstalledUnit() string {
	if _, err := os.Stat(m.path(m.LocalUnit())); err == nil {
		return m.LocalUnit()
	}
	return m.PackagedUnit()
}

// RenderUnit is the unit with ExecStart pointing at exe.
func (m *Manager) RenderUnit(exe string) string {
	return strings.ReplaceAll(m.c.Unit, "/usr/bin/"+m.c.Name+" ", exe+" ")
}

// Install makes the service start at boot. It returns what it did, in a
// sentence for the user; with no systemd it still writes the unit and says
// that it could not enable it (the error wraps ErrNoSystemd).
func (m *Manager) Install() (string, error) {
	up, pid1 := m.Systemd()
	if pkg := m.PackagedUnit(); pkg != "" {
		if !up {
			return fmt.Sprintf("unit %s (from the package) is installed but not enabled: systemd is not PID 1 (PID 1 is %q)", pkg, pid1), nil
		}
		if out, err := m.Systemctl("enable", m.unitName()); err != nil {
			return "", fmt.Errorf("systemctl enable %s: %v: %s", m.unitName(), err, out)
		}
		return fmt.Sprintf("unit %s (from the package) enabled", pkg), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", err
	}
	if up && m.c.Root == "" {
		s, err := m.c.kardianos(&program{}, service.KeyValue{"SystemdScript": m.RenderUnit(exe)})
		if err != nil {
			return "", err
		}
		if err := s.Install(); err != nil {
			return "", err
		}
		return fmt.Sprintf("unit %s written and enabled", m.LocalUnit()), nil
	}
	dst := m.path(m.LocalUnit())
	if _, err := os.Stat(dst); err == nil {
		return "", fmt.Errorf("unit %s already exists", m.LocalUnit())
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(dst, []byte(m.RenderUnit(exe)), 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("unit %s written but not enabled: systemd is not PID 1 (PID 1 is %q)", m.LocalUnit(), pid1), nil
}

// Uninstall stops and disables the service and removes a unit install
// wrote; a package's unit stays until the package is removed.
func (m *Manager) Uninstall() (string, error) {
	up, pid1 := m.Systemd()
	local := m.path(m.LocalUnit())
	_, err := os.Stat(local)
	hasLocal := err == nil
	pkg := m.PackagedUnit()
	if !hasLocal && pkg == "" {
		return "", fmt.Errorf("%s is not installed (no %s)", m.c.Name, m.unitName())
	}
	if up {
		if out, err := m.Systemctl("disable", "--now", m.unitName()); err != nil {
			return "", fmt.Errorf("systemctl disable --now %s: %v: %s", m.unitName(), err, out)
		}
	}
	var did []string
	if hasLocal {
		if err := os.Remove(local); err != nil {
			return "", err
		}
		did = append(did, "removed "+m.LocalUnit())
		if up {
			m.Systemctl("daemon-reload")
		}
	}
	if pkg != "" {
		did = append(did, fmt.Sprintf("unit %s belongs to the package: remove the package to remove it", pkg))
	}
	if up {
		did = append([]string{"stopped and disabled"}, did...)
	} else {
		did = append(did, fmt.Sprintf("nothing stopped or disabled: systemd is not PID 1 (PID 1 is %q)", pid1))
	}
	return strings.Join(did, "; "), nil
}

// Start, Stop and Restart ask systemd; without it they return an error
// wrapping ErrNoSystemd.
func (m *Manager) Start() error   { return m.action(m.s.Start) }
func (m *Manager) Stop() error    { return m.action(m.s.Stop) }
func (m *Manager) Restart() error { return m.action(m.s.Restart) }

func (m *Manager) action(f func() error) error {
	if up, _ := m.Systemd(); !up {
		return m.noSystemd()
	}
	if m.InstalledUnit() == "" {
		return fmt.Errorf("%s is not installed: run `%s install` first", m.c.Name, m.c.Name)
	}
	return f()
}

// State is what Status found.
type State struct {
	Unit      string // installed unit, "" when not installed
	Systemd   bool
	PID1      string
	Active    string // systemctl is-active ("" without systemd)
	Enabled   string // systemctl is-enabled ("" without systemd)
	Processes []int  // `<name> run` processes found in /proc
}

// Running is whether the service (or a foreground `run`) is running.
func (s State) Running() bool {
	if s.Systemd {
		return s.Active == "active" || s.Active == "reloading"
	}
	return len(s.Processes) > 0
}

// Status finds out whether the service is installed and running and
// writes it to w in a few lines.
func (m *Manager) Status(w io.Writer) State {
	st := State{Unit: m.InstalledUnit(), Processes: m.processes()}
	st.Systemd, st.PID1 = m.Systemd()
	if st.Systemd {
		st.Active, _ = m.Systemctl("is-active", m.unitName())
		st.Enabled, _ = m.Systemctl("is-enabled", m.unitName())
	}
	switch {
	case st.Unit == "":
		fmt.Fprintf(w, "%s: not installed (no %s)\n", m.c.Name, m.unitName())
	case st.Systemd:
		fmt.Fprintf(w, "%s: installed (%s), %s, %s\n", m.c.Name, st.Unit, orUnknown(st.Enabled), orUnknown(st.Active))
	default:
		fmt.Fprintf(w, "%s: installed (%s)\n", m.c.Name, st.Unit)
	}
	if !st.Systemd {
		fmt.Fprintf(w, "service manager: systemd is not running as PID 1 (PID 1 is %q); whether the unit is enabled or active cannot be asked\n", st.PID1)
	}
	if len(st.Processes) > 0 {
		pids := make([]string, len(st.Processes))
		for i, p := range st.Processes {
			pids[i] = strconv.Itoa(p)
		}
		fmt.Fprintf(w, "process: running (pid %s)\n", strings.Join(pids, ", "))
	} else {
		fmt.Fprintf(w, "process: not running\n")
	}
	if m.c.ConfigFile != "" {
		if _, err := os.Stat(m.path(m.c.ConfigFile)); err == nil {
			fmt.Fprintf(w, "config: %s\n", m.c.ConfigFile)
		} else {
			fmt.Fprintf(w, "config: %s (missing; defaults apply)\n", m.c.ConfigFile)
		}
	}
	return st
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// processes finds `<name> run` processes other than this one.
func (m *Manager) processes() []int {
	entries, err := os.ReadDir(m.path("/proc"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(m.path(fmt.Sprintf("/proc/%d/cmdline", pid)))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) >= 2 && filepath.Base(args[0]) == m.c.Name && args[1] == "run" {
			pids = append(pids, pid)
		}
	}
	return pids
}
