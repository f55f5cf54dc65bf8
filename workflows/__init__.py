"""Deterministic workflow code: the renewal state machine (`renewal`). No I/O, no clock but
`workflow.now()`, no randomness; every side effect is an activity."""
