package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func exampleBundle(t testing.TB) *palisadev1.PolicyBundle {
	t.Helper()
	b, err := Compile(Example(), "example.yaml")
	if err != nil {
		t.Fatalf("Compile(Example()): %v", err)
	}
	return b
}

func TestCompile_RoundTrip(t *testing.T) {
	b := exampleBundle(t)
	sum := sha256.Sum256(Example())
	if b.SourceSha256 != hex.EncodeToString(sum[:]) {
		t.Errorf("source_sha256 = %s, want sha256 of the document", b.SourceSha256)
	}
	if b.Version != 0 {
		t.Errorf("version = %d, want 0 (the controller assigns it)", b.Version)
	}
	wire, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var got palisadev1.PolicyBundle
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(b, &got) {
		t.Errorf("bundle changed over the wire:\n%v\n%v", b, &got)
	}
	if err := ValidateBundle(&got); err != nil {
		t.Errorf("ValidateBundle after round trip: %v", err)
	}
	again := exampleBundle(t)
	if !proto.Equal(b, again) {
		t.Error("Compile is not deterministic")
	}
	// The bundle must not alias the policy.
	p, err := Parse(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := p.Compile()
	if err != nil {
		t.Fatal(err)
	}
	b1.Network.Deny[0] = "changed"
	if p.Network.Deny[0] == "changed" {
		t.Error("bundle shares slices with the policy")
	}
}

func TestCompile_RejectsUnparsedOrBrokenPolicy(t *testing.T) {
	if _, err := (&Policy{Name: "x", Mode: palisadev1.Mode_MODE_AUDIT}).Compile(); err == nil {
		t.Error("Compile of a Policy not from Parse succeeded")
	}
	var nilPolicy *Policy
	if _, err := nilPolicy.Compile(); err == nil {
		t.Error("Compile of nil succeeded")
	}
	p, err := Parse(Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p.Network.Deny = append(p.Network.Deny, "not-a-cidr")
	p.Rules[0].Severity = "loud"
	_, err = p.Compile()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Compile of a modified policy: %v, want a wrapped ValidationError", err)
	}
	if got, want := problemPaths(t, err), []string{"network.deny[2]", "rules[0].severity"}; !slices.Equal(got, want) {
		t.Errorf("paths = %q, want %q", got, want)
	}
}

func TestValidateBundle_Invalid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b *palisadev1.PolicyBundle)
		want   []string
	}{
		{"header", func(b *palisadev1.PolicyBundle) {
			b.Name = ""
			b.SourceSha256 = "ABC"
			b.DefaultMode = palisadev1.Mode_MODE_UNSPECIFIED
			b.CreatedAt = &timestamppb.Timestamp{Seconds: 1 << 62}
		}, []string{"name", "source_sha256", "created_at", "default_mode"}},
		{"unknown mode number", func(b *palisadev1.PolicyBundle) { b.Exec.Mode = 7 }, []string{"exec.mode"}},
		{"protected files", func(b *palisadev1.PolicyBundle) {
			b.ProtectedFiles[0].Paths = nil
			b.ProtectedFiles[1].Paths[0] = "/root/.aws/credentials" // duplicates entry 0 once it is back
			b.ProtectedFiles[1].Readers = []string{"ssh", "/usr/bin/ssh", "/usr/bin/ssh", "/a/\xff"}
			b.ProtectedFiles[1].Mode = palisadev1.Mode_MODE_UNSPECIFIED
			b.ProtectedFiles = append(b.ProtectedFiles, nil)
		}, []string{"protected_files[0].paths", "protected_files[1].readers[0]", "protected_files[1].readers[2]",
			"protected_files[1].readers[3]", "protected_files[1].mode", "protected_files[2]"}},
		{"path in two entries", func(b *palisadev1.PolicyBundle) {
			b.ProtectedFiles[1].Paths[1] = b.ProtectedFiles[0].Paths[2]
		}, []string{"protected_files[1].paths[1]"}},
		{"non-canonical values", func(b *palisadev1.PolicyBundle) {
			b.Network.Deny[0] = "203.0.113.7/24"
			b.Quarantine.Allow[0] = "10.0.0.5:053"
			b.Metadata.Endpoints[2] = "[FD00:EC2::254]:80"
		}, []string{"metadata.endpoints[2]", "network.deny[0]", "quarantine.allow[0]"}},
		{"metadata clients without endpoints", func(b *palisadev1.PolicyBundle) {
			b.Metadata.Endpoints = nil
			b.Metadata.Mode = palisadev1.Mode_MODE_UNSPECIFIED
		}, []string{"metadata.endpoints", "metadata.mode"}},
		{"honeytokens", func(b *palisadev1.PolicyBundle) {
			b.Honeytokens[0].Path = "/root/*.bak"
			b.Honeytokens[1].Provider = "gcp"
			b.Honeytokens = append(b.Honeytokens, &palisadev1.Honeytoken{Path: "/root/.aws/credentials.old", Provider: "aws"}, nil)
		}, []string{"honeytokens[0].path", "honeytokens[1].provider", "honeytokens[2].path", "honeytokens[3]"}},
		{"exec and network", func(b *palisadev1.PolicyBundle) {
			b.Exec.Deny = append(b.Exec.Deny, "sha256:xyz", "xmrig")
			b.Network.Deny = append(b.Network.Deny, "10.0.0.0/8", "10.0.0.0/8", "nope")
			b.Network.Mode = palisadev1.Mode_MODE_UNSPECIFIED
		}, []string{"exec.deny[2]", "exec.deny[3]", "network.deny[3]", "network.deny[4]", "network.mode"}},
		{"rules", func(b *palisadev1.PolicyBundle) {
			b.Rules[1].Name = b.Rules[0].Name
			b.Rules[0].Response = ""
			b.Rules[0].Severity = "HIGH"
			b.Rules[0].Condition = ""
			b.Rules[0].Mode = palisadev1.Mode_MODE_UNSPECIFIED
			b.Rules[1].SourceLine = -1
			b.Rules[1].Description = strings.Repeat("d", MaxDescriptionLength+1)
			b.Rules = append(b.Rules, nil, &palisadev1.Rule{Name: "x y", Condition: "true", Severity: "low", Response: "none", Mode: palisadev1.Mode_MODE_AUDIT})
		}, []string{"rules[0].condition", "rules[0].severity", "rules[0].response", "rules[0].mode",
			"rules[1].name", "rules[1].description", "rules[1].source_line", "rules[2]", "rules[3].name"}},
		{"limits", func(b *palisadev1.PolicyBundle) {
			b.Exec.Deny = make([]string, MaxListLength+1)
			b.Rules = make([]*palisadev1.Rule, MaxRules+1)
			b.ProtectedFiles = make([]*palisadev1.ProtectedFiles, MaxFileEntries+1)
		}, []string{"protected_files", "exec.deny", "rules"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := exampleBundle(t)
			tt.mutate(b)
			err := ValidateBundle(b)
			if err == nil {
				t.Fatal("ValidateBundle accepted the bundle")
			}
			if got := problemPaths(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problem paths = %q\nwant %q\nerror: %v", got, tt.want, err)
			}
		})
	}
}

func TestValidateBundle_Accepts(t *testing.T) {
	if err := ValidateBundle(nil); err == nil {
		t.Error("ValidateBundle(nil) succeeded")
	}
	// Absent elements mean nothing to enforce; a created_at is allowed.
	b := &palisadev1.PolicyBundle{
		Version:      7,
		Name:         "minimal",
		SourceSha256: strings.Repeat("a", 64),
		DefaultMode:  palisadev1.Mode_MODE_AUDIT,
		CreatedAt:    timestamppb.New(timestamppb.Now().AsTime()),
	}
	if err := ValidateBundle(b); err != nil {
		t.Errorf("ValidateBundle(minimal): %v", err)
	}
}
