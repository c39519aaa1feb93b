"""Read Stripe JSON objects of any API era into billingkit values.

Every function takes a plain mapping (a webhook's ``data.object``, or an SDK object's
``to_dict()``) and returns one of billingkit's frozen values. They are pure, read only the
fields they need directly (no pydantic re-validation of the large Stripe object), know the
big shape moves of the API (periods on subscription items since basil, ``price`` vs the
legacy ``plan``, the invoice's subscription under ``parent.subscription_details``, ``created``
<- ``start_date`` <- ``start``), and type- and range-check every field they read: malformed
input raises only ``WebhookPayloadError`` naming the field. The era fallbacks and the limits
are tabled in ``docs/stripe-api-versions.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel

from billingkit.domain import Interval, Price, Subscription, SubscriptionStatus
from billingkit.domain.invoices import ChargeRecord, Dispute, InvoiceStatus, InvoiceSummary
from billingkit.domain.money import Money
from billingkit.domain.payment_methods import (
    EntitlementSummary,
    PaymentMethodSummary,
    SetupIntentOutcome,
)
from billingkit.errors import WebhookPayloadError
from billingkit.ports import (
    CheckoutSession,
    InvoiceLine,
    InvoicePreview,
    MeterEvent,
    PortalSession,
    PromotionCode,
    StripeCustomer,
    SubscriptionSchedule,
    SubscriptionSchedulePhase,
    SubscriptionUpdateResult,
    WebhookEndpoint,
)

__all__ = [
    "charge_from_stripe",
    "checkout_session_from_stripe",
    "customer_default_payment_method",
    "customer_from_stripe",
    "dispute_from_stripe",
    "entitlement_summary_from_stripe",
    "invoice_from_stripe",
    "invoice_payment_from_stripe",
    "invoice_preview_from_stripe",
    "invoice_subscription_id",
    "meter_event_from_stripe",
    "payment_method_from_stripe",
    "portal_session_from_stripe",
    "previous_price_id",
    "previous_status",
    "price_from_stripe",
    "promotion_code_from_stripe",
    "setup_intent_from_stripe",
    "subscription_from_stripe",
    "subscription_item_id",
    "subscription_schedule_from_stripe",
    "subscription_update_result_from_stripe",
    "webhook_endpoint_from_stripe",
]

_STATUSES: dict[str, SubscriptionStatus] = {s.value: s for s in SubscriptionStatus}
_INTERVALS: dict[str, Interval] = {i.value: i for i in Interval if i is not Interval.ONE_TIME}
_SESSION_MODES = frozenset({"subscription", "payment", "setup"})
_SESSION_STATUSES = frozenset({"open", "complete", "expired"})
_PAYMENT_STATUSES = frozenset({"paid", "unpaid", "no_payment_required"})
_BILLING_SCHEMES = frozenset({"per_unit", "tiered"})
_PRICE_TYPES = frozenset({"one_time", "recurring"})


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


#: Unix seconds a timestamp may take: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MAX_TIMESTAMP = 253_402_300_799
#: Amounts and other integers must fit a signed 64-bit column (BIGINT, SQLite INTEGER).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
#: Quantities are stored in a 32-bit INTEGER column on every database.
_QUANTITY_MAX = 2**31 - 1
#: Stripe's longest recurring interval is three years (36 months, 156 weeks, 1095 days).
_INTERVAL_COUNT_MAX = 1095
#: Ids are stored in VARCHAR(255) columns; Stripe's ids are shorter.
_ID_MAX = 255
#: Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500.
_METADATA_MAX_KEYS, _METADATA_KEY_MAX, _METADATA_VALUE_MAX = 50, 40, 500
#: Customer e-mail addresses are stored in a VARCHAR(512) column (Stripe's own limit).
_EMAIL_MAX = 512


def _fail(kind: str, field: str, problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"{kind}.{field}: {problem}")


def _shown(value: object) -> str:
    """A short, safe rendering of a bad value for an error message (never a huge dump)."""
    if type(value) is str:
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if value is None or type(value) is bool:
        return repr(value)
    return type(value).__name__


def _mapping(obj: object, kind: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise WebhookPayloadError(f"{kind}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: Mapping[str, Any], field: str, kind: str) -> str:
    value = obj.get(field)
    if type(value) is str and value and "\x00" not in value:
        return value
    if value is None or value == "":
        raise _fail(kind, field, "missing")
    if type(value) is str:
        raise _fail(kind, field, "contains a NUL character")
    raise _fail(kind, field, f"expected a non-empty string, got {type(value).__name__}")


def _ident(obj: Mapping[str, Any], field: str, kind: str) -> str:
    """A required id: a non-empty string of at most 255 characters."""
    value = _str(obj, field, kind)
    if len(value) > _ID_MAX:
        raise _fail(kind, field, f"longer than {_ID_MAX} characters")
    return value


def _opt_str(obj: Mapping[str, Any], field: str, kind: str) -> str | None:
    value = obj.get(field)
    if value is None or (type(value) is str and "\x00" not in value):
        return value
    if type(value) is str:
        raise _fail(kind, field, "contains a NUL character")
    raise _fail(kind, field, f"expected a string, got {type(value).__name__}")


def _ref(obj: Mapping[str, Any], field: str, kind: str) -> str | None:
    """An id given as a string or as an expanded object with an ``id``."""
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is str:
        if not value:
            return None
        if len(value) > _ID_MAX or "\x00" in value:
            raise _fail(kind, field, f"not an id: {_shown(value)}")
        return value
    if isinstance(value, Mapping):
        ident = value.get("id")
        if type(ident) is str and ident and len(ident) <= _ID_MAX and "\x00" not in ident:
            return ident
        if ident is None or ident == "":
            raise _fail(kind, f"{field}.id", "missing in the expanded object")
        raise _fail(kind, f"{field}.id", f"not an id: {_shown(ident)}")
    raise _fail(kind, field, f"expected an id or an object, got {type(value).__name__}")


def _time(seconds: object, kind: str, field: str) -> datetime | None:
    """Unix seconds as an aware UTC datetime: an integer from 1970 to 9999, or ``None``."""
    if seconds is None:
        return None
    if type(seconds) is int:
        if 0 <= seconds <= MAX_TIMESTAMP:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        raise _fail(kind, field, "Unix seconds out of range (years 1970 to 9999)")
    raise _fail(kind, field, f"expected integer Unix seconds, got {type(seconds).__name__}")


def _req_time(obj: Mapping[str, Any], field: str, kind: str) -> datetime:
    moment = _time(obj.get(field), kind, field)
    if moment is None:
        raise _fail(kind, field, "missing")
    return moment


def _bounded(obj: Mapping[str, Any], field: str, kind: str, low: int, high: int) -> int | None:
    """An optional integer (never a bool or a float) from ``low`` to ``high``."""
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not int:
        raise _fail(kind, field, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise _fail(kind, field, f"out of range ({low} to {high})")
    return value


def _int(obj: Mapping[str, Any], field: str, kind: str) -> int | None:
    """An optional integer that fits a signed 64-bit column."""
    return _bounded(obj, field, kind, _INT64_MIN, _INT64_MAX)


def _amount(obj: Mapping[str, Any], field: str, kind: str) -> int | None:
    """An optional non-negative amount in minor units that fits a signed 64-bit column."""
    return _bounded(obj, field, kind, 0, _INT64_MAX)


def _bool(obj: Mapping[str, Any], field: str, kind: str) -> bool:
    value = obj.get(field)
    if value is None:
        return False
    if type(value) is bool:
        return value
    raise _fail(kind, field, f"expected a boolean, got {type(value).__name__}")


def _enum(obj: Mapping[str, Any], field: str, kind: str, allowed: frozenset[str]) -> str | None:
    """An optional string that must be one of ``allowed`` (checked before any hashing)."""
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is str and value in allowed:
        return value
    raise _fail(kind, field, f"unknown value {_shown(value)}")


def _currency(obj: Mapping[str, Any], field: str, kind: str) -> str | None:
    """An optional ISO 4217 code (three ASCII letters), lower-cased."""
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is str and len(value) == 3 and value.isascii() and value.isalpha():
        return value.lower()
    raise _fail(kind, field, f"bad value {_shown(value)} (expected an ISO currency code)")


def _metadata(obj: Mapping[str, Any], kind: str) -> dict[str, str]:
    """Stripe metadata as a plain dict, within Stripe's limits.

    At most 50 string keys of up to 40 characters, string values of up to 500: Stripe never
    sends anything else, so anything else is a malformed payload.
    """
    value = obj.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(kind, "metadata", f"expected an object, got {type(value).__name__}")
    if len(value) > _METADATA_MAX_KEYS:
        raise _fail(kind, "metadata", f"more than {_METADATA_MAX_KEYS} keys")
    result: dict[str, str] = {}
    for key, item in value.items():
        if type(key) is not str or not 0 < len(key) <= _METADATA_KEY_MAX or "\x00" in key:
            raise _fail(kind, "metadata", f"invalid key {_shown(key)}")
        if type(item) is not str:
            raise _fail(kind, f"metadata.{key}", f"expected a string, got {type(item).__name__}")
        if len(item) > _METADATA_VALUE_MAX or "\x00" in item:
            raise _fail(
                kind, f"metadata.{key}", f"longer than {_METADATA_VALUE_MAX} characters or NUL"
            )
        result[key] = item
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
    """A ``Subscription`` from a Stripe subscription object.

    Works for every API version: the period comes from the subscription (before basil) or
    from its items (basil and later: earliest ``current_period_start``, latest
    ``current_period_end``). ``price_id`` and ``quantity`` come from the first item (its
    ``price``, else its legacy ``plan``; else the subscription's own legacy ``plan``), and
    ``item_id`` is that item's id; ``schedule_id`` is the ``schedule`` driving it.
    ``user_id`` is the ``metadata["user_id"]`` if present. ``plan_key`` is left ``None``: the
    plan follows from the price (through the catalog), since metadata set at checkout goes
    stale after a plan change. ``watermark`` is 0.

    ``created`` falls back to ``start_date`` (2019-2020 shapes carry both) and then to
    ``start``: subscriptions from before 2014 carry only ``start``.

    Raises ``WebhookPayloadError`` naming the bad field (missing id,
    customer or created, unknown status, wrong types, out-of-range timestamps, quantities or
    metadata), never another exception.
    """
    kind = "subscription"
    sub = _mapping(obj, kind)
    sub_id = _ident(sub, "id", kind)
    customer_id = _ref(sub, "customer", kind)
    if customer_id is None:
        raise _fail(kind, "customer", "missing")
    raw_status = sub.get("status")
    status = _STATUSES.get(raw_status) if type(raw_status) is str else None
    if status is None:
        raise _fail(kind, "status", f"unknown value {_shown(raw_status)}")

    items = _list_data(sub, "items", kind)
    period_start = _time(sub.get("current_period_start"), kind, "current_period_start")
    period_end = _time(sub.get("current_period_end"), kind, "current_period_end")
    price_id: str | None = None
    quantity: int | None = None
    item_id: str | None = None
    if items:
        first = _mapping(items[0], "subscription.items.data[0]")
        item_id = _ref(first, "id", "subscription.items.data[0]")
        price_id = _ref(first, "price", "subscription.items.data[0]") or _ref(
            first, "plan", "subscription.items.data[0]"
        )
        quantity = _bounded(first, "quantity", "subscription.items.data[0]", 0, _QUANTITY_MAX)
        if period_start is None and period_end is None:
            period_start, period_end = _item_period(items)
    if price_id is None:
        price_id = _ref(sub, "plan", kind)
    if quantity is None:
        quantity = _bounded(sub, "quantity", kind, 0, _QUANTITY_MAX)
    metadata = _metadata(sub, kind)
    user_id = metadata.get("user_id") or None
    if user_id is not None and len(user_id) > _ID_MAX:
        raise _fail(kind, "metadata.user_id", f"longer than {_ID_MAX} characters")
    created = (
        _time(sub.get("created"), kind, "created")
        or _time(sub.get("start_date"), kind, "start_date")
        or _time(sub.get("start"), kind, "start")
    )
    if created is None:
        raise _fail(kind, "created", "missing (nor start_date or start)")

    return _build(
        Subscription,
        id=sub_id,
        customer_id=customer_id,
        user_id=user_id,
        status=status,
        price_id=price_id,
        plan_key=None,
        quantity=1 if quantity is None else quantity,
        item_id=item_id,
        schedule_id=_ref(sub, "schedule", kind),
        current_period_start=period_start,
        current_period_end=period_end,
        cancel_at_period_end=_bool(sub, "cancel_at_period_end", kind),
        cancel_at=_time(sub.get("cancel_at"), kind, "cancel_at"),
        canceled_at=_time(sub.get("canceled_at"), kind, "canceled_at"),
        ended_at=_time(sub.get("ended_at"), kind, "ended_at"),
        trial_start=_time(sub.get("trial_start"), kind, "trial_start"),
        trial_end=_time(sub.get("trial_end"), kind, "trial_end"),
        created=created,
        livemode=_bool(sub, "livemode", kind),
        metadata=metadata,
        watermark=0,
    )


def _item_period(items: list[Any]) -> tuple[datetime | None, datetime | None]:
    """Earliest start and latest end of the items' own periods (basil and later)."""
    start: datetime | None = None
    end: datetime | None = None
    for index, raw in enumerate(items):
        kind = f"subscription.items.data[{index}]"
        item = _mapping(raw, kind)
        item_start = _time(item.get("current_period_start"), kind, "current_period_start")
        item_end = _time(item.get("current_period_end"), kind, "current_period_end")
        if item_start is not None:
            start = item_start if start is None else min(start, item_start)
        if item_end is not None:
            end = item_end if end is None else max(end, item_end)
    return start, end


# --------------------------------------------------------------------------- prices


def price_from_stripe(obj: Mapping[str, Any], product: Mapping[str, Any] | None = None) -> Price:
    """A ``Price`` from a Stripe price or legacy plan object.

    The product name comes from an expanded ``product`` object, else from ``product`` (the
    separately fetched product object), else from a legacy plan's own ``name``. One-time
    prices get ``Interval.ONE_TIME``; recurring ones their ``recurring.interval`` (plans:
    ``interval``). Tiered prices (and custom-amount ones) have ``unit_amount`` ``None``.
    Pre-2018 plans have no product: ``product_id`` is then ``""``.
    """
    kind = "plan" if isinstance(obj, Mapping) and obj.get("object") == "plan" else "price"
    price = _mapping(obj, kind)
    price_id = _ident(price, "id", kind)
    currency = _currency(price, "currency", kind)
    if currency is None:
        raise _fail(kind, "currency", "missing")

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
    billing_scheme = _enum(price, "billing_scheme", kind, _BILLING_SCHEMES) or "per_unit"
    amount_field = "unit_amount" if "unit_amount" in price else "amount"
    unit_amount = _amount(price, amount_field, kind)
    if billing_scheme == "tiered":
        unit_amount = None
    active = price.get("active")
    if active is not None and type(active) is not bool:
        raise _fail(kind, "active", f"expected a boolean, got {type(active).__name__}")

    return _build(
        Price,
        id=price_id,
        product_id=product_id,
        product_name=product_name,
        lookup_key=_opt_str(price, "lookup_key", kind),
        currency=currency,
        unit_amount=unit_amount,
        interval=interval,
        interval_count=interval_count,
        active=True if active is None else active,
        billing_scheme=cast("Literal['per_unit', 'tiered']", billing_scheme),
        livemode=_bool(price, "livemode", kind),
        **_price_usage(price, kind),
    )


_USAGE_TYPES = frozenset({"licensed", "metered"})


def _price_usage(price: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """``usage_type`` and ``meter_id`` from ``recurring`` (legacy plans: top level)."""
    recurring = price.get("recurring")
    source, where = (
        (recurring, f"{kind}.recurring")
        if isinstance(recurring, Mapping)
        else (
            price,
            kind,
        )
    )
    usage_type = _enum(source, "usage_type", where, _USAGE_TYPES) or "licensed"
    return {"usage_type": usage_type, "meter_id": _opt_str(source, "meter", where)}


def _price_interval(price: Mapping[str, Any], kind: str) -> tuple[Interval, int]:
    price_type = _enum(price, "type", kind, _PRICE_TYPES)
    recurring = price.get("recurring")
    if isinstance(recurring, Mapping):
        source, where = recurring, f"{kind}.recurring"
    elif recurring is not None:
        raise _fail(kind, "recurring", f"expected an object, got {type(recurring).__name__}")
    elif price_type != "one_time" and "interval" in price:
        source, where = price, kind  # legacy plan, or a hand-made price in plan shape
    else:
        if price_type == "recurring":
            raise _fail(kind, "recurring", "missing on a recurring price")
        return Interval.ONE_TIME, 1
    raw = source.get("interval")
    interval = _INTERVALS.get(raw) if type(raw) is str else None
    if interval is None:
        raise _fail(where, "interval", f"unknown value {_shown(raw)}")
    count = _bounded(source, "interval_count", where, 1, _INTERVAL_COUNT_MAX)
    return interval, 1 if count is None else count


# --------------------------------------------------------------------------- customers


def customer_from_stripe(obj: Mapping[str, Any]) -> StripeCustomer:
    """A ``StripeCustomer`` from a Stripe customer object.

    A deleted customer (``{"id": ..., "object": "customer", "deleted": true}``) gives
    ``deleted=True`` with everything else empty.
    """
    kind = "customer"
    customer = _mapping(obj, kind)
    return _build(
        StripeCustomer,
        id=_ident(customer, "id", kind),
        email=_email(customer, kind),
        name=_opt_str(customer, "name", kind),
        metadata=_metadata(customer, kind),
        deleted=_bool(customer, "deleted", kind),
        livemode=_bool(customer, "livemode", kind),
    )


def _email(customer: Mapping[str, Any], kind: str) -> str | None:
    email = _opt_str(customer, "email", kind)
    if email is not None and len(email) > _EMAIL_MAX:
        raise _fail(kind, "email", f"longer than {_EMAIL_MAX} characters")
    return email


# --------------------------------------------------------------------------- sessions


def checkout_session_from_stripe(
    obj: Mapping[str, Any], *, created_fallback: datetime | None = None
) -> CheckoutSession:
    """A ``CheckoutSession`` from a Stripe Checkout Session object.

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
    mode = _enum(session, "mode", kind, _SESSION_MODES)
    if mode is None:
        if session.get("subscription") is not None:
            mode = "subscription"
        elif session.get("setup_intent") is not None:
            mode = "setup"
        else:
            mode = "payment"
    status = _enum(session, "status", kind, _SESSION_STATUSES)
    payment_status = _enum(session, "payment_status", kind, _PAYMENT_STATUSES) or "unpaid"
    created = _time(session.get("created"), kind, "created") or created_fallback
    if created is None:
        raise _fail(kind, "created", "missing")

    raw_subscription = session.get("subscription")
    subscription: Subscription | None = None
    if isinstance(raw_subscription, Mapping):
        try:
            subscription = subscription_from_stripe(raw_subscription)
        except WebhookPayloadError as exc:  # name the path from the session
            raise WebhookPayloadError(f"{kind}.{exc}") from None
    email = _opt_str(session, "customer_email", kind)
    if email is None:
        details = session.get("customer_details")
        if isinstance(details, Mapping):
            email = _opt_str(details, "email", f"{kind}.customer_details")
        elif details is not None:
            raise _fail(
                kind, "customer_details", f"expected an object, got {type(details).__name__}"
            )
    currency = _currency(session, "currency", kind)

    return _build(
        CheckoutSession,
        id=_ident(session, "id", kind),
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
        amount_total=_amount(session, "amount_total", kind),
        currency=currency,
        created=created,
        expires_at=_time(session.get("expires_at"), kind, "expires_at"),
        livemode=_bool(session, "livemode", kind),
    )


def portal_session_from_stripe(obj: Mapping[str, Any]) -> PortalSession:
    """A ``PortalSession`` from a Stripe billing-portal session."""
    kind = "billing_portal.session"
    session = _mapping(obj, kind)
    customer_id = _ref(session, "customer", kind)
    if customer_id is None:
        raise _fail(kind, "customer", "missing")
    return _build(
        PortalSession,
        id=_ident(session, "id", kind),
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
        if (
            line.get("type") == "subscription"
            and type(line_id) is str
            and line_id.startswith("sub_")
            and len(line_id) <= _ID_MAX
            and "\x00" not in line_id
        ):
            return line_id
    return None


# --------------------------------------------------------------------------- invoice values

_INVOICE_STATUS_OF: dict[str, InvoiceStatus] = {
    s.value: s for s in InvoiceStatus if s is not InvoiceStatus.DELETED
}


def _opt_money(
    obj: Mapping[str, Any], field: str, currency: str | None, kind: str, *, signed: bool = False
) -> Money | None:
    """An optional amount (non-negative unless ``signed``) as Money, ``None`` without one.

    ``None`` too without a currency: an amount alone is no Money.
    """
    amount = _int(obj, field, kind) if signed else _amount(obj, field, kind)
    if amount is None or currency is None:
        return None
    return _build(Money, amount=amount, currency=currency)


def invoice_from_stripe(obj: Mapping[str, Any], *, deleted: bool = False) -> InvoiceSummary:
    """An ``InvoiceSummary`` from a Stripe invoice object.

    Every era: ``subscription_id`` as ``invoice_subscription_id`` finds it; the period
    from ``period_start``/``period_end``; amounts need a ``currency`` (else ``None``);
    ``total`` falls back to ``amount_due`` on 2017-era invoices without it; the payment from
    ``payment_intent``/``charge`` (before basil) or an included ``payments`` list. A missing
    ``status`` (2017 era) reads ``paid`` when ``paid`` is true, else ``open`` if ``closed``
    is false, else ``draft``. ``deleted=True`` (``invoice.deleted``) gives the ``deleted``
    tombstone. ``user_id`` is left ``None`` (the handler fills it from the customer link) and
    ``watermark`` 0. Raises ``WebhookPayloadError`` naming the field.
    """
    kind = "invoice"
    inv = _mapping(obj, kind)
    invoice_id = _ident(inv, "id", kind)
    currency = _currency(inv, "currency", kind)
    if deleted:
        status = InvoiceStatus.DELETED
    else:
        raw_status = inv.get("status")
        if raw_status is None:
            status = (
                InvoiceStatus.PAID
                if inv.get("paid") is True
                else InvoiceStatus.OPEN
                if inv.get("closed") is False and inv.get("number")
                else InvoiceStatus.DRAFT
            )
        else:
            found = _INVOICE_STATUS_OF.get(raw_status) if type(raw_status) is str else None
            if found is None:
                raise _fail(kind, "status", f"unknown value {_shown(raw_status)}")
            status = found
    total = _opt_money(inv, "total", currency, kind, signed=True)
    amount_due = _opt_money(inv, "amount_due", currency, kind)
    payment_intent_id = _ref(inv, "payment_intent", kind)
    charge_id = _ref(inv, "charge", kind)
    if payment_intent_id is None and charge_id is None:
        payment_intent_id, charge_id = _invoice_payment_ids(inv)
    return _build(
        InvoiceSummary,
        id=invoice_id,
        customer_id=_ref(inv, "customer", kind),
        user_id=None,
        number=_opt_str(inv, "number", kind),
        status=status,
        billing_reason=_opt_str(inv, "billing_reason", kind),
        subscription_id=invoice_subscription_id(inv),
        period_start=_time(inv.get("period_start"), kind, "period_start"),
        period_end=_time(inv.get("period_end"), kind, "period_end"),
        total=total if total is not None else amount_due,
        amount_due=amount_due,
        amount_paid=_opt_money(inv, "amount_paid", currency, kind),
        amount_remaining=_opt_money(inv, "amount_remaining", currency, kind),
        amount_refunded=None,
        created=_time(inv.get("created"), kind, "created") or _time(inv.get("date"), kind, "date"),
        hosted_invoice_url=_opt_str(inv, "hosted_invoice_url", kind),
        invoice_pdf=_opt_str(inv, "invoice_pdf", kind),
        lines=_line_descriptions(inv),
        attempt_count=_bounded(inv, "attempt_count", kind, 0, _QUANTITY_MAX),
        next_payment_attempt=_time(inv.get("next_payment_attempt"), kind, "next_payment_attempt"),
        payment_intent_id=payment_intent_id,
        charge_id=charge_id,
        livemode=_bool(inv, "livemode", kind),
        watermark=0,
    )


def _line_descriptions(inv: Mapping[str, Any]) -> tuple[str, ...]:
    descriptions: list[str] = []
    for index, raw in enumerate(_list_data(inv, "lines", "invoice")):
        line = _mapping(raw, f"invoice.lines.data[{index}]")
        text = _opt_str(line, "description", f"invoice.lines.data[{index}]")
        if text:
            descriptions.append(text)
    return tuple(descriptions)


def _invoice_payment_ids(inv: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The first payment in an invoice's ``payments`` list (basil+, when included)."""
    for index, raw in enumerate(_list_data(inv, "payments", "invoice")):
        entry = _mapping(raw, f"invoice.payments.data[{index}]")
        payment = entry.get("payment")
        if isinstance(payment, Mapping):
            where = f"invoice.payments.data[{index}].payment"
            intent, charge = _ref(payment, "payment_intent", where), _ref(payment, "charge", where)
            if intent is not None or charge is not None:
                return intent, charge
    return None, None


# --------------------------------------------------------------------------- charges


def charge_from_stripe(obj: Mapping[str, Any]) -> ChargeRecord:
    """A ``ChargeRecord`` from a Stripe charge object.

    ``invoice_id`` from ``charge.invoice`` (API versions before basil; ``None`` after, when
    ``invoice_payment.paid`` links the payment intent instead). ``amount_refunded`` is the
    cumulative refunded amount Stripe reports.
    """
    kind = "charge"
    charge = _mapping(obj, kind)
    charge_id = _ident(charge, "id", kind)
    intent = _ref(charge, "payment_intent", kind)
    currency = _currency(charge, "currency", kind)
    refunded = _amount(charge, "amount_refunded", kind) or 0
    return _build(
        ChargeRecord,
        key=intent or charge_id,
        charge_id=charge_id,
        payment_intent_id=intent,
        invoice_id=_ref(charge, "invoice", kind),
        customer_id=_ref(charge, "customer", kind),
        amount=_opt_money(charge, "amount", currency, kind),
        amount_refunded=refunded,
        refunded=_bool(charge, "refunded", kind),
        created=_time(charge.get("created"), kind, "created"),
    )


def invoice_payment_from_stripe(obj: Mapping[str, Any]) -> ChargeRecord:
    """The payment an ``invoice_payment`` (basil+, ``invoice_payment.paid``) ties to its invoice.

    Returns a ``ChargeRecord`` keyed by the payment intent
    (else the charge) with ``invoice_id`` set and nothing refunded.
    """
    kind = "invoice_payment"
    entry = _mapping(obj, kind)
    invoice_id = _ref(entry, "invoice", kind)
    if invoice_id is None:
        raise _fail(kind, "invoice", "missing")
    payment = _mapping(entry.get("payment"), f"{kind}.payment")
    intent = _ref(payment, "payment_intent", f"{kind}.payment")
    charge_id = _ref(payment, "charge", f"{kind}.payment")
    key = intent or charge_id
    if key is None:
        raise _fail(kind, "payment", "names neither a payment intent nor a charge")
    currency = _currency(entry, "currency", kind)
    return _build(
        ChargeRecord,
        key=key,
        charge_id=charge_id,
        payment_intent_id=intent,
        invoice_id=invoice_id,
        customer_id=None,
        amount=_opt_money(entry, "amount_paid", currency, kind),
        amount_refunded=0,
        refunded=False,
        created=_time(entry.get("created"), kind, "created"),
    )


def dispute_from_stripe(obj: Mapping[str, Any]) -> Dispute:
    """A ``Dispute`` from a Stripe dispute object."""
    kind = "dispute"
    dispute = _mapping(obj, kind)
    currency = _currency(dispute, "currency", kind)
    return _build(
        Dispute,
        id=_ident(dispute, "id", kind),
        charge_id=_ref(dispute, "charge", kind),
        payment_intent_id=_ref(dispute, "payment_intent", kind),
        amount=_opt_money(dispute, "amount", currency, kind),
        reason=_opt_str(dispute, "reason", kind),
        status=_opt_str(dispute, "status", kind),
        created=_time(dispute.get("created"), kind, "created"),
    )


# --------------------------------------------------------------------------- previous attributes


def previous_status(previous: Mapping[str, Any]) -> SubscriptionStatus | None:
    """The status in an update's ``data.previous_attributes``, if the update changed it."""
    raw = previous.get("status")
    if raw is None:
        return None
    status = _STATUSES.get(raw) if type(raw) is str else None
    if status is None:
        raise _fail("data.previous_attributes", "status", f"unknown value {_shown(raw)}")
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


# ------------------------------------------------------------------ subscription management

_INVOICE_STATUSES = frozenset({"draft", "open", "paid", "uncollectible", "void"})
_SCHEDULE_STATUSES = frozenset({"not_started", "active", "completed", "released", "canceled"})
_END_BEHAVIORS = frozenset({"release", "cancel", "none", "renew"})
_PRORATIONS = frozenset({"create_prorations", "none", "always_invoice"})
_DURATIONS = frozenset({"once", "repeating", "forever"})


def subscription_item_id(obj: Mapping[str, Any]) -> str | None:
    """The id (``si_...``) of a subscription's first item, or ``None`` without items."""
    kind = "subscription"
    items = _list_data(_mapping(obj, kind), "items", kind)
    if not items:
        return None
    return _str(_mapping(items[0], "subscription.items.data[0]"), "id", "subscription.items")


def subscription_update_result_from_stripe(obj: Mapping[str, Any]) -> SubscriptionUpdateResult:
    """A ``SubscriptionUpdateResult`` from an updated subscription.

    ``latest_invoice`` may be an id or the expanded invoice (then its status and hosted URL
    are read, and the payment intent's status from a legacy expanded ``payment_intent`` or
    from the first expanded entry of ``payments``). A non-null ``pending_update`` means the
    change is not applied yet.
    """
    kind = "subscription"
    sub = _mapping(obj, kind)
    pending = sub.get("pending_update")
    pending_expires = None
    if pending is not None:
        pending_map = _mapping(pending, "subscription.pending_update")
        pending_expires = _time(pending_map.get("expires_at"), kind, "pending_update.expires_at")
    invoice_id = _ref(sub, "latest_invoice", kind)
    invoice_status: str | None = None
    hosted_url: str | None = None
    intent_status: str | None = None
    invoice = sub.get("latest_invoice")
    if isinstance(invoice, Mapping):
        ikind = "subscription.latest_invoice"
        invoice_status = _opt_str(invoice, "status", ikind)
        if invoice_status is not None and invoice_status not in _INVOICE_STATUSES:
            raise _fail(ikind, "status", f"unknown value {invoice_status!r}")
        hosted_url = _opt_str(invoice, "hosted_invoice_url", ikind)
        intent = invoice.get("payment_intent")
        if not isinstance(intent, Mapping):
            payments = _list_data(invoice, "payments", ikind)
            first = payments[0] if payments and isinstance(payments[0], Mapping) else {}
            payment = first.get("payment")
            intent = payment.get("payment_intent") if isinstance(payment, Mapping) else None
        if isinstance(intent, Mapping):
            intent_status = _opt_str(intent, "status", "payment_intent")
    return SubscriptionUpdateResult(
        subscription=subscription_from_stripe(sub),
        item_id=subscription_item_id(sub),
        applied=pending is None,
        pending_expires_at=pending_expires,
        invoice_id=invoice_id,
        invoice_status=cast("Any", invoice_status),
        hosted_invoice_url=hosted_url,
        payment_intent_status=intent_status,
    )


def _money(obj: Mapping[str, Any], field: str, kind: str, currency: str) -> Money:
    amount = _int(obj, field, kind)
    return Money(amount=amount or 0, currency=currency)


def _invoice_line(raw: object, index: int, currency: str) -> InvoiceLine:
    kind = f"invoice.lines.data[{index}]"
    line = _mapping(raw, kind)
    proration = _bool(line, "proration", kind)
    price_id = _ref(line, "price", kind)
    parent = line.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_item_details") or parent.get("invoice_item_details")
        if isinstance(details, Mapping):
            proration = proration or _bool(details, "proration", f"{kind}.parent")
    pricing = line.get("pricing")
    if price_id is None and isinstance(pricing, Mapping):
        price_details = pricing.get("price_details")
        if isinstance(price_details, Mapping):
            price_id = _ref(price_details, "price", f"{kind}.pricing.price_details")
    period = line.get("period")
    start = end = None
    if isinstance(period, Mapping):
        start = _time(period.get("start"), kind, "period.start")
        end = _time(period.get("end"), kind, "period.end")
    return InvoiceLine(
        amount=_money(line, "amount", kind, currency),
        description=_opt_str(line, "description", kind),
        price_id=price_id,
        quantity=_int(line, "quantity", kind),
        proration=proration,
        period_start=start,
        period_end=end,
    )


def invoice_preview_from_stripe(obj: Mapping[str, Any], *, charged_now: bool) -> InvoicePreview:
    """An ``InvoicePreview`` from ``invoices.create_preview``'s answer.

    ``charged_now`` says whether the previewed invoice is issued at once (the change used
    ``always_invoice``): then its ``amount_due`` is ``due_now``; otherwise it is the next
    invoice (``next_invoice_total``, dated ``next_payment_attempt`` or else
    ``period_end``/``created``) and nothing is due now. Lines of any API era are read
    (``proration`` on the line before basil, on ``parent.*_details`` after).
    """
    kind = "invoice"
    inv = _mapping(obj, kind)
    currency = _str(inv, "currency", kind).lower()
    lines = tuple(
        _invoice_line(raw, index, currency)
        for index, raw in enumerate(_list_data(inv, "lines", kind))
    )
    discount = 0
    for raw in inv.get("total_discount_amounts") or []:
        discount += _int(_mapping(raw, "invoice.total_discount_amounts"), "amount", kind) or 0
    proration = sum(line.amount.amount for line in lines if line.proration)
    amount_due = _money(inv, "amount_due", kind, currency)
    zero = Money(amount=0, currency=currency)
    next_at = _time(inv.get("next_payment_attempt"), kind, "next_payment_attempt")
    if next_at is None:
        next_at = _time(inv.get("period_end"), kind, "period_end") or _time(
            inv.get("created"), kind, "created"
        )
    return InvoicePreview(
        currency=currency,
        amount_due=amount_due,
        total=_money(inv, "total", kind, currency),
        discount_total=Money(amount=discount, currency=currency),
        proration_total=Money(amount=proration, currency=currency),
        due_now=amount_due if charged_now else zero,
        next_invoice_total=None if charged_now else amount_due,
        next_invoice_at=None if charged_now else next_at,
        lines=lines,
    )


def _phase_item(phase: Mapping[str, Any], kind: str) -> tuple[str, int]:
    items = _list_data(phase, "items", kind)
    if not items:
        raise _fail(kind, "items", "empty")
    item = _mapping(items[0], f"{kind}.items[0]")
    price_id = _ref(item, "price", f"{kind}.items[0]") or _ref(item, "plan", f"{kind}.items[0]")
    if price_id is None:
        raise _fail(kind, "items[0].price", "missing")
    return price_id, _int(item, "quantity", f"{kind}.items[0]") or 1


def subscription_schedule_from_stripe(obj: Mapping[str, Any]) -> SubscriptionSchedule:
    """A ``SubscriptionSchedule`` from a ``subscription_schedule``."""
    kind = "subscription_schedule"
    sched = _mapping(obj, kind)
    status = _str(sched, "status", kind)
    if status not in _SCHEDULE_STATUSES:
        raise _fail(kind, "status", f"unknown value {status!r}")
    end_behavior = _opt_str(sched, "end_behavior", kind) or "release"
    if end_behavior not in _END_BEHAVIORS:
        raise _fail(kind, "end_behavior", f"unknown value {end_behavior!r}")
    customer_id = _ref(sched, "customer", kind)
    if customer_id is None:
        raise _fail(kind, "customer", "missing")
    phases = []
    for index, raw in enumerate(sched.get("phases") or []):
        pkind = f"{kind}.phases[{index}]"
        phase = _mapping(raw, pkind)
        price_id, quantity = _phase_item(phase, pkind)
        behavior = _opt_str(phase, "proration_behavior", pkind)
        if behavior is not None and behavior not in _PRORATIONS:
            raise _fail(pkind, "proration_behavior", f"unknown value {behavior!r}")
        phases.append(
            SubscriptionSchedulePhase(
                price_id=price_id,
                quantity=quantity,
                start=_req_time(phase, "start_date", pkind),
                end=_time(phase.get("end_date"), pkind, "end_date"),
                proration_behavior=cast("Any", behavior),
            )
        )
    current = sched.get("current_phase")
    current_start = current_end = None
    if isinstance(current, Mapping):
        current_start = _time(current.get("start_date"), kind, "current_phase.start_date")
        current_end = _time(current.get("end_date"), kind, "current_phase.end_date")
    return SubscriptionSchedule(
        id=_str(sched, "id", kind),
        subscription_id=_ref(sched, "subscription", kind),
        customer_id=customer_id,
        status=cast("Any", status),
        end_behavior=cast("Any", end_behavior),
        current_phase_start=current_start,
        current_phase_end=current_end,
        phases=tuple(phases),
        released_subscription_id=_opt_str(sched, "released_subscription", kind),
        metadata=_metadata(sched, kind),
    )


def promotion_code_from_stripe(obj: Mapping[str, Any]) -> PromotionCode:
    """A ``PromotionCode`` from a ``promotion_code`` object.

    The coupon is read from ``coupon`` (before 2025-09-30.clover) or ``promotion.coupon``
    (clover and later), expanded in either place.
    """
    kind = "promotion_code"
    promo = _mapping(obj, kind)
    coupon: object = promo.get("coupon")
    promotion = promo.get("promotion")
    if coupon is None and isinstance(promotion, Mapping):
        coupon = promotion.get("coupon")
    if not isinstance(coupon, Mapping):
        raise _fail(kind, "coupon", "expected the expanded coupon")
    ckind = "coupon"
    percent = coupon.get("percent_off")
    if percent is not None and (type(percent) not in (int, float) or isinstance(percent, bool)):
        raise _fail(ckind, "percent_off", "expected a number")
    amount_off = _int(coupon, "amount_off", ckind)
    currency = _opt_str(coupon, "currency", ckind)
    if amount_off is not None and not currency:
        raise _fail(ckind, "currency", "missing for amount_off")
    duration = _opt_str(coupon, "duration", ckind) or "once"
    if duration not in _DURATIONS:
        raise _fail(ckind, "duration", f"unknown value {duration!r}")
    return PromotionCode(
        id=_str(promo, "id", kind),
        code=_str(promo, "code", kind),
        active=_bool(promo, "active", kind),
        coupon_id=_str(coupon, "id", ckind),
        percent_off=None if percent is None else Decimal(str(percent)),
        amount_off=None
        if amount_off is None
        else Money(amount=amount_off, currency=str(currency).lower()),
        duration=cast("Any", duration),
        duration_in_months=_int(coupon, "duration_in_months", ckind),
        expires_at=_time(promo.get("expires_at"), kind, "expires_at"),
        max_redemptions=_int(promo, "max_redemptions", kind),
        times_redeemed=_int(promo, "times_redeemed", kind) or 0,
        customer_id=_ref(promo, "customer", kind),
        metadata=_metadata(promo, kind),
    )


# --------------------------------------------------------------------------- webhook endpoints

_ENDPOINT_STATUSES = frozenset({"enabled", "disabled"})


def webhook_endpoint_from_stripe(obj: Mapping[str, Any]) -> WebhookEndpoint:
    """A ``WebhookEndpoint`` from a Stripe ``webhook_endpoint``."""
    kind = "webhook_endpoint"
    endpoint = _mapping(obj, kind)
    events = endpoint.get("enabled_events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise _fail(kind, "enabled_events", "expected a list of event types")
    return WebhookEndpoint(
        id=_ident(endpoint, "id", kind),
        url=_str(endpoint, "url", kind),
        status="enabled"
        if _enum(endpoint, "status", kind, _ENDPOINT_STATUSES) == "enabled"
        else "disabled",
        enabled_events=tuple(events),
        api_version=_opt_str(endpoint, "api_version", kind),
        livemode=_bool(endpoint, "livemode", kind),
        description=_opt_str(endpoint, "description", kind),
    )


# --------------------------------------------------------------------------- payment methods

#: Longest payment-method type, card brand and wallet stored (VARCHAR(64)); last4: 16.
_SHORT_MAX, _LAST4_MAX = 64, 16


def _short(obj: Mapping[str, Any], field: str, kind: str, limit: int = _SHORT_MAX) -> str | None:
    value = _opt_str(obj, field, kind)
    if value is not None and len(value) > limit:
        raise _fail(kind, field, f"longer than {limit} characters")
    return value or None


def payment_method_from_stripe(obj: Mapping[str, Any]) -> PaymentMethodSummary:
    """A ``PaymentMethodSummary`` (``watermark`` 0).

    Reads a ``payment_method`` of any type (``card.brand/last4/exp_month/exp_year`` and
    ``card.wallet.type`` for cards; ``last4`` of ``sepa_debit``, ``us_bank_account``,
    ``bacs_debit``, ``au_becs_debit`` and the like) and the legacy card *source*
    (``"object": "card"``, fields at the top level, ``type`` ``card``). A method without a
    ``customer`` (``payment_method.detached``) has ``customer_id`` ``None``.
    """
    kind = "payment_method"
    method = _mapping(obj, kind)
    ident = _ident(method, "id", kind)
    details: Mapping[str, Any]
    if method.get("object") == "card":  # a legacy source (card_...)
        method_type, details, detail_kind = "card", method, kind
    else:
        found_type = _short(method, "type", kind)
        if found_type is None:
            raise _fail(kind, "type", "missing")
        method_type = found_type
        raw = method.get(method_type)
        details = raw if isinstance(raw, Mapping) else {}
        detail_kind = f"{kind}.{method_type}"
    wallet: str | None = None
    raw_wallet = details.get("wallet") if method_type == "card" else None
    if isinstance(raw_wallet, Mapping):
        wallet = _short(raw_wallet, "type", f"{detail_kind}.wallet")
    elif raw_wallet is not None:
        raise _fail(detail_kind, "wallet", f"expected an object, got {type(raw_wallet).__name__}")
    return _build(
        PaymentMethodSummary,
        id=ident,
        customer_id=_ref(method, "customer", kind),
        type=method_type,
        card_brand=_short(details, "brand", detail_kind) if method_type == "card" else None,
        last4=_short(details, "last4", detail_kind, _LAST4_MAX),
        exp_month=_bounded(details, "exp_month", detail_kind, 1, 12),
        exp_year=_bounded(details, "exp_year", detail_kind, 1, 9999),
        wallet=wallet,
        detached=False,
        created=_time(method.get("created"), kind, "created"),
        watermark=0,
    )


def customer_default_payment_method(obj: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Whether a customer object tells its default payment method, and which (or ``None``).

    Read from ``invoice_settings.default_payment_method`` (an id or an expanded method);
    ``(False, None)`` when the object has no ``invoice_settings`` (a deleted customer, a
    very old API version).
    """
    kind = "customer"
    customer = _mapping(obj, kind)
    settings = customer.get("invoice_settings")
    if settings is None:
        return False, None
    settings = _mapping(settings, f"{kind}.invoice_settings")
    return True, _ref(settings, "default_payment_method", f"{kind}.invoice_settings")


def setup_intent_from_stripe(obj: Mapping[str, Any]) -> SetupIntentOutcome:
    """A ``SetupIntentOutcome`` from a SetupIntent."""
    kind = "setup_intent"
    intent = _mapping(obj, kind)
    raw_method = intent.get("payment_method")
    method = payment_method_from_stripe(raw_method) if isinstance(raw_method, Mapping) else None
    return _build(
        SetupIntentOutcome,
        id=_ident(intent, "id", kind),
        customer_id=_ref(intent, "customer", kind),
        payment_method_id=_ref(intent, "payment_method", kind),
        payment_method=method,
        metadata=_metadata(intent, kind),
    )


def entitlement_summary_from_stripe(obj: Mapping[str, Any]) -> EntitlementSummary:
    """The lookup keys of an ``entitlements.active_entitlement_summary`` (``watermark`` 0).

    Keys are de-duplicated and sorted, so equal summaries compare equal.
    """
    kind = "entitlements.active_entitlement_summary"
    summary = _mapping(obj, kind)
    keys: set[str] = set()
    for index, raw in enumerate(_list_data(summary, "entitlements", kind)):
        entry = _mapping(raw, f"{kind}.entitlements[{index}]")
        keys.add(_ident(entry, "lookup_key", f"{kind}.entitlements[{index}]"))
    customer = _ref(summary, "customer", kind)
    if customer is None:
        raise _fail(kind, "customer", "missing")
    return _build(
        EntitlementSummary,
        customer_id=customer,
        lookup_keys=tuple(sorted(keys)),
        watermark=0,
    )


# --------------------------------------------------------------------------- meter events


def meter_event_from_stripe(obj: Mapping[str, Any]) -> MeterEvent:
    """A ``MeterEvent`` from a ``billing.meter_event`` object.

    The payload's ``stripe_customer_id`` and ``value`` (a string of digits at Stripe) are
    read from the default payload keys.
    """
    kind = "billing.meter_event"
    event = _mapping(obj, kind)
    payload = _mapping(event.get("payload"), f"{kind}.payload")
    raw_value = payload.get("value")
    try:
        value = int(str(raw_value))
    except ValueError:
        raise _fail(kind, "payload.value", f"not a whole number: {_shown(raw_value)}") from None
    return _build(
        MeterEvent,
        identifier=_str(event, "identifier", kind),
        event_name=_str(event, "event_name", kind),
        customer_id=_str(payload, "stripe_customer_id", f"{kind}.payload"),
        value=value,
        timestamp=_req_time(event, "timestamp", kind),
        livemode=_bool(event, "livemode", kind),
    )
