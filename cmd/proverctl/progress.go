package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/openpassport/prover-fleet/api/client"
	"github.com/openpassport/prover-fleet/shared/status"
)

// The stages a request is shown going through. "verified" is the client's
// own check of the proof, after the fleet reported it.
const (
	stagePending  = "pending"
	stageWitness  = "witness"
	stageProof    = "proof"
	stageVerified = "verified"
)

// board shows the progress of one or more requests: on a terminal, a
// compact display redrawn in place; otherwise one plain line per step.
type board struct {
	mu    sync.Mutex
	out   io.Writer
	tty   bool
	start time.Time
	rows  []*row
	drawn int // lines of the last drawing (terminal)
	spin  int
	width int // label width
}

// row is one request on the board.
type row struct {
	b      *board
	label  string
	begun  time.Time
	marks  []mark
	uuid   string
	failed string
	ended  bool
	relay  []status.Code // the statuses the status relay sent, in order
}

type mark struct {
	stage string
	at    time.Time
}

func newBoard(out io.Writer, tty bool) *board {
	return &board{out: out, tty: tty, start: time.Now()}
}

// add puts a request on the board; its clock starts now.
func (b *board) add(label string) *row {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := &row{b: b, label: label, begun: time.Now()}
	b.rows = append(b.rows, r)
	b.width = max(b.width, len(label))
	return r
}

// progress returns the client.Progress that feeds r.
func (r *row) progress() client.Progress {
	return func(ev client.Event) {
		switch ev.Stage {
		case client.StageSubmitted:
			r.reach(stagePending, ev.At, ev.UUID)
		case client.StageStatus:
			switch ev.Status.Status {
			case status.Pending:
				r.reach(stagePending, ev.At, ev.UUID)
			case status.WitnessGenerated:
				r.reach(stageWitness, ev.At, ev.UUID)
			case status.ProofGenerated, status.Verified:
				r.reach(stageProof, ev.At, ev.UUID)
			case status.Failed, status.VerificationFailed:
				reason := "failed"
				if ev.Status.Reason != nil {
					reason = "failed: " + *ev.Status.Reason
				}
				r.fail(reason)
			}
		}
	}
}

// reach records that r got to stage at.
func (r *row) reach(stage string, at time.Time, id string) { r.reachNote(stage, at, id, "") }

// relayed records a status event of the status relay: status 1 and 2
// reach their stages, and every event is noted ("relay N"). The caller
// decides what 3, 4 and 5 mean.
func (r *row) relayed(st status.Code, at time.Time) {
	r.b.mu.Lock()
	r.relay = append(r.relay, st)
	r.b.mu.Unlock()
	note := fmt.Sprintf("relay %d", st)
	switch st {
	case status.Pending:
		r.reachNote(stagePending, at, "", note)
	case status.WitnessGenerated:
		r.reachNote(stageWitness, at, "", note)
	case status.ProofGenerated:
		r.reachNote(stageProof, at, "", note)
	case status.Verified:
		r.reachNote(stageVerified, at, "", note)
	default:
		r.reachNote("", at, "", note)
	}
}

// reachNote records that r got to stage at, with a note on its line. A
// stage reached already (or none) prints only the note.
func (r *row) reachNote(stage string, at time.Time, id, note string) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if id != "" {
		r.uuid = id
	}
	if note != "" {
		note = "  " + note
	}
	noteOnly := func(stage string) {
		if note != "" && !b.tty {
			fmt.Fprintf(b.out, "%7.2fs  %-*s  %-8s%s\n", at.Sub(b.start).Seconds(), b.width, r.label, stage, note)
		}
	}
	if stage == "" {
		last := "-"
		if len(r.marks) > 0 {
			last = r.marks[len(r.marks)-1].stage
		}
		noteOnly(last)
		return
	}
	for _, m := range r.marks {
		if m.stage == stage {
			noteOnly(stage)
			return
		}
	}
	prev := r.begun
	if len(r.marks) > 0 {
		prev = r.marks[len(r.marks)-1].at
	}
	r.marks = append(r.marks, mark{stage, at})
	if stage == stageVerified {
		r.ended = true
	}
	if !b.tty {
		fmt.Fprintf(b.out, "%7.2fs  %-*s  %-8s (+%s)%s%s\n", at.Sub(b.start).Seconds(), b.width, r.label, stage,
			fmtDur(at.Sub(prev)), uuidNote(stage, r.uuid), note)
	}
}

func uuidNote(stage, id string) string {
	if stage == stagePending && id != "" {
		return "  uuid " + id
	}
	return ""
}

// fail marks r failed with a message.
func (r *row) fail(msg string) {
	b := r.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.failed != "" {
		return
	}
	r.failed, r.ended = msg, true
	if !b.tty {
		fmt.Fprintf(b.out, "%7.2fs  %-*s  %s\n", time.Since(b.start).Seconds(), b.width, r.label, msg)
	}
}

// at returns when r reached stage (zero if it did not).
func (r *row) at(stage string) time.Time {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	for _, m := range r.marks {
		if m.stage == stage {
			return m.at
		}
	}
	return time.Time{}
}

// run redraws a terminal display until ctx ends; it does nothing otherwise.
func (b *board) run(ctx context.Context) {
	if !b.tty {
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		b.draw()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// finish draws the final state (terminal).
func (b *board) finish() {
	if b.tty {
		b.draw()
	}
}

// spinnerFrames animate the running stage on a terminal.
const spinnerFrames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

func (b *board) draw() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	if b.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", b.drawn)
	}
	b.spin++
	frames := []rune(spinnerFrames)
	spin := string(frames[b.spin%len(frames)])
	now := time.Now()
	for _, r := range b.rows {
		sb.WriteString("\r\x1b[2K")
		sb.WriteString(r.line(now, spin))
		sb.WriteString("\n")
	}
	b.drawn = len(b.rows)
	fmt.Fprint(b.out, sb.String())
}

// line renders r: a state symbol, the label, each stage reached with the
// time it took, and the running stage with its elapsed time.
func (r *row) line(now time.Time, spin string) string {
	symbol := spin
	switch {
	case r.failed != "":
		symbol = "✗"
	case r.ended:
		symbol = "✓"
	}
	var parts []string
	prev := r.begun
	for _, m := range r.marks {
		parts = append(parts, fmt.Sprintf("%s %s", m.stage, fmtDur(m.at.Sub(prev))))
		prev = m.at
	}
	if !r.ended {
		next := nextStage(r.marks)
		parts = append(parts, fmt.Sprintf("%s %s…", next, fmtDur(now.Sub(prev))))
	}
	s := fmt.Sprintf("%s %-*s  %s", symbol, r.b.width, r.label, strings.Join(parts, " › "))
	if len(r.relay) > 0 {
		var statuses []string
		for _, st := range r.relay {
			statuses = append(statuses, fmt.Sprint(int(st)))
		}
		s += "  relay " + strings.Join(statuses, " ")
	}
	if r.failed != "" {
		s += "  " + r.failed
	}
	end := now
	if len(r.marks) > 0 && r.ended {
		end = r.marks[len(r.marks)-1].at
	}
	return s + fmt.Sprintf("  [%s]", fmtDur(end.Sub(r.begun)))
}

func nextStage(marks []mark) string {
	order := []string{stagePending, stageWitness, stageProof, stageVerified}
	if len(marks) == 0 {
		return "handshake"
	}
	last := marks[len(marks)-1].stage
	for i, s := range order {
		if s == last && i+1 < len(order) {
			return order[i+1]
		}
	}
	return "…"
}

// fmtDur prints a duration compactly: 12ms, 1.23s, 2m03s.
func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
