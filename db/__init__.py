"""PostgreSQL outside the activities: the pool, the migrations runner, the service records, the
payments ledger the ingress writes, the mail log and the invoices. One module a role; SQL is plain,
parameterized, one statement per intent, multi-step changes in one transaction."""
