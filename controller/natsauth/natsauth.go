// Package natsauth defines what an agent may do on NATS — one definition,
// used both by the embedded server (natsembed turns it into an nkey user's
// permissions) and, against an operator's NATS cluster in operator/JWT
// mode, by the Issuer, which turns it into a user JWT signed with an
// account signing key.
//
// Revocation in JWT mode: the controller holds only an account signing
// key, never the operator key that signs the account JWT, so it cannot
// add a user to the account's revocation list; that stays with the
// operator (nsc revocations add-user -a ACCOUNT -u AGENT_NKEY, then push
// the account). What the controller does on its own: it ignores
// heartbeats and telemetry of hosts it does not know, and a host's
// commands come only through the durable consumer the leader creates for
// it (the agent cannot create consumers on COMMANDS). A user JWT carries
// an expiry only when Issuer.TTL is set; agents cannot renew one yet, so
// the default is no expiry.
package natsauth

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/palisade-sec/palisade/internal/streams"
	"github.com/palisade-sec/palisade/internal/subjects"
)

// Allow lists the subjects a user may publish to and subscribe to;
// everything else is denied.
type Allow struct {
	Publish   []string
	Subscribe []string
}

// AgentAllow is what one agent may do: publish under its own host id,
// read its own commands and replies to its own inbox.
//
// JetStream: its telemetry publishes are acknowledged to its inbox; it
// pulls and acknowledges from its own command consumer only; it may watch
// the policy bucket (policy is the same for every host, and signed).
func AgentAllow(hostID string) Allow {
	cons := streams.Commands + "." + streams.AgentConsumer(hostID)
	kv := "KV_" + streams.PolicyBucket
	return Allow{
		Publish: []string{
			subjects.HostPrefix(hostID) + ".>",
			"$JS.API.CONSUMER.INFO." + cons,
			"$JS.API.CONSUMER.MSG.NEXT." + cons,
			"$JS.ACK." + cons + ".>",
			"$JS.API.STREAM.INFO." + kv,
			"$JS.API.DIRECT.GET." + kv + ".>",
			"$JS.API.STREAM.MSG.GET." + kv,
		},
		Subscribe: []string{
			subjects.Commands(hostID) + ".>",
			subjects.Inbox(hostID) + ".>",
			streams.PolicySubject(),
		},
	}
}

// Issuer signs agent user JWTs for one account with one of the account's
// signing keys.
type Issuer struct {
	signer  nkeys.KeyPair
	account string // the account's public key
	// TTL, when positive, is the lifetime of an issued JWT.
	TTL time.Duration
}

// NewIssuer builds an Issuer from the seed of an account signing key (an
// "SA…" seed, as nsc generates with `nsc edit account --sk generate`) and
// the account's public key ("A…"). When the signing key is the account's
// own identity key, account may be empty.
func NewIssuer(signingSeed []byte, account string) (*Issuer, error) {
	kp, err := nkeys.FromSeed(signingSeed)
	if err != nil {
		return nil, fmt.Errorf("account signing key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("account signing key: %w", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return nil, fmt.Errorf("account signing key: %s is not an account key (want a seed starting with SA)", pub)
	}
	if account == "" {
		account = pub
	}
	if !nkeys.IsValidPublicAccountKey(account) {
		return nil, fmt.Errorf("account %q is not an account public key", account)
	}
	return &Issuer{signer: kp, account: account}, nil
}

// LoadIssuer reads the signing key seed from keyFile (the seed alone, or
// an nsc-style decorated file) and takes the account from the user JWT in
// credsFile (the controller's own credentials, a user of the same
// account).
func LoadIssuer(keyFile, credsFile string) (*Issuer, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read account signing key: %w", err)
	}
	seed, err := parseSeed(b)
	if err != nil {
		return nil, fmt.Errorf("account signing key %s: %w", keyFile, err)
	}
	account := ""
	if credsFile != "" {
		if account, err = CredsAccount(credsFile); err != nil {
			return nil, err
		}
	}
	return NewIssuer(seed, account)
}

// parseSeed accepts a bare seed or one decorated like a .creds/.nk file.
func parseSeed(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "SA") && !strings.ContainsAny(s, " \n") {
		return []byte(s), nil
	}
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "SA") {
			return []byte(line), nil
		}
	}
	return nil, errors.New("no account seed (SA…) found")
}

// CredsAccount is the account of the user in a .creds file.
func CredsAccount(credsFile string) (string, error) {
	b, err := os.ReadFile(credsFile)
	if err != nil {
		return "", fmt.Errorf("read nats creds: %w", err)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", fmt.Errorf("nats creds %s: %w", credsFile, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", fmt.Errorf("nats creds %s: %w", credsFile, err)
	}
	if uc.IssuerAccount != "" {
		return uc.IssuerAccount, nil
	}
	return uc.Issuer, nil
}

// Account is the account agents' users belong to.
func (i *Issuer) Account() string { return i.account }

// AgentJWT issues the user JWT of the agent of hostID, whose public user
// nkey is agentNKey, with exactly AgentAllow's permissions. It is not a
// bearer token: the agent proves it holds the nkey on every connect.
func (i *Issuer) AgentJWT(hostID, agentNKey string, now time.Time) (string, error) {
	if !nkeys.IsValidPublicUserKey(agentNKey) {
		return "", fmt.Errorf("%q is not a public user nkey", agentNKey)
	}
	uc := jwt.NewUserClaims(agentNKey)
	uc.Name = "palisade-agent " + hostID
	if i.TTL > 0 {
		uc.Expires = now.Add(i.TTL).Unix()
	}
	signerPub, err := i.signer.PublicKey()
	if err != nil {
		return "", err
	}
	if signerPub != i.account {
		uc.IssuerAccount = i.account
	}
	a := AgentAllow(hostID)
	uc.Pub.Allow = jwt.StringList(a.Publish)
	uc.Sub.Allow = jwt.StringList(a.Subscribe)
	uc.Tags.Add("palisade-host:" + strings.ToLower(hostID))
	tok, err := uc.Encode(i.signer)
	if err != nil {
		return "", fmt.Errorf("sign agent jwt: %w", err)
	}
	return tok, nil
}
