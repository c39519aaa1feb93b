"""Read Stripe JSON objects of any API era into billingkit values.

Every function takes a plain mapping — a ``data.object`` from a webhook payload, or an SDK
object's ``to_dict()`` — and returns one of billingkit's frozen values. They are pure (no
I/O), tolerant of the shapes Stripe used over the years, and fast: the few fields needed are
read directly and checked here, so no pydantic re-validation of the (large) Stripe object is
done per call.

The big shape moves they know about:

* ``current_period_start``/``current_period_end`` live on the subscription up to
  2025-01-27.acacia and on each subscription *item* from 2025-03-31.basil on. When they are on
  the items, the subscription's period is the **earliest start and the latest end across its
  items** (for the usual single-item subscription that is simply the item's period).
* Subscription items carry ``price`` (2020+) and the legacy ``plan``; very old subscriptions
  also carry ``plan`` and ``quantity`` on the subscription itself.
* An invoice's subscription moved from ``invoice.subscription`` to
  ``invoice.parent.subscription_details.subscription`` in basil
  (see :func:`invoice_subscription_id`).
* Any reference (customer, price, product, subscription, payment intent) may be an id string
  or an expanded object with an ``id``.

Malformed input raises :class:`~billingkit.errors.WebhookPayloadError` whose message names the
offending field (e.g. ``subscription.status: unknown value 'frozen'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel

from billingkit.domain import Interval, Price, Subscription, SubscriptionStatus
from billingkit.domain.invoices import Invoice
from billingkit.domain.money import Money
from billingkit.errors import WebhookPayloadError
from billingkit.ports import CheckoutSession, PortalSession, StripeCustomer

__all__ = [
    "checkout_session_from_stripe",
    "customer_from_stripe",
    "invoice_from_stripe",
    "invoice_subscription_id",
    "portal_session_from_stripe",
    "previous_price_id",
    "previous_status",
    "price_from_stripe",
    "subscription_from_stripe",
]

_STATUSES: dict[str, SubscriptionStatus] = {s.value: s for s in SubscriptionStatus}
_INTERVALS: dict[str, Interval] = {
    i.value: i for i in Interval if i is not Interval.ONE_TIME
}
_SESSION_MODES = frozenset({"subscription", "payment", "setup"})
_SESSION_STATUSES = frozenset({"open", "complete", "expired"})
_PAYMENT_STATUSES = frozenset({"paid", "unpaid", "no_payment_required"})


# --------------------------------------------------------------------------- construction

_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def _build(cls: type[_M], **values: Any) -> _M:
    """Instantiate ``cls`` from values this module already checked, without re-validation.

    Pydantic's ``model_construct`` costs ~9 µs for a subscription (more than validating);
    this sets the same four attributes it sets. When ``values`` does not name exactly the
    model's fields (a field added later), it falls back to ``model_construct``, which fills
    defaults.
    """
    if values.keys() != cls.model_fields.keys():
        return cls.model_construct(**values)
    instance = _new(cls)
    _set(instance, "__dict__", values)
    _set(instance, "__pydantic_fields_set__", set(values))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance


# --------------------------------------------------------------------------- field readers


def _fail(kind: str, field: str, problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"{kind}.{field}: {problem}")


def _mapping(obj: object, kind: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise WebhookPayloadError(f"{kind}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: Mapping[str, Any], field: str, kind: str) -> str:
    value = obj.get(field)
    if type(value) is str and value:
        return value
    if value is None:
        raise _fail(kind, field, "missing")
    raise _fail(kind, field, f"expected a non-empty string, got {type(value).__name__}")


def _opt_str(obj: Mapping[str, Any], field: str, kind: str) -> str | None:
    value = obj.get(field)
    if value is None or type(value) is str:
        return value
    raise _fail(kind, field, f"expected a string, got {type(value).__name__}")


def _ref(obj: Mapping[str, Any], field: str, kind: str) -> str | None:
    """An id given as a string or as an expanded object with an ``id``."""
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is str:
        return value or None
    if isinstance(value, Mapping):
        ident = value.get("id")
        if type(ident) is str and ident:
            return ident
        raise _fail(kind, f"{field}.id", "missing in the expanded object")
    raise _fail(kind, field, f"expected an id or an object, got {type(value).__name__}")


def _time(seconds: object, kind: str, field: str) -> datetime | None:
    if seconds is None:
        return None
    if type(seconds) is int or type(seconds) is float:
        return datetime.fromtimestamp(cast("float", seconds), tz=timezone.utc)
    raise _fail(kind, field, f"expected Unix seconds, got {type(seconds).__name__}")


def _req_time(obj: Mapping[str, Any], field: str, kind: str) -> datetime:
    moment = _time(obj.get(field), kind, field)
    if moment is None:
        raise _fail(kind, field, "missing")
    return moment


def _int(obj: Mapping[str, Any], field: str, kind: str) -> int | None:
    value = obj.get(field)
    if value is None or (type(value) is int):
        return value
    raise _fail(kind, field, f"expected an integer, got {type(value).__name__}")


def _bool(obj: Mapping[str, Any], field: str, kind: str) -> bool:
    value = obj.get(field)
    if value is None:
        return False
    if type(value) is bool:
        return value
    raise _fail(kind, field, f"expected a boolean, got {type(value).__name__}")


def _metadata(obj: Mapping[str, Any], kind: str) -> dict[str, str]:
    value = obj.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(kind, "metadata", f"expected an object, got {type(value).__name__}")
    result: dict[str, str] = {}
    for key, item in value.items():
        if type(item) is not str:
            if item is None or isinstance(item, (Mapping, list)):
                raise _fail(kind, f"metadata.{key}", "expected a string")
            item = str(item)
        result[str(key)] = item
    return result


def _list_data(obj: Mapping[str, Any], field: str, kind: str) -> list[Any]:
    """The ``data`` of a Stripe list (``{"object": "list", "data": [...]}``), or ``[]``."""
    value = obj.get(field)
    if value is None:
        return []
    if isinstance(value, Mapping):
        value = value.get("data")
        if value is None:
            return []
    if isinstance(value, list):
        return value
    raise _fail(kind, field, "expected a list")


# --------------------------------------------------------------------------- subscriptions


def subscription_from_stripe(obj: Mapping[str, Any]) -> Subscription:
    """A :class:`~billingkit.domain.Subscription` from a Stripe subscription object.

    Works for every API version: the period comes from the subscription (before basil) or
    from its items (basil and later: earliest ``current_period_start``, latest
    ``current_period_end``). ``price_id`` and ``quantity`` come from the first item (its
    ``price``, else its legacy ``plan``; else the subscription's own legacy ``plan``).
    ``user_id`` is the ``metadata["user_id"]`` if present. ``plan_key`` is left ``None``: the
    plan follows from the price (through the catalog), since metadata set at checkout goes
    stale after a plan change. ``watermark`` is 0.

    Raises :class:`~billingkit.errors.WebhookPayloadError` naming the bad field (missing id,
    customer or created, unknown status, wrong types).
    """
    kind = "subscription"
    sub = _mapping(obj, kind)
    sub_id = _str(sub, "id", kind)
    customer_id = _ref(sub, "customer", kind)
    if customer_id is None:
        raise _fail(kind, "customer", "missing")
    raw_status = sub.get("status")
    status = _STATUSES.get(raw_status) if type(raw_status) is str else None
    if status is None:
        raise _fail(kind, "status", f"unknown value {raw_status!r}")

    items = _list_data(sub, "items", kind)
    period_start = _time(sub.get("current_period_start"), kind, "current_period_start")
    period_end = _time(sub.get("current_period_end"), kind, "current_period_end")
    price_id: str | None = None
    quantity: int | None = None
    if items:
        first = _mapping(items[0], "subscription.items.data[0]")
        price_id = _ref(first, "price", "subscription.items.data[0]") or _ref(
            first, "plan", "subscription.items.data[0]"
        )
        quantity = _int(first, "quantity", "subscription.items.data[0]")
        if period_start is None and period_end is None:
            period_start, period_end = _item_period(items)
    if price_id is None:
        price_id = _ref(sub, "plan", kind)
    if quantity is None:
        quantity = _int(sub, "quantity", kind)
    metadata = _metadata(sub, kind)

    return _build(
        Subscription,
        id=sub_id,
        customer_id=customer_id,
        user_id=metadata.get("user_id") or None,
        status=status,
        price_id=price_id,
        plan_key=None,
        quantity=1 if quantity is None else quantity,
        current_period_start=period_start,
        current_period_end=period_end,
        cancel_at_period_end=_bool(sub, "cancel_at_period_end", kind),
        cancel_at=_time(sub.get("cancel_at"), kind, "cancel_at"),
        canceled_at=_time(sub.get("canceled_at"), kind, "canceled_at"),
        ended_at=_time(sub.get("ended_at"), kind, "ended_at"),
        trial_start=_time(sub.get("trial_start"), kind, "trial_start"),
        trial_end=_time(sub.get("trial_end"), kind, "trial_end"),
        created=_req_time(sub, "created", kind),
        livemode=_bool(sub, "livemode", kind),
        metadata=metadata,
        watermark=0,
    )


def _item_period(items: list[Any]) -> tuple[datetime | None, datetime | None]:
    """Earliest start and latest end of the items' own periods (basil and later)."""
    start: int | float | None = None
    end: int | float | None = None
    for index, raw in enumerate(items):
        kind = f"subscription.items.data[{index}]"
        item = _mapping(raw, kind)
        item_start = item.get("current_period_start")
        item_end = item.get("current_period_end")
        if item_start is not None:
            if type(item_start) is not int and type(item_start) is not float:
                raise _fail(kind, "current_period_start", "expected Unix seconds")
            start = item_start if start is None else min(start, item_start)
        if item_end is not None:
            if type(item_end) is not int and type(item_end) is not float:
                raise _fail(kind, "current_period_end", "expected Unix seconds")
            end = item_end if end is None else max(end, item_end)
    return _time(start, "subscription", "items"), _time(end, "subscription", "items")


# --------------------------------------------------------------------------- prices


def price_from_stripe(
    obj: Mapping[str, Any], product: Mapping[str, Any] | None = None
) -> Price:
    """A :class:`~billingkit.domain.Price` from a Stripe price or legacy plan object.

    The product name comes from an expanded ``product`` object, else from ``product`` (the
    separately fetched product object), else from a legacy plan's own ``name``. One-time
    prices get :attr:`Interval.ONE_TIME`; recurring ones their ``recurring.interval`` (plans:
    ``interval``). Tiered prices (and custom-amount ones) have ``unit_amount`` ``None``.
    Pre-2018 plans have no product: ``product_id`` is then ``""``.
    """
    kind = str(obj.get("object") or "price") if isinstance(obj, Mapping) else "price"
    price = _mapping(obj, kind)
    price_id = _str(price, "id", kind)
    currency = price.get("currency")
    if type(currency) is not str or len(currency) != 3 or not currency.isalpha():
        raise _fail(kind, "currency", f"expected an ISO currency code, got {currency!r}")

    raw_product = price.get("product")
    product_id = _ref(price, "product", kind) or ""
    product_name: str | None = None
    if isinstance(raw_product, Mapping):
        product_name = _opt_str(raw_product, "name", f"{kind}.product")
    elif product is not None:
        product = _mapping(product, "product")
        if product_id and product.get("id") not in (None, product_id):
            raise _fail(kind, "product", "does not match the given product object")
        product_name = _opt_str(product, "name", "product")
        product_id = product_id or _str(product, "id", "product")
    if product_name is None:
        product_name = _opt_str(price, "name", kind)

    interval, interval_count = _price_interval(price, kind)
    billing_scheme = price.get("billing_scheme") or "per_unit"
    if billing_scheme not in ("per_unit", "tiered"):
        raise _fail(kind, "billing_scheme", f"unknown value {billing_scheme!r}")
    amount_field = "unit_amount" if "unit_amount" in price else "amount"
    unit_amount = _int(price, amount_field, kind)
    if billing_scheme == "tiered":
        unit_amount = None
    active = price.get("active")

    return _build(
        Price,
        id=price_id,
        product_id=product_id,
        product_name=product_name,
        lookup_key=_opt_str(price, "lookup_key", kind),
        currency=currency.lower(),
        unit_amount=unit_amount,
        interval=interval,
        interval_count=interval_count,
        active=True if active is None else bool(active),
        billing_scheme=cast("Literal['per_unit', 'tiered']", billing_scheme),
        livemode=_bool(price, "livemode", kind),
    )


def _price_interval(price: Mapping[str, Any], kind: str) -> tuple[Interval, int]:
    recurring = price.get("recurring")
    if isinstance(recurring, Mapping):
        source, where = recurring, f"{kind}.recurring"
    elif recurring is None and price.get("type") != "one_time" and "interval" in price:
        source, where = price, kind  # legacy plan, or a hand-made price in plan shape
    else:
        if price.get("type") == "recurring":
            raise _fail(kind, "recurring", "missing on a recurring price")
        return Interval.ONE_TIME, 1
    raw = source.get("interval")
    interval = _INTERVALS.get(raw) if type(raw) is str else None
    if interval is None:
        raise _fail(where, "interval", f"unknown value {raw!r}")
    count = _int(source, "interval_count", where)
    return interval, 1 if count is None else count


# --------------------------------------------------------------------------- customers


def customer_from_stripe(obj: Mapping[str, Any]) -> StripeCustomer:
    """A :class:`~billingkit.ports.StripeCustomer` from a Stripe customer object.

    A deleted customer (``{"id": ..., "object": "customer", "deleted": true}``) gives
    ``deleted=True`` with everything else empty.
    """
    kind = "customer"
    customer = _mapping(obj, kind)
    return _build(
        StripeCustomer,
        id=_str(customer, "id", kind),
        email=_opt_str(customer, "email", kind),
        name=_opt_str(customer, "name", kind),
        metadata=_metadata(customer, kind),
        deleted=_bool(customer, "deleted", kind),
        livemode=_bool(customer, "livemode", kind),
    )


# --------------------------------------------------------------------------- sessions


def checkout_session_from_stripe(
    obj: Mapping[str, Any], *, created_fallback: datetime | None = None
) -> CheckoutSession:
    """A :class:`~billingkit.ports.CheckoutSession` from a Stripe Checkout Session object.

    An expanded ``subscription`` fills both ``subscription_id`` and ``subscription``; an id
    fills ``subscription_id`` only. ``customer_email`` falls back to
    ``customer_details.email`` (what the customer typed on the payment page).

    Sessions from 2019/2020 API versions lack some fields: a missing ``mode`` is inferred
    (``subscription`` if a subscription is set, ``setup`` if a setup intent is, else
    ``payment``), a missing ``payment_status`` reads as ``"unpaid"`` (never trust an old
    session as paid without looking at its payment), and a missing ``created`` takes
    ``created_fallback`` (e.g. the event's ``created``) or raises.
    """
    kind = "checkout.session"
    session = _mapping(obj, kind)
    mode = session.get("mode")
    if mode is None:
        if session.get("subscription") is not None:
            mode = "subscription"
        elif session.get("setup_intent") is not None:
            mode = "setup"
        else:
            mode = "payment"
    elif mode not in _SESSION_MODES:
        raise _fail(kind, "mode", f"unknown value {mode!r}")
    status = session.get("status")
    if status is not None and status not in _SESSION_STATUSES:
        raise _fail(kind, "status", f"unknown value {status!r}")
    payment_status = session.get("payment_status", "unpaid")
    if payment_status not in _PAYMENT_STATUSES:
        raise _fail(kind, "payment_status", f"unknown value {payment_status!r}")
    created = _time(session.get("created"), kind, "created") or created_fallback
    if created is None:
        raise _fail(kind, "created", "missing")

    raw_subscription = session.get("subscription")
    subscription: Subscription | None = None
    if isinstance(raw_subscription, Mapping):
        subscription = subscription_from_stripe(raw_subscription)
    email = _opt_str(session, "customer_email", kind)
    if email is None:
        details = session.get("customer_details")
        if isinstance(details, Mapping):
            email = _opt_str(details, "email", f"{kind}.customer_details")
    currency = _opt_str(session, "currency", kind)

    return _build(
        CheckoutSession,
        id=_str(session, "id", kind),
        url=_opt_str(session, "url", kind),
        mode=cast("Literal['subscription', 'payment', 'setup']", mode),
        status=cast("Literal['open', 'complete', 'expired'] | None", status),
        payment_status=cast("Literal['paid', 'unpaid', 'no_payment_required']", payment_status),
        customer_id=_ref(session, "customer", kind),
        customer_email=email,
        client_reference_id=_opt_str(session, "client_reference_id", kind),
        metadata=_metadata(session, kind),
        subscription_id=_ref(session, "subscription", kind),
        subscription=subscription,
        payment_intent_id=_ref(session, "payment_intent", kind),
        amount_total=_int(session, "amount_total", kind),
        currency=currency.lower() if currency else None,
        created=created,
        expires_at=_time(session.get("expires_at"), kind, "expires_at"),
        livemode=_bool(session, "livemode", kind),
    )


def portal_session_from_stripe(obj: Mapping[str, Any]) -> PortalSession:
    """A :class:`~billingkit.ports.PortalSession` from a Stripe billing-portal session."""
    kind = "billing_portal.session"
    session = _mapping(obj, kind)
    customer_id = _ref(session, "customer", kind)
    if customer_id is None:
        raise _fail(kind, "customer", "missing")
    return _build(
        PortalSession,
        id=_str(session, "id", kind),
        url=_str(session, "url", kind),
        customer_id=customer_id,
        return_url=_opt_str(session, "return_url", kind),
    )


# --------------------------------------------------------------------------- invoices


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The id of the subscription an invoice (or invoice payment) belongs to, if any.

    Looks, in order, at ``invoice.subscription`` (before basil),
    ``invoice.parent.subscription_details.subscription`` (basil and later), then the lines:
    ``line.parent.subscription_item_details.subscription``, ``line.subscription``, or (2018
    era) the id of a ``type: "subscription"`` line, which was the subscription's id.
    Returns ``None`` for an invoice outside any subscription (a one-off invoice).
    """
    kind = "invoice"
    inv = _mapping(invoice, kind)
    found = _ref(inv, "subscription", kind)
    if found is not None:
        return found
    parent = inv.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            found = _ref(details, "subscription", "invoice.parent.subscription_details")
            if found is not None:
                return found
    for index, raw in enumerate(_list_data(inv, "lines", kind)):
        line = _mapping(raw, f"invoice.lines.data[{index}]")
        line_parent = line.get("parent")
        if isinstance(line_parent, Mapping):
            details = line_parent.get("subscription_item_details")
            if isinstance(details, Mapping):
                found = _ref(details, "subscription", f"invoice.lines.data[{index}].parent")
                if found is not None:
                    return found
        found = _ref(line, "subscription", f"invoice.lines.data[{index}]")
        if found is not None:
            return found
        # 2018 era: the id of a subscription line was the subscription's id.
        line_id = line.get("id")
        if line.get("type") == "subscription" and str(line_id).startswith("sub_"):
            return str(line_id)
    return None


# --------------------------------------------------------------------------- invoice values


def invoice_from_stripe(obj: Mapping[str, Any]) -> Invoice:
    """An :class:`~billingkit.domain.invoices.Invoice` from a Stripe invoice object.

    ``subscription_id`` as :func:`invoice_subscription_id` finds it (every era).
    ``amount_due`` needs both ``amount_due`` and a string ``currency`` (else ``None``).
    Raises :class:`~billingkit.errors.WebhookPayloadError` naming the bad field.
    """
    kind = "invoice"
    inv = _mapping(obj, kind)
    subscription_id = invoice_subscription_id(inv)
    invoice_id = inv.get("id")
    if type(invoice_id) is not str or not invoice_id:
        raise _fail(kind, "id", "missing")
    amount = _int(inv, "amount_due", kind)
    currency = inv.get("currency")
    amount_due: Money | None = None
    if amount is not None and type(currency) is str:
        try:
            amount_due = Money(amount=amount, currency=currency)
        except ValueError:
            raise _fail(kind, "currency", f"bad value {currency!r}") from None
    return _build(
        Invoice,
        id=invoice_id,
        customer_id=_ref(inv, "customer", kind),
        subscription_id=subscription_id,
        amount_due=amount_due,
        attempt_count=_int(inv, "attempt_count", kind),
        next_payment_attempt=_time(inv.get("next_payment_attempt"), kind, "next_payment_attempt"),
        hosted_invoice_url=_opt_str(inv, "hosted_invoice_url", kind),
    )


# --------------------------------------------------------------------------- previous attributes


def previous_status(previous: Mapping[str, Any]) -> SubscriptionStatus | None:
    """The status in an update's ``data.previous_attributes``, if the update changed it."""
    raw = previous.get("status")
    if raw is None:
        return None
    status = _STATUSES.get(raw) if type(raw) is str else None
    if status is None:
        raise _fail("data.previous_attributes", "status", f"unknown value {raw!r}")
    return status


def previous_price_id(previous: Mapping[str, Any]) -> str | None:
    """The first item's price (or legacy plan) before an update, if the update changed it.

    Read from ``data.previous_attributes``: ``items.data[0].price`` (or ``.plan``), else the
    legacy subscription-level ``plan``. Ids may be strings or expanded objects.
    """
    kind = "data.previous_attributes"
    items = previous.get("items")
    if isinstance(items, Mapping):
        data = items.get("data")
        if isinstance(data, list) and data and isinstance(data[0], Mapping):
            first = data[0]
            where = f"{kind}.items.data[0]"
            return _ref(first, "price", where) or _ref(first, "plan", where)
    return _ref(previous, "plan", kind)
