-- The service's year (issue 15, P15-P16): expiry notices, automatic renewal, the charge request.

-- How an automatic renewal is paid (P16): card or paypal -> a charge_requested event to the
-- payments back office; bank_transfer or postal_slip -> the instructions email and P2 reminders.
-- NULL: none stored (an automatic order is then paid by bank transfer).
ALTER TABLE services ADD COLUMN auto_renew_method text
    CHECK (auto_renew_method IN ('card', 'paypal', 'bank_transfer', 'postal_slip'));

-- The daily run reads the services due on a day by expiry date and auto-renew, page by page in
-- username order: one index answers each page (an index scan, never a sequential scan).
CREATE INDEX services_due ON services (expires_on, auto_renew, username);

-- An order made by the daily run itself (P16).
ALTER TABLE orders DROP CONSTRAINT orders_mode_check;
ALTER TABLE orders ADD CONSTRAINT orders_mode_check CHECK (mode IN ('renew', 'reactivate', 'auto_renew'));

-- One automatic order per service and expiry, however often the day is run (a cancelled one,
-- auto-renew turned off, does not count).
CREATE UNIQUE INDEX orders_auto_renew_once ON orders (username, previous_expires_on)
    WHERE mode = 'auto_renew' AND status <> 'cancelled';

-- The notices skip a service with an order for its expiry open or paid.
CREATE INDEX orders_for_expiry ON orders (username, previous_expires_on) WHERE status IN ('awaiting_payment', 'paid');

-- The charge of an automatic order paid by card or PayPal (P16): one row per order, written
-- before the event is POSTed; acknowledged_at once the payments back office answered 2xx.
-- url NULL: no PAYMENTS_WEBHOOK_URL was set (the local stack), the request is only recorded.
CREATE TABLE charge_requests (
    order_number     text PRIMARY KEY REFERENCES orders,
    username         text NOT NULL,
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    currency         text NOT NULL DEFAULT 'EUR',
    method           text NOT NULL CHECK (method IN ('card', 'paypal')),
    charge_on        date NOT NULL,
    url              text,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz
);

-- Who claimed a notice in the mail log (the daily run's activity): a retry of that activity takes
-- its own unsent claims again, an overlapping run never takes another's (P15).
ALTER TABLE email_log ADD COLUMN claimed_by text;
