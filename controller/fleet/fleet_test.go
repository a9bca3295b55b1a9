package fleet

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/palisade-sec/palisade/internal/policy"
	palisadev1 "github.com/palisade-sec/palisade/proto/palisade/v1"
)

func TestBundle_MergesFleetContent(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	base, err := policy.Compile(policy.Example(), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base.Version = 4
	cur := &palisadev1.PolicyVersion{Version: 4, Bundle: base}
	iocs := []*palisadev1.IOC{
		{Type: palisadev1.IOCType_IOC_TYPE_IP, Value: "203.0.113.7"},
		{Type: palisadev1.IOCType_IOC_TYPE_CIDR, Value: "198.51.100.0/24"},
		{Type: palisadev1.IOCType_IOC_TYPE_SHA256, Value: strings.Repeat("c", 64)},
		{Type: palisadev1.IOCType_IOC_TYPE_IP, Value: "192.0.2.1", ExpiresAt: timestamppb.New(now)}, // expired
	}
	leaks := []*palisadev1.LeakedCredential{
		{KeyIdSha256: strings.Repeat("d", 64), KeyIdPrefix: "AKIA", KeyIdLength: 20, KeyIdMasked: "AKIA****TEST", Status: palisadev1.LeakStatus_LEAK_STATUS_ACTIVE},
		{KeyIdSha256: strings.Repeat("e", 64), KeyIdPrefix: "LTAI", KeyIdLength: 24, Status: palisadev1.LeakStatus_LEAK_STATUS_REVOKED},
	}
	b := Bundle(cur, iocs, leaks, now)
	if got := strings.Join(b.GetIocs(), ","); got != "198.51.100.0/24,203.0.113.7/32,sha256:"+strings.Repeat("c", 64) {
		t.Fatalf("iocs = %s", got)
	}
	if len(b.GetLeakedKeys()) != 1 || b.GetVersion() != 4 || b.GetRevision() == 0 {
		t.Fatalf("bundle = %v", b)
	}
	if err := policy.ValidateBundle(b); err != nil {
		t.Fatalf("merged bundle invalid: %v", err)
	}
	if base.GetIocs() != nil {
		t.Fatal("the stored policy was modified")
	}
	// Same content, same revision; new content, new revision.
	if again := Bundle(cur, iocs, leaks, now); again.GetRevision() != b.GetRevision() {
		t.Fatal("revision not stable")
	}
	if more := Bundle(cur, append(iocs, &palisadev1.IOC{Type: palisadev1.IOCType_IOC_TYPE_IP, Value: "203.0.113.9"}), leaks, now); more.GetRevision() == b.GetRevision() {
		t.Fatal("revision did not change with the content")
	}
	// No policy yet: IOCs still reach the fleet.
	empty := Bundle(nil, iocs, nil, now)
	if err := policy.ValidateBundle(empty); err != nil || len(empty.GetIocs()) != 3 {
		t.Fatalf("fleet bundle without policy: %v %v", empty, err)
	}
}
