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
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/version"
)

const usage = `usage: palisade-agent <command> [flags]

commands:
  run       run the agent in the foreground
  cleanup   detach and remove the pinned BPF programs and maps (ends enforcement)
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
	case "cleanup":
		err = cleanup(os.Args[2:])
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
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve /metrics on this address (e.g. 127.0.0.1:9464; empty: off)")
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

// cleanup removes the pins of one scope: enforcement, quarantine included,
// ends.
func cleanup(args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	cgroup := fs.String("cgroup", "", "the scope the agent ran with (as given to run)")
	pinDir := fs.String("pin-dir", "", "the pin dir the agent ran with (default derived from --cgroup)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := *pinDir
	if dir == "" {
		if *cgroup == "" {
			return errors.New("cleanup needs --cgroup or --pin-dir")
		}
		dir = sensor.DefaultPinDir(*cgroup)
	}
	if err := sensor.Cleanup(dir); err != nil {
		return err
	}
	fmt.Println("removed", dir)
	return nil
}
