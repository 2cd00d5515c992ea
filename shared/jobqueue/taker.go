package jobqueue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/openpassport/prover-fleet/shared/family"
)

// A Taker is how a worker takes its family's jobs, one at a time, from the
// circuit consumers, preferring the circuits whose keys it holds warm while
// leaving no job to wait for a particular worker:
//
//   - Bells. The Taker follows the family's jobs stored since it started
//     with an ordered consumer that delivers headers only (a few dozen
//     bytes per job, never the inputs), so it learns at once which circuit
//     has work, and takes a job from its circuit's consumer, creating the
//     consumer if the job came first (published while NATS did not answer
//     its creation). The bells go on from where they were after a lost
//     connection, so jobs stored meanwhile ring too.
//   - Warm first. Fetch tries the circuits TakerConfig.Warm lists first
//     (a pull that does not wait, from each circuit's consumer), then the
//     other circuits known to have work.
//   - Yield. Workers announce on core NATS (WarmSubject, a few hundred
//     bytes, on change and every Sweep while they wait) the circuits they
//     hold warm, the circuits of the jobs they have in hand, and whether
//     they are waiting for a job. A job that just rang
//     is left for TakerConfig.Yield to the waiting workers that hold its key
//     warm; a worker that does not takes it after that if it is still there.
//     When no waiting worker holds its key (they are busy, or there are
//     none) nobody yields: the job is taken at once.
//   - Sweep. Every TakerConfig.Sweep a waiting Taker lists the family's
//     circuit consumers (one request): jobs that rang no bell (redeliveries
//     after a failure or a lost worker, jobs from before it started) are
//     found there.
//   - Spread. Among circuits it does not hold warm, a worker takes first
//     the ones no other worker holds warm or has a job of in hand: those
//     need a cold load whoever takes them, while the others' workers come
//     back to them. Workers that start alike so come to hold different
//     keys, and the family's keys spread over its workers.
//   - Patience. A circuit whose jobs have waited for TakerConfig.Patience
//     with nobody taking any of them is taken before the warm ones, so a
//     circuit no worker holds warm is not starved by busy warm ones.
//
// Taken messages settle the way a work queue would: Ack, DoubleAck, Term
// and TermWithReason delete the job's message from the stream first (the
// family consumer's lag drops), Nak and NakWithDelay leave it for a
// redelivery.
//
// Fetch has the shape of jetstream.Consumer's (worker/internal/pool calls
// it once per free slot); it ignores the options and waits up to
// TakerConfig.Wait.
type Taker struct {
	js       jetstream.JetStream
	cfg      TakerConfig
	circuits *circuitSet

	mu      sync.Mutex
	work    map[string]*circuitWork // circuits believed to have jobs
	swept   time.Time
	wake    chan struct{} // a bell rang
	stream  jetstream.Stream
	bells   jetstream.ConsumeContext
	peers   map[string]peer // other workers of the family, by id
	warmSub *nats.Subscription
	said    announcement // what this Taker announced last
	saidAt  time.Time
	inHand  map[string]int // circuits of the jobs taken and not yet settled

	ctx    context.Context
	cancel context.CancelFunc
}

// announcement is what a worker says of itself on WarmSubject.
type announcement struct {
	Worker string   `json:"worker"`
	Warm   []string `json:"warm,omitempty"`
	// InHand lists the circuits of the jobs the worker has taken and not
	// settled (sorted, once each): keys it is loading or using.
	InHand  []string `json:"in_hand,omitempty"`
	Waiting bool     `json:"waiting,omitempty"`
	Gone    bool     `json:"gone,omitempty"`
}

// peer is another worker as it announced itself.
type peer struct {
	warm    map[string]bool
	inHand  map[string]bool
	waiting bool
	seen    time.Time
}

type circuitWork struct {
	since      time.Time // noticed (first bell or sweep since it was last found empty)
	bell       time.Time // last bell
	lastActive time.Time // the circuit consumer's last delivery (sweep)
}

// TakerConfig configures a Taker. Zero durations take the defaults noted.
type TakerConfig struct {
	// Stream holds the jobs. Required.
	Stream string
	// Family whose jobs are taken. Required.
	Family family.Family
	// Wait bounds one Fetch: it returns an empty batch when no job came
	// in that time. Required (at least 100ms).
	Wait time.Duration
	// Warm lists the circuits whose keys this worker holds warm, the most
	// preferred first. nil: no preference and no yield (jobs are taken in
	// the order they rang, whatever their circuit), nothing announced.
	Warm func() []string
	// ID names this worker in its announcements (required with Warm).
	ID string
	// Yield is how long a job that just rang is left to the workers that
	// hold its key warm (default DefaultYield; negative: none).
	Yield time.Duration
	// Sweep is how often a waiting Taker lists the circuit consumers
	// (default Wait).
	Sweep time.Duration
	// Patience is how long a circuit's jobs may wait with nobody taking
	// any before they go ahead of warm circuits (default DefaultPatience).
	Patience time.Duration
	// SettleTimeout bounds the delete behind Ack and Term (default 10s;
	// DoubleAck uses its context).
	SettleTimeout time.Duration
}

// Defaults of TakerConfig.
const (
	DefaultYield    = 250 * time.Millisecond
	DefaultPatience = 30 * time.Second
)

// NewTaker checks cfg. It starts nothing (see Start).
func NewTaker(js jetstream.JetStream, cfg TakerConfig) (*Taker, error) {
	if cfg.Yield == 0 {
		cfg.Yield = DefaultYield
	} else if cfg.Yield < 0 {
		cfg.Yield = 0
	}
	if cfg.Sweep == 0 {
		cfg.Sweep = cfg.Wait
	}
	if cfg.Patience == 0 {
		cfg.Patience = DefaultPatience
	}
	if cfg.SettleTimeout == 0 {
		cfg.SettleTimeout = 10 * time.Second
	}
	switch {
	case js == nil:
		return nil, errors.New("jobqueue: NewTaker needs a JetStream")
	case cfg.Stream == "":
		return nil, errors.New("jobqueue: TakerConfig.Stream is empty")
	case cfg.Wait < 100*time.Millisecond:
		return nil, fmt.Errorf("jobqueue: TakerConfig.Wait must be at least 100ms, got %s", cfg.Wait)
	case cfg.Sweep < 0 || cfg.Patience < 0 || cfg.SettleTimeout < 0:
		return nil, errors.New("jobqueue: TakerConfig.Sweep, Patience and SettleTimeout must not be negative")
	case cfg.Warm != nil && cfg.ID == "":
		return nil, errors.New("jobqueue: TakerConfig.ID is required with TakerConfig.Warm")
	}
	if f, err := family.Parse(string(cfg.Family)); err != nil || f != cfg.Family {
		return nil, fmt.Errorf("jobqueue: TakerConfig.Family must be register, dsc or disclose, got %q", cfg.Family)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Taker{
		js: js, cfg: cfg, circuits: newCircuitSet(js, cfg.Stream),
		work: map[string]*circuitWork{}, wake: make(chan struct{}, 1), peers: map[string]peer{}, inHand: map[string]int{},
		ctx: ctx, cancel: cancel,
	}, nil
}

// Start subscribes to the family's bells (an ordered consumer, headers
// only, from the stream's next sequence on) and, with TakerConfig.Warm, to its workers'
// announcements, announces this one, and lists the circuit consumers once.
func (t *Taker) Start(ctx context.Context) (err error) {
	// A Start that fails leaves nothing behind: the Taker is stopped.
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	s, err := t.js.Stream(ctx, t.cfg.Stream)
	if err != nil {
		return fmt.Errorf("jobqueue: stream %s: %w", t.cfg.Stream, err)
	}
	if t.cfg.Warm != nil {
		sub, err := t.js.Conn().Subscribe(WarmSubject(t.cfg.Family), func(m *nats.Msg) { t.heard(m.Data) })
		if err != nil {
			return fmt.Errorf("jobqueue: announcements of %s: %w", t.cfg.Family, err)
		}
		t.mu.Lock()
		t.warmSub = sub
		t.mu.Unlock()
		t.announce(false, true)
	}
	// From an explicit sequence rather than DeliverNew: an ordered
	// consumer that has delivered nothing yet and is recreated (after a
	// lost connection or server) starts again from its configured start,
	// which with DeliverNew would skip the jobs stored meanwhile.
	oc, err := t.js.OrderedConsumer(ctx, t.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{FamilySubjects(t.cfg.Family)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    s.CachedInfo().State.LastSeq + 1,
		HeadersOnly:    true,
	})
	if err != nil {
		return fmt.Errorf("jobqueue: bells of %s: %w", t.cfg.Family, err)
	}
	// An ordered consumer recreates itself after a disconnect or a gap,
	// from the sequence after its last bell; a job that rang no bell is
	// found by the next sweep once its consumer exists, or given its
	// consumer by the reconciler.
	cc, err := oc.Consume(func(m jetstream.Msg) { t.ring(m.Subject()) },
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return fmt.Errorf("jobqueue: bells of %s: %w", t.cfg.Family, err)
	}
	t.mu.Lock()
	t.stream, t.bells = s, cc
	t.mu.Unlock()
	t.sweep(ctx)
	if t.cfg.Warm != nil {
		go t.heartbeat()
	}
	return nil
}

// Stop ends the bells and the announcements (saying this worker is gone);
// a Fetch in progress returns at once, empty.
func (t *Taker) Stop() {
	t.cancel()
	t.mu.Lock()
	cc, sub := t.bells, t.warmSub
	t.bells, t.warmSub = nil, nil
	t.mu.Unlock()
	if cc != nil {
		cc.Stop()
	}
	if sub != nil {
		_ = sub.Unsubscribe()
		t.publish(announcement{Worker: t.cfg.ID, Gone: true})
	}
}

// announce says which circuits this worker holds warm and whether it waits
// for a job, when that changed (or force).
func (t *Taker) announce(waiting, force bool) {
	if t.cfg.Warm == nil || t.ctx.Err() != nil {
		return
	}
	a := announcement{Worker: t.cfg.ID, Warm: t.cfg.Warm(), Waiting: waiting}
	t.mu.Lock()
	for c := range t.inHand {
		a.InHand = append(a.InHand, c)
	}
	slices.Sort(a.InHand)
	same := a.Waiting == t.said.Waiting && slices.Equal(a.Warm, t.said.Warm) && slices.Equal(a.InHand, t.said.InHand)
	if same && !force {
		t.mu.Unlock()
		return
	}
	t.said, t.saidAt = a, time.Now()
	t.mu.Unlock()
	t.publish(a)
}

// heartbeat says again, every Sweep, what this worker last said (with its
// warm keys and jobs in hand as they are now), so that a worker busy with
// a long proof is not taken for gone.
func (t *Taker) heartbeat() {
	tick := time.NewTicker(t.cfg.Sweep)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		waiting, due := t.said.Waiting, time.Since(t.saidAt) >= t.cfg.Sweep
		t.mu.Unlock()
		if due {
			t.announce(waiting, true)
		}
	}
}

// publish sends an announcement; one that is lost costs at most a yield.
func (t *Taker) publish(a announcement) {
	if data, err := json.Marshal(a); err == nil {
		_ = t.js.Conn().Publish(WarmSubject(t.cfg.Family), data)
	}
}

// heard notes another worker's announcement.
func (t *Taker) heard(data []byte) {
	var a announcement
	if json.Unmarshal(data, &a) != nil || a.Worker == "" || a.Worker == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.Gone {
		delete(t.peers, a.Worker)
		return
	}
	p := peer{warm: make(map[string]bool, len(a.Warm)), inHand: make(map[string]bool, len(a.InHand)), waiting: a.Waiting, seen: time.Now()}
	for _, c := range a.Warm {
		p.warm[c] = true
	}
	for _, c := range a.InHand {
		p.inHand[c] = true
	}
	t.peers[a.Worker] = p
}

// prunePeers forgets the workers silent for longer than three sweeps
// (gone, or busy for long). mu held.
func (t *Taker) prunePeers(now time.Time) {
	for id, p := range t.peers {
		if now.Sub(p.seen) > 3*t.cfg.Sweep+time.Second {
			delete(t.peers, id)
		}
	}
}

// warmElsewhere reports whether another worker that waits for a job holds
// circuit warm (its last announcement). mu held, after prunePeers.
func (t *Taker) warmElsewhere(circuit string) bool {
	for _, p := range t.peers {
		if p.waiting && p.warm[circuit] {
			return true
		}
	}
	return false
}

// HeldElsewhere reports whether another worker of the family said lately
// that it holds circuit's key warm (keycache.Cache.SetSpare takes it: a key
// held elsewhere is the one to evict first). It never blocks on the
// network.
func (t *Taker) HeldElsewhere(circuit string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prunePeers(time.Now())
	for _, p := range t.peers {
		if p.warm[circuit] {
			return true
		}
	}
	return false
}

// coveredElsewhere reports whether another worker (waiting or busy) holds
// circuit warm or has one of its jobs in hand. mu held, after
// prunePeers.
func (t *Taker) coveredElsewhere(circuit string) bool {
	for _, p := range t.peers {
		if p.warm[circuit] || p.inHand[circuit] {
			return true
		}
	}
	return false
}

// ring notes a new job on subject.
func (t *Taker) ring(subject string) {
	f, circuit, _, ok := ParseJobSubject(subject)
	if !ok || f != t.cfg.Family {
		return
	}
	now := time.Now()
	t.mu.Lock()
	w := t.work[circuit]
	if w == nil {
		w = &circuitWork{since: now}
		t.work[circuit] = w
	}
	w.bell = now
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// sweep lists the circuit consumers and notes the ones with jobs.
func (t *Taker) sweep(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, t.cfg.SettleTimeout)
	defer cancel()
	infos, err := circuitConsumers(lctx, t.js, t.cfg.Stream, t.cfg.Family)
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.swept = now
	if err != nil {
		return err
	}
	for _, info := range infos {
		if info.NumPending == 0 && info.NumAckPending == 0 {
			continue
		}
		_, circuit, _ := ParseCircuitConsumer(info.Name)
		w := t.work[circuit]
		if w == nil {
			w = &circuitWork{since: now}
			t.work[circuit] = w
		}
		if info.NumPending == 0 {
			// Only jobs in flight, or one waiting for its redelivery:
			// worth a look, never a reason to jump the queue.
			w.lastActive = now
		} else if info.Delivered.Last != nil {
			w.lastActive = *info.Delivered.Last
		} else {
			w.lastActive = info.Created
		}
	}
	return nil
}

// order is the circuits to try now, best first, and when a yielding one
// becomes eligible (zero: none). mu held.
func (t *Taker) order(now time.Time, warm []string, first bool) (try []string, next time.Time) {
	isWarm := make(map[string]bool, len(warm))
	for _, c := range warm {
		isWarm[c] = true
	}
	var starving, rest []string
	t.prunePeers(now)
	for c, w := range t.work {
		if now.Sub(w.since) >= t.cfg.Patience && now.Sub(w.lastActive) >= t.cfg.Patience {
			starving = append(starving, c)
			continue
		}
		if isWarm[c] {
			continue
		}
		if t.cfg.Warm != nil && t.cfg.Yield > 0 && !w.bell.IsZero() && t.warmElsewhere(c) {
			if at := w.bell.Add(t.cfg.Yield); at.After(now) {
				if next.IsZero() || at.Before(next) {
					next = at
				}
				continue
			}
		}
		rest = append(rest, c)
	}
	bySince := func(a, b string) int {
		return cmp.Or(t.work[a].since.Compare(t.work[b].since), cmp.Compare(a, b))
	}
	slices.SortFunc(starving, bySince)
	// Spread: the circuits nobody else holds or works on, first.
	covered := make(map[string]bool, len(rest))
	if t.cfg.Warm != nil {
		for _, c := range rest {
			covered[c] = t.coveredElsewhere(c)
		}
	}
	slices.SortFunc(rest, func(a, b string) int {
		if covered[a] != covered[b] {
			if covered[b] {
				return -1
			}
			return 1
		}
		return bySince(a, b)
	})
	try = starving
	for _, c := range warm {
		if _, ok := t.work[c]; (ok || first) && !slices.Contains(try, c) {
			try = append(try, c)
		}
	}
	return append(try, rest...), next
}

// Fetch takes one job (batch must be 1), waiting up to TakerConfig.Wait.
// The batch is empty when none came; its error is the last failure met
// when nothing was taken.
func (t *Taker) Fetch(batch int, _ ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	if batch != 1 {
		return nil, fmt.Errorf("jobqueue: a Taker takes one job at a time, asked for %d", batch)
	}
	t.mu.Lock()
	started := t.stream != nil
	t.mu.Unlock()
	if !started {
		return nil, errors.New("jobqueue: Taker not started")
	}
	deadline := time.Now().Add(t.cfg.Wait)
	var lastErr error
	for first := true; ; first = false {
		now := time.Now()
		if now.Sub(t.sweptAt()) >= t.cfg.Sweep {
			if err := t.sweep(t.ctx); err != nil {
				lastErr = err
			}
		}
		var warm []string
		if t.cfg.Warm != nil {
			warm = t.cfg.Warm()
		}
		t.mu.Lock()
		try, next := t.order(now, warm, first)
		t.mu.Unlock()
		for _, c := range try {
			msg, err := t.take(c)
			if msg != nil {
				t.announce(false, false)
				return &takenBatch{msg: msg}, nil
			}
			if err != nil {
				lastErr = err
			}
		}
		// Nothing for this worker now: it waits (the heartbeat says it
		// again every Sweep).
		t.announce(true, false)

		wakeAt := deadline
		if sw := t.sweptAt().Add(t.cfg.Sweep); sw.Before(wakeAt) {
			wakeAt = sw
		}
		if !next.IsZero() && next.Before(wakeAt) {
			wakeAt = next
		}
		if !time.Now().Before(deadline) || t.ctx.Err() != nil {
			// Back to its slots: the pool calls again at once if one is free.
			return &takenBatch{err: lastErr}, nil
		}
		timer := time.NewTimer(time.Until(wakeAt))
		select {
		case <-t.wake:
		case <-timer.C:
		case <-t.ctx.Done():
		}
		timer.Stop()
	}
}

func (t *Taker) sweptAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.swept
}

// take pulls one job of circuit without waiting. A circuit found empty
// leaves the work list until it rings or a sweep finds it again.
func (t *Taker) take(circuit string) (jetstream.Msg, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.SettleTimeout)
	defer cancel()
	cons, err := t.circuits.consumer(ctx, t.cfg.Family, circuit)
	if err != nil {
		t.drop(circuit)
		return nil, err
	}
	b, err := cons.FetchNoWait(1)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			t.circuits.forget(t.cfg.Family, circuit)
		}
		return nil, fmt.Errorf("jobqueue: take a job of %s: %w", circuit, err)
	}
	var msg jetstream.Msg
	for m := range b.Messages() {
		msg = m
	}
	if msg == nil {
		t.drop(circuit)
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				t.circuits.forget(t.cfg.Family, circuit)
			}
			return nil, fmt.Errorf("jobqueue: take a job of %s: %w", circuit, err)
		}
		return nil, nil
	}
	meta, err := msg.Metadata()
	if err != nil {
		// Cannot know its sequence to delete it later: hand it back.
		_ = msg.Nak()
		return nil, fmt.Errorf("jobqueue: job of %s without metadata: %w", circuit, err)
	}
	t.mu.Lock()
	s := t.stream
	if w := t.work[circuit]; w != nil {
		w.lastActive = time.Now() // its jobs are being taken
	}
	t.inHand[circuit]++
	t.mu.Unlock()
	tm := &TakenMsg{Msg: msg, stream: s, seq: meta.Sequence.Stream, timeout: t.cfg.SettleTimeout}
	tm.settled = func() {
		t.mu.Lock()
		if t.inHand[circuit]--; t.inHand[circuit] <= 0 {
			delete(t.inHand, circuit)
		}
		t.mu.Unlock()
	}
	return tm, nil
}

func (t *Taker) drop(circuit string) {
	t.mu.Lock()
	delete(t.work, circuit)
	t.mu.Unlock()
}

// takenBatch is a Fetch's result.
type takenBatch struct {
	msg jetstream.Msg
	err error
}

func (b *takenBatch) Messages() <-chan jetstream.Msg {
	ch := make(chan jetstream.Msg, 1)
	if b.msg != nil {
		ch <- b.msg
	}
	close(ch)
	return ch
}

func (b *takenBatch) Error() error { return b.err }

// TakenMsg is a job taken by a Taker. Its final acknowledgements (Ack,
// DoubleAck, Term, TermWithReason) delete the job's message from the
// stream first and acknowledge only once it is gone (a message already
// gone counts as deleted); if the delete fails they return its error and
// acknowledge nothing, so the job is delivered again and settled then.
type TakenMsg struct {
	jetstream.Msg
	stream  jetstream.Stream
	seq     uint64
	timeout time.Duration
	settled func() // the Taker's count of jobs in hand; once
	once    sync.Once
}

// handBack tells the Taker the job is no longer in this worker's hands
// (settled, or handed back for a redelivery).
func (m *TakenMsg) handBack() {
	if m.settled != nil {
		m.once.Do(m.settled)
	}
}

// Seq is the job's stream sequence.
func (m *TakenMsg) Seq() uint64 { return m.seq }

func (m *TakenMsg) remove(ctx context.Context) error {
	err := m.stream.DeleteMsg(ctx, m.seq)
	if err == nil {
		return nil
	}
	if _, gerr := m.stream.GetMsg(ctx, m.seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("jobqueue: delete settled job %d: %w", m.seq, err)
}

func (m *TakenMsg) removeNow() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	return m.remove(ctx)
}

// Ack deletes the job, then acknowledges it.
func (m *TakenMsg) Ack() error {
	defer m.handBack()
	if err := m.removeNow(); err != nil {
		return err
	}
	return m.Msg.Ack()
}

// DoubleAck deletes the job, then acknowledges it and waits for the
// server's confirmation.
func (m *TakenMsg) DoubleAck(ctx context.Context) error {
	defer m.handBack()
	if err := m.remove(ctx); err != nil {
		return err
	}
	return m.Msg.DoubleAck(ctx)
}

// Term deletes the job, then terminates its delivery.
func (m *TakenMsg) Term() error {
	defer m.handBack()
	if err := m.removeNow(); err != nil {
		return err
	}
	return m.Msg.Term()
}

// TermWithReason deletes the job, then terminates its delivery with reason.
func (m *TakenMsg) TermWithReason(reason string) error {
	defer m.handBack()
	if err := m.removeNow(); err != nil {
		return err
	}
	return m.Msg.TermWithReason(reason)
}

// Nak hands the job back for a redelivery.
func (m *TakenMsg) Nak() error {
	defer m.handBack()
	return m.Msg.Nak()
}

// NakWithDelay hands the job back for a redelivery after delay.
func (m *TakenMsg) NakWithDelay(delay time.Duration) error {
	defer m.handBack()
	return m.Msg.NakWithDelay(delay)
}
