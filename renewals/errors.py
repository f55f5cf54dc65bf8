"""The error types a renewal refuses with, and the HTTP status each one maps to (one table).

Workflow validators and handlers raise `ApplicationError(message, type=...)` with these types;
the ingress turns them into the contract's `{"error": CODE, "message": TEXT}` answers.
"""

NOT_ALLOWED = "NotAllowed"          # the action is not allowed now (R1, R2, wrong stage)
INVALID_REQUEST = "InvalidRequest"  # the input is malformed or breaks a rule (R5, unknown code)
UNKNOWN_SERVICE = "UnknownService"  # no service with that username
UNKNOWN_ORDER = "UnknownOrder"      # no order with that number
ORDER_CLOSED = "OrderClosed"        # activation of an order that lapsed or was cancelled
MAIL_REJECTED = "MailRejected"      # the SMTP server refused an email for good

HTTP_STATUS = {
    NOT_ALLOWED: 409,
    INVALID_REQUEST: 422,
    UNKNOWN_SERVICE: 404,
    UNKNOWN_ORDER: 404,
    ORDER_CLOSED: 409,
}
