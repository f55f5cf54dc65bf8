-- P20: a card or PayPal automatic order may be charged more than once (retries after a soft
-- decline, a new charge the customer asks for): one charge_requests row per attempt, keyed by the
-- attempt's id (`<order number>/<n>`, the Idempotency-Key of its charge_requested event). Rows made
-- before were each the order's only attempt: `/1`.
ALTER TABLE charge_requests ADD COLUMN attempt text;
UPDATE charge_requests SET attempt = order_number || '/1';
ALTER TABLE charge_requests ALTER COLUMN attempt SET NOT NULL;
ALTER TABLE charge_requests DROP CONSTRAINT charge_requests_pkey;
ALTER TABLE charge_requests ADD PRIMARY KEY (attempt);
CREATE INDEX charge_requests_order_number ON charge_requests (order_number);

-- What the payments back office said of each attempt (charge_succeeded, charge_failed): one row per
-- attempt; a repeat is counted on it and changes nothing. `state` says what became of it: delivered
-- to the order's renewal, or ignored with the reason (an unknown or closed order).
CREATE TABLE charge_outcomes (
    attempt      text PRIMARY KEY,
    order_number text NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    decline      text CHECK (decline IN ('soft', 'hard')),
    code         text,
    message      text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    state        text NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'delivered', 'ignored')),
    note         text,
    repeats      integer NOT NULL DEFAULT 0
);

CREATE INDEX charge_outcomes_order_number ON charge_outcomes (order_number);
