# The front door: `make run` (the whole system on embedded defaults) and `make test`.
# Both install into .venv first; they need only Python 3.11+, make and the package registries.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run servers stop test lint faults stack-signals contract-soak soak screenshot bench bench-year bench-sdi bench-statements lock clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

install: $(STAMP)

## The whole system in the foreground: servers, worker, ingress, demo data. Ctrl-C (or SIGTERM,
## or closing the terminal) stops it; docs/local-stack.md gives the order and the time limits.
## Bank statements dropped in var/inbox are imported (P19; PAYMENTS_INBOX_DIR= turns it off).
run: install
	PANEL_UI_DEV_LOGIN=$${PANEL_UI_DEV_LOGIN:-1} PAYMENTS_INBOX_DIR=$${PAYMENTS_INBOX_DIR-$${RENEWALS_DATA_DIR:-var}/inbox} \
		$(PY) -m stack run

## Just PostgreSQL, the Temporal dev server and the SMTP sink.
servers: install
	$(PY) -m stack servers

## Stop a stack running in the background on the same data dir (RENEWALS_DATA_DIR, default var/).
stop: install
	$(PY) -m stack stop

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy renewals db activities workflows client ingress stack worker.py starter.py telemetry.py settings.py

test: install lint
	$(PY) -m pytest

## Break things on purpose: worker SIGKILLs, a Temporal restart, PostgreSQL down 20 s, SMTP down
## 60 s, each during FAULTS_RENEWALS (100) renewals; one line of figures per fault.
faults: install
	$(PY) -m pytest tests/faults -m 'slow or not slow' -s -q -p no:cacheprovider

## Schemathesis against the ingress and its OpenAPI document, with CONTRACT_EXAMPLES (1000) examples
## per operation and mode instead of `make test`'s 50 (about 7 minutes); prints how many requests it sent.
contract-soak: install
	CONTRACT_EXAMPLES=$(or $(CONTRACT_EXAMPLES),1000) $(PY) -m pytest tests/test_openapi_contract.py -k schemathesis \
		--timeout 3600 -s -q -p no:cacheprovider

## The supervisor against STACK_SIGNALS (50) SIGINT/SIGTERM/SIGHUP and STACK_KILLS (10) SIGKILL at
## random moments (starting, idle, renewals running); one line of figures. About 5 minutes.
stack-signals: install
	$(PY) -m pytest tests/test_stack_signals.py -m 'slow or not slow' -s -q -p no:cacheprovider

## With `make run` up: open the Web UI in headless Chromium and refresh docs/renewal-ui.png.
screenshot: install
	$(PY) -m pip install --quiet -e '.[dev,local,browser]'
	$(PY) -m stack.screenshot --username $(or $(USERNAME),demo-storage95) --out docs/renewal-ui.png

## The invariants I1–I6 (docs/rules.md) under fresh random sequences for SOAK_MINUTES (20) instead of
## `make test`'s fixed 25; prints the sequences and steps tried and every violation found.
soak: install
	SOAK_MINUTES=$(or $(SOAK_MINUTES),20) $(PY) -m pytest tests/test_invariants_model.py -k soak \
		--timeout 0 -s -q -p no:cacheprovider

## The benchmark on a stack of its own; results in bench/results/. Sizes: `python -m bench --help`,
## e.g. `make bench BENCH_ARGS='--pending 10000'` for docs/benchmark.md's headline figures.
bench: install
	$(PY) -m pip install --quiet -e '.[dev,local,bench]'
	$(PY) -m bench $(BENCH_ARGS)

## One day of the service's year over 100,000 services due on it (P15, P16), on a stack of its own:
## `make bench-year BENCH_ARGS='--services 10000'` for a quick one.
bench-year: install
	$(PY) -m pip install --quiet -e '.[dev,local,bench]'
	$(PY) -m bench.year $(BENCH_ARGS)

## Invoices delivered through the local SdI per second, and the CPU per invoice (P18), on a stack of
## its own: `make bench-sdi BENCH_ARGS='--invoices 200'` for a quick one.
bench-sdi: install
	$(PY) -m pip install --quiet -e '.[dev,local,bench]'
	$(PY) -m bench.sdi $(BENCH_ARGS)

## Bank statements (P19): one camt.053 statement of 10,000 entries paying 10,000 orders awaiting payment,
## on a stack of its own: the time to import it and until the last order is activated.
## `make bench-statements BENCH_ARGS='--entries 500'` for a quick one.
bench-statements: install
	$(PY) -m pip install --quiet -e '.[dev,local,bench]'
	$(PY) -m bench.statements $(BENCH_ARGS)

## requirements.lock: the image's dependencies (pyproject.toml's, no extra), pinned with hashes.
## Run after changing the dependencies; the Dockerfile installs it with --require-hashes.
lock: install
	$(PY) -m pip install --quiet 'uv>=0.5,<1'
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--no-header --quiet --output-file requirements.lock
	sed -i '1i # The image'"'"'s dependencies, pinned with hashes: `make lock` writes it from pyproject.toml.' requirements.lock

clean:
	rm -rf $(VENV) *.egg-info
