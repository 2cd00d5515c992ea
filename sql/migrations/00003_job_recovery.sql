-- What the fleet keeps so that no accepted request is stranded (issue 13).
--
-- proof_jobs holds, for every open request, the sealed circuit inputs of its
-- job and how often a reconciler had to queue it again. The frontend writes
-- it in the statement that records the proofs row, before it publishes the
-- job, so a job whose publish was lost (a NATS outage, a frontend killed
-- mid-submit, a JetStream node lost with an unreplicated stream) can be
-- published again from Postgres: the proofs row alone does not hold the
-- inputs. The inputs are the job's sealed blob (AES-256-GCM under the fleet
-- key, the request id as associated data), exactly as the queue carries it:
-- Postgres never holds them in plaintext. The row goes as soon as its
-- request is terminal (trigger below), so the blobs of finished requests do
-- not linger, and with the proofs row (ON DELETE CASCADE).
--
-- A table of its own, not columns of proofs: the status_update
-- notification sends row_to_json(proofs), and a blob of up to megabytes
-- there would turn every notification into the truncated form.

-- +goose Up
CREATE TABLE IF NOT EXISTS proof_jobs (
    request_id    uuid PRIMARY KEY REFERENCES proofs (request_id) ON DELETE CASCADE,
    sealed_inputs bytea NOT NULL,
    requeues      int NOT NULL DEFAULT 0,
    requeued_at   timestamptz
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE proof_jobs ALTER COLUMN sealed_inputs SET STORAGE EXTERNAL;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION proof_jobs_forget() RETURNS trigger AS $$
BEGIN
    DELETE FROM proof_jobs WHERE request_id = NEW.request_id;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS proofs_forget_job ON proofs;
CREATE TRIGGER proofs_forget_job
    AFTER UPDATE OF status ON proofs
    FOR EACH ROW WHEN (NEW.status >= 2 AND OLD.status < 2)
    EXECUTE FUNCTION proof_jobs_forget();

-- +goose Down
DROP TRIGGER IF EXISTS proofs_forget_job ON proofs;
DROP FUNCTION IF EXISTS proof_jobs_forget();
DROP TABLE IF EXISTS proof_jobs;
