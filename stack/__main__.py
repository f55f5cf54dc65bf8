"""`python -m stack run` (make run), `python -m stack servers` (make servers) and
`python -m stack stop` (make stop); the supervisor is stack/supervisor.py."""

import signal
import sys

# Until the supervisor's event loop listens (a second or so of imports), SIGTERM and SIGHUP end
# the process the way Ctrl-C does, with a word rather than silently: nothing was started yet.
# A signal we were started ignoring (`nohup make run &` ignores SIGHUP) stays ignored.
for _signum in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(_signum) is not signal.SIG_IGN:
        signal.signal(_signum, signal.default_int_handler)

try:
    from stack.supervisor import main

    if __name__ == "__main__":
        sys.exit(main())
except KeyboardInterrupt:
    print("stopped (nothing was started)", flush=True)
    sys.exit(130)
