"""The lockout of a guessing run (ingress/ratelimit.py `Lockout`), on a clock the test moves."""

from ingress.ratelimit import Lockout


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_guessing_run_is_locked_out_and_a_few_typos_are_not():
    clock = Clock()
    codes = Lockout(tries=3, window=60, lockout=600, clock=clock)
    codes.failed("mario")
    codes.failed("mario")
    assert codes.locked_for("mario") is None  # two typos: still free
    codes.failed("mario")
    assert codes.locked_for("mario") == 600
    assert codes.locked_for("lucia") is None  # one customer's run locks nobody else
    clock.now += 599
    assert codes.locked_for("mario") == 1
    clock.now += 1
    assert codes.locked_for("mario") is None


def test_failures_older_than_the_window_are_forgotten():
    clock = Clock()
    codes = Lockout(tries=3, window=60, lockout=600, clock=clock)
    for _ in range(10):
        codes.failed("mario")
        codes.failed("mario")
        clock.now += 61
    assert codes.locked_for("mario") is None
