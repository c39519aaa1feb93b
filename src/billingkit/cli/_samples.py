"""Realistic test events for ``billingkit events send``, from the test kit's JSON shapes.

Ids of the customer, subscription and session derive from the user id, so a sequence of
sends (``checkout.session.completed``, ``customer.subscription.created``, ``...updated``,
``...deleted``) tells one coherent story about one user. Event ids are random: sending the
same type twice makes two events, as Stripe would.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from billingkit.config import BillingConfig
from billingkit.domain import Interval
from billingkit.errors import InvalidInputError, UnknownPlanError

__all__ = ["SAMPLE_TYPES", "SampleSpec", "build_sample_event"]

_MONTH = 30 * 24 * 3600
#: A sample's ``data.object`` and its ``data.previous_attributes`` (or ``None``).
_Built = tuple[dict[str, Any], Mapping[str, Any] | None]


@dataclass(frozen=True)
class SampleSpec:
    """What the sample is about (from the command's options)."""

    user_id: str
    plan_key: str | None
    interval: str | None
    amount: int
    currency: str
    status: str | None
    now: int
    livemode: bool
    email: str | None = None


def _stable(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return f"{prefix}_cli{digest[:18]}"


def _price(config: BillingConfig, spec: SampleSpec) -> tuple[dict[str, Any], str]:
    """The price JSON of the chosen plan and interval, and the product's name."""
    from billingkit.testing._shapes import price_json

    paid = sorted((p for p in config.plans if not p.is_free), key=lambda p: (p.order, p.key))
    if spec.plan_key is not None:
        definition = config.plan_definition(spec.plan_key)
        if definition is None or definition.is_free:
            known = ", ".join(repr(p.key) for p in paid) or "none"
            raise UnknownPlanError(
                f"no paid plan {spec.plan_key!r} in the app's config (paid plans: {known})"
            )
    else:
        definition = paid[0] if paid else None
    if definition is None:
        # No paid plan configured: a made-up price, still in Stripe's shape.
        interval = Interval(spec.interval or "month")
        price_id, lookup_key, name = _stable("price", "sample"), None, "Sample plan"
    else:
        intervals = list(definition.prices)
        if spec.interval is not None:
            interval = Interval(spec.interval)
            if interval not in definition.prices:
                offered = ", ".join(i.value for i in intervals)
                raise UnknownPlanError(
                    f"plan {definition.key!r} has no {interval.value!r} price (has: {offered})"
                )
        else:
            interval = intervals[0]
        ref = definition.prices[interval]
        lookup_key = ref.lookup_key
        price_id = ref.price_id or _stable("price", lookup_key or "")
        name = definition.name
    if interval is Interval.ONE_TIME:
        raise InvalidInputError("subscription events need a recurring interval, not one_time")
    price = price_json(
        id=price_id,
        product=_stable("prod", name),
        created=spec.now - _MONTH,
        currency=spec.currency,
        unit_amount=spec.amount,
        interval=interval.value,
        interval_count=1,
        lookup_key=lookup_key,
        tiered=False,
        livemode=spec.livemode,
    )
    return price, name


def _ids(spec: SampleSpec) -> dict[str, str]:
    return {
        "customer": _stable("cus", spec.user_id),
        "subscription": _stable("sub", spec.user_id),
        "item": _stable("si", spec.user_id),
        "session": _stable("cs", spec.user_id),
        "invoice": _stable("in", spec.user_id, str(spec.now)),
    }


def _subscription(config: BillingConfig, spec: SampleSpec, status: str) -> dict[str, Any]:
    from billingkit.testing._shapes import subscription_item_json, subscription_json

    ids = _ids(spec)
    price, _ = _price(config, spec)
    start = spec.now
    item = subscription_item_json(
        id=ids["item"],
        subscription=ids["subscription"],
        price=price,
        quantity=1,
        created=start,
        period_start=start,
        period_end=start + _MONTH,
    )
    return subscription_json(
        id=ids["subscription"],
        customer=ids["customer"],
        created=start,
        currency=spec.currency,
        item=item,
        status=status,
        metadata={"user_id": spec.user_id},
        trial_start=None,
        trial_end=None,
        latest_invoice=None,
        livemode=spec.livemode,
    )


def _subscription_created(config: BillingConfig, spec: SampleSpec) -> _Built:
    return _subscription(config, spec, spec.status or "active"), None


def _subscription_updated(config: BillingConfig, spec: SampleSpec) -> _Built:
    status = spec.status or "active"
    sub = _subscription(config, spec, status)
    previous = "past_due" if status == "active" else "active"
    return sub, {"status": previous}


def _subscription_deleted(config: BillingConfig, spec: SampleSpec) -> _Built:
    sub = _subscription(config, spec, "canceled")
    sub["canceled_at"] = spec.now
    sub["ended_at"] = spec.now
    sub["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "reason": "cancellation_requested",
    }
    return sub, None


def _checkout_completed(config: BillingConfig, spec: SampleSpec) -> _Built:
    from billingkit.testing._shapes import checkout_session_json

    ids = _ids(spec)
    session = checkout_session_json(
        id=ids["session"],
        created=spec.now - 60,
        expires_at=spec.now + 24 * 3600,
        mode="subscription",
        customer=ids["customer"],
        client_reference_id=spec.user_id,
        metadata={"user_id": spec.user_id},
        success_url="https://example.com/billing/success?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://example.com/billing/cancel",
        amount_total=spec.amount,
        currency=spec.currency,
        allow_promotion_codes=False,
        livemode=spec.livemode,
    )
    session.update(
        status="complete",
        payment_status="paid",
        subscription=ids["subscription"],
        invoice=ids["invoice"],
        url=None,
        customer_details={
            "address": None,
            "business_name": None,
            "email": spec.email,
            "individual_name": None,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
    )
    return session, None


def _invoice(config: BillingConfig, spec: SampleSpec, *, paid: bool) -> dict[str, Any]:
    from billingkit.testing._shapes import invoice_json

    ids = _ids(spec)
    sub = _subscription(config, spec, "active" if paid else "past_due")
    _, product_name = _price(config, spec)
    invoice = invoice_json(
        id=ids["invoice"],
        number=f"CLI-{ids['invoice'][-6:].upper()}",
        customer=ids["customer"],
        customer_email=spec.email,
        subscription=sub,
        product_name=product_name,
        line_id=_stable("il", ids["invoice"]),
        created=spec.now,
        billing_reason="subscription_cycle",
        amount=spec.amount,
        livemode=spec.livemode,
    )
    invoice["status"] = "paid" if paid else "open"
    invoice["attempt_count"] = 1
    invoice["attempted"] = True
    invoice["effective_at"] = spec.now
    invoice["status_transitions"]["finalized_at"] = spec.now
    if paid:
        invoice["amount_paid"] = spec.amount
        invoice["amount_remaining"] = 0
        invoice["status_transitions"]["paid_at"] = spec.now
    else:
        invoice["next_payment_attempt"] = spec.now + 3 * 24 * 3600
    return invoice


def _invoice_paid(config: BillingConfig, spec: SampleSpec) -> _Built:
    return _invoice(config, spec, paid=True), None


def _invoice_payment_failed(config: BillingConfig, spec: SampleSpec) -> _Built:
    return _invoice(config, spec, paid=False), None


#: Event type -> builder of its ``data.object`` (and ``previous_attributes``).
SAMPLE_TYPES: Mapping[str, Callable[[BillingConfig, SampleSpec], _Built]] = {
    "checkout.session.completed": _checkout_completed,
    "customer.subscription.created": _subscription_created,
    "customer.subscription.updated": _subscription_updated,
    "customer.subscription.deleted": _subscription_deleted,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
}


def build_sample_event(event_type: str, config: BillingConfig, spec: SampleSpec) -> dict[str, Any]:
    """A Stripe event envelope of ``event_type`` about ``spec``'s user, created ``spec.now``."""
    from billingkit.testing import build_event

    data_object, previous = SAMPLE_TYPES[event_type](config, spec)
    return build_event(
        event_type,
        data_object,
        created=spec.now,
        event_id=f"evt_cli{secrets.token_hex(12)}",
        previous_attributes=previous,
        livemode=spec.livemode,
    )
