-- Renewals' tables. Money is integer euro cents (P6); instants are timestamptz, customer dates are
-- Europe/Rome calendar dates (P9).

CREATE TABLE services (
    username          text PRIMARY KEY,
    holder_name       text NOT NULL,
    holder_email      text NOT NULL,
    promotional       boolean NOT NULL DEFAULT false,
    purchased_on      date NOT NULL,
    expires_on        date NOT NULL CHECK (expires_on >= purchased_on),
    auto_renew        boolean NOT NULL,
    auto_renew_years  integer NOT NULL DEFAULT 1 CHECK (auto_renew_years BETWEEN 1 AND 10),
    storage_quota_mb  integer NOT NULL CHECK (storage_quota_mb > 0),
    storage_used_mb   integer NOT NULL CHECK (storage_used_mb >= 0),
    included_users    integer NOT NULL DEFAULT 1 CHECK (included_users > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Add-ons bought and active; they renew with the service (R3).
CREATE TABLE service_addons (
    username    text NOT NULL REFERENCES services ON DELETE CASCADE,
    addon       text NOT NULL CHECK (addon IN ('extra_storage', 'extra_users')),
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (username, addon)
);

CREATE TABLE products (
    product           text PRIMARY KEY,
    label             text NOT NULL,
    unit_price_cents  integer NOT NULL CHECK (unit_price_cents >= 0),
    unit_mb           integer CHECK (unit_mb > 0)
);

CREATE TABLE discount_codes (
    code         text PRIMARY KEY,
    percent_off  integer NOT NULL CHECK (percent_off BETWEEN 1 AND 100),
    valid_from   date NOT NULL,
    valid_to     date CHECK (valid_to >= valid_from),
    product      text REFERENCES products
);

CREATE SEQUENCE order_number_seq;

CREATE TABLE orders (
    order_number        text PRIMARY KEY,
    workflow_id         text NOT NULL,
    run_id              text NOT NULL UNIQUE,   -- create_order is idempotent per workflow run
    username            text NOT NULL REFERENCES services,
    mode                text NOT NULL CHECK (mode IN ('renew', 'reactivate')),
    years               integer NOT NULL CHECK (years BETWEEN 1 AND 10),
    payment_method      text NOT NULL,
    discount_code       text,
    net_cents           bigint NOT NULL,
    discount_cents      bigint NOT NULL,
    vat_cents           bigint NOT NULL,
    total_cents         bigint NOT NULL,
    status              text NOT NULL DEFAULT 'awaiting_payment'
                        CHECK (status IN ('awaiting_payment', 'paid', 'expired', 'cancelled')),
    previous_expires_on date NOT NULL,
    new_expires_on      date,
    due_by              timestamptz NOT NULL,
    close_reason        text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    paid_at             timestamptz,
    closed_at           timestamptz
);
CREATE INDEX orders_username ON orders (username);

CREATE TABLE order_lines (
    order_number      text NOT NULL REFERENCES orders ON DELETE CASCADE,
    line_no           integer NOT NULL,
    product           text NOT NULL,
    label             text NOT NULL,
    quantity          integer NOT NULL CHECK (quantity > 0),
    years             integer NOT NULL,
    unit_price_cents  bigint NOT NULL,
    net_cents         bigint NOT NULL,
    PRIMARY KEY (order_number, line_no)
);

-- The payments ledger: written before the workflow hears of a payment, so none is ever lost.
-- order_number is not a foreign key: a payment quoting an unknown order is kept as unmatched.
CREATE TABLE payments (
    transaction_id  text PRIMARY KEY,
    order_number    text NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    currency        text NOT NULL,
    method          text NOT NULL,
    registered_at   timestamptz NOT NULL,
    by_hand         boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'applied', 'partial', 'overpaid', 'duplicate', 'unmatched')),
    refund_cents    bigint NOT NULL DEFAULT 0,
    note            text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz
);
CREATE INDEX payments_order ON payments (order_number);

-- One row per logical email: a retried activity finds its key and never sends twice.
CREATE TABLE email_log (
    key           text PRIMARY KEY,
    template      text NOT NULL,
    recipient     text NOT NULL,
    subject       text NOT NULL,
    message_id    text NOT NULL UNIQUE,
    username      text NOT NULL,
    order_number  text,
    status        text NOT NULL DEFAULT 'sending' CHECK (status IN ('sending', 'sent')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);

-- The audit trail: every change to an order, a payment or a service, written in the same
-- transaction as the change.
CREATE TABLE renewal_events (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL,
    order_number  text,
    event         text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX renewal_events_username ON renewal_events (username, created_at);
