-- P21: the signatures the ingress accepted, each kept until its timestamp leaves the 5 minutes
-- the ingress allows (then the request is refused as stale anyway), so that each is accepted once
-- (db/signatures.py owns this table).
CREATE TABLE seen_signatures (
    -- The HMAC-SHA256 of the accepted signature (v2 or v1), 32 bytes.
    signature   bytea PRIMARY KEY CHECK (length(signature) = 32),
    expires_at  timestamptz NOT NULL
);

-- The purge of expired rows reads this index only.
CREATE INDEX seen_signatures_expires_at ON seen_signatures (expires_at);
