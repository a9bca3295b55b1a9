package svc

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/palisade-sec/palisade/internal/config"
)

// CLI answers a binary's service and config commands.
type CLI struct {
	Service Config
	Spec    config.Spec
	// NewConfig returns a pointer to a fresh config struct.
	NewConfig func() any
	// SkipInstall lists keys install does not write to the file.
	SkipInstall    []string
	Stdout, Stderr io.Writer
}

// Main runs one command and returns the exit code: 0 success, 1 failure,
// 2 usage; status exits 0 when running and 3 when not (as LSB init
// scripts do).
func (c CLI) Main(cmd string, args []string) int {
	err := c.run(cmd, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	case errors.Is(err, errNotRunning):
		return 3
	}
	fmt.Fprintf(c.Stderr, "%s %s: %v\n", c.Service.Name, cmd, err)
	return 1
}

var errNotRunning = errors.New("not running")

func (c CLI) run(cmd string, args []string) error {
	if cmd == "config" {
		return c.config(args)
	}
	if cmd == "install" {
		return c.install(args)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	m, err := New(c.Service)
	if err != nil {
		return err
	}
	switch cmd {
	case "uninstall":
		msg, err := m.Uninstall()
		if err != nil {
			return err
		}
		fmt.Fprintln(c.Stdout, msg)
		return nil
	case "start", "stop", "restart":
		f := map[string]func() error{"start": m.Start, "stop": m.Stop, "restart": m.Restart}[cmd]
		if err := f(); err != nil {
			return err
		}
		past := map[string]string{"start": "started", "stop": "stopped", "restart": "restarted"}[cmd]
		fmt.Fprintf(c.Stdout, "%s: %s\n", c.Service.Name, past)
		return nil
	case "status":
		if !m.Status(c.Stdout).Running() {
			return errNotRunning
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// install validates the configuration the flags give, writes the flags to
// the file, and installs the unit.
func (c CLI) install(args []string) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	start := fs.Bool("start", false, "start (or restart) the service after installing it")
	b := config.Bind(fs, c.Spec, c.NewConfig())
	b.MissingOK = true // install creates the file
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := b.Load(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	m, err := New(c.Service)
	if err != nil {
		return err
	}
	path, written, err := b.WriteFlags(c.SkipInstall...)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if len(written) > 0 {
		fmt.Fprintf(c.Stdout, "config: wrote %s to %s\n", strings.Join(written, ", "), path)
	} else {
		fmt.Fprintf(c.Stdout, "config: %s unchanged\n", path)
	}
	msg, err := m.Install()
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, msg)
	if *start {
		if err := m.Restart(); err != nil {
			return err
		}
		fmt.Fprintf(c.Stdout, "%s: started\n", c.Service.Name)
	}
	return nil
}

// config answers `config check [--config FILE]`: the file alone (defaults
// plus file, not the environment), every problem on its own line.
func (c CLI) config(args []string) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintf(c.Stderr, "usage: %s config check [--config FILE]\n", c.Service.Name)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	b := config.Bind(fs, c.Spec, c.NewConfig())
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if len(b.FlagsSet()) > 0 || fs.NArg() > 0 {
		return errors.New("config check takes only --config FILE")
	}
	path, _ := b.Path()
	if err := b.LoadFile(); err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			fmt.Fprintf(c.Stdout, "%s: %d problem(s):\n", path, len(ps))
			for _, p := range ps {
				fmt.Fprintf(c.Stdout, "  %s\n", p)
			}
			return fmt.Errorf("%s is not valid", path)
		}
		return err
	}
	if b.File() == "" {
		fmt.Fprintf(c.Stdout, "%s: no such file (defaults apply and are valid)\n", path)
		return nil
	}
	fmt.Fprintf(c.Stdout, "%s: ok\n", path)
	return nil
}
