package jobqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
)

// Metadata keys of a circuit consumer.
const (
	MetaFamily  = "prover-fleet/family"
	MetaCircuit = "prover-fleet/circuit"
)

// circuitConsumerConfig is the configuration of circuit's consumer: the
// family consumer's settings (tmpl), filtered on the circuit's subjects.
func circuitConsumerConfig(tmpl jetstream.ConsumerConfig, f family.Family, circuit string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       CircuitConsumerName(f, circuit),
		Description:   "Proof jobs of circuit " + circuit + " (" + string(f) + " family)",
		FilterSubject: CircuitSubject(f, circuit) + ".*",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       tmpl.AckWait,
		MaxDeliver:    tmpl.MaxDeliver,
		BackOff:       tmpl.BackOff,
		MaxAckPending: tmpl.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      tmpl.Replicas,
		Metadata:      map[string]string{MetaFamily: string(f), MetaCircuit: circuit},
	}
}

// EnsureCircuitConsumer returns the consumer of circuit's jobs, creating it
// with its family consumer's settings when it does not exist (the family
// consumer must: Setup makes it). Safe to race: creating an existing
// consumer with the same settings changes nothing.
func EnsureCircuitConsumer(ctx context.Context, js jetstream.JetStream, stream string, f family.Family, circuit string) (jetstream.Consumer, error) {
	if !circuitdir.ValidName(circuit) {
		return nil, fmt.Errorf("jobqueue: circuit name %q is not valid", circuit)
	}
	name := CircuitConsumerName(f, circuit)
	c, err := js.Consumer(ctx, stream, name)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("jobqueue: consumer %s: %w", name, err)
	}
	tmpl, err := js.Consumer(ctx, stream, ConsumerName(f))
	if err != nil {
		return nil, fmt.Errorf("jobqueue: family consumer %s (run proverctl migrate): %w", ConsumerName(f), err)
	}
	c, err = js.CreateOrUpdateConsumer(ctx, stream, circuitConsumerConfig(tmpl.CachedInfo().Config, f, circuit))
	if err != nil {
		return nil, fmt.Errorf("jobqueue: create consumer %s: %w", name, err)
	}
	return c, nil
}

// listConsumers lists the stream's consumers.
func listConsumers(ctx context.Context, js jetstream.JetStream, stream string) ([]*jetstream.ConsumerInfo, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("jobqueue: stream %s: %w", stream, err)
	}
	var out []*jetstream.ConsumerInfo
	l := s.ListConsumers(ctx)
	for info := range l.Info() {
		out = append(out, info)
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("jobqueue: list consumers of %s: %w", stream, err)
	}
	return out, nil
}

// circuitConsumers lists the circuit consumers of family f.
func circuitConsumers(ctx context.Context, js jetstream.JetStream, stream string, f family.Family) ([]*jetstream.ConsumerInfo, error) {
	infos, err := listConsumers(ctx, js, stream)
	if err != nil {
		return nil, err
	}
	out := infos[:0]
	for _, info := range infos {
		if cf, _, ok := ParseCircuitConsumer(info.Name); ok && cf == f {
			out = append(out, info)
		}
	}
	return out, nil
}

// CircuitBacklog is one circuit consumer's state.
type CircuitBacklog struct {
	Circuit    string
	Pending    uint64 // jobs not yet delivered
	AckPending int    // delivered and not settled (running, or waiting for a redelivery)
	// Delivered is the last stream sequence the consumer delivered.
	Delivered uint64
}

// CircuitBacklogs lists family f's circuit consumers with their backlog
// (one listing of the stream's consumers).
func CircuitBacklogs(ctx context.Context, js jetstream.JetStream, stream string, f family.Family) ([]CircuitBacklog, error) {
	infos, err := circuitConsumers(ctx, js, stream, f)
	if err != nil {
		return nil, err
	}
	out := make([]CircuitBacklog, 0, len(infos))
	for _, info := range infos {
		_, circuit, _ := ParseCircuitConsumer(info.Name)
		out = append(out, CircuitBacklog{Circuit: circuit, Pending: info.NumPending, AckPending: info.NumAckPending,
			Delivered: info.Delivered.Stream})
	}
	return out, nil
}

// circuitSet remembers the circuit consumers it has ensured.
type circuitSet struct {
	js     jetstream.JetStream
	stream string

	mu   sync.Mutex
	cons map[string]jetstream.Consumer // by consumer name
}

func newCircuitSet(js jetstream.JetStream, stream string) *circuitSet {
	return &circuitSet{js: js, stream: stream, cons: map[string]jetstream.Consumer{}}
}

// ensureTimeout bounds an ensure that its caller's context leaves open.
const ensureTimeout = 10 * time.Second

// consumer returns circuit's consumer, ensuring it on first use.
func (s *circuitSet) consumer(ctx context.Context, f family.Family, circuit string) (jetstream.Consumer, error) {
	name := CircuitConsumerName(f, circuit)
	s.mu.Lock()
	c, ok := s.cons[name]
	s.mu.Unlock()
	if ok {
		return c, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ensureTimeout)
		defer cancel()
	}
	c, err := EnsureCircuitConsumer(ctx, s.js, s.stream, f, circuit)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.cons[name] = c
	s.mu.Unlock()
	return c, nil
}

// forget drops a consumer that turned out to be gone.
func (s *circuitSet) forget(f family.Family, circuit string) {
	s.mu.Lock()
	delete(s.cons, CircuitConsumerName(f, circuit))
	s.mu.Unlock()
}

// Deliveries reads how far each circuit consumer of a family has delivered,
// and creates a circuit's missing consumer (for worker/internal/reconcile).
type Deliveries struct {
	JS     jetstream.JetStream
	Stream string
	Family family.Family
}

// Delivered returns the last stream sequence each circuit consumer of the
// family delivered, by circuit.
func (d Deliveries) Delivered(ctx context.Context) (map[string]uint64, error) {
	bs, err := CircuitBacklogs(ctx, d.JS, d.Stream, d.Family)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(bs))
	for _, b := range bs {
		out[b.Circuit] = b.Delivered
	}
	return out, nil
}

// Ensure creates circuit's consumer if it does not exist
// (EnsureCircuitConsumer).
func (d Deliveries) Ensure(ctx context.Context, circuit string) error {
	_, err := EnsureCircuitConsumer(ctx, d.JS, d.Stream, d.Family, circuit)
	return err
}
