package sensor

import (
	"encoding/binary"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"github.com/palisade-sec/palisade/agent/proccache"
)

// BenchmarkEnrich measures the user-space cost of one exec and one exit
// record (decode + enrich) for the benchmark process itself.
func BenchmarkEnrich(b *testing.B) {
	cache := proccache.New(proccache.Config{})
	defer cache.Close()
	s := &Sensor{cache: cache, log: slog.Default(), cfg: Config{AncestryDepth: 8}}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		b.Fatal(err)
	}
	exec := make([]byte, execSize)
	exec[0], exec[1] = evExec, 1
	le := binary.LittleEndian
	le.PutUint32(exec[4:], uint32(os.Getpid()))
	le.PutUint32(exec[12:], uint32(os.Getppid()))
	le.PutUint64(exec[40:], st.Ino)
	le.PutUint32(exec[48:], userDevToK(st.Dev))
	copy(exec[56:], "bench")
	le.PutUint32(exec[hdrSize+8:], 5)
	copy(exec[hdrSize+16:], "bench")
	le.PutUint32(exec[hdrSize+12:], 6)
	copy(exec[hdrSize+16+maxFilename:], "bench\x00")
	exit := make([]byte, exitSize)
	copy(exit, exec[:hdrSize])
	exit[0] = evExit
	b.ReportAllocs()
	for b.Loop() {
		for _, raw := range [][]byte{exec, exit} {
			r, err := decodeRecord(raw)
			if err != nil {
				b.Fatal(err)
			}
			s.enrich(r)
		}
	}
}
