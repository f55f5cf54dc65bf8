-- Server-side bounds for every session of this database (P14): a client that vanished (a
-- half-open connection, a killed process whose socket the kernel keeps) or a hand-run psql left in
-- an open transaction must not hold a row lock for ever. The invoice counter's row is the one that
-- matters most: while a dead session holds it, no activation can take an invoice number.
--
-- Set on the database, so they hold for the runtime role (renewals_app) in production and for the
-- local stack and the tests, which connect as postgres; a new session reads them when it starts.
--   idle_in_transaction_session_timeout  a session idle inside a transaction is ended and its locks
--       released. Our transactions never wait on anything outside PostgreSQL while open (the invoice
--       is built in a few milliseconds under the counter's lock): 15 s is far above any of them.
--   lock_timeout  a lock wait ends with SQLSTATE 55P03 (lock_not_available, naming the lock) after
--       8 s: below the pool's COMMAND_TIMEOUT (10 s, db/pool.py), so the clean server error comes
--       first and the activity retries; above any wait our own transactions cause each other.
--   statement_timeout  15 s, above COMMAND_TIMEOUT: the backstop that ends a statement on the server
--       when the client's cancel never arrived.
-- Long work sets its own: the migrations runner (db/migrations.py, SET LOCAL per migration) and the
-- benchmark seeds (bench/, per connection). A session may always SET them for itself.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L', current_database(), '15s');
    EXECUTE format('ALTER DATABASE %I SET lock_timeout = %L', current_database(), '8s');
    EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '15s');
END
$$;
