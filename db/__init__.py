"""All of PostgreSQL: the pool, the migrations runner, and every SQL statement (the activities in
`activities/` and the ingress call these functions, never SQL of their own): the service records,
the orders, the payments ledger, the mail log, the invoices and their SdI delivery. One module a
role; SQL is plain, parameterized, one statement per intent, multi-step changes in one transaction
(a function owning it, or taking the caller's connection)."""
