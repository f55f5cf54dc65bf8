-- Bank statements (P19, docs/statements.md): every file imported, kept as it came; every entry of
-- it recorded once, keyed by the bank's own reference; what each credit paid.
--
--   statement_imports      one row per file, keyed by its SHA-256: the same file twice is one import.
--                          The raw bytes stay with it (the import's activities read them from here,
--                          never from a Temporal payload). Its state and counts move; its content
--                          never changes.
--   statement_entries      one row per entry, UNIQUE on its key (renewals/statements.py Entry.key):
--                          a re-import or an overlapping statement finds it and records nothing.
--                          Only an unmatched entry changes, once: ops assign it to an order.
--   statement_allocations  what a credit paid: one row per order, each a payments ledger row
--                          (P11) with the same transaction id, written in the same transaction.
--                          Never changed.

CREATE TABLE statement_imports (
    id              text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    raw             bytea NOT NULL,
    source          text NOT NULL CHECK (source IN ('cli', 'http', 'inbox')),
    file_name       text,
    version         text NOT NULL,
    message_id      text NOT NULL,
    entries_in_file integer NOT NULL CHECK (entries_in_file >= 0),
    -- The Rome day the file was read and validated: a booking date after it is in the future.
    read_on         date NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'stored' CHECK (state IN ('stored', 'recorded', 'done', 'failed')),
    applied         integer,
    unmatched       integer,
    duplicates      integer,
    ignored         integer,
    -- The renewals' answers to its payments, by ledger status: {"applied": 7, "partial": 1}.
    outcomes        jsonb NOT NULL DEFAULT '{}',
    failure         text,
    finished_at     timestamptz
);
CREATE INDEX statement_imports_received ON statement_imports (received_at DESC);

CREATE TABLE statement_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key             text NOT NULL UNIQUE,
    import_id       text NOT NULL REFERENCES statement_imports,
    position        integer NOT NULL CHECK (position >= 1),
    account         text NOT NULL,
    amount          text NOT NULL,
    amount_cents    bigint,
    currency        text NOT NULL,
    credit_debit    text NOT NULL,
    reversal        boolean NOT NULL,
    booked_on       date,
    payer           text,
    remittance      text NOT NULL,
    -- The entry as read (renewals/statements.py Entry), for ops and for a later look.
    detail          jsonb NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'unmatched', 'ignored', 'assigned')),
    reason          text NOT NULL,
    suggestions     jsonb NOT NULL DEFAULT '[]',
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    assigned_order  text,
    assigned_by     text,
    assigned_at     timestamptz,
    CHECK ((outcome = 'assigned') = (assigned_order IS NOT NULL))
);
CREATE INDEX statement_entries_import ON statement_entries (import_id, position);
CREATE INDEX statement_entries_unmatched ON statement_entries (recorded_at, id) WHERE outcome = 'unmatched';

CREATE TABLE statement_allocations (
    transaction_id  text PRIMARY KEY REFERENCES payments,
    entry_id        bigint NOT NULL REFERENCES statement_entries,
    -- Whose delivery it is: the import that recorded the entry.
    import_id       text NOT NULL REFERENCES statement_imports,
    order_number    text NOT NULL,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    reason          text NOT NULL,
    by_hand         boolean NOT NULL DEFAULT false
);
CREATE INDEX statement_allocations_import ON statement_allocations (import_id, transaction_id);
CREATE INDEX statement_allocations_entry ON statement_allocations (entry_id);

-- Suggestions for an unmatched credit look among the open orders by amount (renewals/matching.py).
CREATE INDEX orders_open_by_total ON orders (total_cents) WHERE status = 'awaiting_payment';

-- What was received stays as it was received, for every role (as 008 does for the ledger).
CREATE FUNCTION statement_rows_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '% is kept as received (P19): rows are never deleted', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_TABLE_NAME = 'statement_imports' THEN
        IF (NEW.id, NEW.raw, NEW.source, NEW.file_name, NEW.version, NEW.message_id, NEW.entries_in_file,
            NEW.read_on, NEW.received_at)
           IS DISTINCT FROM
           (OLD.id, OLD.raw, OLD.source, OLD.file_name, OLD.version, OLD.message_id, OLD.entries_in_file,
            OLD.read_on, OLD.received_at) THEN
            RAISE EXCEPTION 'statement import % keeps its file (P19)', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSIF TG_TABLE_NAME = 'statement_entries' THEN
        IF (to_jsonb(NEW) - '{outcome,assigned_order,assigned_by,assigned_at}'::text[])
           IS DISTINCT FROM (to_jsonb(OLD) - '{outcome,assigned_order,assigned_by,assigned_at}'::text[])
           OR (NEW.outcome IS DISTINCT FROM OLD.outcome AND NOT (OLD.outcome = 'unmatched' AND NEW.outcome = 'assigned'))
           OR (OLD.outcome = 'assigned' AND (NEW.assigned_order, NEW.assigned_by, NEW.assigned_at)
                                            IS DISTINCT FROM (OLD.assigned_order, OLD.assigned_by, OLD.assigned_at)) THEN
            RAISE EXCEPTION 'statement entry % is kept as read; only an unmatched one is assigned, once (P19)', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    ELSE
        RAISE EXCEPTION '% is never changed (P19)', TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;

-- The runtime role (deploy/postgres/init-databases.sh), where it exists: the default privileges
-- give it every row operation; it needs to insert and read these, update imports' state and
-- entries' assignment, nothing else.
DO $$
DECLARE
    kept text;
BEGIN
    FOREACH kept IN ARRAY ARRAY['statement_imports', 'statement_entries', 'statement_allocations'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW'
                       ' EXECUTE FUNCTION statement_rows_kept()', kept || '_kept', kept);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT'
                       ' EXECUTE FUNCTION refuse_truncate()', kept || '_never_truncated', kept);
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'renewals_app') THEN
            EXECUTE format('REVOKE DELETE, TRUNCATE ON %I FROM renewals_app', kept);
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'renewals_app') THEN
        REVOKE UPDATE ON statement_allocations FROM renewals_app;
    END IF;
END
$$;
