package jobqueue

import (
	"strings"

	"github.com/openpassport/prover-fleet/shared/circuitdir"
	"github.com/openpassport/prover-fleet/shared/family"
)

// The names on NATS that the frontend, the workers, proverctl and the
// deployment files share. A family's name is its subject's last token and
// its consumer's name.

// StreamName is the JetStream stream that holds proof jobs.
const StreamName = "PROOF_JOBS"

// Subject is the prefix of a family's job subjects: proof.jobs.<family>.
// A job is published on JobSubject, below its circuit's subject.
func Subject(f family.Family) string { return "proof.jobs." + string(f) }

// FamilySubjects matches every job subject of a family:
// proof.jobs.<family>.> (the family consumer's filter).
func FamilySubjects(f family.Family) string { return Subject(f) + ".>" }

// CircuitSubject is the prefix of one circuit's job subjects:
// proof.jobs.<family>.<circuit>.
func CircuitSubject(f family.Family, circuit string) string { return Subject(f) + "." + circuit }

// JobSubject is the subject one request's job is published on:
// proof.jobs.<family>.<circuit>.<request id>. Whether a request's job is
// still in the stream is one lookup (Queued, on JobLookupSubject).
func JobSubject(f family.Family, circuit, requestID string) string {
	return CircuitSubject(f, circuit) + "." + requestID
}

// JobLookupSubject matches the job subject of requestID whatever its
// circuit: proof.jobs.<family>.*.<request id>.
func JobLookupSubject(f family.Family, requestID string) string {
	return Subject(f) + ".*." + requestID
}

// OfFamily reports whether subject is one of family f's job subjects.
func OfFamily(f family.Family, subject string) bool {
	sf, _, _, ok := ParseJobSubject(subject)
	return ok && sf == f
}

// SubjectAll matches every family's job subject (the stream's subjects).
const SubjectAll = "proof.jobs.>"

// ConsumerName is a family's consumer: the family's name. It is the
// family's backlog gauge (autoscaling reads its lag) and the template of the
// circuit consumers; workers never pull from it.
func ConsumerName(f family.Family) string { return string(f) }

// CircuitConsumerName is the consumer workers take a circuit's jobs from:
// <family>-<circuit>.
func CircuitConsumerName(f family.Family, circuit string) string { return string(f) + "-" + circuit }

// ParseCircuitConsumer splits a circuit consumer's name into its family and
// circuit; ok is false for any other name.
func ParseCircuitConsumer(name string) (f family.Family, circuit string, ok bool) {
	fam, circuit, found := strings.Cut(name, "-")
	if !found || circuit == "" {
		return "", "", false
	}
	f, err := family.Parse(fam)
	if err != nil || string(f) != fam || !circuitdir.ValidName(circuit) {
		return "", "", false
	}
	return f, circuit, true
}

// ParseJobSubject splits a job subject into its family, circuit and request
// id; ok is false for any other subject.
func ParseJobSubject(subject string) (f family.Family, circuit, requestID string, ok bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "proof" || parts[1] != "jobs" {
		return "", "", "", false
	}
	f, err := family.Parse(parts[2])
	if err != nil || string(f) != parts[2] || !circuitdir.ValidName(parts[3]) || !validToken(parts[4]) {
		return "", "", "", false
	}
	return f, parts[3], parts[4], true
}

// validToken reports whether s can be one subject token: not empty, no
// wildcard, separator or white space.
func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// WarmSubject is the subject on which a family's workers announce the
// circuits they hold warm and whether they wait for a job (core NATS; see
// Taker).
func WarmSubject(f family.Family) string { return "proof.warm." + string(f) }

// StatusSubject is the subject on which status changes of one request are
// announced (core NATS).
func StatusSubject(requestID string) string { return "proof.status." + requestID }

const cancelPrefix = "proof.cancel."

// CancelSubject is the subject on which a cancel of one request is announced
// (core NATS).
func CancelSubject(requestID string) string { return cancelPrefix + requestID }

// CancelSubjectAll matches every cancel announcement.
const CancelSubjectAll = cancelPrefix + "*"
