package natsauth_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/controller/natsauth"
	"github.com/palisade-sec/palisade/controller/natsembed"
)

func accountKey(t *testing.T) (nkeys.KeyPair, string, []byte) {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return kp, pub, seed
}

// The JWT carries exactly the embedded mode's permissions, is bound to the
// agent's nkey, names the account it acts for and is no bearer token.
func TestAgentJWT_SamePermissionsAsEmbedded(t *testing.T) {
	_, account, _ := accountKey(t)
	_, signer, seed := accountKey(t)
	iss, err := natsauth.NewIssuer(seed, account)
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	tok, err := iss.AgentJWT("h1", upub, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Subject != upub || uc.Issuer != signer || uc.IssuerAccount != account {
		t.Fatalf("subject %s issuer %s account %s; want %s %s %s", uc.Subject, uc.Issuer, uc.IssuerAccount, upub, signer, account)
	}
	if uc.BearerToken || uc.Expires != 0 || uc.Resp != nil {
		t.Fatalf("bearer %v expires %d resp %v: want a nonce-signed JWT with no expiry and no response permission", uc.BearerToken, uc.Expires, uc.Resp)
	}
	emb := natsembed.AgentPermissions("h1")
	if !slices.Equal([]string(uc.Pub.Allow), emb.Publish.Allow) || !slices.Equal([]string(uc.Sub.Allow), emb.Subscribe.Allow) {
		t.Fatalf("jwt permissions pub %v sub %v differ from embedded pub %v sub %v", uc.Pub.Allow, uc.Sub.Allow, emb.Publish.Allow, emb.Subscribe.Allow)
	}
	if len(uc.Pub.Deny) != 0 || len(uc.Sub.Deny) != 0 {
		t.Fatal("unexpected deny lists")
	}
	if _, err := iss.AgentJWT("h1", signer, time.Now()); err == nil {
		t.Fatal("issued a JWT for an account key")
	}

	iss.TTL = time.Hour
	tok, _ = iss.AgentJWT("h1", upub, time.Now())
	if uc, _ := jwt.DecodeUserClaims(tok); uc.Expires == 0 {
		t.Fatal("TTL set, JWT without expiry")
	}
}

func TestLoadIssuer_AccountFromCreds(t *testing.T) {
	akp, account, _ := accountKey(t)
	_, _, seed := accountKey(t)
	dir := t.TempDir()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	// The controller's user is signed by the account's identity key here.
	tok, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := jwt.FormatUserConfig(tok, useed)
	credsFile, keyFile := filepath.Join(dir, "c.creds"), filepath.Join(dir, "sk.nk")
	os.WriteFile(credsFile, creds, 0o600)
	os.WriteFile(keyFile, append(seed, '\n'), 0o600)
	iss, err := natsauth.LoadIssuer(keyFile, credsFile)
	if err != nil {
		t.Fatal(err)
	}
	if iss.Account() != account {
		t.Fatalf("account %s, want %s", iss.Account(), account)
	}
	os.WriteFile(keyFile, useed, 0o600)
	if _, err := natsauth.LoadIssuer(keyFile, credsFile); err == nil {
		t.Fatal("a user seed accepted as an account signing key")
	}
}
