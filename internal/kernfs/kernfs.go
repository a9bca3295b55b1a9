// Package kernfs finds and mounts the kernel filesystems the agent and its
// tests rely on: bpffs (pins), tracefs (tracepoints) and the cgroup v2
// hierarchy.
package kernfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mount points.
const (
	BPFFS   = "/sys/fs/bpf"
	Tracefs = "/sys/kernel/tracing"
	// hybridCgroupV2 is where a hybrid (v1 + v2) layout mounts cgroup v2.
	hybridCgroupV2 = "/sys/fs/cgroup/unified"
	unifiedCgroup  = "/sys/fs/cgroup"
)

// EnsureMounts mounts bpffs and tracefs where they are missing.
func EnsureMounts() error {
	if err := EnsureMount(BPFFS, "bpf", unix.BPF_FS_MAGIC); err != nil {
		return err
	}
	return EnsureMount(Tracefs, "tracefs", unix.TRACEFS_MAGIC)
}

// EnsureMount mounts fstype at dir unless a filesystem with magic is
// already there.
func EnsureMount(dir, fstype string, magic int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && int64(st.Type) == magic {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	if err := unix.Mount(fstype, dir, fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount %s at %s: %w", fstype, dir, err)
	}
	return nil
}

// CgroupRoot is the cgroup v2 mount: /sys/fs/cgroup/unified on a hybrid
// layout (as on our machines), else /sys/fs/cgroup.
func CgroupRoot() string {
	if _, err := os.Stat(hybridCgroupV2 + "/cgroup.procs"); err == nil {
		return hybridCgroupV2
	}
	return unifiedCgroup
}
