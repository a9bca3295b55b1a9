package policy

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

// checkRejection asserts that an error from Parse or ValidateBundle is a
// ValidationError with at least one problem.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) == 0 || ve.Error() == "" {
		t.Fatalf("rejection is not a ValidationError with problems: %#v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example())
	for _, s := range []string{
		doc(""),
		doc("  network: {deny: [10.0.0.1/8, '::/0']}\n  quarantine: {enabled: true, allow: ['[::1]:1']}\n"),
		doc("  credentials:\n    files:\n      - paths: ['/home/*/.ssh/id_[rd]*']\n"),
		doc("  rules:\n    - {name: a, condition: x, severity: low, response: kill_tree}\n"),
		doc("  exec: &a {deny: [/x]}\n  network: *a\n"),
		"a: [\n",
		"--- a\n--- b\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with an error")
			}
			checkRejection(t, err)
			return
		}
		b, err := p.Compile()
		if err != nil {
			t.Fatalf("a parsed policy failed to compile: %v", err)
		}
		if err := ValidateBundle(b); err != nil {
			t.Fatalf("a compiled bundle failed validation: %v", err)
		}
		wire, err := proto.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back palisadev1.PolicyBundle
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if err := ValidateBundle(&back); err != nil {
			t.Fatalf("bundle failed validation after the wire: %v", err)
		}
	})
}

func FuzzValidateBundle(f *testing.F) {
	good := exampleBundle(f)
	wire, err := proto.Marshal(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	bad := proto.Clone(good).(*palisadev1.PolicyBundle)
	bad.Network.Deny = append(bad.Network.Deny, "10.0.0.1/8", "x")
	bad.Rules[0].Mode = palisadev1.Mode_MODE_UNSPECIFIED
	if wire, err = proto.Marshal(bad); err != nil {
		f.Fatal(err)
	}
	f.Add(wire)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b palisadev1.PolicyBundle
		if proto.Unmarshal(data, &b) != nil {
			return
		}
		if err := ValidateBundle(&b); err != nil {
			checkRejection(t, err)
			return
		}
		// An accepted bundle stays accepted after another trip over the wire.
		out, err := proto.Marshal(&b)
		if err != nil {
			t.Fatalf("marshal of an accepted bundle: %v", err)
		}
		var again palisadev1.PolicyBundle
		if err := proto.Unmarshal(out, &again); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if err := ValidateBundle(&again); err != nil {
			t.Fatalf("accepted bundle rejected after the wire: %v", err)
		}
	})
}
