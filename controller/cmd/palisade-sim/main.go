// Command palisade-sim runs a fleet of SIMULATED agents against a
// controller, to load it the way real hosts do (see internal/sim).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/palisade-sec/palisade/agent/heartbeat"
	"github.com/palisade-sec/palisade/internal/sim"
)

const help = `palisade-sim runs N SIMULATED agents in one process against a Palisade
controller. It is a load generator and a test tool, not an agent: there are
no kernel sensors and nothing is enforced. Quarantine, release, kill, block
and hunt commands are verified and acknowledged like a real agent's, but
their effect is only recorded in memory (the quarantine flag is a bool).

What is real: each simulated agent enrols through the API with its own
one-time enrolment token (created with the admin token in --token-file),
keeps its identity in its own directory under --state-dir (a rerun with the
same --state-dir reuses the identities instead of enrolling again), connects
to NATS under its own nkey, heartbeats, sends events through an on-disk
spool and JetStream with acknowledgements, executes signed commands and
verifies and applies the fleet policy bundle.

usage: palisade-sim --api URL --token-file FILE --agents N [flags]

`

func main() {
	if err := run(); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "palisade-sim:", err)
		}
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("palisade-sim", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		fs.PrintDefaults()
	}
	api := fs.String("api", os.Getenv("PALISADE_API"), "controller API URL(s), comma-separated (env PALISADE_API)")
	tokenFile := fs.String("token-file", os.Getenv("PALISADE_TOKEN_FILE"), "file holding an admin API token, to create enrolment tokens (env PALISADE_TOKEN_FILE)")
	agents := fs.Int("agents", 10, "simulated agents")
	hb := fs.Duration("heartbeat-interval", heartbeat.DefaultInterval, "heartbeat interval of every agent")
	eps := fs.Float64("events-per-sec", 0, "events each agent sends per second")
	duration := fs.Duration("duration", 0, "run this long, then stop (0: until SIGINT/SIGTERM)")
	stateDir := fs.String("state-dir", "palisade-sim-state", "one directory per simulated agent (identity, spool) under this")
	concurrency := fs.Int("enroll-concurrency", sim.DefaultEnrollConcurrency, "parallel enrolments and connects")
	statsEvery := fs.Duration("stats-every", 10*time.Second, "print fleet counters this often (0: only at the end)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *api == "" || *tokenFile == "" {
		return errors.New("--api and --token-file are required (-h for help)")
	}
	if *agents <= 0 {
		return errors.New("--agents must be positive")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fmt.Errorf("read token file: %w", err)
	}
	if err := sim.RaiseFileLimit(*agents); err != nil {
		log.Warn("open-file limit", "err", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	f, err := sim.Start(ctx, sim.Config{
		API: *api, AdminToken: strings.TrimSpace(string(tok)), StateDir: *stateDir,
		HeartbeatInterval: *hb, EventsPerSec: *eps, EnrollConcurrency: *concurrency, Logger: log,
	}, *agents)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Printf("%d simulated agents running (started in %s); simulated enforcement only\n", *agents, time.Since(start).Round(time.Millisecond))
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			s := f.Stats()
			fmt.Printf("final: %+v\n", s)
			return f.Close()
		case <-tick:
			fmt.Printf("%s: %+v\n", time.Since(start).Round(time.Second), f.Stats())
		}
	}
}
