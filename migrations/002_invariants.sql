-- Issue 12/14: the invariants under hostile data, one decision per payment.

-- What the order's renewal decided has been paid (P5): written with each settlement, so nobody
-- sums the ledger again. Backfilled for the orders already there.
ALTER TABLE orders ADD COLUMN paid_cents bigint NOT NULL DEFAULT 0 CHECK (paid_cents >= 0);
UPDATE orders o SET paid_cents = coalesce(
    (SELECT sum(p.amount_cents) FROM payments p
     WHERE p.order_number = o.order_number AND p.status IN ('applied', 'partial', 'overpaid')), 0);

-- P11: a payment's reference is free text up to 140 characters, its currency any 3 letters.
ALTER TABLE payments ADD CONSTRAINT payments_reference_length CHECK (char_length(order_number) BETWEEN 1 AND 140);
ALTER TABLE payments ADD CONSTRAINT payments_currency_letters CHECK (currency ~ '^[A-Z]{3}$');
-- The reconciler looks for rows left 'received' (the update never reached the renewal).
CREATE INDEX payments_received ON payments (received_at) WHERE status = 'received';

-- The limit the models enforce, in the data too: an add-on's quantity on a service.
ALTER TABLE service_addons ADD CONSTRAINT service_addons_quantity_limit CHECK (quantity <= 1000);

-- An email that can never be delivered (5xx, an address no email can be built for) is recorded.
ALTER TABLE email_log DROP CONSTRAINT email_log_status_check;
ALTER TABLE email_log ADD CONSTRAINT email_log_status_check CHECK (status IN ('sending', 'sent', 'refused'));
ALTER TABLE email_log ADD COLUMN note text;
