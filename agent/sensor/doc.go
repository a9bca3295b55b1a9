// Package sensor loads Palisade's eBPF programs (package bpf), attaches
// them to one cgroup scope, pins them, turns policy into their maps and
// delivers what they observe as *palisadev1.Event.
//
// # API
//
//	features := sensor.Probe()                        // what the kernel allows; never fails
//	s, err := sensor.Open(ctx, sensor.Config{CgroupPath: "/sys/fs/cgroup/unified/x"})
//	defer s.Close()                                   // keeps pins: enforcement stays
//	err = s.ApplyBundle(bundle)                       // Resolve + Apply + keep re-resolving
//	r, err := sensor.Resolve(bundle, s.Cache())       // or resolve and
//	err = s.Apply(r)                                  //   apply yourself
//	err = s.SetQuarantine(true, allow)                // on/off, other policy unchanged
//	for ev := range s.Events() { ... }                // closed when the sensor stops
//	s.Drops(); s.Stats(); s.Features(); s.Collector() // counters, prometheus
//	err = sensor.Cleanup(pinDir)                      // detach and unpin everything
//
// # Scope
//
// Config.CgroupPath is the enforcement scope. Cgroup programs (connect4/6,
// sendmsg4/6, cgroup_skb ingress/egress) attach to it and so act on its
// processes and those of its descendants only. Tracing programs
// (tp_btf/sched_process_exec, tracepoint sched_process_exit and
// sys_exit_open{,at,at2,creat}) are global; each starts with
// bpf_current_task_under_cgroup() against a CGROUP_ARRAY holding the scope,
// so tasks outside it are never reported or killed. Two sensors on
// sibling cgroups are fully independent (each has its own maps and pins).
//
// The agent process itself (its pid is recorded in the pinned meta map at
// Open) is never killed by kill-on-exec or kill-on-open — it plants
// honeytokens and may run in its own scope; its violations are reported as
// audited. Quarantine does apply to it: put the controller and NATS
// endpoints in Config.AlwaysAllow. Loopback is not exempt from quarantine
// either; add e.g. a local resolver's address to the allowlist if needed.
//
// # Pins and restarts
//
// Everything is pinned under Config.PinDir (default
// /sys/fs/bpf/palisade/<scope>): every map (by name), every program
// (prog_NAME) and every link (link_NAME). Open reuses pinned maps, so the
// policy in force (quarantine above all) survives an agent crash or kill -9
// and a restarted agent continues with it. Pinned cgroup links are updated
// in place to the new programs (no gap, no duplicate attachment); pinned
// tracing links are replaced (new attached, then old detached). A pinned
// `meta` map records the scope's cgroup id and the map layout version;
// pins of another scope or layout are refused (run Cleanup).
//
// # Atomic policy
//
// Every policy map is an ARRAY_OF_MAPS with two slots; `state[0]` names
// the active slot. A program reads the active slot once and takes all its
// inner maps from it. Apply builds complete fresh inner maps for the
// inactive slot, installs them, and only then flips `state[0]`: programs
// see the old policy or the new one, never a mix
// (TestApply_AtomicSwitchNeverMixesPolicies checks this in the kernel).
// The kernel waits for an RCU grace period on each map-in-map update, so
// an Apply takes a few milliseconds per changed map; unchanged maps are
// skipped. An Apply that fails (e.g. a map would overflow) leaves the
// active slot untouched.
//
// # Policy resolution and its limits
//
// Resolve turns a PolicyBundle into identities: protected paths are globs
// ("~/" means /root and /home/*), expanded and stat'ed following symlinks
// to (dev, inode); the kernel compares the inode of every newly opened fd,
// so symlinks, hard links and relative paths are all covered. Executables
// are absolute paths or "sha256:<hex>" digests; a digest is matched only
// against executables the process cache has hashed (running processes,
// executables named by path, binaries executed since start) — a digest
// cannot be mapped to an inode without reading every file, so a binary
// that has not run yet is listed in Resolved.Unresolved. ApplyBundle keeps
// the bundle resolved: inotify on every directory level of the globs and
// on executables' directories triggers re-resolution (files created,
// replaced by rename, deleted, binaries upgraded), with a periodic
// backstop (Config.ResolveInterval).
//
// exec.deny matches the image the kernel runs: for a "#!" script that is
// the interpreter (the kernel drops the script's file before the exec
// tracepoint). To stop a script, protect it as a credential file with no
// readers: the interpreter's open of the script is then killed.
//
// Other limits: opens through io_uring are not seen (no syscall
// tracepoint); identities are compared as the kernel's (s_dev, i_ino),
// which equal stat(2)'s on ext4/xfs (tested) but may not on btrfs
// subvolumes or overlayfs (untested); a process whose exec happened before
// the sensor started is known to the metadata-endpoint check only if it
// was inside the scope at Open (pid_exe is seeded from the scope's
// cgroup.procs). connect events: every denied or audited connect/sendmsg
// is reported; an allowed connect is reported once per (process,
// destination, protocol) per second (in-kernel LRU dedup), and allowed
// unconnected UDP sendmsg not at all, to keep connection pools and DNS
// chatter out of the stream. Routine events reach Events() within 20ms
// (the ring buffer is polled, not woken, for them); verdicts at once.
//
// Cost: the BPF programs take about 3-6µs per exec and 1-2µs per TCP
// connect here (bench/sensor measures it exactly with the kernel's BPF
// run-time statistics). Enabling syscall tracepoints puts every task on
// the host on the syscall-tracing slow path — a small, global cost of the
// credential-file check that only fexit/LSM (refused on these kernels)
// would avoid.
//
// # Degradation
//
// Probe reports each mechanism as a palisadev1.Feature. Programs whose
// mechanism is missing are not loaded (e.g. no tp_btf: no exec events or
// kill-on-exec; no current_task_under_cgroup: no global programs at all,
// since they could not be scoped); an attach failure is added to
// Features() as "attach:PROG". Only a missing ring buffer, an unusable
// scope or unusable pins make Open fail.
package sensor
