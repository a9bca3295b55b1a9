// Command palisade-agent runs Palisade's host agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/version"
)

const usage = `usage: palisade-agent <command> [flags]

commands:
  run       run the agent in the foreground
  version   print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "version", "--version":
		fmt.Println(version.Version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "palisade-agent:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg daemon.Config
	fs.StringVar(&cfg.ControllerURL, "controller", "", "controller API URL, e.g. http://10.0.0.5:8080")
	fs.StringVar(&cfg.EnrollToken, "enroll-token", "", "one-time enrolment token (first start only)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/palisade-agent", "where the agent keeps its identity and state")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", heartbeat.DefaultInterval, "how often to report to the controller")
	fs.StringVar(&cfg.CgroupPath, "cgroup", "", "cgroup v2 directory that scopes enforcement (production: the cgroup v2 root)")
	fs.StringVar(&cfg.PinDir, "pin-dir", "", "where BPF objects are pinned (default /sys/fs/bpf/palisade/<scope>)")
	fs.StringVar(&cfg.PolicyFile, "policy", "", "policy file to enforce locally, with or without a controller")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.EnrollToken == "" {
		cfg.EnrollToken = os.Getenv("PALISADE_ENROLL_TOKEN")
	}
	log, err := logging.New(os.Stderr, *level, *format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := daemon.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	return a.Close()
}
