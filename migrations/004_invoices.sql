-- The electronic invoice of every paid renewal (P17): FatturaPA TD01, numbered per Rome calendar
-- year with no gap and no repeat.

-- The holder's billing data (renewals/billing.py BillingData, as JSON); NULL for records imported
-- before it: their activations record the invoice as 'missing_billing_data' instead.
ALTER TABLE services ADD COLUMN billing jsonb;

-- One row per year, locked by the UPDATE that takes the next progressive inside the activation's
-- transaction: a rolled-back activation gives its number back, so there is never a gap. Never a
-- sequence, whose values are spent even by transactions that roll back.
CREATE TABLE invoice_counters (
    year              integer PRIMARY KEY,
    last_progressive  integer NOT NULL CHECK (last_progressive >= 0)
);

-- The SdI file name's 5-character progressive (base 36 of this): unique for ever across years,
-- gaps allowed (SdI only refuses a file name it has already seen).
CREATE SEQUENCE invoice_file_seq;

-- One row per paid order. state: issued (the outbox a SdI sender reads) -> sent -> accepted or
-- rejected. Not issued, no number taken, visible to ops here and in the audit trail:
-- missing_billing_data (the order's service had none when it was activated) and invalid (the
-- invoice failed its checks; note says why; cannot happen for data that passed import).
CREATE TABLE invoices (
    order_number  text PRIMARY KEY REFERENCES orders,
    username      text NOT NULL,
    state         text NOT NULL DEFAULT 'issued'
                  CHECK (state IN ('issued', 'sent', 'accepted', 'rejected', 'missing_billing_data', 'invalid')),
    number        text UNIQUE,
    year          integer,
    progressive   integer,
    issued_on     date,
    file_name     text UNIQUE,
    xml           text,
    total_cents   bigint,
    sdi_id        text,            -- SdI's identifier of the file, set by the sender
    note          text,            -- why it was not issued, or SdI's answer (a rejection's reasons)
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (year, progressive),
    CHECK ((state IN ('missing_billing_data', 'invalid')) = (number IS NULL)),
    CHECK (number IS NULL OR (year IS NOT NULL AND progressive > 0 AND issued_on IS NOT NULL
                              AND file_name IS NOT NULL AND xml IS NOT NULL))
);
CREATE INDEX invoices_outbox ON invoices (created_at) WHERE state = 'issued';
CREATE INDEX invoices_not_issued ON invoices (created_at) WHERE number IS NULL;
