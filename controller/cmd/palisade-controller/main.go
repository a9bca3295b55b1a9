// Command palisade-controller runs one node of the Palisade controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/config"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/svc"
	"github.com/palisade-sec/palisade/internal/version"
	"github.com/palisade-sec/palisade/packaging/systemd"
)

const usage = `usage: palisade-controller <command> [flags]

commands:
  run       run a controller node (in the foreground, or as the service)
  install   write the flags (same as run's) to the config file and install
            the service; --start starts it too
  uninstall stop and remove the service (the config file stays)
  start, stop, restart
            the service, through systemd
  status    whether the service is installed and running (exit 0 running,
            3 not running)
  config check [--config FILE]
            validate a configuration file and print what is wrong
  version   print the version

configuration: flags > environment (PALISADE_CONTROLLER_<KEY>, e.g.
PALISADE_CONTROLLER_NODE_ID) > file (/etc/palisade/controller.yaml, or
--config or PALISADE_CONTROLLER_CONFIG) > defaults;
` + "`palisade-controller run -h`" + ` lists the keys.
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
			fmt.Fprintln(os.Stderr, "palisade-controller:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := &config.Controller{}
	b := config.Bind(fs, config.ControllerSpec, cfg)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	// Flags over PALISADE_CONTROLLER_* over the file over defaults.
	if err := b.Load(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	var scfg server.Config
	config.Into(&scfg, cfg)
	scfg.Logger = log
	// Under systemd or in the foreground alike: svc.Run returns on SIGTERM or
	// SIGINT after Close, or at once if the node cannot start.
	return svc.Run(service(), func(ctx context.Context) error {
		c, err := server.Start(ctx, scfg)
		if err != nil {
			return err
		}
		<-ctx.Done()
		log.Info("shutting down")
		return c.Close()
	})
}

func service() svc.Config {
	return svc.Config{Name: "palisade-controller", Description: "Palisade controller",
		Unit: systemd.Controller, ConfigFile: config.ControllerSpec.DefaultPath}
}

// manage answers install, uninstall, start, stop, restart, status and
// config check, and exits with their code.
func manage(cmd string, args []string) error {
	code := svc.CLI{
		Service: service(), Spec: config.ControllerSpec,
		NewConfig: func() any { return &config.Controller{} },
		Stdout:    os.Stdout, Stderr: os.Stderr,
	}.Main(cmd, args)
	if code != 0 {
		os.Exit(code)
	}
	return nil
}
