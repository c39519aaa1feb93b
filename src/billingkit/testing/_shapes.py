"""Stripe JSON objects in the shape of API version 2026-07-29.dahlia, built for the fake.

Each function returns a fresh plain dict with the fields Stripe sends (values the fake does
not model are the defaults Stripe uses for a plain card subscription). Compare with
``tests/fixtures/stripe/openapi/2026-07-29_*``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from billingkit.domain import Money

__all__ = [
    "checkout_session_json",
    "coupon_json",
    "customer_json",
    "invoice_json",
    "line_json",
    "payment_intent_json",
    "plan_json",
    "price_json",
    "product_json",
    "promotion_code_json",
    "schedule_phase_json",
    "subscription_item_json",
    "subscription_json",
    "subscription_schedule_json",
]


def customer_json(
    *, id: str, created: int, email: str | None, metadata: Mapping[str, str], livemode: bool
) -> dict[str, Any]:
    """A ``customer`` object."""
    return {
        "id": id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": id[-8:].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": livemode,
        "metadata": dict(metadata),
        "name": None,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def product_json(*, id: str, name: str, created: int, livemode: bool) -> dict[str, Any]:
    """A ``product`` object."""
    return {
        "id": id,
        "object": "product",
        "active": True,
        "created": created,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": livemode,
        "marketing_features": [],
        "metadata": {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }


def price_json(
    *,
    id: str,
    product: str,
    created: int,
    currency: str,
    unit_amount: int | None,
    interval: str | None,
    interval_count: int,
    lookup_key: str | None,
    tiered: bool,
    livemode: bool,
) -> dict[str, Any]:
    """A ``price`` object; ``interval`` ``None`` makes a one-time price."""
    recurring = (
        None
        if interval is None
        else {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
    )
    return {
        "id": id,
        "object": "price",
        "active": True,
        "billing_scheme": "tiered" if tiered else "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": lookup_key,
        "metadata": {},
        "nickname": None,
        "product": product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": "graduated" if tiered else None,
        "transform_quantity": None,
        "type": "one_time" if interval is None else "recurring",
        "unit_amount": None if tiered else unit_amount,
        "unit_amount_decimal": None if tiered or unit_amount is None else str(unit_amount),
    }


def plan_json(price: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` view of a recurring price, as subscription items still carry."""
    recurring = price["recurring"]
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "livemode": price["livemode"],
        "metadata": {},
        "meter": None,
        "nickname": None,
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def subscription_item_json(
    *,
    id: str,
    subscription: str,
    price: Mapping[str, Any],
    quantity: int,
    created: int,
    period_start: int,
    period_end: int,
) -> dict[str, Any]:
    """A ``subscription_item`` with its expanded price and its own period (basil+)."""
    return {
        "id": id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "discounts": [],
        "metadata": {},
        "plan": plan_json(price),
        "price": copy.deepcopy(dict(price)),
        "quantity": quantity,
        "subscription": subscription,
        "tax_rates": [],
    }


def subscription_json(
    *,
    id: str,
    customer: str,
    created: int,
    currency: str,
    item: dict[str, Any],
    status: str,
    metadata: Mapping[str, str],
    trial_start: int | None,
    trial_end: int | None,
    latest_invoice: str | None,
    livemode: bool,
) -> dict[str, Any]:
    """A ``subscription`` object (no period on the subscription itself: basil+)."""
    return {
        "id": id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": item["current_period_end"] if trial_end else created,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "flexible", "flexible": {"proration_discounts": "included"}},
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": [item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={id}",
        },
        "latest_invoice": latest_invoice,
        "livemode": livemode,
        "metadata": dict(metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": created,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": trial_start,
    }


def invoice_json(
    *,
    id: str,
    number: str,
    customer: str,
    customer_email: str | None,
    subscription: Mapping[str, Any],
    product_name: str,
    line_id: str,
    created: int,
    billing_reason: str,
    amount: int,
    livemode: bool,
) -> dict[str, Any]:
    """A draft subscription ``invoice`` with one line for the subscription's item.

    The subscription is referenced only through ``parent.subscription_details`` and the
    line's ``parent.subscription_item_details`` (basil+; no ``invoice.subscription``).
    """
    item = subscription["items"]["data"][0]
    price = item["price"]
    quantity = item["quantity"]
    currency = price["currency"]
    unit = price["unit_amount"]
    description = f"{quantity} × {product_name}"  # noqa: RUF001 - Stripe's own wording
    if unit is not None and price["recurring"] is not None:
        money = Money(amount=unit, currency=currency)
        description += f" (at {money} / {price['recurring']['interval']})"
    line = line_json(
        id=line_id,
        invoice=id,
        subscription=subscription,
        price=price,
        quantity=quantity,
        amount=amount,
        description=description,
        period_start=item["current_period_start"],
        period_end=item["current_period_end"],
        proration=False,
        livemode=livemode,
    )
    return {
        "id": id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "billingkit fake",
        "account_tax_ids": None,
        "amount_due": amount,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": amount,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer,
        "customer_account": None,
        "customer_email": customer_email,
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": [line],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{id}/lines",
        },
        "livemode": livemode,
        "metadata": {},
        "next_payment_attempt": None,
        "number": number,
        "on_behalf_of": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
            "type": "subscription_details",
        },
        "period_end": item["current_period_start"],
        "period_start": item["current_period_start"],
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "test_clock": None,
        "total": amount,
        "total_discount_amounts": [],
        "total_excluding_tax": amount,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }


def checkout_session_json(
    *,
    id: str,
    created: int,
    expires_at: int,
    mode: str,
    customer: str,
    client_reference_id: str,
    metadata: Mapping[str, str],
    success_url: str,
    cancel_url: str,
    amount_total: int,
    currency: str,
    allow_promotion_codes: bool,
    livemode: bool,
) -> dict[str, Any]:
    """An open ``checkout.session``."""
    return {
        "id": id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": allow_promotion_codes,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "custom_fields": [],
        "customer": customer,
        "customer_account": None,
        "customer_creation": None,
        "customer_details": None,
        "customer_email": None,
        "discounts": [],
        "expires_at": expires_at,
        "invoice": None,
        "invoice_creation": None,
        "livemode": livemode,
        "locale": None,
        "metadata": dict(metadata),
        "mode": mode,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": f"https://checkout.stripe.com/c/pay/{id}",
    }


def payment_intent_json(
    *, id: str, created: int, amount: int, currency: str, customer: str, livemode: bool
) -> dict[str, Any]:
    """A ``payment_intent`` that succeeded (one-time purchases)."""
    return {
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount,
        "capture_method": "automatic_async",
        "client_secret": None,
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": livemode,
        "metadata": {},
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": "succeeded",
    }


def line_json(
    *,
    id: str,
    invoice: str | None,
    subscription: Mapping[str, Any],
    price: Mapping[str, Any],
    quantity: int,
    amount: int,
    description: str,
    period_start: int,
    period_end: int,
    proration: bool,
    livemode: bool,
) -> dict[str, Any]:
    """An invoice ``line_item`` for a subscription item: a period of a price or a proration."""
    item = subscription["items"]["data"][0]
    return {
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": price["currency"],
        "description": description,
        "discount_amounts": [],
        "discountable": not proration,
        "discounts": [],
        "invoice": invoice,
        "livemode": livemode,
        "metadata": {},
        "parent": {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        "quantity": quantity,
        "subtotal": amount,
        "taxes": [],
    }


def coupon_json(
    *,
    id: str,
    created: int,
    percent_off: float | None,
    amount_off: int | None,
    currency: str | None,
    duration: str,
    duration_in_months: int | None,
    livemode: bool,
) -> dict[str, Any]:
    """A ``coupon`` object."""
    return {
        "id": id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": created,
        "currency": currency,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": livemode,
        "max_redemptions": None,
        "metadata": {},
        "name": None,
        "percent_off": percent_off,
        "redeem_by": None,
        "times_redeemed": 0,
        "valid": True,
    }


def promotion_code_json(
    *,
    id: str,
    code: str,
    coupon: Mapping[str, Any],
    created: int,
    expires_at: int | None,
    max_redemptions: int | None,
    active: bool,
    livemode: bool,
) -> dict[str, Any]:
    """A ``promotion_code`` (clover+ shape: the coupon under ``promotion``)."""
    return {
        "id": id,
        "object": "promotion_code",
        "active": active,
        "code": code,
        "created": created,
        "customer": None,
        "customer_account": None,
        "expires_at": expires_at,
        "livemode": livemode,
        "max_redemptions": max_redemptions,
        "metadata": {},
        "promotion": {"coupon": copy.deepcopy(dict(coupon)), "type": "coupon"},
        "restrictions": {
            "first_time_transaction": False,
            "minimum_amount": None,
            "minimum_amount_currency": None,
        },
        "times_redeemed": 0,
    }


def schedule_phase_json(
    *, price: str, quantity: int, start: int, end: int | None, proration_behavior: str
) -> dict[str, Any]:
    """One ``phases[]`` entry of a subscription schedule."""
    return {
        "add_invoice_items": [],
        "application_fee_percent": None,
        "billing_cycle_anchor": None,
        "collection_method": None,
        "currency": None,
        "default_payment_method": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "end_date": end,
        "invoice_settings": None,
        "items": [
            {
                "discounts": [],
                "metadata": {},
                "plan": price,
                "price": price,
                "quantity": quantity,
                "tax_rates": [],
            }
        ],
        "metadata": {},
        "on_behalf_of": None,
        "proration_behavior": proration_behavior,
        "start_date": start,
        "transfer_data": None,
        "trial_end": None,
    }


def subscription_schedule_json(
    *,
    id: str,
    customer: str,
    subscription: str,
    created: int,
    phases: list[dict[str, Any]],
    metadata: Mapping[str, str],
    livemode: bool,
) -> dict[str, Any]:
    """An active ``subscription_schedule`` (``end_behavior`` ``release``)."""
    first = phases[0]
    return {
        "id": id,
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"type": "flexible"},
        "canceled_at": None,
        "completed_at": None,
        "created": created,
        "current_phase": {"end_date": first["end_date"], "start_date": first["start_date"]},
        "customer": customer,
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "automatic_tax": {"enabled": False, "liability": None},
            "billing_cycle_anchor": "automatic",
            "billing_thresholds": None,
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
            "invoice_settings": {"account_tax_ids": None, "days_until_due": None},
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": "release",
        "livemode": livemode,
        "metadata": dict(metadata),
        "phases": phases,
        "released_at": None,
        "released_subscription": None,
        "status": "active",
        "subscription": subscription,
        "test_clock": None,
    }
