// Package natsembed runs the NATS server (with JetStream) that a controller
// node embeds by default, and keeps its user list in step with the enrolled
// hosts: every agent is an nkey user allowed to publish only under its own
// host id and to read only its own commands; the controllers share one
// identity with full rights.
package natsembed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/palisade-sec/palisade/controller/natsauth"
)

// Config configures the embedded server.
type Config struct {
	// Listen is host:port for clients (port 0 or -1: random).
	Listen     string
	StoreDir   string // JetStream storage
	ServerName string
	// TLS, when set, makes the client port TLS-only (clients use tls://).
	TLS *tls.Config
	// ControllerNKey is the public nkey of the controllers' identity.
	ControllerNKey string
	// Agents are the agent users to start with (public nkey -> host id),
	// so agents reconnecting to a restarted server are admitted at once.
	Agents map[string]string
	Logger *slog.Logger
	// ClusterListen is host:port of the route listener that joins this
	// server with the other controller nodes' into one NATS cluster;
	// empty: a standalone server.
	ClusterListen string
	// ClusterName names the NATS cluster (the same on every node).
	ClusterName string
	// RouteUser and RoutePassword authenticate routes; every node derives
	// them from the replicated cluster secret.
	RouteUser, RoutePassword string
	// Routes are the other nodes' route addresses (host:port).
	Routes []string
}

// Server is a running embedded NATS server.
type Server struct {
	log  *slog.Logger
	mu   sync.Mutex
	ns   *server.Server
	opts *server.Options
	// controller is the controller's nkey. Not read back from
	// opts.Nkeys: a reload sorts that slice in place.
	controller string
	// agents currently configured, by nkey, to skip no-op reloads.
	agents map[string]string
	routes []string // sorted
}

func routeURLs(addrs []string, user, pass string) []*url.URL {
	var out []*url.URL
	for _, a := range addrs {
		u := &url.URL{Scheme: "nats", Host: a}
		if user != "" {
			u.User = url.UserPassword(user, pass)
		}
		out = append(out, u)
	}
	return out
}

// withSelf returns routes, or only this server's own route address when
// routes is empty: clustered JetStream refuses to start without any
// configured route, and a server ignores a route to itself. The first
// node of a new cluster starts this way and gets real routes (SetRoutes)
// as the others join.
func withSelf(routes []string, self string) []string {
	if len(routes) > 0 {
		return routes
	}
	return []string{self}
}

// JetStreamReady reports whether JetStream (clustered or not) has a meta
// leader and so can create streams.
func (s *Server) JetStreamReady() bool {
	if !s.ns.JetStreamEnabled() {
		return false
	}
	if !s.ns.JetStreamIsClustered() {
		return true
	}
	return s.ns.JetStreamIsCurrent()
}

// SetRoutes replaces the routes to the other nodes' NATS servers (a
// no-op for a standalone server or an unchanged list).
func (s *Server) SetRoutes(addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Cluster.Port == 0 {
		return nil
	}
	addrs = slices.Clone(addrs)
	slices.Sort(addrs)
	if slices.Equal(addrs, s.routes) {
		return nil
	}
	opts := s.opts.Clone()
	opts.Routes = routeURLs(withSelf(addrs, net.JoinHostPort(s.opts.Cluster.Host, strconv.Itoa(s.opts.Cluster.Port))),
		s.opts.Cluster.Username, s.opts.Cluster.Password)
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("reload nats routes: %w", err)
	}
	s.opts, s.routes = opts, addrs
	return nil
}

// NumRoutes is how many route connections the server has (tests).
func (s *Server) NumRoutes() int { return s.ns.NumRoutes() }

// ClusterAddr is the route listener's address, empty when standalone.
func (s *Server) ClusterAddr() string {
	if a := s.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.ControllerNKey == "" {
		// Without any user, nats-server would run with no authentication.
		return nil, errors.New("natsembed: controller nkey is required")
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS.Clone()
		opts.TLSTimeout = 5
	}
	if cfg.ClusterListen != "" {
		ch, cp, err := net.SplitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("nats cluster listen address %q: %w", cfg.ClusterListen, err)
		}
		cport, err := strconv.Atoi(cp)
		if err != nil {
			return nil, fmt.Errorf("nats cluster port %q: %w", cp, err)
		}
		opts.Cluster = server.ClusterOpts{
			Name: cfg.ClusterName, Host: ch, Port: cport,
			Username: cfg.RouteUser, Password: cfg.RoutePassword,
		}
		opts.Routes = routeURLs(withSelf(cfg.Routes, cfg.ClusterListen), cfg.RouteUser, cfg.RoutePassword)
	}
	s := &Server{log: cfg.Logger, agents: map[string]string{}, routes: slices.Clone(cfg.Routes), controller: cfg.ControllerNKey}
	slices.Sort(s.routes)
	opts.Nkeys = s.users(cfg.ControllerNKey, cfg.Agents)
	for k, v := range cfg.Agents {
		s.agents[k] = v
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("nats server not ready within 10s")
	}
	s.ns, s.opts = ns, opts
	return s, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// SetAgents replaces the agent users: hostID by public nkey. Connected
// clients whose user disappeared are disconnected by the reload.
func (s *Server) SetAgents(agents map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mapsEqual(agents, s.agents) {
		return nil
	}
	opts := s.opts.Clone()
	opts.Nkeys = s.users(s.controller, agents)
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("reload nats users: %w", err)
	}
	s.opts = opts
	// A reload does not drop clients of removed nkey users; do it here.
	var removed []string
	for nkey := range s.agents {
		if _, ok := agents[nkey]; !ok {
			removed = append(removed, nkey)
		}
	}
	if err := s.disconnect(removed); err != nil {
		return err
	}
	s.agents = make(map[string]string, len(agents))
	for k, v := range agents {
		s.agents[k] = v
	}
	return nil
}

// disconnect closes every client connection authenticated as one of nkeys.
func (s *Server) disconnect(nkeys []string) error {
	if len(nkeys) == 0 {
		return nil
	}
	gone := make(map[string]bool, len(nkeys))
	for _, k := range nkeys {
		gone[k] = true
	}
	cz, err := s.ns.Connz(&server.ConnzOptions{Username: true, Limit: 1 << 30})
	if err != nil {
		return fmt.Errorf("list nats connections: %w", err)
	}
	var errs []error
	for _, c := range cz.Conns {
		if gone[c.AuthorizedUser] {
			if err := s.ns.DisconnectClientByID(c.Cid); err != nil {
				errs = append(errs, fmt.Errorf("disconnect client %d: %w", c.Cid, err))
			}
		}
	}
	return errors.Join(errs...)
}

// users builds the nkey user list; the controller is always first.
func (s *Server) users(controller string, agents map[string]string) []*server.NkeyUser {
	out := []*server.NkeyUser{{Nkey: controller}}
	for nkey, hostID := range agents {
		out = append(out, &server.NkeyUser{Nkey: nkey, Permissions: AgentPermissions(hostID)})
	}
	return out
}

// AgentPermissions is natsauth.AgentAllow (the one definition of what an
// agent may do, shared with the JWT issuer of external mode) as an nkey
// user's permissions.
func AgentPermissions(hostID string) *server.Permissions {
	a := natsauth.AgentAllow(hostID)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: a.Publish},
		Subscribe: &server.SubjectPermission{Allow: a.Subscribe},
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
