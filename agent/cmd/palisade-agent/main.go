// Command palisade-agent runs Palisade's host agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/config"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/svc"
	"github.com/palisade-sec/palisade/internal/version"
	"github.com/palisade-sec/palisade/packaging/systemd"
)

const usage = `usage: palisade-agent <command> [flags]

commands:
  run       run the agent (in the foreground, or as the service)
  install   write the flags (same as run's) to the config file and install
            the service; --start starts it too
  enroll    enrol with a controller now, save its URL in the config file
            and (re)start the service: --controller URL --enroll-token T
  uninstall stop and remove the service (the config file stays)
  start, stop, restart
            the service, through systemd
  status    whether the service is installed and running (exit 0 running,
            3 not running)
  config check [--config FILE]
            validate a configuration file and print what is wrong
  cleanup   detach and remove the pinned BPF programs and maps (ends enforcement)
  version   print the version

configuration: flags > environment (PALISADE_AGENT_<KEY>, e.g.
PALISADE_AGENT_STATE_DIR) > file (/etc/palisade/agent.yaml, or --config or
PALISADE_AGENT_CONFIG) > defaults; ` + "`palisade-agent run -h`" + ` lists the keys.
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
	case "enroll":
		err = enrollCmd(os.Args[2:])
	case "install", "uninstall", "start", "stop", "restart", "status", "config":
		err = manage(os.Args[1], os.Args[2:])
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
	cfg, err := loadConfig("run", args)
	if err != nil {
		return err
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	var dcfg daemon.Config
	config.Into(&dcfg, cfg)
	if dcfg.EnrollToken == "" {
		dcfg.EnrollToken = os.Getenv("PALISADE_ENROLL_TOKEN") // older name, kept
	}
	dcfg.Logger = log
	// Under systemd or in the foreground alike: svc.Run returns on SIGTERM or
	// SIGINT after Close, or at once if the agent cannot start.
	return svc.Run(service(), func(ctx context.Context) error {
		a, err := daemon.Start(ctx, dcfg)
		if err != nil {
			return err
		}
		<-ctx.Done()
		log.Info("shutting down")
		return a.Close()
	})
}

// loadConfig parses the flags of run (and install) and loads the
// configuration: flags over PALISADE_AGENT_* over the file over defaults.
func loadConfig(name string, args []string) (*config.Agent, error) {
	cfg, b, err := bindConfig(name, args)
	if err != nil {
		return nil, err
	}
	if err := b.Load(); err != nil {
		return nil, fmt.Errorf("configuration:\n%w", err)
	}
	return cfg, nil
}

func bindConfig(name string, args []string) (*config.Agent, *config.Binding, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg := &config.Agent{}
	b := config.Bind(fs, config.AgentSpec, cfg)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, b, nil
}

func service() svc.Config {
	return svc.Config{Name: "palisade-agent", Description: "Palisade endpoint agent",
		Unit: systemd.Agent, ConfigFile: config.AgentSpec.DefaultPath}
}

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
