package sensor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/agent/proccache"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// pollInterval bounds the delivery delay of routine events (exec, exit,
// allowed connects); kills, denials and file events wake the reader at once.
const pollInterval = 20 * time.Millisecond

func (s *Sensor) readLoop() {
	defer s.wg.Done()
	defer close(s.events)
	var rec ringbuf.Record
	for {
		// Routine records do not wake us (see submit() in the C code):
		// poll at least every pollInterval.
		s.rd.SetDeadline(time.Now().Add(pollInterval))
		if err := s.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			s.log.Warn("read ring buffer", "err", err)
			continue
		}
		r, err := decodeRecord(rec.RawSample)
		if err != nil {
			s.decodeErrors.Add(1)
			s.log.Debug("decode record", "err", err)
			continue
		}
		s.decoded.Add(1)
		ev := s.enrich(r)
		select {
		case s.events <- ev:
		case <-s.stop:
			return
		}
	}
}

var verdicts = map[uint8]palisadev1.Verdict{
	1: palisadev1.Verdict_VERDICT_ALLOWED,
	2: palisadev1.Verdict_VERDICT_AUDITED,
	3: palisadev1.Verdict_VERDICT_DENIED,
	4: palisadev1.Verdict_VERDICT_KILLED,
}

var reasons = map[uint8]string{
	reasonDenyCIDR:   "deny_cidr",
	reasonMetadata:   "metadata",
	reasonQuarantine: "quarantine",
}

func (s *Sensor) bootTime(ns uint64) time.Time {
	return s.cache.BootTimeValue().Add(time.Duration(ns))
}

// enrich turns a record into an Event, updating the process cache (exec,
// exit) and filling the Process header from it.
func (s *Sensor) enrich(r *record) *palisadev1.Event {
	ev := &palisadev1.Event{
		Seq:  s.seq.Add(1),
		Time: timestamppb.New(s.bootTime(r.TimeNS)),
	}
	exeID := proccache.ExeID{Dev: kdevToUser(r.ExeDev), Ino: r.ExeIno}
	if r.ExeIno == 0 {
		exeID = proccache.ExeID{}
	}

	switch {
	case r.Exec != nil:
		p := proccache.Process{
			PID: r.PID, PPID: r.PPID, UID: r.UID, GID: r.GID, CgroupID: r.CgroupID,
			Comm: r.Comm, ExeDev: exeID.Dev, ExeIno: exeID.Ino,
			Argv:      proccache.SplitArgs(r.Exec.Args),
			StartTime: s.bootTime(r.Exec.StartNS),
		}
		p.ExePath, p.ExeSHA256 = s.exeOf(r.PID, exeID, r.Exec.Filename)
		s.cache.Put(p)
		exe := &palisadev1.ExecEvent{
			Filename: r.Exec.Filename,
			Verdict:  verdicts[r.Verdict],
			Reason:   s.execReason(r.Verdict, exeID),
		}
		if r.Verdict == 1 && p.ExeSHA256 != "" {
			s.denyByDigest(r.PID, exeID, p.ExeSHA256, exe)
		}
		ev.Kind = &palisadev1.Event_Exec{Exec: exe}
	case r.Exit != nil:
		ev.Kind = &palisadev1.Event_Exit{Exit: &palisadev1.ExitEvent{
			ExitCode: int32((r.Exit.ExitCode >> 8) & 0xff),
			Signal:   int32(r.Exit.ExitCode & 0x7f),
		}}
	case r.File != nil:
		fid := FileID{Dev: kdevToUser(r.File.Dev), Ino: r.File.Ino}
		fe := &palisadev1.FileOpenEvent{
			Dev: fid.Dev, Inode: fid.Ino, Flags: int32(r.File.Flags),
			Verdict: verdicts[r.Verdict], Honeytoken: r.Flags&1 != 0,
		}
		if pol := s.policy.Load(); pol != nil {
			for _, f := range pol.Files {
				if f.ID == fid {
					fe.Path, fe.Rule = f.Path, f.Rule
					break
				}
			}
		}
		ev.Kind = &palisadev1.Event_FileOpen{FileOpen: fe}
	case r.Connect != nil:
		proto := "tcp"
		if r.Connect.Protocol == syscall.IPPROTO_UDP {
			proto = "udp"
		}
		ev.Kind = &palisadev1.Event_Connect{Connect: &palisadev1.ConnectEvent{
			Protocol: proto,
			DstAddr:  r.Connect.Addr.String(),
			DstPort:  uint32(r.Connect.Port),
			Verdict:  verdicts[r.Verdict],
			Reason:   reasons[r.Reason],
		}}
	}

	ev.Process = s.processHeader(r, exeID)
	if r.Exit != nil {
		s.cache.Exit(r.PID)
	}
	return ev
}

// denyByDigest is the user-space fallback for exec.deny digests that
// named no known executable when the policy was resolved: the first run of
// such a binary is not stopped in the kernel, so it is killed here (it may
// have run for a few milliseconds), and a re-resolution puts its inode in
// the kernel deny map so later runs die at exec.
func (s *Sensor) denyByDigest(pid uint32, id proccache.ExeID, sum string, ev *palisadev1.ExecEvent) {
	digests := s.denyDigests.Load()
	if digests == nil {
		return
	}
	mode, ok := (*digests)[sum]
	if !ok {
		return
	}
	ev.Reason = "exec.deny: sha256:" + sum + " (user space)"
	ev.Verdict = palisadev1.Verdict_VERDICT_AUDITED
	if mode != palisadev1.Mode_MODE_AUDIT {
		if err := killIfExe(pid, id); err != nil {
			s.log.Warn("user-space kill of denied executable", "pid", pid, "err", err)
		} else {
			ev.Verdict = palisadev1.Verdict_VERDICT_KILLED
		}
	}
	s.kickReresolve()
}

// killIfExe SIGKILLs pid through a pidfd, after checking (with the pid
// pinned by the pidfd) that it still runs the executable id.
func killIfExe(pid uint32, id proccache.ExeID) error {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return fmt.Errorf("stat exe: %w", err)
	}
	if st.Dev != id.Dev || st.Ino != id.Ino {
		return errors.New("pid now runs another executable")
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		return fmt.Errorf("pidfd_send_signal: %w", err)
	}
	return nil
}

func (s *Sensor) execReason(verdict uint8, id proccache.ExeID) string {
	if verdict != 2 && verdict != 4 {
		return ""
	}
	if pol := s.policy.Load(); pol != nil {
		for _, d := range pol.DenyExec {
			if d.ID == FileID(id) {
				return "exec.deny: " + d.Source
			}
		}
	}
	return "exec.deny"
}

// exeOf finds the path and digest of a just-executed image: through
// /proc/PID/exe while the process lives (the same inode, even if renamed),
// else from the digest cache, else the exec filename unhashed.
func (s *Sensor) exeOf(pid uint32, id proccache.ExeID, filename string) (string, string) {
	if x, err := s.cache.DigestPID(pid); err == nil && x.ExeID == id {
		return x.Path, x.SHA256
	}
	if x, ok := s.cache.ExeByID(id); ok {
		return x.Path, x.SHA256
	}
	// The process is gone already (short-lived or killed): the exec'd path,
	// if it still names the same inode.
	if x, err := s.cache.Digest(filename); err == nil && x.ExeID == id {
		return x.Path, x.SHA256
	}
	if pol := s.policy.Load(); pol != nil {
		for _, d := range pol.DenyExec {
			if d.ID == FileID(id) && d.Path != "" {
				if x, err := s.cache.Digest(d.Path); err == nil && x.ExeID == id {
					return x.Path, x.SHA256
				}
				return d.Path, ""
			}
		}
	}
	return filename, ""
}

func (s *Sensor) processHeader(r *record, exeID proccache.ExeID) *palisadev1.Process {
	p, ok := s.cache.Lookup(r.PID)
	if ok && p.ExeSHA256 == "" && !p.Exited && p.ExePath != "" {
		if x, err := s.cache.DigestPID(r.PID); err == nil {
			s.cache.SetDigest(r.PID, x.SHA256)
			p.ExeSHA256 = x.SHA256
		}
	}
	out := &palisadev1.Process{
		Pid: r.PID, Ppid: r.PPID, Uid: r.UID, Gid: r.GID, CgroupId: r.CgroupID, Comm: r.Comm,
		ExeDev: exeID.Dev, ExeInode: exeID.Ino,
	}
	if ok {
		if out.Ppid == 0 {
			out.Ppid = p.PPID
		}
		out.ExePath, out.ExeSha256, out.Argv = p.ExePath, p.ExeSHA256, p.Argv
		if exeID == (proccache.ExeID{}) || exeID == (proccache.ExeID{Dev: p.ExeDev, Ino: p.ExeIno}) {
			out.ExeDev, out.ExeInode = p.ExeDev, p.ExeIno
		} else if x, ok := s.cache.ExeByID(exeID); ok {
			// The cached entry is stale (exec not seen): trust the kernel.
			out.ExePath, out.ExeSha256 = x.Path, x.SHA256
		}
		if !p.StartTime.IsZero() {
			out.StartTime = timestamppb.New(p.StartTime)
		}
	}
	for _, a := range s.cache.Ancestry(r.PID, s.cfg.AncestryDepth) {
		out.Ancestry = append(out.Ancestry, &palisadev1.Ancestor{Pid: a.PID, ExePath: a.ExePath, Argv: a.Argv})
	}
	return out
}
