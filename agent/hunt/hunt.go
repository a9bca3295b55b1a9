// Package hunt looks for reported leaked access key ids on a host: in
// credential files (the policy's protected paths, well-known provider
// files and configured directories) and in the argv and environment of
// every running process in the agent's scope. It reports each place found
// as a Finding; acting on processes is the rules engine's job
// ((*rules.Engine).HuntAlerts applies the leaked-key rule's mode and
// response).
//
// Key ids are matched through KeySet, which keeps only their sha256,
// prefix and masked form: findings, results and logs carry the masked id
// (AKIA****MPLE) and the digest, never the id itself.
//
// Bounds: files larger than MaxFileSize are read only up to it (and
// flagged), at most MaxFiles files and MaxDepth directory levels per
// configured directory are visited, environments are read up to
// MaxEnviron bytes. Directory walks never descend into /proc, /sys or /dev
// (nor into procfs, sysfs, devtmpfs or bpffs mounted elsewhere), never
// follow symlinked directories, and open files with O_NOFOLLOW|O_NONBLOCK
// after checking that they are regular files; a symlinked credential file
// named in Paths is read through its target only when that target is a
// regular file outside those trees.
package hunt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/internal/kernfs"
)

// DefaultPaths are provider credential files searched on every hunt
// ("~/" means /root and every /home/*).
var DefaultPaths = []string{
	"~/.aliyun/config.json",
	"~/.alibabacloud/credentials",
	"~/.aws/credentials",
	"~/.aws/config",
	"~/.config/gcloud/credentials.db",
	"~/.docker/config.json",
	"~/.netrc",
	"~/.env",
	"/etc/environment",
}

// Config configures a hunt. Zero values take the defaults.
type Config struct {
	HostID string
	// Paths are credential file globs (the policy's protected paths,
	// honeytoken paths excluded); DefaultPaths are always added.
	Paths []string
	// Dirs are directories searched recursively (bounded).
	Dirs []string
	// ProcRoot is the procfs mount (default /proc).
	ProcRoot string
	// Scope is the agent's cgroup v2 scope directory; only processes
	// inside it are searched. Empty: every process.
	Scope string
	// CgroupRoot is the cgroup v2 mount (default /sys/fs/cgroup/unified,
	// else /sys/fs/cgroup).
	CgroupRoot  string
	MaxFileSize int64 // default 1 MiB
	MaxFiles    int   // per configured directory, default 20000
	MaxDepth    int   // default 8
	MaxEnviron  int64 // default 256 KiB
	Logger      *slog.Logger
}

func (c *Config) defaults() {
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = kernfs.CgroupRoot()
	}
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = 1 << 20
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = 20000
	}
	if c.MaxDepth <= 0 {
		c.MaxDepth = 8
	}
	if c.MaxEnviron <= 0 {
		c.MaxEnviron = 256 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Where a key was found.
const (
	WhereFile = "file"
	WhereEnv  = "env"
	WhereArgv = "argv"
)

// Finding is one place a leaked key was found.
type Finding struct {
	Key       string `json:"key"`        // masked
	KeySHA256 string `json:"key_sha256"` // matches LeakedCredential.key_id_sha256
	Where     string `json:"where"`      // file, env or argv
	Path      string `json:"path,omitempty"`
	Line      int    `json:"line,omitempty"`
	PID       uint32 `json:"pid,omitempty"`
	Exe       string `json:"exe,omitempty"`
	// Name is the environment variable (env) or argument index (argv).
	Name      string    `json:"name,omitempty"`
	StartTime time.Time `json:"start_time,omitzero"`
	UID       uint32    `json:"uid,omitempty"`
}

// Result is one hunt's report, ready to publish (JSON).
type Result struct {
	HostID           string    `json:"host_id"`
	Keys             []string  `json:"keys"` // masked
	Findings         []Finding `json:"findings"`
	FilesScanned     int       `json:"files_scanned"`
	ProcessesScanned int       `json:"processes_scanned"`
	// Truncated lists bounds that were hit (a file read partially, a
	// directory walk stopped).
	Truncated []string  `json:"truncated,omitempty"`
	Errors    []string  `json:"errors,omitempty"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
}

// Processes returns the findings in processes, one per pid.
func (r *Result) Processes() []Finding {
	seen := map[uint32]bool{}
	var out []Finding
	for _, f := range r.Findings {
		if f.PID != 0 && !seen[f.PID] {
			seen[f.PID] = true
			out = append(out, f)
		}
	}
	return out
}

// Hunt searches files and processes for keys. It stops early (returning
// what it found and ctx's error) when ctx is done.
func Hunt(ctx context.Context, cfg Config, keys *KeySet) (*Result, error) {
	cfg.defaults()
	h := &hunter{cfg: cfg, keys: keys, seen: map[[2]uint64]bool{},
		res: &Result{HostID: cfg.HostID, Keys: keys.Masked(), Started: time.Now()}}
	if keys.Len() == 0 {
		h.res.Finished = time.Now()
		return h.res, errors.New("hunt: no keys")
	}
	var patterns []string
	patterns = append(patterns, DefaultPaths...)
	patterns = append(patterns, cfg.Paths...)
	for _, pat := range patterns {
		if ctx.Err() != nil {
			break
		}
		for _, p := range expandHome(pat) {
			matches, _ := filepath.Glob(p)
			slices.Sort(matches)
			for _, m := range matches {
				h.scanNamedFile(m)
			}
		}
	}
	for _, d := range cfg.Dirs {
		if ctx.Err() != nil {
			break
		}
		h.walk(ctx, d)
	}
	if ctx.Err() == nil {
		h.processes(ctx)
	}
	h.res.Finished = time.Now()
	cfg.Logger.Info("leaked-key hunt done", "keys", strings.Join(h.res.Keys, ","), "findings", len(h.res.Findings),
		"files", h.res.FilesScanned, "processes", h.res.ProcessesScanned)
	return h.res, ctx.Err()
}

type hunter struct {
	cfg  Config
	keys *KeySet
	res  *Result
	seen map[[2]uint64]bool // files already scanned (dev, inode)
}

func expandHome(p string) []string {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		return []string{p}
	}
	return []string{"/root/" + rest, "/home/*/" + rest}
}

// forbidden: pseudo-filesystems a hunt never reads.
func forbidden(p string) bool {
	for _, root := range []string{"/proc", "/sys", "/dev"} {
		if p == root || strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}

func pseudoFS(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return true
	}
	switch int64(st.Type) {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.BPF_FS_MAGIC, unix.CGROUP2_SUPER_MAGIC, unix.CGROUP_SUPER_MAGIC,
		unix.DEBUGFS_MAGIC, unix.TRACEFS_MAGIC, unix.SECURITYFS_MAGIC, unix.DEVPTS_SUPER_MAGIC:
		return true
	}
	return false
}

// scanNamedFile scans a file named by a credential path: a symlink is
// followed to a regular file outside the pseudo-filesystems.
func (h *hunter) scanNamedFile(p string) {
	p = filepath.Clean(p)
	if forbidden(p) {
		return
	}
	st, err := os.Lstat(p)
	if err != nil {
		return
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(p)
		if err != nil || forbidden(target) {
			h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: symlink not followed", p))
			return
		}
		h.scanFile(target, p)
		return
	}
	h.scanFile(p, p)
}

// scanFile reads one regular file (never through a final symlink) and
// records every key in it under the name shown.
func (h *hunter) scanFile(p, shown string) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) {
			h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: %v", shown, err))
		}
		return
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	id := [2]uint64{st.Dev, st.Ino}
	if h.seen[id] {
		return
	}
	h.seen[id] = true
	h.res.FilesScanned++
	b, err := io.ReadAll(io.LimitReader(f, h.cfg.MaxFileSize))
	if err != nil {
		h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: %v", shown, err))
		return
	}
	if st.Size > h.cfg.MaxFileSize {
		h.res.Truncated = append(h.res.Truncated, fmt.Sprintf("%s: read the first %d of %d bytes", shown, h.cfg.MaxFileSize, st.Size))
	}
	text := string(b)
	for _, m := range h.keys.Find(text) {
		h.res.Findings = append(h.res.Findings, Finding{Key: m.Masked, KeySHA256: m.SHA256, Where: WhereFile,
			Path: shown, Line: 1 + strings.Count(text[:m.Offset], "\n"), UID: st.Uid})
	}
}

// walk searches a directory tree within the bounds.
func (h *hunter) walk(ctx context.Context, root string) {
	root = filepath.Clean(root)
	if !filepath.IsAbs(root) || forbidden(root) || pseudoFS(root) {
		h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: not searched (relative, or a pseudo-filesystem)", root))
		return
	}
	files := 0
	depth0 := strings.Count(root, "/")
	stop := errors.New("stop")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable entry: skip
		}
		if ctx.Err() != nil {
			return stop
		}
		if d.IsDir() {
			if p != root && (forbidden(p) || strings.Count(p, "/")-depth0 >= h.cfg.MaxDepth || pseudoFS(p)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() { // symlinks, devices, sockets, fifos
			return nil
		}
		if files >= h.cfg.MaxFiles {
			h.res.Truncated = append(h.res.Truncated, fmt.Sprintf("%s: stopped after %d files", root, files))
			return stop
		}
		files++
		h.scanFile(p, p)
		return nil
	})
	if err != nil && err != stop {
		h.res.Errors = append(h.res.Errors, fmt.Sprintf("%s: %v", root, err))
	}
}

// processes searches the argv and environment of every process in scope.
func (h *hunter) processes(ctx context.Context) {
	ents, err := os.ReadDir(h.cfg.ProcRoot)
	if err != nil {
		h.res.Errors = append(h.res.Errors, err.Error())
		return
	}
	scope := h.scopePath()
	self := os.Getpid()
	boot := bootTime()
	for _, e := range ents {
		if ctx.Err() != nil {
			return
		}
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || int(pid) == self {
			continue
		}
		dir := filepath.Join(h.cfg.ProcRoot, e.Name())
		if scope != "" && !inCgroup(dir, scope) {
			continue
		}
		cmdline, err := readBounded(dir+"/cmdline", h.cfg.MaxEnviron)
		if err != nil || len(cmdline) == 0 {
			continue // exited, or a kernel thread
		}
		h.res.ProcessesScanned++
		environ, _ := readBounded(dir+"/environ", h.cfg.MaxEnviron)
		exe, _ := os.Readlink(dir + "/exe")
		base := Finding{PID: uint32(pid), Exe: strings.TrimSuffix(exe, " (deleted)")}
		base.StartTime, base.UID = procStart(dir, boot)
		for i, arg := range splitNUL(cmdline) {
			for _, m := range h.keys.Find(arg) {
				f := base
				f.Key, f.KeySHA256, f.Where, f.Name = m.Masked, m.SHA256, WhereArgv, strconv.Itoa(i)
				h.res.Findings = append(h.res.Findings, f)
			}
		}
		for _, kv := range splitNUL(environ) {
			for _, m := range h.keys.Find(kv) {
				f := base
				name, _, _ := strings.Cut(kv, "=")
				f.Key, f.KeySHA256, f.Where, f.Name = m.Masked, m.SHA256, WhereEnv, name
				h.res.Findings = append(h.res.Findings, f)
			}
		}
	}
}

func (h *hunter) scopePath() string {
	if h.cfg.Scope == "" {
		return ""
	}
	rel, err := filepath.Rel(h.cfg.CgroupRoot, filepath.Clean(h.cfg.Scope))
	if err != nil || strings.HasPrefix(rel, "..") {
		return "/nonexistent-scope"
	}
	if rel == "." {
		return ""
	}
	return "/" + rel
}

func inCgroup(dir, scope string) bool {
	b, err := os.ReadFile(dir + "/cgroup")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if cg, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return cg == scope || strings.HasPrefix(cg, scope+"/")
		}
	}
	return false
}

func readBounded(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}

func splitNUL(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}

// procStart reads a process's start time and real uid.
func procStart(dir string, boot time.Time) (time.Time, uint32) {
	var start time.Time
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) >= 20 {
				if t, err := strconv.ParseUint(f[19], 10, 64); err == nil {
					start = boot.Add(time.Duration(t) * time.Second / 100)
				}
			}
		}
	}
	var st unix.Stat_t
	uid := uint32(0)
	if unix.Stat(dir, &st) == nil {
		uid = st.Uid
	}
	return start, uid
}
