-- A relayer LISTENs on channel status_update and expects a JSON object of the
-- row on every insert and every status change. pg_notify refuses payloads of
-- 8000 bytes or more, which would make the UPDATE itself fail; a large row
-- (a proof with many public inputs) is therefore announced with a reduced
-- payload that names the row and says "truncated": readers fetch the rest.

-- +goose Up
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

DROP TRIGGER IF EXISTS proofs_status_update ON proofs;
CREATE TRIGGER proofs_status_update
    AFTER INSERT OR UPDATE OF status ON proofs
    FOR EACH ROW EXECUTE FUNCTION proofs_notify_status();

-- +goose Down
DROP TRIGGER IF EXISTS proofs_status_update ON proofs;
DROP FUNCTION IF EXISTS proofs_notify_status();
