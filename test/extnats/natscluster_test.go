package extnats

import (
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/internal/controllertest"
)

// natsCluster is an operator's NATS cluster as Palisade meets it in
// production: operator/JWT mode (memory resolver preloaded with the
// system and application account JWTs), JetStream on every node, routes
// between all of them. The operator has created, for Palisade: the
// account, a signing key of that account (given to the controller) and a
// controller user's .creds file.
type natsCluster struct {
	t       testing.TB
	servers []*server.Server
	// Account is the application account's public key.
	Account string
	// CredsFile is the controller user's .creds; SigningKeyFile holds the
	// account signing key's seed.
	CredsFile, SigningKeyFile string
	// SigningKey signs users of Account (tests forge agents with it).
	SigningKey nkeys.KeyPair
}

func mustKey(t testing.TB, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// startNATSCluster starts n NATS servers in operator mode on loopback.
func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	okp, opub := mustKey(t, nkeys.CreateOperator)
	_, spub := mustKey(t, nkeys.CreateAccount)   // system account
	akp, apub := mustKey(t, nkeys.CreateAccount) // Palisade's account
	sk, skpub := mustKey(t, nkeys.CreateAccount) // its signing key

	oc := jwt.NewOperatorClaims(opub)
	oc.Name = "test-operator"
	oc.SystemAccount = spub
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	sc := jwt.NewAccountClaims(spub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "PALISADE"
	ac.SigningKeys.Add(skpub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	_ = akp // the account's identity key stays with the operator

	// The controller's user: full rights in the account, signed by the
	// signing key (as `nsc add user -a PALISADE -K <signing key>` does).
	ukp, upub := mustKey(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(upub)
	uc.Name = "palisade-controller"
	uc.IssuerAccount = apub
	ujwt, err := uc.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nc := &natsCluster{t: t, Account: apub, SigningKey: sk,
		CredsFile: filepath.Join(dir, "controller.creds"), SigningKeyFile: filepath.Join(dir, "account-signing.nk")}
	skSeed, _ := sk.Seed()
	if err := os.WriteFile(nc.CredsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nc.SigningKeyFile, append(skSeed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	routes := make([]string, n)
	for i := range routes {
		routes[i] = fixedAddr(t)
	}
	for i := range n {
		res := &server.MemAccResolver{}
		if err := res.Store(spub, sysJWT); err != nil {
			t.Fatal(err)
		}
		if err := res.Store(apub, accJWT); err != nil {
			t.Fatal(err)
		}
		var rurls []*url.URL
		for j, r := range routes {
			if j != i {
				rurls = append(rurls, &url.URL{Scheme: "nats", Host: r})
			}
		}
		rhost, rport := splitHostPort(t, routes[i])
		opts := &server.Options{
			ServerName: "ext-" + string(rune('a'+i)),
			Host:       "127.0.0.1", Port: server.RANDOM_PORT,
			NoLog: true, NoSigs: true,
			JetStream: true, StoreDir: t.TempDir(),
			// A limit, not an allocation: room for the TELEMETRY stream's
			// MaxBytes reservation on a small test disk.
			JetStreamMaxStore:  1 << 40,
			JetStreamMaxMemory: 256 << 20,
			TrustedOperators:   []*jwt.OperatorClaims{opClaims},
			SystemAccount:      spub,
			AccountResolver:    res,
			Cluster:            server.ClusterOpts{Name: "ext", Host: rhost, Port: rport},
			Routes:             rurls,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats server %d: %v", i, err)
		}
		go s.Start()
		nc.servers = append(nc.servers, s)
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
	}
	for i, s := range nc.servers {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("nats server %d not ready", i)
		}
	}
	controllertest.Eventually(t, 60*time.Second, "a JetStream meta leader known to every NATS node", func() bool {
		for _, s := range nc.servers {
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
	return nc
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

// URLs is the comma-separated client URL list of every node.
func (c *natsCluster) URLs() string {
	var out []string
	for _, s := range c.servers {
		out = append(out, s.ClientURL())
	}
	return strings.Join(out, ",")
}

// Kill shuts down the node whose client URL is url and returns its index.
func (c *natsCluster) Kill(clientURL string) int {
	c.t.Helper()
	for i, s := range c.servers {
		if s.ClientURL() == clientURL {
			s.Shutdown()
			s.WaitForShutdown()
			return i
		}
	}
	c.t.Fatalf("no NATS node serves %s", clientURL)
	return -1
}

// fixedAddr is a free loopback address with a port below the kernel's
// ephemeral range, for listeners whose address must be known before they
// start: a port from the ephemeral range (controllertest.FreeAddr) can be
// taken meanwhile by one of the many outgoing connections to NATS, and
// the listen then fails.
func fixedAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(20000+mrand.IntN(12000)))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free loopback port in 20000-31999")
	return ""
}
