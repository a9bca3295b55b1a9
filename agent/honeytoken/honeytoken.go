// Package honeytoken plants decoy credential files for a policy's
// spec.credentials.honeytokens and removes them again.
//
// A decoy looks like the real thing for its provider (an Alibaba Cloud CLI
// config.json with a canary LTAI… key, AWS credentials with a canary
// AKIA… key, or a generic key file), is created 0600 with O_EXCL|
// O_NOFOLLOW — never over an existing file, never through a symlink — and
// is recorded in the agent's state dir (honeytokens.json, 0600) with its
// (dev, inode) and sha256, so that the agent later removes exactly what it
// planted: a file at a recorded path that is no longer the planted one (a
// person replaced it) is left alone and reported.
//
// The kernel sensor marks opens of the bundle's honeytoken paths
// (FileOpenEvent.honeytoken) once they exist, so plant before
// sensor.ApplyBundle (its re-resolution also catches later plants).
package honeytoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/agent/hunt"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// StateFile is the record of planted decoys, inside the state dir.
const StateFile = "honeytokens.json"

// Record is one planted decoy.
type Record struct {
	Path     string `json:"path"`
	Provider string `json:"provider"`
	// CanaryKeyID is the decoy's key id. It is no secret (it grants
	// nothing); the controller can register it to recognise its use.
	CanaryKeyID string    `json:"canary_key_id"`
	SHA256      string    `json:"sha256"`
	Dev         uint64    `json:"dev"`
	Ino         uint64    `json:"ino"`
	PlantedAt   time.Time `json:"planted_at"`
	// Dirs the planter created for the decoy (removed when empty).
	CreatedDirs []string `json:"created_dirs,omitempty"`
}

// ErrExists is returned when a file that is not our decoy is at the path.
var ErrExists = errors.New("a file that is not a Palisade honeytoken exists at the path")

// Planter plants and removes decoys, recording them in StateDir.
type Planter struct {
	StateDir string
	Logger   *slog.Logger

	mu sync.Mutex
}

func (p *Planter) log() *slog.Logger {
	if p.Logger == nil {
		return slog.Default()
	}
	return p.Logger
}

// Records lists the planted decoys.
func (p *Planter) Records() ([]Record, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.load()
}

func (p *Planter) load() ([]Record, error) {
	b, err := os.ReadFile(filepath.Join(p.StateDir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read honeytoken records: %w", err)
	}
	var rs []Record
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("parse honeytoken records: %w", err)
	}
	return rs, nil
}

func (p *Planter) save(rs []Record) error {
	if err := os.MkdirAll(p.StateDir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(p.StateDir, StateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(p.StateDir, StateFile))
}

// SyncResult says what Sync did.
type SyncResult struct {
	Planted []Record
	Kept    []Record
	Removed []string
	// Problems per path (e.g. a real file in the way); the others went ahead.
	Problems map[string]error
}

// Sync makes the planted decoys match the bundle's honeytokens: plants the
// missing ones, keeps intact ones, re-plants a recorded decoy that was
// deleted, and removes decoys no longer listed. A path where another file
// stands is refused (Problems), never overwritten.
func (p *Planter) Sync(tokens []*palisadev1.Honeytoken) (*SyncResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return nil, err
	}
	res := &SyncResult{Problems: map[string]error{}}
	want := map[string]*palisadev1.Honeytoken{}
	for _, h := range tokens {
		want[filepath.Clean(h.GetPath())] = h
	}
	var keep []Record
	for _, r := range recs {
		if h, ok := want[r.Path]; ok && h.GetProvider() == r.Provider {
			switch intact(r) {
			case nil:
				keep = append(keep, r)
				res.Kept = append(res.Kept, r)
				delete(want, r.Path)
				continue
			default:
				if _, err := os.Lstat(r.Path); err == nil {
					// replaced by someone: not ours any more
					res.Problems[r.Path] = fmt.Errorf("%s: %w (the decoy was replaced)", r.Path, ErrExists)
					delete(want, r.Path)
					continue
				}
				// deleted: plant again below
			}
			continue
		}
		if err := removeRecord(r); err != nil {
			res.Problems[r.Path] = err
			keep = append(keep, r)
			continue
		}
		res.Removed = append(res.Removed, r.Path)
	}
	paths := make([]string, 0, len(want))
	for path := range want {
		paths = append(paths, path)
	}
	slices.Sort(paths)
	for _, path := range paths {
		r, err := plant(path, want[path].GetProvider())
		if err != nil {
			res.Problems[path] = err
			continue
		}
		keep = append(keep, r)
		res.Planted = append(res.Planted, r)
		p.log().Info("honeytoken planted", "path", path, "provider", r.Provider, "canary", hunt.Mask(r.CanaryKeyID))
	}
	if err := p.save(keep); err != nil {
		return res, fmt.Errorf("save honeytoken records: %w", err)
	}
	return res, nil
}

// RemoveAll removes every planted decoy that is still the planted file;
// the others stay recorded and are reported.
func (p *Planter) RemoveAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs, err := p.load()
	if err != nil {
		return err
	}
	var keep []Record
	var errs []error
	for _, r := range recs {
		if err := removeRecord(r); err != nil {
			errs = append(errs, err)
			keep = append(keep, r)
		}
	}
	if err := p.save(keep); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// intact checks that the file at r.Path is still the planted decoy.
func intact(r Record) error {
	fd, err := unix.Open(r.Path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), r.Path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Dev != r.Dev || st.Ino != r.Ino || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > 1<<20 {
		return fmt.Errorf("%s: %w", r.Path, ErrExists)
	}
	b := make([]byte, st.Size)
	if _, err := f.ReadAt(b, 0); err != nil && st.Size > 0 {
		return err
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.SHA256 {
		return fmt.Errorf("%s: content changed: %w", r.Path, ErrExists)
	}
	return nil
}

func removeRecord(r Record) error {
	if err := intact(r); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			removeDirs(r.CreatedDirs)
			return nil
		}
		return fmt.Errorf("not removing %s: %w", r.Path, err)
	}
	if err := os.Remove(r.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	removeDirs(r.CreatedDirs)
	return nil
}

// removeDirs removes directories the planter created, deepest first, if empty.
func removeDirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = unix.Rmdir(dirs[i]) // fails (and stays) when not empty
	}
}

// plant creates one decoy; it never replaces an existing file.
func plant(path, provider string) (Record, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return Record{}, fmt.Errorf("%s: honeytoken path must be absolute and clean", path)
	}
	body, canary, err := Content(provider)
	if err != nil {
		return Record{}, err
	}
	var created []string
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == "/" {
			break
		}
		created = append([]string{d}, created...)
	}
	for _, d := range created {
		if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			removeDirs(created)
			return Record{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		removeDirs(created)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ELOOP) {
			return Record{}, fmt.Errorf("%s: %w", path, ErrExists)
		}
		return Record{}, fmt.Errorf("plant %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	_, werr := f.Write(body)
	var st unix.Stat_t
	serr := unix.Fstat(fd, &st)
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(path)
		removeDirs(created)
		return Record{}, fmt.Errorf("plant %s: %w", path, err)
	}
	// A decoy that looks fresh is less convincing: date it back a while.
	old := time.Now().Add(-time.Duration(30+randInt(300)) * 24 * time.Hour)
	_ = os.Chtimes(path, old, old)
	sum := sha256.Sum256(body)
	return Record{Path: path, Provider: provider, CanaryKeyID: canary, SHA256: hex.EncodeToString(sum[:]),
		Dev: st.Dev, Ino: st.Ino, PlantedAt: time.Now().UTC(), CreatedDirs: created}, nil
}

const (
	base62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b64    = base62 + "+/"
)

func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return int(v.Int64())
}

func randString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[randInt(len(alphabet))]
	}
	return string(b)
}

// Content returns a decoy's content for provider (alibaba, aws, generic)
// and its canary key id.
func Content(provider string) ([]byte, string, error) {
	switch provider {
	case "alibaba":
		id := "LTAI5t" + randString(base62, 18)
		cfg := map[string]any{
			"current": "default",
			"profiles": []map[string]any{{
				"name": "default", "mode": "AK", "access_key_id": id, "access_key_secret": randString(base62, 30),
				"sts_token": "", "ram_role_name": "", "ram_role_arn": "", "ram_session_name": "", "private_key": "",
				"key_pair_name": "", "expired_seconds": 0, "verified": "", "region_id": "cn-hangzhou",
				"output_format": "json", "language": "en", "site": "", "retry_timeout": 0, "connect_timeout": 0,
				"retry_count": 0, "process_command": "",
			}},
			"meta_path": "",
		}
		b, err := json.MarshalIndent(cfg, "", "\t")
		return append(b, '\n'), id, err
	case "aws":
		id := "AKIA" + randString(upper, 16)
		return []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = us-east-1\n",
			id, randString(b64, 40))), id, nil
	case "generic":
		id := "AKID" + randString(base62, 28)
		return []byte(fmt.Sprintf("# service credentials (rotated quarterly)\nACCESS_KEY_ID=%s\nSECRET_ACCESS_KEY=%s\n",
			id, randString(base62, 40))), id, nil
	}
	return nil, "", fmt.Errorf("unknown honeytoken provider %q (want alibaba, aws or generic)", provider)
}
