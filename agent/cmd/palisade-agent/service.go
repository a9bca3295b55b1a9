package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/palisade-sec/palisade/agent/enroll"
	"github.com/palisade-sec/palisade/agent/hostinfo"
	"github.com/palisade-sec/palisade/internal/config"
	"github.com/palisade-sec/palisade/internal/logging"
	"github.com/palisade-sec/palisade/internal/svc"
	"github.com/palisade-sec/palisade/internal/version"
)

func cli() svc.CLI {
	return svc.CLI{
		Service: service(), Spec: config.AgentSpec,
		NewConfig: func() any { return &config.Agent{} },
		Stdout:    os.Stdout, Stderr: os.Stderr,
	}
}

// manage answers install, uninstall, start, stop, restart, status and
// config check, and exits with their code.
func manage(cmd string, args []string) error {
	if code := cli().Main(cmd, args); code != 0 {
		os.Exit(code)
	}
	return nil
}

// enrollCmd enrols now (so a bad token fails here, not in the journal),
// writes the other flags to the config file (never the token: it is
// spent), installs the unit if needed and (re)starts the service.
func enrollCmd(args []string) error {
	cfg, b, err := bindConfig("enroll", args)
	if err != nil {
		return err
	}
	b.MissingOK = true // enroll creates the file
	if err := b.Load(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if cfg.ControllerURL == "" || cfg.EnrollToken == "" {
		return errors.New("enroll needs --controller URL and --enroll-token TOKEN")
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := enroll.Ensure(ctx, enroll.Config{
		StateDir: cfg.StateDir, ControllerURL: cfg.ControllerURL, Token: cfg.EnrollToken,
		Host: hostinfo.Read(), AgentVersion: version.Version, Logger: log,
	})
	if err != nil {
		return err
	}
	fmt.Printf("enrolled: host %s in cluster %s (identity in %s)\n", id.HostID, id.ClusterID, cfg.StateDir)
	path, written, err := b.WriteFlags("enroll_token")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Printf("config: wrote %v to %s\n", written, path)
	m, err := svc.New(service())
	if err != nil {
		return err
	}
	if up, _ := m.Systemd(); up && m.InstalledUnit() == "" {
		msg, err := m.Install()
		if err != nil {
			return err
		}
		fmt.Println(msg)
	}
	if err := m.Restart(); err != nil {
		if errors.Is(err, svc.ErrNoSystemd) {
			fmt.Println("service not started:", err)
			return nil
		}
		return err
	}
	fmt.Println("palisade-agent: started")
	return nil
}
