#!/bin/sh
# One-shot job `temporal-setup` of docker-compose.yml (image temporalio/admin-tools): the namespace
# and the search attributes ops find renewals by (renewals/search_attributes.py). Safe to run again:
# what exists already is kept. The `temporal` CLI reads TEMPORAL_ADDRESS from the environment.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}" "${TEMPORAL_RETENTION:?}" "${SEARCH_ATTRIBUTES:?}"

retry() {
  tries=0
  until "$@"; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "gave up after $tries tries: $*" >&2
      return 1
    fi
    sleep 2
  done
}

retry temporal operator cluster health

if temporal operator namespace describe --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
  echo "namespace $TEMPORAL_NAMESPACE: exists"
else
  retry temporal operator namespace create --namespace "$TEMPORAL_NAMESPACE" --retention "$TEMPORAL_RETENTION"
fi

# SEARCH_ATTRIBUTES is "Name=Type Name=Type ...": one --name/--type pair each.
set --
for pair in $SEARCH_ATTRIBUTES; do
  set -- "$@" --name "${pair%%=*}" --type "${pair#*=}"
done
# A namespace just created takes a moment to reach every service: retry until it is there.
retry temporal operator search-attribute create --namespace "$TEMPORAL_NAMESPACE" "$@"
temporal operator search-attribute list --namespace "$TEMPORAL_NAMESPACE"
