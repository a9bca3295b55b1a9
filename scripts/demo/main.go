// Command demo is `make demo`: the whole Palisade story on one machine.
//
// It starts a single-node controller (embedded NATS) and an agent whose
// enforcement scope is a cgroup the demo creates, applies a policy, and
// plays an attack inside that cgroup: a credential file read (killed), an
// instance-metadata credential fetch (denied), a connection to a known
// C2 address (blocked fleet-wide as an IOC), a honeytoken read (host
// quarantined automatically), then an operator release. It prints a
// timeline with each step's latency and removes everything it created.
// Loopback addresses stand in for the metadata service and the C2 server.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
)

const cgroupRoot = "/sys/fs/cgroup/unified"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	d := &demo{ctx: ctx}
	err := d.run()
	if err != nil && d.work != "" {
		for _, name := range []string{"palisade-agent", "palisade-controller"} {
			if b, rerr := os.ReadFile(filepath.Join(d.work, name+".log")); rerr == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				fmt.Fprintf(os.Stderr, "\n-- last lines of the %s log --\n%s\n", name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
			}
		}
	}
	d.cleanup()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	ctx    context.Context
	work   string
	bin    string
	cgroup string
	pins   string
	procs  []*exec.Cmd
	lns    []net.Listener
	cl     *apiclient.Client
	host   string
	t0     time.Time
	rows   [][3]string
}

func (d *demo) step(what string) { fmt.Printf("\n\033[1m== %s\033[0m\n", what) }

func (d *demo) record(what string, latency time.Duration, outcome string) {
	d.rows = append(d.rows, [3]string{what, latency.Round(time.Millisecond).String(), outcome})
	fmt.Printf("   %-55s %8s  %s\n", what, latency.Round(time.Millisecond), outcome)
}

func randHex() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr(ip string) (string, error) {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// listen starts a server that answers every connection with a line.
func (d *demo) listen(addr, banner string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	d.lns = append(d.lns, ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, banner)
			c.Close()
		}
	}()
	return ln.Addr().String(), nil
}

func (d *demo) start(name string, args ...string) error {
	cmd := exec.Command(filepath.Join(d.bin, name), args...)
	logf, err := os.Create(filepath.Join(d.work, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.procs = append(d.procs, cmd)
	return nil
}

// inScope runs a command inside the demo cgroup and reports how it ended.
func (d *demo) inScope(name string, args ...string) (string, string, time.Duration) {
	fd, err := syscall.Open(d.cgroup, syscall.O_DIRECTORY|syscall.O_RDONLY, 0)
	if err != nil {
		return "", "error: " + err.Error(), 0
	}
	defer syscall.Close(fd)
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), "exited 0", took
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sig := ws.Signal().String()
			if ws.Signal() == syscall.SIGKILL {
				sig = "SIGKILL"
			}
			return out.String(), "killed by " + sig, took
		}
		return out.String(), fmt.Sprintf("failed (exit %d)", ee.ExitCode()), took
	}
	return out.String(), "error: " + err.Error(), took
}

// dial connects from inside the scope with bash's /dev/tcp.
func (d *demo) dial(addr string) (string, time.Duration) {
	host, port, _ := net.SplitHostPort(addr)
	out, how, took := d.inScope("/bin/bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && head -n1 <&3", host, port))
	if how == "exited 0" {
		return "connected: " + strings.TrimSpace(out), took
	}
	if i := strings.Index(out, "Operation not permitted"); i >= 0 {
		return "refused: EPERM (Operation not permitted)", took
	}
	return how + ": " + strings.TrimSpace(out), took
}

func (d *demo) wait(what string, timeout time.Duration, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, err := cond()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("timed out waiting for %s", what)
		}
		select {
		case <-d.ctx.Done():
			return 0, d.ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *demo) hostView() (apiv1.Host, error) {
	var h apiv1.Host
	err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/hosts/"+d.host, nil, nil, &h)
	return h, err
}

// sawEvent reports whether the controller holds an event of kind whose
// JSON contains all of want.
func (d *demo) sawEvent(kind string, want ...string) (bool, error) {
	var out struct {
		Events []map[string]any `json:"events"`
	}
	if err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/hosts/"+d.host+"/events", map[string][]string{"kind": {kind}, "limit": {"200"}}, nil, &out); err != nil {
		return false, err
	}
	for _, ev := range out.Events {
		s := fmt.Sprint(ev)
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

func (d *demo) run() error {
	if os.Geteuid() != 0 {
		return errors.New("the demo loads eBPF programs: run it as root")
	}
	exe, _ := os.Getwd()
	d.bin = filepath.Join(exe, "bin")
	var err error
	if d.work, err = os.MkdirTemp("", "palisade-demo-"); err != nil {
		return err
	}
	id := randHex()
	d.cgroup = filepath.Join(cgroupRoot, "palisade-demo-"+id)
	d.pins = "/sys/fs/bpf/palisade-demo-" + id
	if err := os.Mkdir(d.cgroup, 0o755); err != nil {
		return fmt.Errorf("create demo cgroup: %w", err)
	}
	empty := filepath.Join(d.work, "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return err
	}

	d.step("controller: Raft + embedded NATS + API, one node")
	api, _ := freeAddr("127.0.0.1")
	raftAddr, _ := freeAddr("127.0.0.1")
	natsAddr, _ := freeAddr("127.0.0.1")
	data := filepath.Join(d.work, "controller")
	if err := d.start("palisade-controller", "run", "--config", empty, "--node-id", "demo-1", "--data-dir", data,
		"--api-addr", api, "--raft-addr", raftAddr, "--nats-listen", natsAddr, "--bootstrap"); err != nil {
		return err
	}
	tokenFile := filepath.Join(data, "admin.token")
	if _, err := d.wait("controller", 30*time.Second, func() (bool, error) {
		b, err := os.ReadFile(tokenFile)
		if err != nil || len(b) == 0 {
			return false, nil
		}
		resp, err := http.Get("http://" + api + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}); err != nil {
		return err
	}
	tok, _ := os.ReadFile(tokenFile)
	if d.cl, err = apiclient.New("http://"+api, strings.TrimSpace(string(tok))); err != nil {
		return err
	}
	fmt.Println("   API", "http://"+api, " NATS", natsAddr)

	// The stage: a credential file with its one legitimate reader, a
	// stand-in metadata service, a stand-in C2 server, and a normal site.
	home := filepath.Join(d.work, "home", "alice")
	creds := filepath.Join(home, ".aliyun", "config.json")
	decoy := filepath.Join(home, ".aliyun", "config.json.bak")
	if err := os.MkdirAll(filepath.Dir(creds), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(creds, []byte(`{"profiles":[{"name":"default","access_key_id":"LTAI5tDemoKeyId1234567","access_key_secret":"demo"}]}`+"\n"), 0o600); err != nil {
		return err
	}
	aliyun := filepath.Join(d.work, "bin", "aliyun")
	if err := os.MkdirAll(filepath.Dir(aliyun), 0o755); err != nil {
		return err
	}
	if catBin, err := os.ReadFile("/bin/cat"); err != nil {
		return err
	} else if err := os.WriteFile(aliyun, catBin, 0o755); err != nil {
		return err
	}
	metadata, err := d.listen("127.0.0.77:0", `{"AccessKeyId":"STS.demo","SecurityToken":"demo"}`)
	if err != nil {
		return err
	}
	c2, err := d.listen("127.0.0.66:0", "c2: awaiting orders")
	if err != nil {
		return err
	}
	site, err := d.listen("127.0.0.1:0", "HTTP/1.1 200 OK (a normal site)")
	if err != nil {
		return err
	}

	d.step("agent: enrols, loads its eBPF sensors into the demo cgroup " + filepath.Base(d.cgroup))
	var et apiv1.EnrollToken
	if err := d.cl.Do(d.ctx, http.MethodPost, "/api/v1/enroll-tokens", nil, apiv1.CreateEnrollTokenRequest{TTL: "10m"}, &et); err != nil {
		return err
	}
	if err := d.start("palisade-agent", "run", "--config", empty, "--controller", "http://"+api, "--enroll-token", et.Token,
		"--state-dir", filepath.Join(d.work, "agent"), "--cgroup", d.cgroup, "--pin-dir", d.pins, "--heartbeat-interval", "1s"); err != nil {
		return err
	}
	if _, err := d.wait("host online", 30*time.Second, func() (bool, error) {
		var hl apiv1.HostList
		if err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/hosts", nil, nil, &hl); err != nil {
			return false, err
		}
		for _, h := range hl.Hosts {
			if h.Online {
				d.host = h.ID
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	fmt.Println("   host", d.host, "online")

	d.step("operator applies a policy (credential file, metadata endpoint, honeytoken, response) and reports a C2 address")
	policyDoc := fmt.Sprintf(`apiVersion: palisade/v1
kind: Policy
metadata: {name: demo}
spec:
  mode: enforce
  credentials:
    files:
      - paths: [%q]
        readers: [%q]
    metadata:
      endpoints: [%q]
      clients: [%q]
    honeytokens:
      - {path: %q, provider: alibaba}
  response:
    actions:          # a honeytoken read is proof of compromise: quarantine
      - {minSeverity: critical, rule: honeytoken-opened, action: quarantine}
`, filepath.Join(d.work, "home", "*", ".aliyun", "config.json"), aliyun, metadata, "/usr/bin/cloud-init", decoy)
	var pv apiv1.Policy
	if err := d.cl.Do(d.ctx, http.MethodPost, "/api/v1/policies", nil, apiv1.ApplyPolicyRequest{Name: "demo.yaml", Source: policyDoc}, &pv); err != nil {
		return err
	}
	c2IP, _, _ := net.SplitHostPort(c2)
	var ioc apiv1.IOC
	if err := d.cl.Do(d.ctx, http.MethodPost, "/api/v1/iocs", nil, apiv1.AddIOCRequest{Type: "ip", Value: c2IP, Comment: "demo C2"}, &ioc); err != nil {
		return err
	}
	took, err := d.wait("policy and IOC in force", 30*time.Second, func() (bool, error) {
		h, err := d.hostView()
		return err == nil && h.PolicyVersion == pv.Version && h.PolicyRevision != 0, err
	})
	if err != nil {
		return err
	}
	d.record("policy v"+fmt.Sprint(pv.Version)+" + IOC "+c2IP+" enforced on the host", took, "signed bundle via the KV bucket")
	if _, err := os.Stat(decoy); err != nil {
		return fmt.Errorf("honeytoken not planted: %w", err)
	}

	d.step("the attack, inside the scope")
	d.t0 = time.Now()
	out, how, took := d.inScope(aliyun, creds)
	d.record("aliyun CLI reads its credentials (allowed reader)", took, how+firstLine(out))
	_, how, took = d.inScope("/bin/cat", creds)
	d.record("attacker: cat ~/.aliyun/config.json", took, how+" before reading a byte")
	if took, err = d.wait("kill event", 30*time.Second, func() (bool, error) { return d.sawEvent("file", "VERDICT_KILLED") }); err != nil {
		return err
	}
	d.record("  ...the controller holds the event", took, "file_open, verdict KILLED")

	res, took := d.dial(metadata)
	d.record("attacker: fetch metadata credentials ("+metadata+")", took, res)
	res, took = d.dial(c2)
	d.record("attacker: connect to the C2 server "+c2, took, res)
	res, took = d.dial(site)
	d.record("normal traffic to "+site, took, res)

	_, how, took = d.inScope("/bin/cat", decoy)
	opened := time.Now()
	d.record("attacker: cat ~/.aliyun/config.json.bak (a honeytoken)", took, how)
	var inc apiv1.Incident
	took, err = d.wait("automatic quarantine", 60*time.Second, func() (bool, error) {
		var l apiv1.IncidentList
		if err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/incidents", nil, nil, &l); err != nil {
			return false, err
		}
		for _, in := range l.Incidents {
			if in.HostID == d.host && in.Rule == "honeytoken-opened" && len(in.ActionIDs) > 0 {
				inc = in
				var a apiv1.Action
				if err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/actions/"+in.ActionIDs[0], nil, nil, &a); err != nil {
					return false, err
				}
				return a.State == "acked", nil
			}
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	d.record("  ...incident opened, host quarantined, agent confirmed", time.Since(opened), "incident "+inc.ID+" ("+inc.Severity+")")
	_ = took
	res, took = d.dial(site)
	d.record("normal traffic while quarantined", took, res)

	d.step("operator reviews and releases the host")
	var rel apiv1.Action
	relStart := time.Now()
	if err := d.cl.Do(d.ctx, http.MethodPost, "/api/v1/hosts/"+d.host+"/release", nil, apiv1.QuarantineRequest{Reason: "demo: investigated, credentials rotated"}, &rel); err != nil {
		return err
	}
	if _, err := d.wait("release", 30*time.Second, func() (bool, error) {
		var a apiv1.Action
		err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/actions/"+rel.ID, nil, nil, &a)
		return err == nil && a.State == "acked", err
	}); err != nil {
		return err
	}
	d.record("release acknowledged by the agent", time.Since(relStart), "action "+rel.ID)
	res, took = d.dial(site)
	d.record("normal traffic after release", took, res)

	d.step("timeline")
	for _, r := range d.rows {
		fmt.Printf("   %-55s %8s  %s\n", r[0], r[1], r[2])
	}
	d.step("audit trail (last entries)")
	var audit apiv1.AuditList
	if err := d.cl.Do(d.ctx, http.MethodGet, "/api/v1/audit", map[string][]string{"limit": {"1000"}}, nil, &audit); err == nil {
		for _, e := range audit.Entries[max(0, len(audit.Entries)-8):] {
			fmt.Printf("   %-22s %-26s %s %s\n", e.Actor, e.Action, e.Target, e.Detail)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return ", printed " + s
}

// cleanup stops what the demo started (by pid), removes the pins, the
// cgroup and the work dir.
func (d *demo) cleanup() {
	for _, ln := range d.lns {
		ln.Close()
	}
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	if d.pins != "" {
		if out, err := exec.Command(filepath.Join(d.bin, "palisade-agent"), "cleanup", "--pin-dir", d.pins).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup pins: %v %s\n", err, out)
		}
		_ = os.RemoveAll(d.pins)
	}
	if d.cgroup != "" {
		if procs, err := os.ReadFile(filepath.Join(d.cgroup, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(procs)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		for i := 0; i < 50; i++ {
			if err := os.Remove(d.cgroup); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if d.work != "" {
		_ = os.RemoveAll(d.work)
	}
	fmt.Println("\ncleaned up: processes stopped, pins and demo cgroup removed")
}
