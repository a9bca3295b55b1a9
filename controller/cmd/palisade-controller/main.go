// Command palisade-controller runs one node of the Palisade controller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/version"
)

const usage = `usage: palisade-controller <command> [flags]

commands:
  run       run a controller node in the foreground
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
			fmt.Fprintln(os.Stderr, "palisade-controller:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg server.Config
	fs.StringVar(&cfg.NodeID, "node-id", "", "this node's id in the Raft cluster (required)")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/palisade-controller", "where Raft, JetStream and the admin token live")
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8080", "admin API listen address")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7000", "Raft listen (and advertised) address")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "embedded NATS server listen address")
	fs.StringVar(&cfg.NATSAdvertise, "nats-advertise", "", "NATS URL given to agents (default: the embedded server's)")
	fs.BoolVar(&cfg.Bootstrap, "bootstrap", false, "start a new cluster with this node as its first voter")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	format := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if cfg.NodeID == "" {
		return errors.New("--node-id is required")
	}
	log, err := logging.New(os.Stderr, *level, *format)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	return c.Close()
}
