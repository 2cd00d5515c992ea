-- The proofs table as the downstream services read it (PROTOCOL.md "Status"),
-- plus the columns a job queue needs to be operated: attempts, the worker that
-- holds the job, its heartbeat and the last update time. Never rename or drop
-- the downstream columns.

-- +goose Up
CREATE TABLE IF NOT EXISTS proofs (
    request_id           uuid PRIMARY KEY,
    proof_type           smallint NOT NULL,
    status               smallint NOT NULL DEFAULT 0,
    circuit_name         varchar(255),
    onchain              bool,
    endpoint_type        varchar(128),
    endpoint             varchar(128),
    version              int,
    user_defined_data    text,
    self_defined_data    text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    witness_generated_at timestamptz,
    proof_generated_at   timestamptz,
    proof                json,
    public_inputs        text[],
    reason               text,
    identifier           varchar(255),
    attempts             int NOT NULL DEFAULT 0,
    worker_id            text,
    heartbeat_at         timestamptz,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT proofs_status_known CHECK (status BETWEEN 0 AND 5)
);

-- Rows still in the prover's hands, for the rescuer and dashboards.
CREATE INDEX IF NOT EXISTS proofs_open_idx ON proofs (created_at) WHERE status IN (0, 1);
-- Terminal rows by age, for retention.
CREATE INDEX IF NOT EXISTS proofs_terminal_idx ON proofs (updated_at) WHERE status >= 2;

-- +goose Down
DROP TABLE IF EXISTS proofs;
