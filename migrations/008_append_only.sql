-- Issued invoices (P17) and the payments ledger (P11) are append-only: what was issued or received
-- is never rewritten nor removed, by the runtime role or by anyone running SQL by hand. A trigger
-- holds for every role (a migration that must correct history disables it, in the open); the
-- runtime role also loses DELETE and TRUNCATE on both tables.
--
-- What may still change, and only that (each an UPDATE the code does):
--   invoices  an invoice not issued (no number: missing_billing_data, invalid) is filled in when it
--             is issued (db/invoices.py issue_invoice); an issued one moves through its SdI
--             delivery (state, sdi_id, delivered_at, note, updated_at: db/sdi.py), and a REJECTED
--             one is resent corrected in a new file (file_name, xml: reissue_invoice, P18).
--             Its order, holder, number, year, progressive, date and total never change.
--   payments  a row is settled once (status, refund_cents, note, settled_at) while it is
--             'received' (Store.settle_payment, Ledger.settle_unmatched); its delivery bookkeeping
--             moves freely. What was received (transaction, order, amount, currency, method,
--             registered_at, by_hand, received_at) never changes.

CREATE FUNCTION invoices_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'invoices are append-only (P17): the invoice of order % cannot be deleted', OLD.order_number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.number IS NULL THEN
        RETURN NEW;  -- not issued: nothing was numbered yet
    END IF;
    IF (NEW.order_number, NEW.username, NEW.number, NEW.year, NEW.progressive, NEW.issued_on, NEW.total_cents,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.order_number, OLD.username, OLD.number, OLD.year, OLD.progressive, OLD.issued_on, OLD.total_cents,
        OLD.created_at) THEN
        RAISE EXCEPTION 'invoices are append-only (P17): invoice % keeps its order, number, date and total', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.file_name, NEW.xml) IS DISTINCT FROM (OLD.file_name, OLD.xml) AND OLD.state <> 'rejected' THEN
        RAISE EXCEPTION 'invoices are append-only (P17): invoice % is %, only a rejected invoice gets a new file (P18)',
            OLD.number, OLD.state
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION payments_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the payments ledger is append-only (P11): payment % cannot be deleted', OLD.transaction_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.transaction_id, NEW.order_number, NEW.amount_cents, NEW.currency, NEW.method, NEW.registered_at,
        NEW.by_hand, NEW.received_at)
       IS DISTINCT FROM
       (OLD.transaction_id, OLD.order_number, OLD.amount_cents, OLD.currency, OLD.method, OLD.registered_at,
        OLD.by_hand, OLD.received_at) THEN
        RAISE EXCEPTION 'the payments ledger is append-only (P11): payment % keeps what was received', OLD.transaction_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'received'
       AND (NEW.status, NEW.refund_cents, NEW.note, NEW.settled_at)
           IS DISTINCT FROM (OLD.status, OLD.refund_cents, OLD.note, OLD.settled_at) THEN
        RAISE EXCEPTION 'the payments ledger is append-only (P11): payment % was settled % and is settled once',
            OLD.transaction_id, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (P11, P17): never truncated', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER invoices_append_only BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_append_only();
CREATE TRIGGER payments_append_only BEFORE UPDATE OR DELETE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_append_only();
CREATE TRIGGER invoices_never_truncated BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER payments_never_truncated BEFORE TRUNCATE ON payments
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();

-- The runtime role (deploy/postgres/init-databases.sh), where it exists: rows in, never out.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'renewals_app') THEN
        REVOKE DELETE, TRUNCATE ON invoices, payments FROM renewals_app;
    END IF;
END
$$;
