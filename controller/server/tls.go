package server

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/palisade-sec/palisade/internal/devca"
	"github.com/palisade-sec/palisade/internal/fileutil"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// TLS modes.
const (
	TLSOff   = "off"
	TLSDev   = "dev"
	TLSFiles = "files"
)

// CAFile is where, in the data dir, a dev-TLS node writes the CA
// certificate agents and operators must trust.
const CAFile = "ca.pem"

func (c *Controller) tlsMode() string {
	if c.cfg.TLS == "" {
		return TLSOff
	}
	return c.cfg.TLS
}

// scheme is the API's URL scheme.
func (c *Controller) scheme() string {
	if c.tlsMode() == TLSOff {
		return "http"
	}
	return "https"
}

// setupTLS builds the serving configuration (API and embedded NATS) and
// the pool of CAs the node trusts when it is a client of another node.
// Dev mode issues this node's certificate from the cluster's CA for every
// address it listens on or advertises, and writes the CA to DATA_DIR/ca.pem.
func (c *Controller) setupTLS(ci *palisadev1.ClusterInfo) error {
	switch c.tlsMode() {
	case TLSOff:
		return nil
	case TLSDev:
		if len(ci.GetCaCertPem()) == 0 {
			return fmt.Errorf("tls dev: this cluster has no CA (it was created by an older version); use --tls files")
		}
		leaf, err := devca.Issue(ci.GetCaCertPem(), ci.GetCaKeyPem(), c.tlsHosts())
		if err != nil {
			return fmt.Errorf("tls dev: %w", err)
		}
		pool, err := devca.Pool(ci.GetCaCertPem())
		if err != nil {
			return fmt.Errorf("tls dev: %w", err)
		}
		if err := fileutil.WriteAtomic(filepath.Join(c.cfg.DataDir, CAFile), ci.GetCaCertPem(), 0o644); err != nil {
			return fmt.Errorf("write CA: %w", err)
		}
		c.serverTLS = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
		c.clientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	case TLSFiles:
		leaf, err := tls.LoadX509KeyPair(c.cfg.TLSCertFile, c.cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("tls files: %w", err)
		}
		c.serverTLS = &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
		c.clientTLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.cfg.TLSCAFile != "" {
			pemCA, err := os.ReadFile(c.cfg.TLSCAFile)
			if err != nil {
				return fmt.Errorf("tls files: %w", err)
			}
			if c.clientTLS.RootCAs, err = devca.Pool(pemCA); err != nil {
				return fmt.Errorf("tls files: %s: %w", c.cfg.TLSCAFile, err)
			}
		}
	default:
		return fmt.Errorf("tls mode %q: want off, dev or files", c.cfg.TLS)
	}
	return nil
}

// tlsHosts lists the names a dev certificate must carry.
func (c *Controller) tlsHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	for _, a := range []string{c.cfg.APIAddr, c.cfg.NATSListen, c.cfg.RaftAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	for _, u := range []string{c.cfg.APIAdvertise, c.cfg.NATSAdvertise} {
		if h := urlHost(u); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// urlHost is the host of a URL ("" when it has none).
func urlHost(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
