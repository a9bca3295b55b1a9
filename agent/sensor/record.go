package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Layout of the ring-buffer records; mirrors bpf/palisade.h.
const (
	evExec    = 1
	evExit    = 2
	evFile    = 3
	evConnect = 4

	hdrSize     = 72
	maxFilename = 256
	maxArgs     = 512
	execSize    = hdrSize + 16 + maxFilename + maxArgs
	exitSize    = hdrSize + 8
	fileSize    = hdrSize + 16
	connectSize = hdrSize + 24

	reasonDenyCIDR   = 1
	reasonMetadata   = 2
	reasonQuarantine = 3

	afInet  = 2
	afInet6 = 10
)

// header is the common part of every record.
type header struct {
	Type     uint8
	Verdict  uint8
	Reason   uint8
	Flags    uint8
	PID      uint32
	TID      uint32
	PPID     uint32
	UID      uint32
	GID      uint32
	CgroupID uint64
	TimeNS   uint64 // CLOCK_BOOTTIME
	ExeIno   uint64
	ExeDev   uint32 // kernel-encoded
	Comm     string
}

// record is one decoded ring-buffer record; exactly one of the kind
// pointers is set.
type record struct {
	header
	Exec    *execRecord
	Exit    *exitRecord
	File    *fileRecord
	Connect *connectRecord
}

type execRecord struct {
	StartNS  uint64
	Filename string
	Args     []byte // NUL-separated
}

type exitRecord struct {
	ExitCode uint32 // wait status: signal in the low 7 bits, code in bits 8-15
}

type fileRecord struct {
	Ino   uint64
	Dev   uint32 // kernel-encoded
	Flags uint32
}

type connectRecord struct {
	Addr     netip.Addr
	Port     uint16
	Protocol uint8
	Sendmsg  bool
}

var errShort = errors.New("short record")

func cstring(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// decodeRecord parses one ring-buffer record. It never panics on any
// input (see FuzzDecodeRecord).
func decodeRecord(b []byte) (*record, error) {
	if len(b) < hdrSize {
		return nil, fmt.Errorf("%w: %d bytes", errShort, len(b))
	}
	le := binary.LittleEndian
	r := &record{header: header{
		Type:     b[0],
		Verdict:  b[1],
		Reason:   b[2],
		Flags:    b[3],
		PID:      le.Uint32(b[4:]),
		TID:      le.Uint32(b[8:]),
		PPID:     le.Uint32(b[12:]),
		UID:      le.Uint32(b[16:]),
		GID:      le.Uint32(b[20:]),
		CgroupID: le.Uint64(b[24:]),
		TimeNS:   le.Uint64(b[32:]),
		ExeIno:   le.Uint64(b[40:]),
		ExeDev:   le.Uint32(b[48:]),
		Comm:     cstring(b[56:72]),
	}}
	body := b[hdrSize:]
	switch r.Type {
	case evExec:
		if len(b) < execSize {
			return nil, fmt.Errorf("exec: %w: %d bytes", errShort, len(b))
		}
		flen := le.Uint32(body[8:])
		alen := le.Uint32(body[12:])
		if flen > maxFilename || alen > maxArgs {
			return nil, fmt.Errorf("exec: lengths %d/%d out of range", flen, alen)
		}
		fn := body[16 : 16+maxFilename]
		args := body[16+maxFilename : 16+maxFilename+maxArgs]
		r.Exec = &execRecord{
			StartNS:  le.Uint64(body[0:]),
			Filename: cstring(fn[:flen]),
			Args:     append([]byte(nil), args[:alen]...),
		}
	case evExit:
		if len(b) < exitSize {
			return nil, fmt.Errorf("exit: %w: %d bytes", errShort, len(b))
		}
		r.Exit = &exitRecord{ExitCode: le.Uint32(body[0:])}
	case evFile:
		if len(b) < fileSize {
			return nil, fmt.Errorf("file: %w: %d bytes", errShort, len(b))
		}
		r.File = &fileRecord{Ino: le.Uint64(body[0:]), Dev: le.Uint32(body[8:]), Flags: le.Uint32(body[12:])}
	case evConnect:
		if len(b) < connectSize {
			return nil, fmt.Errorf("connect: %w: %d bytes", errShort, len(b))
		}
		c := &connectRecord{
			Port:     le.Uint16(body[2:]),
			Protocol: body[4],
			Sendmsg:  body[5] != 0,
		}
		switch family := le.Uint16(body[0:]); family {
		case afInet:
			c.Addr = netip.AddrFrom4([4]byte(body[8:12]))
		case afInet6:
			c.Addr = netip.AddrFrom16([16]byte(body[8:24]))
		default:
			return nil, fmt.Errorf("connect: unknown family %d", family)
		}
		r.Connect = c
	default:
		return nil, fmt.Errorf("unknown record type %d", r.Type)
	}
	return r, nil
}

// Kernel dev_t encoding (s_dev: major << 20 | minor) versus the user-space
// encoding stat(2) reports.
func kdevToUser(k uint32) uint64 {
	major := uint64(k >> 20)
	minor := uint64(k & 0xfffff)
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
}

func userDevToK(d uint64) uint32 {
	major := uint32((d>>8)&0xfff | (d>>32)&^0xfff)
	minor := uint32(d&0xff | (d>>12)&^0xff)
	return major<<20 | minor&0xfffff
}
