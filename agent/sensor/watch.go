package sensor

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// ApplyBundle resolves b (see Resolve), applies it atomically (see Apply)
// and keeps it resolved: when a protected file is created, replaced
// (rename over it gives a new inode) or deleted, or an executable named by
// path is replaced, the bundle is resolved again and applied if the result
// differs. Changes are noticed through inotify on every directory level of
// the globs and on the executables' directories, and, as a backstop for
// anything inotify cannot see (other mount namespaces, watch limits), by a
// full re-resolution every Config.ResolveInterval. Re-resolution keeps the
// quarantine state in force (set by the bundle or by SetQuarantine).
//
// An invalid bundle returns an *InvalidPolicyError and changes nothing.
func (s *Sensor) ApplyBundle(b *palisadev1.PolicyBundle) error {
	r, err := Resolve(b, s.cache)
	if err != nil {
		return err
	}
	if err := s.Apply(r); err != nil {
		return err
	}
	digests := map[string]palisadev1.Mode{}
	for _, d := range b.GetExec().GetDeny() {
		if sum, ok := strings.CutPrefix(d, "sha256:"); ok {
			digests[strings.ToLower(sum)] = r.execMode
		}
	}
	for _, d := range b.GetIocs() {
		if sum, ok := strings.CutPrefix(d, "sha256:"); ok {
			digests[strings.ToLower(sum)] = palisadev1.Mode_MODE_ENFORCE
		}
	}
	s.denyDigests.Store(&digests)
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.watch == nil {
		w, err := newWatcher(s)
		if err != nil {
			s.log.Warn("inotify unavailable; re-resolving periodically only", "err", err)
		}
		s.watch = w
	}
	s.watch.setBundle(b)
	return nil
}

// Reresolve resolves the last bundle given to ApplyBundle again now and
// applies it if anything changed; it reports whether it applied. The
// watcher calls it; it is exported for the daemon and tests.
func (s *Sensor) Reresolve() (bool, error) {
	s.applyMu.Lock()
	w := s.watch
	s.applyMu.Unlock()
	return s.reresolve(w)
}

func (s *Sensor) reresolve(w *watcher) (bool, error) {
	if w == nil {
		return false, nil
	}
	b := w.getBundle()
	if b == nil {
		return false, nil
	}
	r, err := Resolve(b, s.cache)
	if err != nil {
		return false, err
	}
	if cur := s.policy.Load(); cur != nil {
		r.Quarantine, r.QuarantineAllow = cur.Quarantine, cur.QuarantineAllow
		if sameKernelPolicy(cur, r) {
			return false, nil
		}
	}
	w.sync(b)
	return true, s.Apply(r)
}

// kickReresolve asks the watcher to re-resolve soon (non-blocking).
func (s *Sensor) kickReresolve() {
	s.applyMu.Lock()
	w := s.watch
	s.applyMu.Unlock()
	if w == nil {
		return
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func sameKernelPolicy(a, b *Resolved) bool {
	ka, errA := a.compile(0)
	kb, errB := b.compile(0)
	return errA == nil && errB == nil && reflect.DeepEqual(ka, kb)
}

type watcher struct {
	s    *Sensor
	file *os.File // inotify fd; nil when inotify is unavailable
	fd   int      // its number (os.File.Fd would make it blocking)

	mu      sync.Mutex
	closed  bool
	bundle  *palisadev1.PolicyBundle
	watches map[string]int

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWatcher(s *Sensor) (*watcher, error) {
	w := &watcher{s: s, watches: map[string]int{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err == nil {
		w.file = os.NewFile(uintptr(fd), "inotify")
		w.fd = fd
		w.wg.Add(1)
		go w.readLoop()
	}
	w.wg.Add(1)
	go w.loop()
	return w, err
}

func (w *watcher) setBundle(b *palisadev1.PolicyBundle) {
	w.mu.Lock()
	w.bundle = b
	w.mu.Unlock()
	w.sync(b)
}

func (w *watcher) getBundle() *palisadev1.PolicyBundle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bundle
}

// sync makes the inotify watch set equal to the bundle's directories.
func (w *watcher) sync(b *palisadev1.PolicyBundle) {
	if w.file == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	want := map[string]bool{}
	const mask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
		unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
	for _, d := range watchDirs(b) {
		want[d] = true
		if _, ok := w.watches[d]; ok {
			continue
		}
		wd, err := unix.InotifyAddWatch(w.fd, d, mask)
		if err != nil {
			w.s.log.Debug("inotify watch", "dir", d, "err", err)
			continue
		}
		w.watches[d] = wd
	}
	for d, wd := range w.watches {
		if !want[d] {
			_, _ = unix.InotifyRmWatch(w.fd, uint32(wd))
			delete(w.watches, d)
		}
	}
}

func (w *watcher) readLoop() {
	defer w.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		_, err := w.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-w.stop:
				return
			default:
			}
			continue
		}
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// minReresolveGap rate-limits inotify-driven re-resolution, since a
// watched directory (e.g. a home directory) may be busy.
const minReresolveGap = 250 * time.Millisecond

func (w *watcher) loop() {
	defer w.wg.Done()
	t := time.NewTicker(w.s.cfg.ResolveInterval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
			if gap := time.Since(last); gap < minReresolveGap {
				select {
				case <-w.stop:
					return
				case <-time.After(minReresolveGap - gap):
				}
			}
		case <-t.C:
		}
		last = time.Now()
		if applied, err := w.s.reresolve(w); err != nil {
			w.s.log.Warn("re-resolve policy", "err", err)
		} else if applied {
			w.s.log.Info("policy re-resolved after file changes")
		}
	}
}

func (w *watcher) close() {
	close(w.stop)
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	if w.file != nil {
		w.file.Close()
	}
	w.wg.Wait()
}
