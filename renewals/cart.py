"""The cart (R3): what it holds, how it changes, and the view the panel shows."""

from datetime import date, datetime

from renewals.calls import CreateOrder
from renewals.dates import DAY, add_years, after, start_of_day
from renewals.eligibility import reactivation_window_end
from renewals.messages import Checkout, Policy
from renewals.pricing import order_lines, quote
from renewals.records import AddonQuantity, DiscountCode, OrderLine, PriceList, Quote, ServiceRecord
from renewals.storage import storage_alert
from renewals.terms import allowed_years
from renewals.types import ADDONS, MAX_ADDON_QUANTITY, AddonName, Model, RenewalMode, Stage
from renewals.views import CartView, DiscountView, OrderView


class Cart(Model):
    """A renewal's cart: the service as loaded, its price list, what was added, the code applied."""

    mode: RenewalMode
    service: ServiceRecord
    prices: PriceList
    added: list[AddonQuantity] = []
    discount: DiscountCode | None = None

    def with_addon(self, addon: AddonName, quantity: int) -> "Cart":
        added = {line.addon: line.quantity for line in self.added}
        added[addon] = added.get(addon, 0) + quantity
        return self.model_copy(update={"added": _lines(added)})

    def without_addon(self, addon: AddonName) -> "Cart":
        return self.model_copy(update={"added": [line for line in self.added if line.addon != addon]})

    def addon_refusal(self, addon: AddonName, quantity: int) -> str | None:
        """None when `quantity` more of `addon` fit, else why not: the limit holds for the cart and
        for the service once activated (active + cart), so activation can never exceed it."""
        active = sum(line.quantity for line in self.service.addons if line.addon == addon)
        in_cart = sum(line.quantity for line in self.added if line.addon == addon)
        if active + in_cart + quantity > MAX_ADDON_QUANTITY:
            return (
                f"quantity of {addon} would be {active + in_cart + quantity} with the {active} active and "
                f"{in_cart} in the cart; at most {MAX_ADDON_QUANTITY} per service"
            )
        return None

    def has_in_cart(self, addon: AddonName) -> bool:
        return any(line.addon == addon for line in self.added)

    def storage_packs(self) -> int:
        """Extra storage packs already bought: each adds a pack's MB to the quota (R4)."""
        return sum(line.quantity for line in self.service.addons if line.addon == "extra_storage")

    def lines(self, years: int) -> list[OrderLine]:
        return order_lines(self.prices, self.service.addons, self.added, years)

    def quote(self, years: int) -> Quote:
        return quote(self.lines(years), self.discount)

    def order_request(
        self, checkout: Checkout, workflow_id: str, run_id: str, ordered_at: datetime, due_by: datetime
    ) -> CreateOrder:
        """The order the checkout confirms (R5, R6): this cart's lines and quote for the term chosen."""
        return CreateOrder(
            workflow_id=workflow_id,
            run_id=run_id,
            username=self.service.username,
            mode=self.mode,
            years=checkout.years,
            payment_method=checkout.payment_method,
            discount_code=self.discount.code if self.discount else None,
            lines=self.lines(checkout.years),
            quote=self.quote(checkout.years),
            previous_expires_on=self.service.expires_on,
            due_by=due_by,
            ordered_at=ordered_at,
        )

    def auto_checkout(self) -> Checkout:
        """The automatic order's choices (P16, R5): the term of the last paid order, stored on the
        service at activation, and the service's auto-renew method (bank transfer when none)."""
        return Checkout(
            payment_method=self.service.auto_renew_method or "bank_transfer", years=self.service.auto_renew_years
        )

    def auto_renew_due_by(self) -> datetime:
        """The automatic order's deadline (P16): the end of the expiry day, Rome midnight after it."""
        return start_of_day(self.service.expires_on + DAY)

    def due_by(self, now: datetime, policy: Policy) -> datetime:
        """A checked-out order's deadline: P3's wait, never past the end of the R2 window."""
        return min(after(now, policy.payment_deadline), self.ceases_at(policy))

    def ceases_at(self, policy: Policy) -> datetime:
        """When the service ceases (R2): no deadline, extension or checkout goes past it."""
        return reactivation_window_end(
            self.service.expires_on, policy.reactivation_window, legacy=not policy.reactivation_last_day_included
        )

    def renewed_until(self, years: int) -> date:
        """P1: the new expiry counts from the old one, for renew and reactivate alike."""
        return add_years(self.service.expires_on, years)

    def view(self, stage: Stage, today: date, order: OrderView | None = None) -> CartView:
        pack_mb = self.prices.get("extra_storage").unit_mb or 1024
        alert = storage_alert(self.service, today, self.renewed_until(1), pack_mb, self.storage_packs())
        owned = {line.addon for line in self.service.addons} | {line.addon for line in self.added}
        available = [
            AddonQuantity(
                addon=addon,
                # A suggestion, capped at what one service may hold (past it the cart refuses the add-on).
                quantity=min(alert.suggested_packs, MAX_ADDON_QUANTITY)
                if addon == "extra_storage" and alert and alert.suggested_packs
                else 1,
            )
            for addon in ADDONS
            if addon not in owned
        ]
        return CartView(
            stage=stage,
            mode=self.mode,
            username=self.service.username,
            expires_on=self.service.expires_on,
            active_addons=list(self.service.addons),
            cart_addons=list(self.added),
            available_addons=available,
            discount=DiscountView(
                code=self.discount.code,
                percent_off=self.discount.percent_off,
                product=self.discount.product,
            )
            if self.discount
            else None,
            allowed_years=allowed_years(self.service.promotional),
            storage_alert=alert,
            quote=self.quote(1),
            order=order,
        )


def _lines(quantities: dict[AddonName, int]) -> list[AddonQuantity]:
    return [AddonQuantity(addon=name, quantity=quantities[name]) for name in ADDONS if name in quantities]
