package devca

import (
	"crypto/tls"
	"testing"
)

func TestIssuedCertificateVerifiesAgainstTheCA(t *testing.T) {
	caPEM, keyPEM, err := New("c-test")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := Issue(caPEM, keyPEM, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := Pool(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("a client trusting the CA: %v", err)
	}
	c.Close()
	other, _, _ := New("c-other")
	otherPool, _ := Pool(other)
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: otherPool}); err == nil {
		c.Close()
		t.Fatal("a client trusting another CA connected")
	}
	if _, err := Pool([]byte("junk")); err == nil {
		t.Fatal("Pool accepted junk")
	}
}
