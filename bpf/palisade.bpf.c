//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Palisade kernel sensors: exec/exit, credential-file opens, egress and
 * quarantine. See agent/sensor/doc.go for how the Go side drives these maps.
 *
 * Scope: every global (tracing) program starts with in_scope(), which is
 * true only for tasks inside the cgroup stored in the `scope` cgroup array
 * (the agent's --cgroup). Cgroup programs are attached to that cgroup, so
 * they are scoped by construction.
 *
 * Policy is double buffered: every policy map is an ARRAY_OF_MAPS with two
 * slots, and `state[0]` names the active slot. A program reads the active
 * slot once and takes all its inner maps from that slot, so it sees one
 * complete policy. The agent fills the inactive slot with fresh inner maps
 * and flips `state[0]` last.
 */
#include "include/vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "palisade.h"

#define SIGKILL 9
#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Keep the record types in the object's BTF, so the Go side can check its
 * decoder against them (agent/sensor TestRecordLayoutMatchesBTF). */
const struct event_hdr *unused_hdr __attribute__((unused));
const struct exec_event *unused_exec __attribute__((unused));
const struct exit_event *unused_exit __attribute__((unused));
const struct file_event *unused_file __attribute__((unused));
const struct connect_event *unused_connect __attribute__((unused));

/* ---- infrastructure maps ------------------------------------------------ */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} scope SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pal_meta);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} meta SEC(".maps");

/* tgid -> executable identity, filled at exec (and seeded by the agent),
 * read by cgroup programs, which cannot reach the task's mm. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct file_id);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pid_exe SEC(".maps");

/* Allowed connects are reported once per (process, destination) per
 * CONNECT_DEDUP_NS; policy matches are always reported. */
#define CONNECT_DEDUP_NS 1000000000ULL

struct conn_key {
	__u32 tgid;
	__u16 port;
	__u8 protocol;
	__u8 family;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, __u64);
} conn_seen SEC(".maps");

/* state[0] = active policy slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} state SEC(".maps");

/* ---- double-buffered policy maps ----------------------------------------- */

#define OUTER(name, inner_type, entries, ktype, vtype, flags)                 \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);                      \
		__uint(max_entries, POLICY_SLOTS);                             \
		__type(key, __u32);                                            \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                           \
		__array(values, struct {                                       \
			__uint(type, inner_type);                              \
			__uint(max_entries, entries);                          \
			__uint(key_size, sizeof(ktype));                       \
			__uint(value_size, sizeof(vtype));                     \
			__uint(map_flags, flags);                              \
		});                                                            \
	} name SEC(".maps")

OUTER(o_deny_exe, BPF_MAP_TYPE_HASH, 4096, struct file_id, __u8, BPF_F_NO_PREALLOC);
OUTER(o_prot, BPF_MAP_TYPE_HASH, 4096, struct file_id, struct protected_val, BPF_F_NO_PREALLOC);
OUTER(o_readers, BPF_MAP_TYPE_HASH, 16384, struct reader_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_deny4, BPF_MAP_TYPE_LPM_TRIE, 16384, struct lpm4_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_deny6, BPF_MAP_TYPE_LPM_TRIE, 16384, struct lpm6_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_meta4, BPF_MAP_TYPE_HASH, 64, struct ep4_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_meta6, BPF_MAP_TYPE_HASH, 64, struct ep6_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_meta_cli, BPF_MAP_TYPE_HASH, 1024, struct file_id, __u8, BPF_F_NO_PREALLOC);
OUTER(o_qallow4, BPF_MAP_TYPE_HASH, 256, struct ep4_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_qallow6, BPF_MAP_TYPE_HASH, 256, struct ep6_key, __u8, BPF_F_NO_PREALLOC);
OUTER(o_settings, BPF_MAP_TYPE_ARRAY, 1, __u32, struct pal_settings, 0);

/* ---- helpers -------------------------------------------------------------- */

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline int in_scope(void)
{
	return bpf_current_task_under_cgroup(&scope, 0) == 1;
}

static __always_inline int is_agent(__u32 tgid)
{
	__u32 zero = 0;
	struct pal_meta *m = bpf_map_lookup_elem(&meta, &zero);
	return m && m->agent_tgid == tgid;
}

static __always_inline __u32 active_slot(void)
{
	__u32 zero = 0;
	__u32 *s = bpf_map_lookup_elem(&state, &zero);
	return s ? (*s & 1) : 0;
}

static __always_inline void *slot_map(void *outer, __u32 slot)
{
	return bpf_map_lookup_elem(outer, &slot);
}

static __always_inline struct pal_settings *slot_settings(__u32 slot)
{
	__u32 zero = 0;
	void *inner = slot_map(&o_settings, slot);
	if (!inner)
		return 0;
	return bpf_map_lookup_elem(inner, &zero);
}

static __always_inline void fill_hdr_current(struct event_hdr *h, __u8 type)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();
	h->type = type;
	h->pid = pt >> 32;
	h->tid = (__u32)pt;
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->time_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void task_exe(struct task_struct *task, struct file_id *id)
{
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return;
	id->ino = BPF_CORE_READ(exe, f_inode, i_ino);
	id->dev = BPF_CORE_READ(exe, f_inode, i_sb, s_dev);
}

/* Routine records are submitted without waking the reader, which polls
 * every few milliseconds (agent/sensor readLoop); verdicts and a filling
 * buffer wake it at once. This spares a wakeup per exec under load. */
#define WAKEUP_BYTES (1 << 20)

static __always_inline void submit(void *e, int urgent)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (urgent || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline void *reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		stat_inc(STAT_RINGBUF_DROPS);
	return e;
}

/* ---- exec / exit ----------------------------------------------------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (!in_scope())
		return 0;

	/* tp_btf arguments are BTF pointers: plain (CO-RE relocated) loads,
	 * cheaper than bpf_probe_read_kernel calls. */
	struct file_id id = {};
	struct inode *inode = bprm->file->f_inode;
	id.ino = inode->i_ino;
	id.dev = inode->i_sb->s_dev;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_map_update_elem(&pid_exe, &tgid, &id, BPF_ANY);

	__u8 verdict = VERDICT_ALLOWED;
	void *deny = slot_map(&o_deny_exe, active_slot());
	if (deny) {
		__u8 *mode = bpf_map_lookup_elem(deny, &id);
		if (mode) {
			if (*mode == MODE_ENFORCE && !is_agent(tgid)) {
				bpf_send_signal(SIGKILL);
				stat_inc(STAT_KILLS);
				verdict = VERDICT_KILLED;
			} else {
				verdict = VERDICT_AUDITED;
			}
		}
	}

	struct exec_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr_current(&e->hdr, EV_EXEC);
	e->hdr.verdict = verdict;
	e->hdr.reason = 0;
	e->hdr.flags = 0;
	e->hdr.pad = 0;
	e->hdr.ppid = p->real_parent->tgid;
	e->hdr.exe_ino = id.ino;
	e->hdr.exe_dev = id.dev;
	e->start_ns = p->start_boottime;

	const char *fname = bprm->filename;
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), fname);
	e->filename_len = n > 0 ? n - 1 : 0;

	struct mm_struct *mm = p->mm;
	unsigned long start = mm->arg_start;
	unsigned long end = mm->arg_end;
	__u64 len = end > start ? end - start : 0;
	if (len > MAX_ARGS)
		len = MAX_ARGS;
	e->args_len = 0;
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
		e->args_len = len;
	submit(e, verdict != VERDICT_ALLOWED);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(void *ctx)
{
	if (!in_scope())
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	/* Only the last thread of a thread group reports the exit. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;

	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct file_id id = {};
	struct file_id *known = bpf_map_lookup_elem(&pid_exe, &tgid);
	if (known)
		id = *known;
	bpf_map_delete_elem(&pid_exe, &tgid);

	struct exit_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr_current(&e->hdr, EV_EXIT);
	e->hdr.verdict = 0;
	e->hdr.reason = 0;
	e->hdr.flags = 0;
	e->hdr.pad = 0;
	e->hdr.ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->hdr.exe_ino = id.ino;
	e->hdr.exe_dev = id.dev;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	e->pad = 0;
	submit(e, 0);
	return 0;
}

/* ---- credential files ------------------------------------------------------ */

static __always_inline int on_open_exit(long ret)
{
	if (ret < 0)
		return 0;
	if (!in_scope())
		return 0;
	__u32 slot = active_slot();
	void *prot = slot_map(&o_prot, slot);
	if (!prot)
		return 0;
	void *readers = slot_map(&o_readers, slot);

	struct task_struct *task = bpf_get_current_task_btf();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[ret]) || !f)
		return 0;

	struct file_id fid = {};
	fid.ino = BPF_CORE_READ(f, f_inode, i_ino);
	fid.dev = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	struct protected_val *pv = bpf_map_lookup_elem(prot, &fid);
	if (!pv)
		return 0;

	struct file_id exe = {};
	task_exe(task, &exe);
	struct reader_key rk = {.ino = exe.ino, .dev = exe.dev, .set = pv->reader_set};
	__u8 verdict = VERDICT_ALLOWED;
	if (!readers || !bpf_map_lookup_elem(readers, &rk)) {
		if (pv->mode == MODE_ENFORCE && !is_agent(bpf_get_current_pid_tgid() >> 32)) {
			bpf_send_signal(SIGKILL);
			stat_inc(STAT_KILLS);
			verdict = VERDICT_KILLED;
		} else {
			verdict = VERDICT_AUDITED;
		}
	}

	struct file_event *e = reserve(sizeof(*e));
	if (!e)
		return 0;
	fill_hdr_current(&e->hdr, EV_FILE);
	e->hdr.verdict = verdict;
	e->hdr.reason = 0;
	e->hdr.flags = pv->honeytoken;
	e->hdr.pad = 0;
	e->hdr.ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->hdr.exe_ino = exe.ino;
	e->hdr.exe_dev = exe.dev;
	e->ino = fid.ino;
	e->dev = fid.dev;
	e->flags = BPF_CORE_READ(f, f_flags);
	submit(e, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_open")
int exit_open(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int exit_creat(struct trace_event_raw_sys_exit *ctx)
{
	return on_open_exit(ctx->ret);
}

/* ---- egress ------------------------------------------------------------------ */

static __always_inline int allowed_meta_client(__u32 slot)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct file_id *exe = bpf_map_lookup_elem(&pid_exe, &tgid);
	if (!exe)
		return 0;
	void *cli = slot_map(&o_meta_cli, slot);
	if (!cli)
		return 0;
	return bpf_map_lookup_elem(cli, exe) != 0;
}

/* Returns the verdict; *reason gets why. addr and port in network order. */
static __always_inline __u8 check_v4(__u32 slot, __u32 addr, __u16 port, __u8 *reason)
{
	struct pal_settings *st = slot_settings(slot);
	if (st && st->quarantine) {
		void *qa = slot_map(&o_qallow4, slot);
		struct ep4_key k = {.addr = addr, .port = port};
		if (qa && bpf_map_lookup_elem(qa, &k))
			return VERDICT_ALLOWED;
		k.port = 0;
		if (qa && bpf_map_lookup_elem(qa, &k))
			return VERDICT_ALLOWED;
		*reason = REASON_QUARANTINE;
		return VERDICT_DENIED;
	}

	__u8 verdict = VERDICT_ALLOWED;
	void *d4 = slot_map(&o_deny4, slot);
	if (d4) {
		struct lpm4_key lk = {.prefixlen = 32, .addr = addr};
		__u8 *mode = bpf_map_lookup_elem(d4, &lk);
		if (mode) {
			*reason = REASON_DENY_CIDR;
			if (*mode == MODE_ENFORCE)
				return VERDICT_DENIED;
			verdict = VERDICT_AUDITED;
		}
	}

	void *m4 = slot_map(&o_meta4, slot);
	if (m4) {
		struct ep4_key k = {.addr = addr, .port = port};
		__u8 *mode = bpf_map_lookup_elem(m4, &k);
		if (!mode) {
			k.port = 0;
			mode = bpf_map_lookup_elem(m4, &k);
		}
		if (mode && !allowed_meta_client(slot)) {
			*reason = REASON_METADATA;
			if (*mode == MODE_ENFORCE)
				return VERDICT_DENIED;
			verdict = VERDICT_AUDITED;
		}
	}
	return verdict;
}

static __always_inline __u8 check_v6(__u32 slot, struct ep6_key *ep, __u8 *reason)
{
	struct pal_settings *st = slot_settings(slot);
	if (st && st->quarantine) {
		void *qa = slot_map(&o_qallow6, slot);
		if (qa && bpf_map_lookup_elem(qa, ep))
			return VERDICT_ALLOWED;
		__u16 port = ep->port;
		ep->port = 0;
		int ok = qa && bpf_map_lookup_elem(qa, ep);
		ep->port = port;
		if (ok)
			return VERDICT_ALLOWED;
		*reason = REASON_QUARANTINE;
		return VERDICT_DENIED;
	}

	__u8 verdict = VERDICT_ALLOWED;
	void *d6 = slot_map(&o_deny6, slot);
	if (d6) {
		struct lpm6_key lk = {.prefixlen = 128};
		__builtin_memcpy(lk.addr, ep->addr, 16);
		__u8 *mode = bpf_map_lookup_elem(d6, &lk);
		if (mode) {
			*reason = REASON_DENY_CIDR;
			if (*mode == MODE_ENFORCE)
				return VERDICT_DENIED;
			verdict = VERDICT_AUDITED;
		}
	}

	void *m6 = slot_map(&o_meta6, slot);
	if (m6) {
		__u8 *mode = bpf_map_lookup_elem(m6, ep);
		if (!mode) {
			__u16 port = ep->port;
			ep->port = 0;
			mode = bpf_map_lookup_elem(m6, ep);
			ep->port = port;
		}
		if (mode && !allowed_meta_client(slot)) {
			*reason = REASON_METADATA;
			if (*mode == MODE_ENFORCE)
				return VERDICT_DENIED;
			verdict = VERDICT_AUDITED;
		}
	}
	return verdict;
}

/* seen_recently is true when the same process reported the same allowed
 * destination less than CONNECT_DEDUP_NS ago. */
static __always_inline int seen_recently(struct bpf_sock_addr *ctx, __u16 family, __u8 *addr, __u16 port)
{
	struct conn_key k = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.port = port,
		.protocol = ctx->protocol,
		.family = family,
	};
	__builtin_memcpy(k.addr, addr, 16);
	__u64 now = bpf_ktime_get_boot_ns();
	__u64 *last = bpf_map_lookup_elem(&conn_seen, &k);
	if (last && now - *last < CONNECT_DEDUP_NS)
		return 1;
	bpf_map_update_elem(&conn_seen, &k, &now, BPF_ANY);
	return 0;
}

static __always_inline void emit_connect(struct bpf_sock_addr *ctx, __u8 verdict, __u8 reason,
					 __u16 family, __u8 *addr, __u16 port, int sendmsg)
{
	if (verdict == VERDICT_ALLOWED && seen_recently(ctx, family, addr, port))
		return;
	struct connect_event *e = reserve(sizeof(*e));
	if (!e)
		return;
	fill_hdr_current(&e->hdr, EV_CONNECT);
	e->hdr.verdict = verdict;
	e->hdr.reason = reason;
	e->hdr.flags = 0;
	e->hdr.pad = 0;
	e->hdr.ppid = 0;
	e->hdr.exe_ino = 0;
	e->hdr.exe_dev = 0;
	__u32 tgid = e->hdr.pid;
	struct file_id *exe = bpf_map_lookup_elem(&pid_exe, &tgid);
	if (exe) {
		e->hdr.exe_ino = exe->ino;
		e->hdr.exe_dev = exe->dev;
	}
	e->family = family;
	e->port = bpf_ntohs(port);
	e->protocol = ctx->protocol;
	e->sendmsg = sendmsg;
	e->pad = 0;
	__builtin_memcpy(e->addr, addr, 16);
	submit(e, verdict != VERDICT_ALLOWED);
}

static __always_inline int sock4(struct bpf_sock_addr *ctx, int sendmsg)
{
	__u32 slot = active_slot();
	__u32 addr = ctx->user_ip4;
	__u16 port = (__u16)ctx->user_port;
	__u8 reason = REASON_NONE;
	__u8 verdict = check_v4(slot, addr, port, &reason);
	if (!sendmsg || verdict != VERDICT_ALLOWED) {
		__u8 a[16] = {};
		__builtin_memcpy(a, &addr, 4);
		emit_connect(ctx, verdict, reason, AF_INET, a, port, sendmsg);
	}
	if (verdict == VERDICT_DENIED) {
		stat_inc(STAT_CONNECT_DENIED);
		return 0;
	}
	return 1;
}

static __always_inline int sock6(struct bpf_sock_addr *ctx, int sendmsg)
{
	__u32 slot = active_slot();
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__u16 port = (__u16)ctx->user_port;
	__u8 reason = REASON_NONE;
	__u8 verdict;
	__u16 family;
	__u8 a[16] = {};

	if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff)) {
		/* v4-mapped: the v4 policy applies. */
		verdict = check_v4(slot, w3, port, &reason);
		family = AF_INET;
		__builtin_memcpy(a, &w3, 4);
	} else {
		struct ep6_key ep = {.port = port};
		__builtin_memcpy(&ep.addr[0], &w0, 4);
		__builtin_memcpy(&ep.addr[4], &w1, 4);
		__builtin_memcpy(&ep.addr[8], &w2, 4);
		__builtin_memcpy(&ep.addr[12], &w3, 4);
		verdict = check_v6(slot, &ep, &reason);
		family = AF_INET6;
		__builtin_memcpy(a, ep.addr, 16);
	}
	if (!sendmsg || verdict != VERDICT_ALLOWED)
		emit_connect(ctx, verdict, reason, family, a, port, sendmsg);
	if (verdict == VERDICT_DENIED) {
		stat_inc(STAT_CONNECT_DENIED);
		return 0;
	}
	return 1;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx) { return sock4(ctx, 0); }

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx) { return sock4(ctx, 1); }

SEC("cgroup/connect6")
int connect6(struct bpf_sock_addr *ctx) { return sock6(ctx, 0); }

SEC("cgroup/sendmsg6")
int sendmsg6(struct bpf_sock_addr *ctx) { return sock6(ctx, 1); }

/* ---- quarantine of established flows --------------------------------------- */

struct ip4hdr {
	__u8 vihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ip6hdr {
	__u32 vtcfl;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline int skb_filter(struct __sk_buff *skb, int egress)
{
	__u32 slot = active_slot();
	struct pal_settings *st = slot_settings(slot);
	if (!st || !st->quarantine)
		return 1;

	__u16 ports[2] = {};
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ip4hdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			goto drop;
		if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP)
			bpf_skb_load_bytes(skb, (ip.vihl & 0xf) * 4, ports, sizeof(ports));
		void *qa = slot_map(&o_qallow4, slot);
		if (!qa)
			goto drop;
		struct ep4_key k = {.addr = egress ? ip.daddr : ip.saddr,
				    .port = egress ? ports[1] : ports[0]};
		if (bpf_map_lookup_elem(qa, &k))
			return 1;
		k.port = 0;
		if (bpf_map_lookup_elem(qa, &k))
			return 1;
		goto drop;
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ip6hdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			goto drop;
		if (ip.nexthdr == IPPROTO_TCP || ip.nexthdr == IPPROTO_UDP)
			bpf_skb_load_bytes(skb, sizeof(ip), ports, sizeof(ports));
		void *qa = slot_map(&o_qallow6, slot);
		if (!qa)
			goto drop;
		struct ep6_key k = {.port = egress ? ports[1] : ports[0]};
		__builtin_memcpy(k.addr, egress ? ip.daddr : ip.saddr, 16);
		if (bpf_map_lookup_elem(qa, &k))
			return 1;
		k.port = 0;
		if (bpf_map_lookup_elem(qa, &k))
			return 1;
		goto drop;
	}
	return 1;
drop:
	stat_inc(egress ? STAT_SKB_EGRESS_DROPS : STAT_SKB_INGRESS_DROPS);
	return 0;
}

SEC("cgroup_skb/egress")
int skb_egress(struct __sk_buff *skb) { return skb_filter(skb, 1); }

SEC("cgroup_skb/ingress")
int skb_ingress(struct __sk_buff *skb) { return skb_filter(skb, 0); }
