package natsembed_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/controller/natsembed"
	"github.com/palisade-sec/palisade/internal/controllertest"
	"github.com/palisade-sec/palisade/internal/subjects"
)

type user struct {
	kp  nkeys.KeyPair
	pub string
}

func newUser(t *testing.T) user {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return user{kp, pub}
}

// connect returns a connection and a channel of async errors
// (permission violations arrive there).
func connect(t *testing.T, url string, u user, inbox string) (*nats.Conn, chan error, error) {
	t.Helper()
	errs := make(chan error, 16)
	opts := []nats.Option{
		nats.Nkey(u.pub, u.kp.Sign),
		nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }),
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(url, opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, errs, err
}

func waitPermErr(t *testing.T, errs chan error, subject string) {
	t.Helper()
	select {
	case err := <-errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subject) {
			t.Fatalf("got %v, want a permission violation on %s", err, subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no permission violation for %s", subject)
	}
}

func TestAgentPermissions(t *testing.T) {
	ctrl, a, b, stranger := newUser(t), newUser(t), newUser(t), newUser(t)
	s, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ControllerNKey: ctrl.pub, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if err := s.SetAgents(map[string]string{a.pub: "ha", b.pub: "hb"}); err != nil {
		t.Fatal(err)
	}

	if _, _, err := connect(t, s.ClientURL(), stranger, ""); err == nil {
		t.Fatal("an unknown nkey connected")
	}

	cc, _, err := connect(t, s.ClientURL(), ctrl, "")
	if err != nil {
		t.Fatal(err)
	}
	seen, err := cc.SubscribeSync(subjects.Root + ".>")
	if err != nil {
		t.Fatal(err)
	}
	cc.Flush()

	ac, aerrs, err := connect(t, s.ClientURL(), a, subjects.Inbox("ha"))
	if err != nil {
		t.Fatal(err)
	}
	// Its own heartbeat goes through.
	if err := ac.Publish(subjects.Heartbeat("ha"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m, err := seen.NextMsg(10 * time.Second); err != nil || m.Subject != subjects.Heartbeat("ha") {
		t.Fatalf("own heartbeat not delivered: %v", err)
	}
	// Publishing as another host is refused.
	_ = ac.Publish(subjects.Heartbeat("hb"), []byte("forged"))
	waitPermErr(t, aerrs, subjects.Heartbeat("hb"))
	// Reading another host's commands is refused.
	_, _ = ac.Subscribe(subjects.Commands("hb")+".>", func(*nats.Msg) {})
	waitPermErr(t, aerrs, subjects.Commands("hb"))
	// Issuing commands is refused.
	_ = ac.Publish(subjects.Commands("ha")+".x", []byte("self-command"))
	waitPermErr(t, aerrs, subjects.Commands("ha"))
	// Nothing forged reached the controller.
	cc.Flush()
	if m, err := seen.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("forged message delivered: %s", m.Subject)
	}

	// Removing the agent disconnects it.
	closed := make(chan struct{})
	ac.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := s.SetAgents(map[string]string{b.pub: "hb"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("removed agent still connected")
	}
}

func TestStart_RequiresControllerKey(t *testing.T) {
	if _, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir()}); err == nil {
		t.Fatal("started with no users (no authentication)")
	}
}

// TestSetAgents_KeepsControllerAndClientsConnected: enrolments reload the
// users one after the other; the controller's user must survive every
// reload (the server sorts the user list in place, so the controller is not
// necessarily first afterwards) and nobody already connected is dropped.
func TestSetAgents_KeepsControllerAndClientsConnected(t *testing.T) {
	ctrl := newUser(t)
	s, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir(), ControllerNKey: ctrl.pub, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	cc, _, err := connect(t, s.ClientURL(), ctrl, "")
	if err != nil {
		t.Fatal(err)
	}
	agents := map[string]string{}
	var conns []*nats.Conn
	for i := range 20 {
		u := newUser(t)
		agents[u.pub] = "h" + strings.Repeat("a", i+1)
		cp := map[string]string{}
		for k, v := range agents {
			cp[k] = v
		}
		if err := s.SetAgents(cp); err != nil {
			t.Fatal(err)
		}
		nc, _, err := connect(t, s.ClientURL(), u, "_INBOX_"+agents[u.pub])
		if err != nil {
			t.Fatalf("agent %d: %v", i, err)
		}
		conns = append(conns, nc)
	}
	// A round trip through the server settles any close it started.
	if err := cc.Flush(); err != nil {
		t.Fatalf("controller connection after 20 reloads: %v", err)
	}
	time.Sleep(100 * time.Millisecond) // let an asynchronous close arrive
	for i, nc := range append([]*nats.Conn{cc}, conns...) {
		if !nc.IsConnected() {
			t.Fatalf("connection %d dropped by a user reload (status %v)", i, nc.Status())
		}
	}
}
