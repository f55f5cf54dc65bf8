"""The typed search attributes ops find renewals by in the Temporal UI and CLI.

Registered by the local stack (`make servers`, `make run`) and by the test fixtures.
"""

from typing import Any

from temporalio.common import SearchAttributeKey

STAGE = SearchAttributeKey.for_keyword("RenewalStage")
USERNAME = SearchAttributeKey.for_keyword("RenewalUsername")
ORDER = SearchAttributeKey.for_keyword("RenewalOrder")
PAYMENT_METHOD = SearchAttributeKey.for_keyword("RenewalPaymentMethod")
DUE_BY = SearchAttributeKey.for_datetime("RenewalDueBy")
TOTAL_CENTS = SearchAttributeKey.for_int("RenewalTotalCents")

ALL: list[SearchAttributeKey[Any]] = [STAGE, USERNAME, ORDER, PAYMENT_METHOD, DUE_BY, TOTAL_CENTS]


def dev_server_args() -> list[str]:
    """`--search-attribute NAME=Type` arguments for `temporal server start-dev`."""
    args = []
    for key in ALL:
        args += ["--search-attribute", f"{key.name}={key._metadata_type}"]
    return args
