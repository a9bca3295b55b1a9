// Package streams defines Palisade's JetStream streams, consumers and KV
// buckets, and creates them idempotently (the controller leader does, at
// start and on every leadership change).
//
//	TELEMETRY  palisade.v1.host.*.events|alerts|results   agent → controller
//	           file storage, 7 days or MaxBytes, 2-minute duplicate window
//	           (Nats-Msg-Id "<host>-<first seq>"), durable consumer
//	           "controller-ingest" read by the leader only.
//	COMMANDS   palisade.v1.cmd.<host>                        controller → agent
//	           file storage, 24 hours (no command outlives that), one durable
//	           pull consumer per host ("agent-<host>", filtered to the host's
//	           subject) created by the controller at enrolment.
//	KV PALISADE_POLICY  key "fleet": the signed policy bundle agents watch.
//	KV PALISADE_INGEST  key "<host>": the last sequence number the leader
//	           ingested from the host, so a new leader (or a restarted one)
//	           drops what was already ingested.
package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/palisade-sec/palisade/internal/subjects"
)

// Names.
const (
	Telemetry      = "TELEMETRY"
	Commands       = "COMMANDS"
	PolicyBucket   = "PALISADE_POLICY"
	PolicyKey      = "fleet"
	IngestBucket   = "PALISADE_INGEST"
	IngestConsumer = "controller-ingest"
)

// Telemetry record kinds: the last token of a host's telemetry subject.
const (
	KindEvents  = "events"
	KindAlerts  = "alerts"
	KindResults = "results"
)

// Headers on telemetry messages.
const (
	HeaderFirstSeq = "Palisade-First-Seq"
	HeaderCount    = "Palisade-Count"
)

// Retention.
const (
	TelemetryMaxAge   = 7 * 24 * time.Hour
	DuplicateWindow   = 2 * time.Minute
	CommandsMaxAge    = 24 * time.Hour
	DefaultTelemetryB = 10 << 30
)

// PolicySubject is the subject the fleet bundle is stored under; agents
// subscribe to it (core NATS) and read the key directly, so the policy
// needs no consumer per agent.
func PolicySubject() string { return "$KV." + PolicyBucket + "." + PolicyKey }

// AgentConsumer is the durable consumer through which a host reads its
// commands.
func AgentConsumer(hostID string) string { return "agent-" + hostID }

// MsgID de-duplicates a telemetry record within the duplicate window.
func MsgID(hostID string, firstSeq uint64) string { return fmt.Sprintf("%s-%d", hostID, firstSeq) }

// Options size the streams.
type Options struct {
	Replicas       int
	TelemetryBytes int64
}

// Ensure creates or updates every stream and bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, o Options) error {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.TelemetryBytes <= 0 {
		o.TelemetryBytes = DefaultTelemetryB
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Telemetry,
		Description: "agent events, alerts and command results",
		Subjects: []string{
			subjects.Root + ".host.*." + KindEvents,
			subjects.Root + ".host.*." + KindAlerts,
			subjects.Root + ".host.*." + KindResults,
		},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     TelemetryMaxAge,
		MaxBytes:   o.TelemetryBytes,
		Duplicates: DuplicateWindow,
		Replicas:   o.Replicas,
		Discard:    jetstream.DiscardOld,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", Telemetry, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        Commands,
		Description: "signed commands, one subject per host",
		Subjects:    []string{subjects.Root + ".cmd.*"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      CommandsMaxAge,
		Duplicates:  DuplicateWindow,
		Replicas:    o.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure stream %s: %w", Commands, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: PolicyBucket, Description: "signed policy bundles", History: 10,
		Storage: jetstream.FileStorage, Replicas: o.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure kv %s: %w", PolicyBucket, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: IngestBucket, Description: "ingest progress per host", History: 1,
		Storage: jetstream.FileStorage, Replicas: o.Replicas,
	}); err != nil {
		return fmt.Errorf("ensure kv %s: %w", IngestBucket, err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, Telemetry, jetstream.ConsumerConfig{
		Durable: IngestConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second,
		MaxAckPending: 10000, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		return fmt.Errorf("ensure consumer %s: %w", IngestConsumer, err)
	}
	return nil
}

// EnsureAgentConsumer creates the durable consumer of one host's commands.
func EnsureAgentConsumer(ctx context.Context, js jetstream.JetStream, hostID string) error {
	_, err := js.CreateOrUpdateConsumer(ctx, Commands, jetstream.ConsumerConfig{
		Durable:       AgentConsumer(hostID),
		FilterSubject: subjects.Command(hostID),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// An idle host's consumer lives as long as a command could.
		InactiveThreshold: 0,
	})
	if err != nil {
		return fmt.Errorf("ensure consumer for %s: %w", hostID, err)
	}
	return nil
}

// IsNotFound reports a missing stream or consumer (JetStream not set up yet).
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
}
