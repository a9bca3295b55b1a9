//go:build ignore

/* Shared definitions between the BPF programs and the Go loader
 * (agent/sensor/record.go mirrors the event layouts byte for byte). */
#ifndef PALISADE_H
#define PALISADE_H

#define MAX_FILENAME 256
#define MAX_ARGS 512
#define TASK_COMM_LEN 16

/* Event types. */
#define EV_EXEC 1
#define EV_EXIT 2
#define EV_FILE 3
#define EV_CONNECT 4

/* Verdicts, same numbering as palisade.v1.Verdict. */
#define VERDICT_ALLOWED 1
#define VERDICT_AUDITED 2
#define VERDICT_DENIED 3
#define VERDICT_KILLED 4

/* Connect reasons. */
#define REASON_NONE 0
#define REASON_DENY_CIDR 1
#define REASON_METADATA 2
#define REASON_QUARANTINE 3

/* Policy element modes, same numbering as palisade.v1.Mode. */
#define MODE_AUDIT 1
#define MODE_ENFORCE 2

/* Counter indexes in the per-CPU stats array. */
#define STAT_RINGBUF_DROPS 0
#define STAT_SKB_EGRESS_DROPS 1
#define STAT_SKB_INGRESS_DROPS 2
#define STAT_CONNECT_DENIED 3
#define STAT_KILLS 4
#define STAT_MAX 8

/* Policy slots for double-buffered application. */
#define POLICY_SLOTS 2

/* Executable or file identity: kernel-encoded s_dev and i_ino. */
struct file_id {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct event_hdr {
	__u8 type;
	__u8 verdict;
	__u8 reason;
	__u8 flags;
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u64 cgroup_id;
	__u64 time_ns; /* CLOCK_BOOTTIME */
	__u64 exe_ino;
	__u32 exe_dev;
	__u32 pad;
	char comm[TASK_COMM_LEN];
}; /* 72 bytes */

struct exec_event {
	struct event_hdr hdr;
	__u64 start_ns; /* CLOCK_BOOTTIME */
	__u32 filename_len;
	__u32 args_len;
	char filename[MAX_FILENAME];
	char args[MAX_ARGS];
};

struct exit_event {
	struct event_hdr hdr;
	__u32 exit_code;
	__u32 pad;
};

struct file_event {
	struct event_hdr hdr;
	__u64 ino;
	__u32 dev;
	__u32 flags;
};

struct connect_event {
	struct event_hdr hdr;
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 port;   /* host byte order */
	__u8 protocol; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 sendmsg;
	__u16 pad;
	__u8 addr[16]; /* v4 in the first 4 bytes */
};

/* Policy map values and keys. */
struct protected_val {
	__u32 reader_set;
	__u8 mode;
	__u8 honeytoken;
	__u16 pad;
};

struct reader_key {
	__u64 ino;
	__u32 dev;
	__u32 set;
};

struct lpm4_key {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ep4_key {
	__u32 addr;  /* network byte order */
	__u16 port;  /* network byte order; 0 = any port */
	__u16 pad;
};

struct ep6_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

struct pal_settings {
	__u32 quarantine;
	__u8 metadata_mode;
	__u8 pad[3];
	__u64 generation;
};

struct pal_meta {
	__u64 scope_cgroup_id;
	__u64 layout_version;
	__u32 agent_tgid; /* the agent itself is never killed */
	__u32 pad;
};

#endif
