"""Which email says what: the fields of every logical email about a renewal, built from the
service and the order (the workflow decides when; the mailer renders and sends)."""

from renewals.calls import EmailTemplate, SendEmail
from renewals.eligibility import last_reactivation_day
from renewals.messages import Policy
from renewals.order import Order
from renewals.records import ServiceRecord
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
            **(order.email_fields() if order else {}),
            **fields,
        }
    )


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
