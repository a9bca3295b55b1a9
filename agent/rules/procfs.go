package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/palisade-sec/palisade/agent/proccache"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// maxEnviron bounds how much of /proc/PID/environ a rule reads.
const maxEnviron = 64 << 10

// procView is the process of the event being evaluated. Fields derived
// from /proc are read on first use, at evaluation time: the process may
// have exited (short-lived) or changed since the event, so these are best
// effort — an exited process has no sockets, no environment and no
// deleted image.
type procView struct {
	a *activation
	p *palisadev1.Process

	anc, ancExes ref.Val
	exe          ref.Val // boxed once: rules read exe_path often

	fdDone bool
	fd     fdInfo

	delDone bool
	deleted bool

	env ref.Val
}

type fdInfo struct {
	stdinSocket, stdoutSocket bool
	stdin, stdout             string
}

func (v *procView) dir() string {
	return filepath.Join(v.a.eng.cfg.ProcRoot, strconv.FormatUint(uint64(v.p.GetPid()), 10))
}

func (v *procView) exePath() ref.Val {
	if v.exe == nil {
		v.exe = types.String(v.p.GetExePath())
	}
	return v.exe
}

func (v *procView) ancestry() ref.Val {
	if v.anc == nil {
		as := v.p.GetAncestry()
		vals := make([]ref.Val, len(as))
		for i, a := range as {
			vals[i] = v.a.eng.prov.NativeToValue(a)
		}
		v.anc = types.NewRefValList(v.a.eng.prov, vals)
	}
	return v.anc
}

func (v *procView) ancestorExes() ref.Val {
	if v.ancExes == nil {
		as := v.p.GetAncestry()
		exes := make([]string, len(as))
		for i, a := range as {
			exes[i] = a.GetExePath()
		}
		v.ancExes = types.NewStringList(v.a.eng.prov, exes)
	}
	return v.ancExes
}

// fds reads /proc/PID/fd/0 and /1: "socket:[INODE]" means a socket.
func (v *procView) fds() fdInfo {
	if !v.fdDone {
		v.fdDone = true
		if v.p.GetPid() != 0 {
			d := v.dir()
			v.fd.stdin, _ = os.Readlink(d + "/fd/0")
			v.fd.stdout, _ = os.Readlink(d + "/fd/1")
			v.fd.stdinSocket = strings.HasPrefix(v.fd.stdin, "socket:")
			v.fd.stdoutSocket = strings.HasPrefix(v.fd.stdout, "socket:")
		}
	}
	return v.fd
}

// exeDeleted: /proc/PID/exe names a deleted file (memfd images count).
func (v *procView) exeDeleted() bool {
	if !v.delDone {
		v.delDone = true
		if v.p.GetPid() != 0 {
			l, err := os.Readlink(v.dir() + "/exe")
			v.deleted = err == nil && strings.HasSuffix(l, " (deleted)")
		}
	}
	return v.deleted
}

func (v *procView) environ() ref.Val {
	if v.env == nil {
		v.env = types.NewStringList(v.a.eng.prov, readEnviron(v.dir()))
	}
	return v.env
}

func readEnviron(dir string) []string {
	f, err := os.Open(dir + "/environ")
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnviron))
	if err != nil || len(b) == 0 {
		return nil
	}
	return proccache.SplitArgs(b)
}

// procStat is what KillProcess needs from /proc/PID/stat.
type procStat struct {
	ppid       uint32
	startTicks uint64
}

func readStat(procRoot string, pid uint32) (procStat, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (procStat, error) {
	close := bytes.LastIndexByte(b, ')')
	if close < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 20 {
		return procStat{}, errors.New("short stat")
	}
	ppid, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat starttime: %w", err)
	}
	return procStat{ppid: uint32(ppid), startTicks: start}, nil
}

// ticksToTime converts a /proc/PID/stat start time (USER_HZ ticks since
// boot) to wall-clock time with the same boot time the sensor uses.
func ticksToTime(boot time.Time, ticks uint64) time.Time {
	return boot.Add(time.Duration(ticks) * time.Second / 100)
}

// cgroupPath is the cgroup v2 path of pid ("/a/b"), from /proc/PID/cgroup.
func cgroupPath(procRoot string, pid uint32) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return rest, nil
		}
	}
	return "", errors.New("no cgroup v2 membership")
}

// children maps every pid in /proc to its children.
func children(procRoot string) map[uint32][]uint32 {
	out := map[uint32][]uint32{}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		st, err := readStat(procRoot, uint32(pid))
		if err != nil {
			continue
		}
		out[st.ppid] = append(out[st.ppid], uint32(pid))
	}
	return out
}
