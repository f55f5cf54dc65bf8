-- Every invoice reaches SdI (P18): each file sent over SDICoop, every notification SdI sends back
-- kept as it came (the file SdI signed), and what was refused at the door, for ops.

-- The invoice's SdI lifecycle: issued (to send) -> sent (SdI took the file: IdentificativoSdI)
-- -> delivered (RC) | not_delivered (MC: issued, in the holder's reserved area) | rejected (NS:
-- not issued; a corrected resend keeps the number and date). 'accepted' was the old seam's word.
UPDATE invoices SET state = 'delivered' WHERE state = 'accepted';
ALTER TABLE invoices DROP CONSTRAINT invoices_state_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_state_check CHECK (
    state IN ('issued', 'sent', 'delivered', 'not_delivered', 'rejected', 'missing_billing_data', 'invalid'));
ALTER TABLE invoices ADD COLUMN delivered_at timestamptz;
DROP INDEX invoices_outbox;
CREATE INDEX invoices_to_send ON invoices (created_at) WHERE state = 'issued';

-- One row per file handed to SdI: the first send and each corrected resend (a new file name,
-- the same number and date). state: to_send -> sending (an attempt under way; found so by a
-- retry, the attempt is in doubt: SdI may have the file) -> accepted (SdI answered with its id).
CREATE TABLE sdi_transmissions (
    file_name    text PRIMARY KEY,
    number       text NOT NULL REFERENCES invoices (number),
    xml          text NOT NULL,
    state        text NOT NULL DEFAULT 'to_send' CHECK (state IN ('to_send', 'sending', 'accepted')),
    sdi_id       text UNIQUE,
    received_at  timestamptz,          -- SdI's DataOraRicezione
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    started_at   timestamptz,          -- the last attempt's start
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (state <> 'accepted' OR (sdi_id IS NOT NULL AND received_at IS NOT NULL))
);
CREATE INDEX sdi_transmissions_number ON sdi_transmissions (number, created_at);

-- Every notification SdI sent about one of our files, unchanged; the same one twice is one row.
CREATE TABLE sdi_notifications (
    id                 bigserial PRIMARY KEY,
    sdi_id             text NOT NULL,
    file_name          text NOT NULL REFERENCES sdi_transmissions (file_name),
    number             text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('RC', 'MC', 'NS', 'DT', 'NE', 'AT')),
    notification_name  text NOT NULL,
    message_id         text NOT NULL,
    file               bytea NOT NULL,
    detail             jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sdi_id, kind, message_id)
);
CREATE INDEX sdi_notifications_number ON sdi_notifications (number, received_at);

-- What came to the callback and was refused (not SOAP, bad schema, bad signature, unknown file):
-- it changed nothing; kept so ops can see who sent what.
CREATE TABLE sdi_refused_callbacks (
    id                 bigserial PRIMARY KEY,
    reason             text NOT NULL,
    operation          text,
    sdi_id             text,
    notification_name  text,
    body               bytea NOT NULL,     -- the first 64 KiB
    received_at        timestamptz NOT NULL DEFAULT now()
);
