-- openpassport_cancel is authorised by a token that only the submitter's client can
-- derive: HKDF-SHA256 of the session's shared key and the request's uuid
-- (api/internal/handshake.CancelToken). The frontend keeps only the token's SHA-256, with
-- the row; the token and the shared key are never stored. A row without one (recorded
-- before this migration) cannot be cancelled through the frontend.
--
-- The status_update payload carries the column as null: downstream readers have no use
-- for it. Everything else in the payload is unchanged (same function as 00002 otherwise).

-- +goose Up
ALTER TABLE proofs ADD COLUMN IF NOT EXISTS cancel_hash bytea;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION proofs_notify_status() RETURNS trigger AS $$
DECLARE
    payload text;
    r proofs%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    r := NEW;
    r.cancel_hash := NULL;
    payload := row_to_json(r)::text;
    IF octet_length(payload) >= 7900 THEN
        payload := json_build_object(
            'request_id', NEW.request_id,
            'proof_type', NEW.proof_type,
            'status', NEW.status,
            'circuit_name', NEW.circuit_name,
            'onchain', NEW.onchain,
            'endpoint_type', NEW.endpoint_type,
            'created_at', NEW.created_at,
            'witness_generated_at', NEW.witness_generated_at,
            'proof_generated_at', NEW.proof_generated_at,
            'truncated', true)::text;
    END IF;
    PERFORM pg_notify('status_update', payload);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION proofs_notify_status() RETURNS trigger AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    payload := row_to_json(NEW)::text;
    IF octet_length(payload) >= 7900 THEN
        payload := json_build_object(
            'request_id', NEW.request_id,
            'proof_type', NEW.proof_type,
            'status', NEW.status,
            'circuit_name', NEW.circuit_name,
            'onchain', NEW.onchain,
            'endpoint_type', NEW.endpoint_type,
            'created_at', NEW.created_at,
            'witness_generated_at', NEW.witness_generated_at,
            'proof_generated_at', NEW.proof_generated_at,
            'truncated', true)::text;
    END IF;
    PERFORM pg_notify('status_update', payload);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd
ALTER TABLE proofs DROP COLUMN IF EXISTS cancel_hash;
