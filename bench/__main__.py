"""`python -m bench`: see bench/run.py."""

import os
import sys

from bench.run import main

if __name__ == "__main__":
    code = main()
    # The Temporal SDK's runtime can abort the interpreter at exit (as the tests note in
    # conftest.py): leave once everything is written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
