"""Demo services covering every case of the rules, dated relative to today in Rome.

Seeded by `make run` for usernames not there yet, so a second start keeps what happened.
"""

from datetime import date, timedelta

from renewals.billing import Address, BillingData
from renewals.records import AddonQuantity, ServiceRecord


def demo_services(today: date) -> list[ServiceRecord]:
    def service(username: str, **fields: object) -> ServiceRecord:
        values: dict[str, object] = {
            "username": username,
            "holder_name": f"Demo {username.removeprefix('demo-').title()} S.r.l.",
            "holder_email": f"{username}@example.com",
            "purchased_on": today - timedelta(days=300),
            "expires_on": today + timedelta(days=65),
            "auto_renew": False,
            "storage_quota_mb": 2048,
            "storage_used_mb": 600,
            # P17: billing data, so a paid demo renewal issues its invoice (made-up numbers).
            "billing": BillingData(
                holder_type="company",
                company_name=f"Demo {username.removeprefix('demo-').title()} S.r.l.",
                vat_number="09876540015",
                address=Address(street="Via Nazionale 10", cap="00184", comune="Roma", provincia="RM"),
                pec=f"{username}@pec.example.it",
            ),
        }
        values.update(fields)
        return ServiceRecord.model_validate(values)

    return [
        service("demo-active", addons=[AddonQuantity(addon="extra_users", quantity=2)]),
        service("demo-autorenew", auto_renew=True, auto_renew_years=2),
        service("demo-expired", expires_on=today - timedelta(days=30)),
        service("demo-ceased", expires_on=today - timedelta(days=120)),
        service("demo-storage75", storage_used_mb=1536),
        service("demo-storage95", storage_used_mb=1946),
        service("demo-promo", promotional=True),
        # The service's year (P15, P16): each is due on the day it is seeded, so the daily run
        # `make run` triggers when it first creates its Schedule shows them within a minute.
        service("demo-notice30", expires_on=today + timedelta(days=30)),
        service("demo-notice7", expires_on=today + timedelta(days=7)),
        service("demo-notice1", expires_on=today + timedelta(days=1)),
        service("demo-expired1", expires_on=today - timedelta(days=1), auto_renew=True, auto_renew_method="card"),
        service("demo-ceasing", expires_on=today - timedelta(days=91)),
        service("demo-auto-card", expires_on=today + timedelta(days=30), auto_renew=True, auto_renew_method="card"),
        service(
            "demo-auto-bank",
            expires_on=today + timedelta(days=30),
            auto_renew=True,
            auto_renew_years=2,
            auto_renew_method="bank_transfer",
            addons=[AddonQuantity(addon="extra_storage", quantity=1)],
        ),
    ]
