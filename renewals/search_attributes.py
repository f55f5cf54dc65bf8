"""The typed search attributes ops find renewals by in the Temporal UI and CLI.

Registered by the local stack (`make servers`, `make run`) and by the test fixtures.
"""

from typing import TYPE_CHECKING, Any

from temporalio.common import SearchAttributeKey, SearchAttributeUpdate

if TYPE_CHECKING:
    from renewals.order import Order

STAGE = SearchAttributeKey.for_keyword("RenewalStage")
USERNAME = SearchAttributeKey.for_keyword("RenewalUsername")
ORDER = SearchAttributeKey.for_keyword("RenewalOrder")
PAYMENT_METHOD = SearchAttributeKey.for_keyword("RenewalPaymentMethod")
DUE_BY = SearchAttributeKey.for_datetime("RenewalDueBy")
TOTAL_CENTS = SearchAttributeKey.for_int("RenewalTotalCents")
# An invoice's delivery through SdI (P18), beside RenewalOrder and RenewalUsername.
INVOICE_NUMBER = SearchAttributeKey.for_keyword("InvoiceNumber")
SDI_STATE = SearchAttributeKey.for_keyword("SdiState")
SDI_ALARM = SearchAttributeKey.for_bool("SdiAlarm")
# P20: an automatic order whose charge was declined: retrying, exhausted, hard_decline or
# switched_to_transfer (renewals/dunning.py); unset once the order is paid or closed.
DUNNING = SearchAttributeKey.for_keyword("RenewalDunning")

ALL: list[SearchAttributeKey[Any]] = [
    STAGE,
    USERNAME,
    ORDER,
    PAYMENT_METHOD,
    DUE_BY,
    TOTAL_CENTS,
    INVOICE_NUMBER,
    SDI_STATE,
    SDI_ALARM,
    DUNNING,
]


def renewal_attributes(stage: str, order: "Order | None") -> list[SearchAttributeUpdate[Any]]:
    """What a renewal shows ops at each stage: the stage, and the order once there is one."""
    pairs: list[SearchAttributeUpdate[Any]] = [STAGE.value_set(stage)]
    if order is not None:
        pairs += [
            ORDER.value_set(order.number),
            PAYMENT_METHOD.value_set(order.method),
            DUE_BY.value_set(order.due_by),
            TOTAL_CENTS.value_set(order.quote.total_cents),
        ]
    return pairs


def dev_server_args() -> list[str]:
    """`--search-attribute NAME=Type` arguments for `temporal server start-dev`."""
    args = []
    for key in ALL:
        args += ["--search-attribute", f"{key.name}={key._metadata_type}"]
    return args
