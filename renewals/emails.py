"""Which email says what: the fields of every logical email about a renewal, built from the
service and the order (the workflow decides when; the mailer renders and sends)."""

from renewals.calls import EmailTemplate, SendEmail
from renewals.order import Order
from renewals.records import ServiceRecord


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
