// Package extnats runs Palisade against an operator's NATS cluster: three
// nats-server nodes in operator/JWT mode with JetStream, started by the
// test on loopback; a controller pointed at them with --nats-url, a .creds
// file and the account signing key; real agents that get their NATS user
// JWT at enrolment.
package extnats

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/agent/daemon"
	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/controller/server"
	"github.com/palisade-sec/palisade/internal/apiclient"
	"github.com/palisade-sec/palisade/internal/apiv1"
	"github.com/palisade-sec/palisade/internal/bpftest"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/streams"
	"github.com/palisade-sec/palisade/internal/subjects"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// waitLong bounds every wait; waits poll, so it costs nothing when things
// work (a NATS node loss can take a JetStream leader election or two).
const waitLong = 60 * time.Second

// ingestLog records the executables whose exec events the controller
// leader ingested, per host.
type ingestLog struct {
	mu    sync.Mutex
	execs map[string]map[string]bool
}

func newIngestLog() *ingestLog { return &ingestLog{execs: map[string]map[string]bool{}} }

func (l *ingestLog) observe(host string, evs []*palisadev1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.execs[host] == nil {
		l.execs[host] = map[string]bool{}
	}
	for _, ev := range evs {
		if f := ev.GetExec().GetFilename(); f != "" {
			l.execs[host][f] = true
		}
	}
}

func (l *ingestLog) sawExec(host, exe string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.execs[host][exe]
}

// externalConfig points a controller at the cluster.
func externalConfig(cfg *server.Config, nc *natsCluster, log *ingestLog) {
	cfg.NATSURL = nc.URLs()
	cfg.NATSCredsFile = nc.CredsFile
	cfg.NATSAccountSigningKeyFile = nc.SigningKeyFile
	cfg.StreamReplicas = 3
	if log != nil {
		cfg.OnIngestEvents = log.observe
	}
}

func newToken(t *testing.T, cl *apiclient.Client) string {
	t.Helper()
	tok, err := cl.CreateEnrollToken(context.Background(), apiv1.CreateEnrollTokenRequest{})
	if err != nil {
		t.Fatalf("create enrolment token: %v", err)
	}
	return tok.Token
}

func getHost(t *testing.T, cl *apiclient.Client, id string) apiv1.Host {
	t.Helper()
	var h apiv1.Host
	if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/hosts/"+id, nil, nil, &h); err != nil {
		t.Fatalf("get host: %v", err)
	}
	return h
}

func waitAction(t *testing.T, cl *apiclient.Client, id, want string) {
	t.Helper()
	controllertest.Eventually(t, waitLong, "action "+id+" "+want, func() bool {
		var a apiv1.Action
		// consistent: a follower may not have applied the action yet.
		if err := cl.Do(context.Background(), http.MethodGet, "/api/v1/actions/"+id,
			url.Values{"consistent": {"true"}}, nil, &a); err != nil {
			t.Fatalf("get action: %v", err)
		}
		if a.State == "failed" || a.State == "expired" {
			t.Fatalf("action %s ended %s: %s", id, a.State, a.Error)
		}
		return a.State == want
	})
}

func hostAction(t *testing.T, cl *apiclient.Client, host, verb string) string {
	t.Helper()
	var act apiv1.Action
	if err := cl.Do(context.Background(), http.MethodPost, "/api/v1/hosts/"+host+"/"+verb, nil,
		apiv1.QuarantineRequest{Reason: "extnats"}, &act); err != nil {
		t.Fatalf("%s: %v", verb, err)
	}
	return act.ID
}

// checkJWTIdentity: the agent holds a user JWT for its own nkey, issued
// for the operator's account, and was told every NATS node.
func checkJWTIdentity(t *testing.T, id *identity.Identity, nc *natsCluster) {
	t.Helper()
	if id.NATSUserJWT == "" {
		t.Fatal("agent enrolled without a NATS user JWT")
	}
	uc, err := jwt.DecodeUserClaims(id.NATSUserJWT)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.FromSeed([]byte(id.NKeySeed))
	pub, _ := kp.PublicKey()
	if uc.Subject != pub || uc.IssuerAccount != nc.Account {
		t.Fatalf("jwt for %s in account %s; want %s in %s", uc.Subject, uc.IssuerAccount, pub, nc.Account)
	}
	if len(id.NATSURLs) != 3 {
		t.Fatalf("agent knows NATS URLs %v, want all three", id.NATSURLs)
	}
}

// connectAs connects with a user JWT and an nkey that signs the nonce;
// async errors (permission violations) arrive on the channel.
func connectAs(urls, userJWT string, kp nkeys.KeyPair, inbox string) (*nats.Conn, chan error, error) {
	errs := make(chan error, 16)
	opts := []nats.Option{
		nats.UserJWT(func() (string, error) { return userJWT, nil }, kp.Sign),
		nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }),
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(urls, opts...)
	return nc, errs, err
}

func waitPermErr(t *testing.T, errs chan error, subject string) {
	t.Helper()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("got %v, want a permission violation on %s", err, subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no permission violation for %s", subject)
	}
}

// checkAgentPermissions connects with the agent's own identity and tries
// what an attacker holding it would: publish as another host, read
// another host's commands (subject and durable consumer), issue commands.
// ctrl (the controller's connection) watches what gets through.
func checkAgentPermissions(t *testing.T, nc *natsCluster, id *identity.Identity, ctrl *nats.Conn) {
	t.Helper()
	kp, err := nkeys.FromSeed([]byte(id.NKeySeed))
	if err != nil {
		t.Fatal(err)
	}
	seen, err := ctrl.SubscribeSync(subjects.Root + ".>")
	if err != nil {
		t.Fatal(err)
	}
	defer seen.Unsubscribe()
	if err := ctrl.Flush(); err != nil {
		t.Fatal(err)
	}
	ac, errs, err := connectAs(nc.URLs(), id.NATSUserJWT, kp, subjects.Inbox(id.HostID))
	if err != nil {
		t.Fatalf("agent identity refused: %v", err)
	}
	defer ac.Close()

	const other = "hother"
	own := subjects.HostPrefix(id.HostID) + ".probe"
	if err := ac.Publish(own, []byte("x")); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, waitLong, "the agent's own publish to reach the controller", func() bool {
		m, err := seen.NextMsg(100 * time.Millisecond)
		return err == nil && m.Subject == own
	})
	_ = ac.Publish(subjects.Heartbeat(other), []byte("forged"))
	waitPermErr(t, errs, subjects.Heartbeat(other))
	_ = ac.Publish(subjects.Telemetry(other, streams.KindEvents), []byte("forged"))
	waitPermErr(t, errs, subjects.Telemetry(other, streams.KindEvents))
	_, _ = ac.Subscribe(subjects.Commands(other)+".>", func(*nats.Msg) {})
	waitPermErr(t, errs, subjects.Commands(other))
	next := "$JS.API.CONSUMER.MSG.NEXT." + streams.Commands + "." + streams.AgentConsumer(other)
	_ = ac.Publish(next, []byte("1"))
	waitPermErr(t, errs, next)
	_ = ac.Publish(subjects.Command(id.HostID), []byte("self-command"))
	waitPermErr(t, errs, subjects.Command(id.HostID))
	_ = ac.Flush()
	if err := ctrl.Flush(); err != nil {
		t.Fatal(err)
	}
	// The agent's own heartbeats and telemetry keep coming: look at
	// everything for a second.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		m, err := seen.NextMsg(100 * time.Millisecond)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(m.Subject, subjects.HostPrefix(id.HostID)+".") {
			t.Fatalf("forged message delivered: %s", m.Subject)
		}
	}

	// The JWT alone is worth nothing: the nonce must be signed by its nkey.
	thief, _ := nkeys.CreateUser()
	if c, _, err := connectAs(nc.URLs(), id.NATSUserJWT, thief, ""); err == nil {
		c.Close()
		t.Fatal("a stolen JWT connected without the agent's nkey")
	}
	// A JWT the agent signed itself (not by the account) is refused.
	self := jwt.NewUserClaims(mustPub(t, kp))
	self.IssuerAccount = nc.Account
	forged, _ := self.Encode(kp)
	if c, _, err := connectAs(nc.URLs(), forged, kp, ""); err == nil {
		c.Close()
		t.Fatal("a self-signed user JWT connected")
	}
}

func mustPub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// waitTelemetry runs a copy of /bin/true named name in cg until the
// leader has ingested its exec event from host: telemetry that left the
// host after this call began.
func waitTelemetry(t *testing.T, cg *bpftest.Cgroup, log *ingestLog, host, name string) {
	t.Helper()
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	last := time.Time{}
	controllertest.Eventually(t, waitLong, "the exec of "+name+" in the leader's ingest", func() bool {
		if time.Since(last) > 500*time.Millisecond {
			if err := cg.Command(exe).Run(); err != nil {
				t.Fatalf("run %s: %v", exe, err)
			}
			last = time.Now()
		}
		return log.sawExec(host, exe)
	})
}

// TestExternalNATS_AgentJWT_TelemetryContainmentAndNodeLoss: a controller
// on a 3-node operator-mode NATS cluster enrols a real agent (kernel
// sensors in a child cgroup), which gets its own user JWT; its telemetry
// reaches the leader's ingest; its identity cannot act as another host; a
// quarantine reaches its kernel and is acknowledged; and after the NATS
// node the controller was connected to dies, telemetry keeps flowing and
// a release is acknowledged too.
func TestExternalNATS_AgentJWT_TelemetryContainmentAndNodeLoss(t *testing.T) {
	bpftest.RequireBPF(t)
	nc := startNATSCluster(t, 3)
	log := newIngestLog()
	cfg := controllertest.Config(t)
	cfg.RaftAddr = fixedAddr(t)
	externalConfig(&cfg, nc, log)
	c := controllertest.Start(t, cfg)
	cl := controllertest.AdminClient(t, c)

	cg, pins, state := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir()
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: state, ControllerURL: c.APIURL(), EnrollToken: newToken(t, cl),
		HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: pins, Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	host := a.HostID()
	checkJWTIdentity(t, a.Identity(), nc)

	controllertest.Eventually(t, waitLong, "host online (heartbeats over the external cluster)", func() bool {
		return getHost(t, cl, host).Online
	})
	waitTelemetry(t, cg, log, host, "before-node-loss")
	checkAgentPermissions(t, nc, a.Identity(), c.NATSConn())
	checkReplicas(t, c.NATSConn())

	outside := bpftest.Listen(t, "127.0.0.1:0")
	if !cg.CanDial(outside) {
		t.Fatal("no connectivity before quarantine")
	}
	waitAction(t, cl, hostAction(t, cl, host, "quarantine"), "acked")
	if q, err := a.Sensor().Quarantined(); err != nil || !q {
		t.Fatalf("kernel quarantine flag after ack: %v %v", q, err)
	}
	if cg.CanDial(outside) {
		t.Fatal("quarantined host reached a non-allowlisted address")
	}

	// Lose the NATS node the controller is connected to.
	killed := nc.Kill(c.NATSConn().ConnectedUrl())
	t.Logf("NATS node %d shut down", killed)
	waitTelemetry(t, cg, log, host, "after-node-loss")
	waitAction(t, cl, hostAction(t, cl, host, "release"), "acked")
	if q, err := a.Sensor().Quarantined(); err != nil || q {
		t.Fatalf("kernel quarantine flag after release: %v %v", q, err)
	}
	if !cg.CanDial(outside) {
		t.Fatal("release did not restore connectivity")
	}
}

// TestExternalNATS_ThreeControllers_LeaderAndNATSNodeLoss: three
// controller nodes share the external NATS cluster. An agent enrolled
// through a follower (the request is forwarded to the leader, which
// issues the JWT) reports and obeys; when the leading controller stops,
// the next leader takes over ingest and commands from the same durable
// JetStream state; when a NATS node dies too, both keep working.
func TestExternalNATS_ThreeControllers_LeaderAndNATSNodeLoss(t *testing.T) {
	bpftest.RequireBPF(t)
	nc := startNATSCluster(t, 3)
	log := newIngestLog()
	cs := controllertest.Cluster(t, 3, func(_ int, cfg *server.Config) {
		cfg.APIAddr, cfg.RaftAddr = fixedAddr(t), fixedAddr(t)
		externalConfig(cfg, nc, log)
	})
	lead := cs.Leader()
	follower := (lead + 1) % cs.Len()
	cl := cs.AdminClient()

	cg, pins, state := bpftest.NewCgroup(t), bpftest.PinDir(t), t.TempDir()
	a, err := daemon.Start(context.Background(), daemon.Config{
		StateDir: state, ControllerURL: cs.URLs()[follower], EnrollToken: newToken(t, cl),
		HeartbeatInterval: 100 * time.Millisecond, CgroupPath: cg.Path, PinDir: pins, Logger: controllertest.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	host := a.HostID()
	checkJWTIdentity(t, a.Identity(), nc)
	waitTelemetry(t, cg, log, host, "three-controllers")
	waitAction(t, cl, hostAction(t, cl, host, "quarantine"), "acked")

	cs.Stop(lead)
	newLead := cs.Leader()
	t.Logf("controller %s stopped; %s leads", cs.Configs[lead].NodeID, cs.Configs[newLead].NodeID)
	waitTelemetry(t, cg, log, host, "after-controller-loss")

	killed := nc.Kill(cs.Node(newLead).NATSConn().ConnectedUrl())
	t.Logf("NATS node %d (the leader's) shut down", killed)
	waitTelemetry(t, cg, log, host, "after-controller-and-nats-loss")
	waitAction(t, cl, hostAction(t, cl, host, "release"), "acked")
	if q, err := a.Sensor().Quarantined(); err != nil || q {
		t.Fatalf("kernel quarantine flag after release: %v %v", q, err)
	}
}

// checkReplicas: the leader created Palisade's streams and buckets with
// three replicas, spread over the three NATS nodes.
func checkReplicas(t *testing.T, conn *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{streams.Telemetry, streams.Commands, "KV_" + streams.PolicyBucket, "KV_" + streams.IngestBucket} {
		controllertest.Eventually(t, waitLong, name+" with 3 current replicas", func() bool {
			st, err := js.Stream(context.Background(), name)
			if err != nil {
				return false
			}
			info, err := st.Info(context.Background())
			if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return false
				}
			}
			return true
		})
	}
}
