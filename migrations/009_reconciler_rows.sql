-- The ledger reconciler's bookkeeping, per row (I2): a payment left 'received' is delivered on its
-- own, its failed attempts counted and spaced out, so one that cannot be delivered never holds up
-- the others; after a few it is marked stuck, where ops look. The payment's content is untouched:
-- these columns say only how its delivery is going.
ALTER TABLE payments
    ADD COLUMN delivery_attempts   integer NOT NULL DEFAULT 0 CHECK (delivery_attempts >= 0),
    ADD COLUMN next_delivery_at    timestamptz,
    ADD COLUMN last_delivery_error text,
    ADD COLUMN stuck_since         timestamptz;

-- The reconciler takes the rows whose next attempt is due, soonest first.
CREATE INDEX payments_next_delivery ON payments ((coalesce(next_delivery_at, received_at)))
    WHERE status = 'received';

COMMENT ON COLUMN payments.delivery_attempts IS 'failed deliveries by the reconciler (I2)';
COMMENT ON COLUMN payments.next_delivery_at IS 'when the reconciler tries the row again (backoff after a failure)';
COMMENT ON COLUMN payments.last_delivery_error IS 'why the last delivery failed';
COMMENT ON COLUMN payments.stuck_since IS 'marked stuck for ops after too many failed deliveries; still retried';
