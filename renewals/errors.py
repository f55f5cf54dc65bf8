"""The error types a renewal refuses with, and the HTTP status each one maps to (one table).

Workflow validators and handlers raise `ApplicationError(message, type=...)` with these types;
the ingress turns them into the contract's `{"error": CODE, "message": TEXT}` answers.
"""

NOT_ALLOWED = "NotAllowed"  # the action is not allowed now (R1, R2, wrong stage)
INVALID_REQUEST = "InvalidRequest"  # the input is malformed or breaks a rule (R5, unknown code)
UNKNOWN_SERVICE = "UnknownService"  # no service with that username
ORDER_CLOSED = "OrderClosed"  # activation of an order that lapsed or was cancelled (an activity's)
MAIL_REJECTED = "MailRejected"  # the SMTP server refused an email for good
AUTO_ORDER_EXISTS = "AutoOrderExists"  # an automatic order for this expiry was made already (P16)
SDI_IN_DOUBT = "SdiInDoubt"  # a file may have reached SdI without its answer: not sent again blindly (P18)
SDI_UNAVAILABLE = "SdiUnavailable"  # SdI unreachable or answering EI02: retried with backoff (P18)

# type → (HTTP status, the contract's error code)
HTTP = {
    NOT_ALLOWED: (409, "not_allowed"),
    INVALID_REQUEST: (422, "invalid_request"),
    UNKNOWN_SERVICE: (404, "unknown_service"),
}


def http_of(kind: str | None) -> tuple[int, str]:
    """The status and code of an ApplicationError type; anything unknown is a 409 refusal."""
    return HTTP.get(kind or "", HTTP[NOT_ALLOWED])
