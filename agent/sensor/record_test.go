package sensor

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/btf"

	palisadebpf "github.com/palisade-sec/palisade/bpf"
)

// The Go decoder's sizes must match the C structs in the committed object.
func TestRecordLayoutMatchesBTF(t *testing.T) {
	spec, err := palisadebpf.LoadPalisade()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"event_hdr": hdrSize, "exec_event": execSize, "exit_event": exitSize,
		"file_event": fileSize, "connect_event": connectSize,
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if int(st.Size) != want {
			t.Errorf("%s: C size %d, Go decoder expects %d", name, st.Size, want)
		}
	}
}

func TestDecodeRecord(t *testing.T) {
	b := make([]byte, connectSize)
	b[0], b[1], b[2] = evConnect, 3, reasonMetadata
	binary.LittleEndian.PutUint32(b[4:], 42)
	copy(b[56:], "curl\x00")
	binary.LittleEndian.PutUint16(b[hdrSize:], afInet)
	binary.LittleEndian.PutUint16(b[hdrSize+2:], 80)
	b[hdrSize+4] = 6
	copy(b[hdrSize+8:], []byte{169, 254, 169, 254})
	r, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != 42 || r.Comm != "curl" || r.Connect.Addr != netip.MustParseAddr("169.254.169.254") || r.Connect.Port != 80 {
		t.Errorf("decoded %+v %+v", r.header, r.Connect)
	}
	if _, err := decodeRecord(b[:hdrSize+3]); err == nil {
		t.Error("short record decoded")
	}
}

func TestDevEncoding(t *testing.T) {
	for _, c := range []struct{ major, minor uint32 }{{8, 1}, {0, 25}, {259, 0x12345}, {253, 300}} {
		k := c.major<<20 | c.minor
		u := kdevToUser(k)
		if got := userDevToK(u); got != k {
			t.Errorf("%d:%d: round trip %x -> %x -> %x", c.major, c.minor, k, u, got)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, n := range []int{0, hdrSize, execSize, exitSize, fileSize, connectSize} {
		b := make([]byte, n)
		if n > 0 {
			b[0] = byte(n % 5)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err == nil && r == nil {
			t.Fatal("nil record without error")
		}
		if err == nil && r.Exec != nil && (len(r.Exec.Args) > maxArgs || len(r.Exec.Filename) > maxFilename) {
			t.Fatal("exec fields exceed bounds")
		}
	})
}
