package sensor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/palisade-sec/palisade/internal/kernfs"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// Feature names reported by Probe.
const (
	FeatRingbuf          = "ringbuf"
	FeatTpBTF            = "tp_btf"
	FeatSyscallTP        = "syscall_tracepoints"
	FeatSchedTP          = "sched_tracepoints"
	FeatCgroupSockAddr   = "cgroup_sock_addr"
	FeatCgroupSKB        = "cgroup_skb"
	FeatSendSignal       = "bpf_send_signal"
	FeatTaskUnderCgroup  = "current_task_under_cgroup"
	FeatBPFLink          = "bpf_link"
	FeatLSM              = "bpf_lsm"
	FeatFentry           = "fentry"
	FeatKprobe           = "kprobes"
	tracefsDir           = "/sys/kernel/tracing"
	bpffsDir             = "/sys/fs/bpf"
	defaultPinRoot       = "/sys/fs/bpf/palisade"
	defaultCgroupV2Mount = "/sys/fs/cgroup/unified"
)

// ensureMounts mounts bpffs and tracefs when missing (the agent runs on
// fresh machines where nobody did).
func ensureMounts() error { return kernfs.EnsureMounts() }

func feature(name string, err error) *palisadev1.Feature {
	f := &palisadev1.Feature{Name: name, Available: err == nil}
	if err != nil {
		f.Error = err.Error()
	}
	return f
}

func tracepointExists(group, name string) error {
	_, err := os.Stat(filepath.Join(tracefsDir, "events", group, name, "id"))
	if err != nil {
		return fmt.Errorf("tracepoint %s/%s: %w", group, name, err)
	}
	return nil
}

func loadTiny(spec *ebpf.ProgramSpec) error {
	spec.Instructions = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	spec.License = "GPL"
	p, err := ebpf.NewProgram(spec)
	if errors.Is(err, unix.EPERM) {
		// cilium/ebpf appends a MEMLOCK hint that misleads here.
		return fmt.Errorf("load %s program: refused by the kernel (lockdown or LSM policy): %w", spec.Type, unix.EPERM)
	}
	if err != nil {
		return err
	}
	return p.Close()
}

// Probe reports which kernel mechanisms the sensors rely on are available.
// It never fails: a missing mechanism is a Feature with Available false and
// the reason in Error. It mounts bpffs and tracefs if they are missing.
func Probe() []*palisadev1.Feature {
	if err := ensureMounts(); err != nil {
		return []*palisadev1.Feature{feature("mounts", err)}
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones
	// ignore it. Lifting it also keeps EPERM errors free of memlock hints.
	_ = rlimit.RemoveMemlock()
	var out []*palisadev1.Feature
	out = append(out, feature(FeatRingbuf, features.HaveMapType(ebpf.RingBuf)))
	out = append(out, feature(FeatTpBTF, loadTiny(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sched_process_exec",
	})))
	schedErr := features.HaveProgramType(ebpf.TracePoint)
	if schedErr == nil {
		schedErr = tracepointExists("sched", "sched_process_exit")
	}
	out = append(out, feature(FeatSchedTP, schedErr))
	sysErr := features.HaveProgramType(ebpf.TracePoint)
	if sysErr == nil {
		sysErr = tracepointExists("syscalls", "sys_exit_openat")
	}
	out = append(out, feature(FeatSyscallTP, sysErr))
	out = append(out, feature(FeatCgroupSockAddr, features.HaveProgramType(ebpf.CGroupSockAddr)))
	out = append(out, feature(FeatCgroupSKB, features.HaveProgramType(ebpf.CGroupSKB)))
	out = append(out, feature(FeatSendSignal, features.HaveProgramHelper(ebpf.TracePoint, asm.FnSendSignal)))
	out = append(out, feature(FeatTaskUnderCgroup, features.HaveProgramHelper(ebpf.TracePoint, asm.FnCurrentTaskUnderCgroup)))
	out = append(out, feature(FeatLSM, loadTiny(&ebpf.ProgramSpec{
		Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "file_open",
	})))
	out = append(out, feature(FeatFentry, loadTiny(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: "security_file_open",
	})))
	kpErr := features.HaveProgramType(ebpf.Kprobe)
	if kpErr == nil {
		if _, err := os.Stat(filepath.Join(tracefsDir, "kprobe_events")); err != nil {
			kpErr = fmt.Errorf("kprobe_events: %w", err)
		}
	}
	out = append(out, feature(FeatKprobe, kpErr))
	return out
}

func available(fs []*palisadev1.Feature, name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return f.Available
		}
	}
	return false
}
