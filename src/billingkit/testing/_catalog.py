"""The fake's catalog: products and prices the test seeds, and their changes.

Coupons and promotion codes, when the fake gets them, are catalog objects too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from enum import Enum
from typing import Any

from billingkit.domain import Interval, Price
from billingkit.errors import ConfigurationError
from billingkit.stripe_objects import price_from_stripe
from billingkit.testing import _shapes
from billingkit.testing._state import FakeState, diff, invalid, not_found

__all__ = ["UNSET", "Catalog", "Unset"]


class Unset(Enum):
    """The type of ``UNSET``."""

    UNSET = 0


#: Marker for "leave unchanged" in ``FakeStripeGateway.update_price``.
UNSET = Unset.UNSET


class Catalog:
    """Seeds and changes products and prices; answers price look-ups."""

    def __init__(self, state: FakeState) -> None:
        self._state = state

    def price_value(self, price: dict[str, Any]) -> Price:
        """``price`` as the gateway answers it (with its product's name)."""
        return price_from_stripe(price, self._state.products.get(price["product"]))

    def by_lookup_key(self, lookup_key: str) -> dict[str, Any] | None:
        """The price holding ``lookup_key``, if any."""
        for price in self._state.prices.values():
            if price["lookup_key"] == lookup_key:
                return price
        return None

    def matching(self, price_ids: Sequence[str], lookup_keys: Sequence[str]) -> list[Price]:
        """Every price among ``price_ids`` and ``lookup_keys``, in creation order."""
        wanted_ids, wanted_keys = set(price_ids), set(lookup_keys)
        return [
            self.price_value(price)
            for price in self._state.prices.values()
            if price["id"] in wanted_ids or price["lookup_key"] in wanted_keys
        ]

    def add_product(self, name: str, product_id: str | None) -> str:
        """Seed a product; returns its id."""
        state = self._state
        ident = product_id or state.new_id("prod")
        if ident in state.products:
            raise ConfigurationError(f"product {ident!r} already exists")
        state.products[ident] = _shapes.product_json(
            id=ident, name=name, created=state.timestamp(), livemode=state.livemode
        )
        return ident

    def add_price(
        self,
        *,
        amount: int | None,
        currency: str,
        interval: Interval | str,
        interval_count: int,
        lookup_key: str | None,
        product: str | None,
        product_name: str | None,
        tiered: bool,
        active: bool,
        price_id: str | None,
    ) -> dict[str, Any]:
        """Seed a price (and its product unless ``product`` is given); returns its JSON."""
        chosen = Interval(interval)
        if amount is None and not tiered:
            raise ConfigurationError("a per-unit price needs an amount")
        if isinstance(amount, bool) or (amount is not None and amount < 0):
            raise ConfigurationError("amount must be a non-negative integer of minor units")
        if interval_count < 1:
            raise ConfigurationError("interval_count must be at least 1")
        state = self._state
        if lookup_key is not None and self.by_lookup_key(lookup_key) is not None:
            raise ConfigurationError(f"lookup key {lookup_key!r} is already in use")
        if product is None:
            product = self.add_product(product_name or f"Product {len(state.products) + 1}", None)
        elif product not in state.products:
            raise ConfigurationError(f"unknown product {product!r}")
        ident = price_id or state.new_id("price")
        if ident in state.prices:
            raise ConfigurationError(f"price {ident!r} already exists")
        price = _shapes.price_json(
            id=ident,
            product=product,
            created=state.timestamp(),
            currency=currency.lower(),
            unit_amount=amount,
            interval=None if chosen is Interval.ONE_TIME else chosen.value,
            interval_count=interval_count,
            lookup_key=lookup_key,
            tiered=tiered,
            livemode=state.livemode,
        )
        price["active"] = active
        state.prices[ident] = price
        return price

    def update_price(
        self, price_id: str, *, active: bool | None, lookup_key: str | Unset | None
    ) -> dict[str, Any]:
        """Change ``active`` or the lookup key; emits ``price.updated`` if anything changed."""
        state = self._state
        price = state.prices.get(price_id)
        if price is None:
            raise not_found("price", price_id)
        before = copy.deepcopy(price)
        if active is not None:
            price["active"] = active
        if not isinstance(lookup_key, Unset):
            holder = None if lookup_key is None else self.by_lookup_key(lookup_key)
            if holder is not None and holder["id"] != price_id:
                raise invalid(f"lookup key {lookup_key!r} is in use", "lookup_key_exists")
            price["lookup_key"] = lookup_key
        changes = diff(before, price)
        if changes:
            state.emit("price.updated", price, state.timestamp(), previous=changes)
        return price

    # ------------------------------------------------------------------ promotion codes

    def add_promotion_code(
        self,
        code: str,
        *,
        percent_off: float | None,
        amount_off: int | None,
        currency: str | None,
        duration: str,
        duration_in_months: int | None,
        expires_at: int | None,
        max_redemptions: int | None,
        active: bool,
    ) -> dict[str, Any]:
        """Seed a coupon and a promotion code for it; returns the promotion code's JSON."""
        if (percent_off is None) == (amount_off is None):
            raise ConfigurationError("give exactly one of percent_off and amount_off")
        if percent_off is not None and not 0 < percent_off <= 100:
            raise ConfigurationError("percent_off must be in (0, 100]")
        if amount_off is not None and (isinstance(amount_off, bool) or amount_off <= 0):
            raise ConfigurationError("amount_off must be a positive integer of minor units")
        if amount_off is not None and not currency:
            raise ConfigurationError("amount_off needs a currency")
        if duration not in ("once", "repeating", "forever"):
            raise ConfigurationError("duration is 'once', 'repeating' or 'forever'")
        if (duration == "repeating") != (duration_in_months is not None):
            raise ConfigurationError("duration_in_months goes with duration='repeating' only")
        if not code:
            raise ConfigurationError("a promotion code needs a code")
        state = self._state
        if any(p["code"].lower() == code.lower() and p["active"] for p in self._codes()):
            raise ConfigurationError(f"an active promotion code {code!r} already exists")
        at = state.timestamp()
        coupon = _shapes.coupon_json(
            id=state.new_id("coupon"),
            created=at,
            percent_off=percent_off,
            amount_off=amount_off,
            currency=currency.lower() if currency else None,
            duration=duration,
            duration_in_months=duration_in_months,
            livemode=state.livemode,
        )
        state.coupons[coupon["id"]] = coupon
        promo = _shapes.promotion_code_json(
            id=state.new_id("promo"),
            code=code,
            coupon=coupon,
            created=at,
            expires_at=expires_at,
            max_redemptions=max_redemptions,
            active=active,
            livemode=state.livemode,
        )
        state.promotion_codes[promo["id"]] = promo
        return promo

    def _codes(self) -> list[dict[str, Any]]:
        return list(self._state.promotion_codes.values())

    def usable(self, promo: dict[str, Any]) -> bool:
        """Whether the promotion code can be redeemed now (active, unexpired, not used up)."""
        expires = promo["expires_at"]
        limit = promo["max_redemptions"]
        return (
            promo["active"]
            and (expires is None or expires > self._state.timestamp())
            and (limit is None or promo["times_redeemed"] < limit)
        )

    def find_promotion_code(self, code: str) -> dict[str, Any] | None:
        """The usable promotion code with this customer-facing code (case-insensitive)."""
        for promo in self._codes():
            if promo["code"].lower() == code.lower() and self.usable(promo):
                return promo
        return None

    def redeemable(self, promotion_code_id: str) -> dict[str, Any]:
        """The promotion code ``promo_...`` if usable now, else Stripe's 400."""
        promo = self._state.promotion_codes.get(promotion_code_id)
        if promo is None:
            raise not_found("promotion_code", promotion_code_id)
        if not self.usable(promo):
            raise invalid(f"The promotion code {promo['code']!r} is not active.")
        return promo

    def redeem(self, promo: dict[str, Any]) -> dict[str, Any]:
        """Count one redemption; returns the coupon."""
        promo["times_redeemed"] += 1
        coupon = self._state.coupons[promo["promotion"]["coupon"]["id"]]
        coupon["times_redeemed"] += 1
        promo["promotion"]["coupon"] = copy.deepcopy(coupon)
        return coupon

    def set_promotion_code_active(self, promotion_code_id: str, active: bool) -> dict[str, Any]:
        """Activate or deactivate a promotion code; emits ``promotion_code.updated``."""
        state = self._state
        promo = state.promotion_codes.get(promotion_code_id)
        if promo is None:
            raise not_found("promotion_code", promotion_code_id)
        before = copy.deepcopy(promo)
        promo["active"] = active
        changes = diff(before, promo)
        if changes:
            state.emit("promotion_code.updated", promo, state.timestamp(), previous=changes)
        return promo
