package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// iocSet holds IOC addresses (exact) and prefixes.
type iocSet struct {
	addrs    map[netip.Addr]bool
	prefixes []netip.Prefix
}

// SetIOCs replaces the IOC set rules consult with is_ioc(addr). Entries
// are IP addresses or CIDRs; an invalid entry rejects the whole list and
// the previous set stays.
func (e *Engine) SetIOCs(iocs []string) error {
	s := &iocSet{addrs: map[netip.Addr]bool{}}
	var errs []error
	for i, v := range iocs {
		if a, err := netip.ParseAddr(v); err == nil {
			s.addrs[a.Unmap()] = true
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("ioc %d: %q is neither an address nor a CIDR", i, v))
			continue
		}
		if p.IsSingleIP() {
			s.addrs[p.Addr().Unmap()] = true
		} else {
			s.prefixes = append(s.prefixes, p.Masked())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.iocs.Store(s)
	return nil
}

func (e *Engine) isIOC(addr string) bool {
	s := e.iocs.Load()
	if len(s.addrs) == 0 && len(s.prefixes) == 0 {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	if s.addrs[a] {
		return true
	}
	for _, p := range s.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// downloads remembers files that downloaders (curl, wget) were told to
// write, from their argv at exec: the sensor reports no writes, so this is
// what "the binary was just downloaded" can rest on. Bounded; oldest
// entries go first.
type downloads struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	m      map[string]download
	order  []string
}

type download struct {
	by  string
	at  time.Time
	pid uint32
}

func newDownloads(max int, window time.Duration) *downloads {
	return &downloads{max: max, window: window, m: map[string]download{}}
}

func (d *downloads) add(p string, dl download) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.m[p]; !ok {
		d.order = append(d.order, p)
	}
	d.m[p] = dl
	for len(d.order) > d.max {
		delete(d.m, d.order[0])
		d.order = d.order[1:]
	}
}

func (d *downloads) lookup(p string, now time.Time) (download, bool) {
	if p == "" {
		return download{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.m) == 0 {
		return download{}, false
	}
	dl, ok := d.m[p]
	return dl, ok && now.Sub(dl.at) >= 0 && now.Sub(dl.at) <= d.window
}

// observeExec records the output file of a downloader's exec.
func (e *Engine) observeExec(ev *palisadev1.Event) {
	p := ev.GetProcess()
	argv := p.GetArgv()
	if len(argv) == 0 {
		return
	}
	base := path.Base(p.GetExePath())
	if base != "curl" && base != "wget" {
		return
	}
	outs := downloaderOutputs(base, argv)
	if len(outs) == 0 {
		return
	}
	cwd := ""
	for _, o := range outs {
		if !filepath.IsAbs(o) {
			if cwd == "" {
				cwd, _ = os.Readlink(filepath.Join(e.cfg.ProcRoot, strconv.FormatUint(uint64(p.GetPid()), 10), "cwd"))
			}
			if cwd == "" {
				continue
			}
			o = filepath.Join(cwd, o)
		}
		e.downloads.add(filepath.Clean(o), download{by: base, at: e.now(), pid: p.GetPid()})
	}
}

// downloaderOutputs parses curl's -o/--output and wget's -O/
// --output-document (and, for -O/--remote-name and plain wget, the URL's
// last element in the working directory).
func downloaderOutputs(tool string, argv []string) []string {
	var outs, urls []string
	remoteName := tool == "wget"
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		next := func() string {
			if i+1 < len(argv) {
				i++
				return argv[i]
			}
			return ""
		}
		switch {
		case tool == "curl" && (a == "-o" || a == "--output"):
			outs = append(outs, next())
		case tool == "curl" && strings.HasPrefix(a, "--output="):
			outs = append(outs, strings.TrimPrefix(a, "--output="))
		case tool == "curl" && strings.HasPrefix(a, "-o") && len(a) > 2:
			outs = append(outs, a[2:])
		case tool == "curl" && (a == "-O" || a == "--remote-name"):
			remoteName = true
		case tool == "wget" && (a == "-O" || a == "--output-document"):
			outs = append(outs, next())
			remoteName = false
		case tool == "wget" && strings.HasPrefix(a, "--output-document="):
			outs = append(outs, strings.TrimPrefix(a, "--output-document="))
			remoteName = false
		case tool == "wget" && strings.HasPrefix(a, "-O") && len(a) > 2:
			outs = append(outs, a[2:])
			remoteName = false
		case strings.Contains(a, "://"):
			urls = append(urls, a)
		}
	}
	if remoteName {
		for _, u := range urls {
			if i := strings.IndexAny(u, "?#"); i >= 0 {
				u = u[:i]
			}
			if b := path.Base(u); b != "" && b != "." && b != "/" && !strings.Contains(b, ":") {
				outs = append(outs, b)
			}
		}
	}
	var clean []string
	for _, o := range outs {
		if o != "" && o != "-" {
			clean = append(clean, o)
		}
	}
	return clean
}
