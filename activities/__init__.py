"""Every side effect of a renewal, grouped by the system it touches: `store` (PostgreSQL) and
`mail` (SMTP). Each activity is idempotent: a retry after a crash has the effect of one run."""
