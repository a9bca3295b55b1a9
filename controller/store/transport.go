package store

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// errIsolated is what dialling returns while a node is isolated.
var errIsolated = errors.New("raft transport isolated (fault injection)")

// faultLayer is the TCP stream layer under the Raft transport, with one
// extra: it can isolate the node (SetIsolated), which closes every Raft
// connection and refuses new ones in both directions until lifted. Tests
// and the benchmark use it to make a network partition inside one
// process; in production nobody calls SetIsolated and it is plain TCP.
type faultLayer struct {
	ln        net.Listener
	advertise net.Addr
	isolated  atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

var _ raft.StreamLayer = (*faultLayer)(nil)

func newFaultLayer(bind string, advertise net.Addr) (*faultLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	return &faultLayer{ln: ln, advertise: advertise, conns: map[net.Conn]struct{}{}}, nil
}

func (l *faultLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return nil, err
		}
		if l.isolated.Load() {
			_ = c.Close()
			continue
		}
		return l.track(c), nil
	}
}

func (l *faultLayer) Close() error { return l.ln.Close() }

func (l *faultLayer) Addr() net.Addr { return l.advertise }

func (l *faultLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if l.isolated.Load() {
		return nil, errIsolated
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	return l.track(c), nil
}

func (l *faultLayer) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc
}

// setIsolated cuts (true) or restores (false) this node's Raft traffic.
func (l *faultLayer) setIsolated(on bool) {
	l.isolated.Store(on)
	if !on {
		return
	}
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *faultLayer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// Reads and writes on an isolated node fail even on a connection that
// was accepted just before isolation.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.l.isolated.Load() {
		_ = c.Close()
		return 0, errIsolated
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.l.isolated.Load() {
		_ = c.Close()
		return 0, errIsolated
	}
	return c.Conn.Write(p)
}
