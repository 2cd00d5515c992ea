package jobqueue

import "github.com/openpassport/prover-fleet/shared/family"

// The names on NATS that the frontend, the workers, proverctl and the
// deployment files share. A family's name is its subject's last token and
// its consumer's name.

// StreamName is the JetStream stream that holds proof jobs.
const StreamName = "PROOF_JOBS"

// Subject is the subject a family's jobs are published on.
func Subject(f family.Family) string { return "proof.jobs." + string(f) }

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
