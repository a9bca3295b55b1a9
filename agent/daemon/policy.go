package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/palisade-sec/palisade/agent/identity"
	"github.com/palisade-sec/palisade/agent/rules"
	"github.com/palisade-sec/palisade/agent/sensor"
	"github.com/palisade-sec/palisade/internal/fileutil"
	"github.com/palisade-sec/palisade/internal/policy"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// LastGoodPolicyFile, in the state dir, holds the last bundle applied, so
// a restart enforces it before (or without) reaching the controller.
const LastGoodPolicyFile = "policy.pb"

// policyState is the bundle in force and its on-disk copy.
type policyState struct {
	dir    string
	mu     sync.Mutex
	bundle *palisadev1.PolicyBundle
}

// current is the bundle in force (nil: none).
func (p *policyState) current() *palisadev1.PolicyBundle {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bundle
}

// load reads the last good bundle; (nil, nil) when there is none.
func (p *policyState) load() (*palisadev1.PolicyBundle, error) {
	data, err := os.ReadFile(filepath.Join(p.dir, LastGoodPolicyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read last good policy: %w", err)
	}
	var b palisadev1.PolicyBundle
	if err := proto.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("last good policy is corrupt: %w", err)
	}
	if err := policy.ValidateBundle(&b); err != nil {
		return nil, fmt.Errorf("last good policy is invalid: %w", err)
	}
	return &b, nil
}

// applied records b as in force and keeps it on disk.
func (p *policyState) applied(b *palisadev1.PolicyBundle) error {
	p.mu.Lock()
	p.bundle = b
	p.mu.Unlock()
	data, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode policy: %w", err)
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return fileutil.WriteAtomic(filepath.Join(p.dir, LastGoodPolicyFile), data, 0o600)
}

// startSensor loads the kernel sensors for the scope and applies the
// policy: --policy if given, else the last good one.
func (a *Agent) startSensor(ctx context.Context) error {
	var bundle *palisadev1.PolicyBundle
	if a.cfg.PolicyFile != "" {
		data, err := os.ReadFile(a.cfg.PolicyFile)
		if err != nil {
			return fmt.Errorf("read policy: %w", err)
		}
		// An invalid file is refused before anything is loaded; the policy
		// pinned in the kernel by an earlier run stays in force.
		if bundle, err = policy.Compile(data, a.cfg.PolicyFile); err != nil {
			return err
		}
	} else {
		b, err := a.policy.load()
		if err != nil {
			a.log.Error("ignoring last good policy", "err", err)
		}
		bundle = b
	}
	allow, err := controlEndpoints(a.id, a.cfg.ControllerURL)
	if err != nil {
		return err
	}
	s, err := sensor.Open(ctx, sensor.Config{CgroupPath: a.cfg.CgroupPath, PinDir: a.cfg.PinDir, Logger: a.log, AlwaysAllow: allow})
	if err != nil {
		return fmt.Errorf("open sensors: %w", err)
	}
	a.sensor = s
	for _, f := range s.Features() {
		if !f.GetAvailable() {
			a.log.Warn("kernel feature missing", "feature", f.GetName(), "err", f.GetError())
		}
	}
	if err := a.startDetection(); err != nil {
		return err
	}
	a.policyMu.Lock()
	defer a.policyMu.Unlock()
	if bundle == nil {
		a.log.Info("no policy: sensors observe, default rules audit", "adopted_pins", s.Adopted())
		defaults, err := rules.DefaultRules(palisadev1.Mode_MODE_AUDIT)
		if err != nil {
			return fmt.Errorf("default rules: %w", err)
		}
		if err := a.rules.Apply(defaults); err != nil {
			return fmt.Errorf("default rules: %w", err)
		}
		if len(a.blocks) > 0 {
			if err := s.ApplyBundle(a.withBlocks(emptyBundle())); err != nil {
				return fmt.Errorf("re-apply blocks: %w", err)
			}
		}
		return a.acts.reassert()
	}
	if err := a.applyBundle(bundle); err != nil {
		return err
	}
	a.log.Info("policy applied", "name", bundle.GetName(), "version", bundle.GetVersion(), "sha256", bundle.GetSourceSha256())
	return nil
}

// controlEndpoints lists what stays reachable under quarantine: the
// controller's API and the NATS servers.
func controlEndpoints(id *identity.Identity, controllerURL string) ([]netip.AddrPort, error) {
	var urls []string
	if controllerURL != "" {
		urls = append(urls, controllerURL)
	}
	if id != nil {
		urls = append(urls, id.ControllerURL)
		urls = append(urls, id.NATSURLs...)
	}
	seen := map[netip.AddrPort]bool{}
	var out []netip.AddrPort
	for _, raw := range urls {
		aps, err := endpointAddrs(raw)
		if err != nil {
			return nil, fmt.Errorf("control endpoint %q: %w", raw, err)
		}
		for _, ap := range aps {
			if !seen[ap] {
				seen[ap] = true
				out = append(out, ap)
			}
		}
	}
	return out, nil
}

// endpointAddrs resolves a URL's host to addresses with its port.
func endpointAddrs(raw string) ([]netip.AddrPort, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "nats": "4222", "tls": "4222"}[u.Scheme]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("no usable port in %q", raw)
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), uint16(p))}, nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var out []netip.AddrPort
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(p)))
		}
	}
	return out, nil
}
