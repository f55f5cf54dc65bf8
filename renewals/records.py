"""Records of what is: a service as provisioning describes it, the price list, discount codes, the
lines and quote of an order. They travel in histories (activity results): add optional fields only."""

from datetime import date

from pydantic import Field, model_validator

from renewals.billing import BillingData
from renewals.types import (
    MAX_ADDON_QUANTITY,
    AddonName,
    Email,
    MailableEmail,
    Model,
    PaymentMethod,
    PlainText,
    Username,
    WireModel,
)


class AddonQuantity(Model):
    addon: AddonName
    quantity: int = Field(ge=1, le=MAX_ADDON_QUANTITY)


class ServiceRecord(Model):
    """A service as the provisioning system describes it (`starter.py services import`)."""

    username: Username
    holder_name: PlainText
    holder_email: Email
    promotional: bool = False
    purchased_on: date
    expires_on: date
    auto_renew: bool
    auto_renew_years: int = Field(1, ge=1, le=10)
    # How the automatic order is paid (P16); None: none chosen, it is paid by bank transfer.
    auto_renew_method: PaymentMethod | None = None
    storage_quota_mb: int = Field(ge=1)
    storage_used_mb: int = Field(ge=0)
    included_users: int = Field(1, ge=1)
    addons: list[AddonQuantity] = []
    billing: BillingData | None = None  # the invoice's holder (P17); records before it have none

    @model_validator(mode="after")
    def _consistent(self) -> "ServiceRecord":
        if self.expires_on < self.purchased_on:
            raise ValueError("expires_on must not be before purchased_on")
        names = [line.addon for line in self.addons]
        if len(names) != len(set(names)):
            raise ValueError("addons must list each add-on once")
        return self


class ServiceImport(ServiceRecord, WireModel):
    """A record as `services import` reads it: strict about unknown fields, and about an address
    the mailer could not send to (P14)."""

    holder_email: MailableEmail


class Product(Model):
    """One line of the price list: EUR cents per year, net of VAT (P6)."""

    product: str
    label: str
    unit_price_cents: int = Field(ge=0)
    unit_mb: int | None = None


class PriceList(Model):
    products: dict[str, Product]

    def get(self, product: str) -> Product:
        try:
            return self.products[product]
        except KeyError:
            raise ValueError(f"product {product!r} is not in the price list") from None


class DiscountCode(Model):
    code: str
    percent_off: int = Field(ge=1, le=100)
    valid_from: date
    valid_to: date | None = None
    product: str | None = None


class OrderLine(Model):
    product: str
    label: str
    quantity: int
    years: int
    unit_price_cents: int
    net_cents: int


class Quote(Model):
    net_cents: int
    discount_cents: int
    vat_cents: int
    total_cents: int
