package cmdsign

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func TestSignVerify(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32)).Public().(ed25519.PublicKey)
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cmd := &palisadev1.Command{CommandId: "c1", HostId: "h1", ExpiresAt: timestamppb.New(now.Add(time.Minute)),
		Kind: &palisadev1.Command_Quarantine{Quarantine: &palisadev1.QuarantineCommand{Reason: "test"}}}
	data, err := Sign(seed, cmd)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(pub, "h1", data, now)
	if err != nil || !proto.Equal(got, cmd) {
		t.Fatalf("verify: %v, %v", got, err)
	}
	tampered := func() []byte {
		var sc palisadev1.SignedCommand
		_ = proto.Unmarshal(data, &sc)
		sc.Command = append([]byte{}, sc.Command...)
		sc.Command[len(sc.Command)-1] ^= 1
		b, _ := proto.Marshal(&sc)
		return b
	}()
	cases := []struct {
		name string
		pub  ed25519.PublicKey
		host string
		data []byte
		at   time.Time
		want error
	}{
		{"another key", other, "h1", data, now, ErrBadSignature},
		{"tampered", pub, "h1", tampered, now, ErrBadSignature},
		{"another host", pub, "h2", data, now, ErrWrongHost},
		{"expired", pub, "h1", data, now.Add(time.Minute), ErrExpired},
		{"garbage", pub, "h1", []byte("\xff\xff"), now, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(tc.pub, tc.host, tc.data, tc.at); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	good, _ := Sign(seed, &palisadev1.Command{CommandId: "c", HostId: "h", ExpiresAt: timestamppb.Now(),
		Kind: &palisadev1.Command_Release{Release: &palisadev1.ReleaseCommand{}}})
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Verify(pub, "h", data, time.Unix(0, 0))
	})
}

func TestSignVerifyBundle(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	b := &palisadev1.PolicyBundle{Name: "p", Version: 3}
	data, err := SignBundle(seed, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyBundle(pub, data)
	if err != nil || !proto.Equal(got, b) {
		t.Fatalf("verify: %v %v", got, err)
	}
	var sb palisadev1.SignedBundle
	_ = proto.Unmarshal(data, &sb)
	sb.Bundle[len(sb.Bundle)-1] ^= 1
	tampered, _ := proto.Marshal(&sb)
	if _, err := VerifyBundle(pub, tampered); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered: err = %v", err)
	}
}
