package jobqueue

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
)

// JetStream publishes an advisory on core NATS when a job consumer gives a
// message up after MaxDeliver deliveries (the worker of the last one was
// lost: it never acknowledged). A core message reaches only the subscribers
// of the moment, so one published while no worker of the family runs would
// be lost, and its job's row would stay open. The advisory stream keeps
// them instead: a stream's subjects are an interest like any subscriber's,
// so the server stores every such advisory, and the family's rescue
// consumer hands it to a worker whenever one runs, again and again until
// one acknowledges it.
//
// Only max-deliveries advisories are kept. A message-terminated advisory
// would add nothing: a worker records a job's failure before it terminates
// it, and deletes the message as it terminates it, so nothing could be read
// back from it.
//
// The job consumers are the circuit consumers, <family>-<circuit>: the
// advisory stream splits that last token on "-" as it stores an advisory
// (a subject transform), so that its subject is
// $JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<family>.<circuit…>
// and each family's rescue consumer takes its own (RescueSubject).

// MaxDeliveriesPrefix is the subject prefix of JetStream's max-deliveries
// advisories; AdvisorySubject appends <stream>.<consumer>.
const MaxDeliveriesPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// AdvisorySubject is the max-deliveries advisory subject of a stream's
// consumer.
func AdvisorySubject(stream, consumer string) string {
	return MaxDeliveriesPrefix + "." + stream + "." + consumer
}

// RescueSubject matches the stored advisories of family f's circuit
// consumers (after the advisory stream's transform).
func RescueSubject(stream string, f family.Family) string {
	return AdvisorySubject(stream, string(f)) + ".>"
}

// AdvisoryStream is the stream that keeps the max-deliveries advisories of
// the job stream's consumers.
func AdvisoryStream(jobStream string) string { return jobStream + "_ADVISORIES" }

// RescueConsumerName is the durable consumer of the advisory stream that a
// family's workers take its advisories from.
func RescueConsumerName(f family.Family) string { return "rescue-" + string(f) }

// Advisory stream sizing: an advisory is a few hundred bytes, and each is
// removed once a worker acknowledges it. The limits only bound a fleet that
// runs no worker at all for a long time; beyond them the oldest advisories
// go (the reconciler still finds their jobs).
const (
	advisoryMaxMsgs = 1_000_000
	advisoryMaxAge  = 30 * 24 * time.Hour
	// RescueAckWait is how long a worker may hold an advisory before it is
	// given to another (a rescue takes a few round trips).
	RescueAckWait = time.Minute
)

func (c Config) advisoryStreamConfig() jetstream.StreamConfig {
	storage := jetstream.FileStorage
	if c.Memory {
		storage = jetstream.MemoryStorage
	}
	return jetstream.StreamConfig{
		Name:        AdvisoryStream(c.Stream),
		Description: "Max-deliveries advisories of the " + c.Stream + " consumers, kept until a worker handles them",
		Subjects:    []string{AdvisorySubject(c.Stream, "*")},
		// <family>-<circuit> → <family>.<circuit…>: one rescue consumer per
		// family, filtered on its own token.
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      AdvisorySubject(c.Stream, "*"),
			Destination: AdvisorySubject(c.Stream, "{{split(1,-)}}"),
		},
		Retention: jetstream.WorkQueuePolicy,
		Discard:   jetstream.DiscardOld,
		MaxMsgs:   advisoryMaxMsgs,
		MaxAge:    advisoryMaxAge,
		Storage:   storage,
		Replicas:  c.Replicas,
	}
}

func (c Config) rescueConsumerConfig(f family.Family) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       RescueConsumerName(f),
		Description:   "Max-deliveries advisories of the " + string(f) + " circuit consumers",
		FilterSubject: RescueSubject(c.Stream, f),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       RescueAckWait,
		MaxDeliver:    -1, // an advisory is never given up: its job would stay open
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.Replicas,
	}
}
