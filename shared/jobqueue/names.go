package jobqueue

import (
	"strings"

	"github.com/openpassport/prover-fleet/shared/family"
)

// The names on NATS that the frontend, the workers, proverctl and the
// deployment files share. A family's name is its subject's last token and
// its consumer's name.

// StreamName is the JetStream stream that holds proof jobs.
const StreamName = "PROOF_JOBS"

// Subject is a family's subject: each of its jobs is published on a
// subject below it (JobSubject); jobs published before per-request
// subjects are on it.
func Subject(f family.Family) string { return "proof.jobs." + string(f) }

// JobSubject is the subject the job of one request is published on: its
// family's subject and the request id (a UUID, so one subject token).
func JobSubject(f family.Family, requestID string) string { return Subject(f) + "." + requestID }

// FamilySubjects are the subjects a family's consumer takes: the
// per-request subjects, and the family's bare subject on which jobs were
// published before them.
func FamilySubjects(f family.Family) []string {
	return []string{Subject(f), Subject(f) + ".*"}
}

// OfFamily reports whether subject is one of family f's job subjects.
func OfFamily(f family.Family, subject string) bool {
	base := Subject(f)
	return subject == base || (strings.HasPrefix(subject, base+".") && !strings.Contains(subject[len(base)+1:], "."))
}

// SubjectAll matches every family's job subject (the stream's subjects).
const SubjectAll = "proof.jobs.>"

// ConsumerName is the durable consumer of a family: the family's name.
func ConsumerName(f family.Family) string { return string(f) }

// StatusSubject is the subject on which status changes of one request are
// announced (core NATS).
func StatusSubject(requestID string) string { return "proof.status." + requestID }

const cancelPrefix = "proof.cancel."

// CancelSubject is the subject on which a cancel of one request is announced
// (core NATS).
func CancelSubject(requestID string) string { return cancelPrefix + requestID }

// CancelSubjectAll matches every cancel announcement.
const CancelSubjectAll = cancelPrefix + "*"
