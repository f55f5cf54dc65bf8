"""Which email says what: the fields of every logical email about a renewal, built from the
service and the order (the workflow decides when; the mailer renders and sends)."""

from typing import Any

from renewals.calls import EmailTemplate, SendEmail
from renewals.creditor_reference import ORDER_NUMBER, causale
from renewals.eligibility import last_reactivation_day
from renewals.messages import Policy
from renewals.order import Order
from renewals.records import ServiceRecord
from renewals.views import PaymentInstructions
from renewals.year import EXPIRED, notice_key


def email_request(
    template: EmailTemplate, key: str, service: ServiceRecord, order: Order | None, **fields: object
) -> SendEmail:
    """`key` names the logical email (`<order>:reminder:2`): the mailer sends each key once."""
    return SendEmail.model_validate(
        {
            "key": key,
            "template": template,
            "username": service.username,
            "to_name": service.holder_name,
            "to_email": service.holder_email,
            **(_with_causale(order.email_fields()) if order else {}),
            **fields,
        }
    )


def _with_causale(fields: dict[str, Any]) -> dict[str, Any]:
    """P19: every email quotes, beside the IBAN and on the postal slip, the order's creditor
    reference and its number (`RF46 2026 0001 23 - FE-2026-000123`, renewals/creditor_reference.py
    `causale`): either half alone lets the bank statement pay the order by itself."""
    how: PaymentInstructions | None = fields.get("instructions")
    if how is None or ORDER_NUMBER.fullmatch(how.order_number) is None:
        return fields
    reason = causale(how.order_number)
    return {
        **fields,
        "instructions": how.model_copy(
            update={
                "bank_transfer": how.bank_transfer.model_copy(update={"reason": reason}),
                "postal_slip": how.postal_slip.model_copy(update={"reason": reason}),
            }
        ),
    }


def expired_notice(service: ServiceRecord, policy: Policy) -> SendEmail:
    """P16: a lapsed automatic order's one email: the service expired, Reactivate is open until the
    last day of R2. Named as the daily run's day-after notice (P15), so the customer gets one."""
    last = last_reactivation_day(
        service.expires_on, policy.reactivation_window, legacy=not policy.reactivation_last_day_included
    )
    return email_request(
        "service_expired",
        notice_key(service.username, service.expires_on, EXPIRED),
        service,
        None,
        expires_on=service.expires_on,
        reactivate_until=last,
        action_url=policy.panel_ui_url,
    )
