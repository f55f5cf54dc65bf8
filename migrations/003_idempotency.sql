-- P13: the first answer to a panel event carrying an Idempotency-Key, kept for 24 hours and
-- replayed to a retry with the same key (ingress/idempotency.py owns this table).
CREATE TABLE idempotency_keys (
    username        text NOT NULL,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- The request the key was first used for: the same key with another request is refused.
    request_sha256  text NOT NULL,
    -- Who holds the key while the first request runs; a retry meanwhile is told to wait.
    claim           uuid NOT NULL,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    status_code     integer,
    answer          text,
    answered_at     timestamptz,
    PRIMARY KEY (username, idempotency_key),
    CHECK ((status_code IS NULL) = (answer IS NULL))
);

CREATE INDEX idempotency_keys_claimed_at ON idempotency_keys (claimed_at);
