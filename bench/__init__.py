"""The benchmark (`make bench`, `python -m bench`): renewals end to end against the engine's own
floor on the same machine, the latency of every panel event, and what N pending renewals cost.
See bench/run.py for the phases and `python -m bench --help` for the sizes."""
