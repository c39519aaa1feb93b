"""Start a Stripe Checkout for a user, confirm it on the success page, open the billing portal.

``CheckoutService`` is the only place billingkit creates Checkout Sessions. The price comes
only from the ``PlanCatalog``; one Stripe customer per user (idempotency key from the user
id); every session carries the user in ``client_reference_id`` and metadata; a double submit
gets the same session only while Stripe still shows it open; a payment in flight blocks a
second subscription; confirming checks ownership, then applies the session through
``billingkit.services.apply`` (the webhook's own path). The rules and the Stripe-call budget
of each method are in ``docs/checkout.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypedDict, TypeVar
from urllib.parse import urlsplit

from billingkit.config import CHECKOUT_LOCALES, BillingConfig
from billingkit.domain import (
    LIVE_STATUSES,
    CheckoutRecord,
    CustomerLink,
    Interval,
    SubscriptionStatus,
    UTCDateTime,
    Value,
    to_timestamp,
)
from billingkit.domain.payment_methods import PAYMENT_METHOD_UPDATE, PURPOSE_METADATA_KEY
from billingkit.errors import (
    AlreadySubscribedError,
    CheckoutOwnershipError,
    ConflictError,
    GatewayError,
    GatewayNotFoundError,
    InvalidInputError,
    NoCustomerError,
)
from billingkit.ports import (
    CheckoutSession,
    CheckoutSessionRequest,
    Clock,
    Repository,
    SetupSessionRequest,
    StripeGateway,
    UnitOfWork,
    require_aware_clock,
    system_clock,
)
from billingkit.services.apply import apply_checkout_session
from billingkit.services.catalog import PlanCatalog
from billingkit.services.webhooks.handlers.purchases import apply_purchase

__all__ = [
    "RESERVED_METADATA_KEYS",
    "CheckoutConfirmation",
    "CheckoutService",
    "CheckoutStart",
    "checkout_idempotency_key",
    "checkout_request_key",
    "customer_idempotency_key",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Metadata keys billingkit sets on every session; app metadata may not use them.
RESERVED_METADATA_KEYS = frozenset({"user_id", "plan_key", "interval"})

# Stripe's documented limits, checked here so a bad argument fails before any call.
_MAX_CLIENT_REFERENCE_ID = 200
_MAX_METADATA_KEYS = 50
_MAX_METADATA_KEY_LENGTH = 40
_MAX_METADATA_VALUE_LENGTH = 500
_MAX_TRIAL_DAYS = 730
_MAX_ID_LENGTH = 255
_INTERVAL_VALUES = frozenset(interval.value for interval in Interval)
#: Stripe expires a Checkout Session at most 24 hours after creating it.
_MAX_SESSION_LIFETIME = timedelta(hours=24)
#: Fresh idempotency keys tried when Stripe replays finished sessions (normally one at most).
_MAX_SUPERSEDED = 3


class CheckoutStart(Value):
    """A started Checkout Session: redirect the user to ``url`` before ``expires_at``.

    ``reused`` is true when a double submit got the session an identical earlier request
    created: found in the repository (no Stripe call made), or answered by Stripe for the
    same idempotency key to a concurrent request.
    """

    session_id: str
    url: str
    expires_at: UTCDateTime | None = None
    reused: bool = False


class CheckoutConfirmation(Value):
    """What the success page learns about a Checkout Session, after ownership was checked.

    ``status`` and ``payment_status`` are the session's, and ``subscription_status`` the
    subscription's, exactly as Stripe reports them: an open or unpaid session is reported as
    such. ``subscription_status`` is ``None`` in payment mode or before Stripe has created
    the subscription.
    """

    session_id: str
    user_id: str
    mode: Literal["subscription", "payment"]
    status: Literal["open", "complete", "expired"] | None
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    plan_key: str | None = None
    interval: Interval | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    subscription_status: SubscriptionStatus | None = None

    @property
    def is_complete(self) -> bool:
        """Whether the customer finished the checkout (paid, or nothing was due)."""
        return self.status == "complete" and self.payment_status != "unpaid"


class _SessionShape(TypedDict):
    """The inputs that shape a session, passed alike to the fingerprint and the request."""

    price_id: str
    quantity: int
    trial_days: int | None
    allow_promotion_codes: bool
    success_url: str
    cancel_url: str


class _CallOptions(TypedDict):
    """The checkout options of one ``start_checkout`` call (``None``: the config's)."""

    automatic_tax: bool | None
    tax_id_collection: bool | None
    billing_address_collection: Literal["auto", "required"] | None
    trial_requires_payment_method: bool | None
    trial_end_without_payment_method: Literal["cancel", "pause"] | None
    coupon: str | None
    promotion_code: str | None
    locale: str | None


def _pick(given: _T | None, default: _T) -> _T:
    """The call's value when given, else the configured default."""
    return default if given is None else given


@dataclass(frozen=True, slots=True)
class _CheckoutRequest:
    """A validated ``start_checkout`` request, its price resolved and its fingerprint taken."""

    user_id: str
    plan_key: str
    interval: Interval
    mode: Literal["subscription", "payment"]
    shape: _SessionShape
    metadata: dict[str, str]
    request_key: str
    #: The checkout options that differ from Stripe's defaults (``CheckoutSessionRequest``
    #: field names), after the config defaults and the call's arguments were merged.
    options: dict[str, Any]
    metered: bool = False


# --------------------------------------------------------------------------- keys


def _digest(namespace: str, *parts: str) -> str:
    hasher = hashlib.sha256(namespace.encode())
    for part in parts:
        hasher.update(b"\x00")
        hasher.update(part.encode())
    return hasher.hexdigest()


def customer_idempotency_key(user_id: str, *, replacing: str | None = None) -> str:
    """The idempotency key for creating ``user_id``'s Stripe customer.

    Stable for a user (and not revealing the id), so every concurrent or retried creation for
    the same user sends the same key and Stripe creates one customer. A customer created in
    place of the deleted customer ``replacing`` gets a key of its own, stable for that
    replacement.
    """
    if replacing is None:
        return "billingkit-customer-" + _digest("billingkit/customer/v1", user_id)[:48]
    return "billingkit-customer-" + _digest("billingkit/customer/v2", user_id, replacing)[:48]


def checkout_request_key(
    *,
    user_id: str,
    plan_key: str,
    interval: Interval,
    price_id: str,
    quantity: int,
    trial_days: int | None,
    allow_promotion_codes: bool,
    success_url: str,
    cancel_url: str,
    metadata: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
) -> str:
    """Fingerprint of a ``start_checkout`` request: equal inputs give an equal key.

    Everything that shapes the session is included (the resolved price id too, so moving a
    lookup key to a new price starts a new session); the e-mail is not, it only matters
    when the customer is created. ``options`` are the checkout options that differ from
    Stripe's defaults (tax, discount, locale...); none leaves the key as it always was.
    """
    extra: dict[str, Any] = {"options": dict(sorted(options.items()))} if options else {}
    canonical = json.dumps(
        {
            **extra,
            "user_id": user_id,
            "plan_key": plan_key,
            "interval": interval.value,
            "price_id": price_id,
            "quantity": quantity,
            "trial_days": trial_days,
            "allow_promotion_codes": allow_promotion_codes,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": dict(sorted(metadata.items())),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return _digest("billingkit/checkout-request/v1", canonical)


def checkout_idempotency_key(
    request_key: str,
    customer_id: str,
    now: datetime,
    window_seconds: int,
    *,
    superseded: str | None = None,
) -> str:
    """The idempotency key for creating the session of ``request_key`` at ``now``.

    Requests in the same ``window_seconds`` time bucket (at least one second) share the key,
    so a retry after a failed or lost gateway call sends the same key and Stripe answers with
    the session it may already have created, never a second one.

    ``superseded`` names a session of the same request that is no longer open (completed or
    expired): it gives a new key, for which Stripe creates a new session instead of replaying
    the finished one.
    """
    bucket = to_timestamp(now) // max(window_seconds, 1)
    parts = [request_key, customer_id, str(bucket)]
    if superseded is not None:
        parts.append(superseded)
    return "billingkit-checkout-" + _digest("billingkit/checkout/v1", *parts)[:48]


# --------------------------------------------------------------------------- validation


def _require_text(name: str, value: object, *, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{name} must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(f"{name} must be at most {max_length} characters")
    return value


def _require_url(name: str, value: object) -> str:
    text = _require_text(name, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        raise InvalidInputError(f"{name} must be an absolute http(s) URL")
    return text


def _require_count(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be an integer")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise InvalidInputError(f"{name} must be at least {minimum}{upper}")
    return value


def _app_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError("metadata must be a mapping of strings to strings")
    reserved = sorted(RESERVED_METADATA_KEYS.intersection(metadata))
    if reserved:
        raise InvalidInputError(
            f"metadata keys {reserved} are reserved: billingkit sets them from the arguments"
        )
    if len(metadata) + len(RESERVED_METADATA_KEYS) > _MAX_METADATA_KEYS:
        raise InvalidInputError(
            f"metadata may hold at most {_MAX_METADATA_KEYS - len(RESERVED_METADATA_KEYS)} keys"
        )
    for key, value in metadata.items():
        _require_text("a metadata key", key, max_length=_MAX_METADATA_KEY_LENGTH)
        if not isinstance(value, str) or len(value) > _MAX_METADATA_VALUE_LENGTH:
            raise InvalidInputError(
                f"metadata[{key!r}] must be a string of at most "
                f"{_MAX_METADATA_VALUE_LENGTH} characters"
            )
    return dict(metadata)


# --------------------------------------------------------------------------- the service


class CheckoutService:
    """Starts and confirms Stripe Checkout Sessions and opens the billing portal.

    Wire it once in the app's composition root and call it from the views::

        checkout = CheckoutService(config, gateway=gateway, repository=repository, catalog=catalog)
        start = checkout.start_checkout(user_id=..., email=..., plan_key="pro",
                                        interval=Interval.MONTH, success_url=...,
                                        cancel_url=...)
        redirect(start.url)

    Thread-safe: it holds no mutable state of its own.
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        gateway: StripeGateway,
        repository: Repository,
        catalog: PlanCatalog,
        clock: Clock = system_clock,
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._repository = repository
        self._catalog = catalog
        self._clock = require_aware_clock(clock)

    # ------------------------------------------------------------------------- start

    def start_checkout(
        self,
        *,
        user_id: str,
        email: str | None,
        plan_key: str,
        interval: Interval | str,
        success_url: str,
        cancel_url: str,
        quantity: int = 1,
        trial_days: int | None = None,
        allow_promotion_codes: bool = False,
        metadata: Mapping[str, str] | None = None,
        automatic_tax: bool | None = None,
        tax_id_collection: bool | None = None,
        billing_address_collection: Literal["auto", "required"] | None = None,
        trial_requires_payment_method: bool | None = None,
        trial_end_without_payment_method: Literal["cancel", "pause"] | None = None,
        coupon: str | None = None,
        promotion_code: str | None = None,
        locale: str | None = None,
    ) -> CheckoutStart:
        """Create (or reuse) a Checkout Session for ``user_id`` buying ``plan_key``.

        A recurring price opens a subscription-mode session, a one-time price
        (``Interval.ONE_TIME``) a payment-mode one. ``success_url`` may contain Stripe's
        ``{CHECKOUT_SESSION_ID}`` placeholder, which the success page passes to
        ``confirm_checkout``.

        Checkout options (``docs/checkout.md#checkout-options``): ``automatic_tax``,
        ``tax_id_collection``, ``billing_address_collection``,
        ``trial_requires_payment_method`` (``False``: a trial starts without a card) with
        ``trial_end_without_payment_method`` (``cancel`` or ``pause``) and ``locale``
        default to ``config.checkout`` (``CheckoutDefaults``); an
        argument given here wins. ``coupon`` (a coupon id) or ``promotion_code`` (a
        ``promo_...`` id) applies a discount up front.

        Raises:
            InvalidInputError: a malformed argument, or ``metadata`` using a reserved key
                (``user_id``, ``plan_key``, ``interval``), or trial days on a one-time price;
                both a coupon and a promotion code, a discount with
                ``allow_promotion_codes``, a trial without a card asked for a one-time price
                or without ``trial_days``, an unknown locale.
            UnknownPlanError: no such plan, or it has no (active) price for ``interval``.
            PricesUnavailableError: the catalog is cold and Stripe is unreachable (retryable).
            AlreadySubscribedError: the user already has a live subscription, or a
                subscription checkout of theirs has just been paid and its webhook has not
                arrived yet (and ``allow_multiple_subscriptions`` is off); send them to the
                billing portal.
            GatewayError: Stripe failed; ``retryable`` tells whether to try again. Nothing
                about the session is stored, and a retry sends the same idempotency key.
        """
        request = self._validate(
            user_id=user_id,
            email=email,
            plan_key=plan_key,
            interval=interval,
            success_url=success_url,
            cancel_url=cancel_url,
            quantity=quantity,
            trial_days=trial_days,
            allow_promotion_codes=allow_promotion_codes,
            metadata=metadata,
            options=_CallOptions(
                automatic_tax=automatic_tax,
                tax_id_collection=tax_id_collection,
                billing_address_collection=billing_address_collection,
                trial_requires_payment_method=trial_requires_payment_method,
                trial_end_without_payment_method=trial_end_without_payment_method,
                coupon=coupon,
                promotion_code=promotion_code,
                locale=locale,
            ),
        )
        now = self._clock()
        with self._repository.unit_of_work() as uow:
            if request.mode == "subscription":
                self._refuse_if_subscribed(uow, request.user_id)
            link = uow.customer_for_user(request.user_id)
            # A session of a deleted customer cannot be paid: never reuse one.
            replace = link is not None and link.deleted
            duplicate = (
                None
                if replace
                else self._open_duplicate(uow, request.user_id, request.request_key, now)
            )
            in_flight = self._in_flight(uow, request, now)
        superseded: str | None = None
        if duplicate is not None or in_flight:
            reused, superseded = self._check_at_stripe(request, duplicate, in_flight)
            if reused is not None:
                return reused
        if link is None:
            customer_id = self._create_customer(request.user_id, email)
        elif link.deleted:
            customer_id = self._replace_customer(request.user_id, email, link.customer_id)
        else:
            customer_id = link.customer_id
        for _ in range(_MAX_SUPERSEDED):
            session = self._create_session(request, customer_id, now, superseded=superseded)
            started = self._persist(request, customer_id, session, now)
            if started is not None:
                return started
            superseded = session.id  # Stripe replayed a finished session for this key
        raise GatewayError(
            f"Stripe keeps answering with finished checkout sessions (last {superseded})",
            retryable=True,
        )

    # The three steps of start_checkout: validate, create the session, persist it.

    def _validate(
        self,
        *,
        user_id: str,
        email: str | None,
        plan_key: str,
        interval: Interval | str,
        success_url: str,
        cancel_url: str,
        quantity: int,
        trial_days: int | None,
        allow_promotion_codes: bool,
        metadata: Mapping[str, str] | None,
        options: _CallOptions,
    ) -> _CheckoutRequest:
        """Check every argument and resolve the price (no Stripe call with a warm catalog)."""
        user_id = _require_text("user_id", user_id, max_length=_MAX_CLIENT_REFERENCE_ID)
        if email is not None:
            _require_text("email", email)
        success_url = _require_url("success_url", success_url)
        cancel_url = _require_url("cancel_url", cancel_url)
        quantity = _require_count("quantity", quantity, minimum=1)
        if trial_days is not None:
            trial_days = _require_count(
                "trial_days", trial_days, minimum=1, maximum=_MAX_TRIAL_DAYS
            )
        if not isinstance(allow_promotion_codes, bool):
            raise InvalidInputError("allow_promotion_codes must be a bool")
        app_metadata = _app_metadata(metadata)
        price = self._catalog.price_for(plan_key, interval)
        interval = Interval(interval)  # valid: the catalog found a price for it
        mode: Literal["subscription", "payment"] = (
            "subscription" if price.is_recurring else "payment"
        )
        if mode == "payment" and trial_days is not None:
            raise InvalidInputError("trial_days applies to subscriptions, not one-time prices")
        session_options = self._session_options(
            options, mode=mode, trial_days=trial_days, allow_promotion_codes=allow_promotion_codes
        )
        if price.is_metered and quantity != 1:
            raise InvalidInputError("a metered price takes no quantity: Stripe bills the usage")

        shape = _SessionShape(
            price_id=price.id,
            quantity=quantity,
            trial_days=trial_days,
            allow_promotion_codes=allow_promotion_codes,
            success_url=success_url,
            cancel_url=cancel_url,
        )
        request_key = checkout_request_key(
            user_id=user_id,
            plan_key=plan_key,
            interval=interval,
            metadata=app_metadata,
            options=session_options,
            **shape,
        )
        return _CheckoutRequest(
            user_id=user_id,
            plan_key=plan_key,
            interval=interval,
            mode=mode,
            shape=shape,
            metadata=app_metadata,
            request_key=request_key,
            metered=price.is_metered,
            options=session_options,
        )

    def _session_options(
        self,
        given: _CallOptions,
        *,
        mode: Literal["subscription", "payment"],
        trial_days: int | None,
        allow_promotion_codes: bool,
    ) -> dict[str, Any]:
        """The call's options over ``config.checkout``, checked; only non-default ones.

        The keys are ``CheckoutSessionRequest`` fields.
        """
        defaults = self._config.checkout
        flags = {
            "automatic_tax": given["automatic_tax"],
            "tax_id_collection": given["tax_id_collection"],
            "trial_requires_payment_method": given["trial_requires_payment_method"],
        }
        for name, flag in flags.items():
            if flag is not None and not isinstance(flag, bool):
                raise InvalidInputError(f"{name} must be a bool")
        if given["billing_address_collection"] not in (None, "auto", "required"):
            raise InvalidInputError("billing_address_collection must be 'auto' or 'required'")
        if given["trial_end_without_payment_method"] not in (None, "cancel", "pause"):
            raise InvalidInputError("trial_end_without_payment_method must be 'cancel' or 'pause'")
        locale = given["locale"]
        if locale is not None and locale not in CHECKOUT_LOCALES:
            raise InvalidInputError(
                f"locale {locale!r} is not one of Stripe Checkout's: {sorted(CHECKOUT_LOCALES)}"
            )
        coupon, promotion_code = given["coupon"], given["promotion_code"]
        if coupon is not None:
            _require_text("coupon", coupon, max_length=_MAX_ID_LENGTH)
        if promotion_code is not None:
            _require_text("promotion_code", promotion_code, max_length=_MAX_ID_LENGTH)
            if not promotion_code.startswith("promo_"):
                raise InvalidInputError(
                    "promotion_code must be a promotion code id (promo_...), not the code a "
                    "customer types; look the code up first"
                )
        if coupon is not None and promotion_code is not None:
            raise InvalidInputError("give a coupon or a promotion code, not both")
        if (coupon is not None or promotion_code is not None) and allow_promotion_codes:
            raise InvalidInputError(
                "a discount applied up front cannot be combined with allow_promotion_codes "
                "(Stripe accepts one or the other)"
            )

        options: dict[str, Any] = {}
        if _pick(given["automatic_tax"], defaults.automatic_tax):
            options["automatic_tax"] = True
        if _pick(given["tax_id_collection"], defaults.tax_id_collection):
            options["tax_id_collection"] = True
        address = _pick(given["billing_address_collection"], defaults.billing_address_collection)
        if address == "required":
            options["billing_address_collection"] = "required"
        card_needed = given["trial_requires_payment_method"]
        if card_needed is False and (mode != "subscription" or trial_days is None):
            raise InvalidInputError(
                "a trial without a card needs a subscription price and trial_days"
            )
        card_required = _pick(card_needed, defaults.trial_requires_payment_method)
        if given["trial_end_without_payment_method"] is not None and card_required:
            raise InvalidInputError(
                "trial_end_without_payment_method applies to a trial without a card "
                "(trial_requires_payment_method=False)"
            )
        if mode == "subscription" and trial_days is not None and not card_required:
            options["payment_method_collection"] = "if_required"
            options["trial_end_behavior"] = _pick(
                given["trial_end_without_payment_method"],
                defaults.trial_end_without_payment_method,
            )
        if coupon is not None:
            options["coupon"] = coupon
        if promotion_code is not None:
            options["promotion_code"] = promotion_code
        chosen_locale = _pick(locale, defaults.locale)
        if chosen_locale is not None:
            options["locale"] = chosen_locale
        return options

    def _create_session(
        self,
        request: _CheckoutRequest,
        customer_id: str,
        now: datetime,
        *,
        superseded: str | None = None,
    ) -> CheckoutSession:
        """Create the session at Stripe (one call), with the request's idempotency key."""
        tags = {
            "user_id": request.user_id,
            "plan_key": request.plan_key,
            "interval": request.interval.value,
        }
        metadata = {**request.metadata, **tags}
        session = self._gateway.create_checkout_session(
            CheckoutSessionRequest(
                mode=request.mode,
                customer_id=customer_id,
                client_reference_id=request.user_id,
                metadata=metadata,
                subscription_metadata=metadata if request.mode == "subscription" else {},
                metered=request.metered,
                idempotency_key=checkout_idempotency_key(
                    request.request_key,
                    customer_id,
                    now,
                    self._config.checkout_dedupe_seconds,
                    superseded=superseded,
                ),
                **request.shape,
                **request.options,
            )
        )
        if not session.url:
            raise GatewayError(f"Stripe returned checkout session {session.id} without a URL")
        return session

    def _persist(
        self,
        request: _CheckoutRequest,
        customer_id: str,
        session: CheckoutSession,
        now: datetime,
    ) -> CheckoutStart | None:
        """Store the new session's record (unless a concurrent request stored it first).

        ``None`` when the session is one already stored as finished: Stripe replayed it for
        an idempotency key used before (an identical request in the same time bucket), and
        only an open session may be handed out.
        """
        assert session.url  # checked by _create_session
        record = CheckoutRecord(
            session_id=session.id,
            user_id=request.user_id,
            customer_id=customer_id,
            plan_key=request.plan_key,
            interval=request.interval,
            mode=request.mode,
            status=session.status or "open",
            payment_status=session.payment_status,
            url=session.url,
            expires_at=session.expires_at,
            request_key=request.request_key,
            created_at=now,
        )
        with self._repository.unit_of_work() as uow:
            # A concurrent identical request got the same session (same idempotency key) and
            # may have stored it, or its webhook may already have completed it: keep that.
            earlier_record = uow.get_checkout(session.id)
            if earlier_record is None:
                uow.save_checkout(record)
        if earlier_record is not None and earlier_record.status != "open":
            return None
        return CheckoutStart(
            session_id=session.id,
            url=session.url,
            expires_at=session.expires_at,
            reused=earlier_record is not None,
        )

    def _refuse_if_subscribed(self, uow: UnitOfWork, user_id: str) -> None:
        if self._config.allow_multiple_subscriptions:
            return
        live = [s for s in uow.subscriptions_for_user(user_id) if s.status in LIVE_STATUSES]
        if live:
            raise AlreadySubscribedError(
                f"user already has a {live[0].status.value} subscription ({live[0].id}); "
                "change it with billing.subscriptions.change_plan (or the billing portal) "
                "instead of a new checkout"
            )

    def _open_duplicate(
        self, uow: UnitOfWork, user_id: str, request_key: str, now: datetime
    ) -> CheckoutRecord | None:
        """The stored open session of an identical request inside the dedupe window."""
        window = self._config.checkout_dedupe_seconds
        if window <= 0:
            return None
        record = uow.find_open_checkout(
            user_id=user_id, request_key=request_key, created_after=now - timedelta(seconds=window)
        )
        if record is None or not record.url:
            return None
        if record.expires_at is not None and record.expires_at <= now:
            return None
        return record

    def _in_flight(
        self, uow: UnitOfWork, request: _CheckoutRequest, now: datetime
    ) -> list[CheckoutRecord]:
        """The user's subscription checkouts that may have been paid without our knowing.

        Stored as open and not yet past ``expires_at``: the customer may have paid before
        the webhook (or the success page) told us. Only a subscription checkout, when a
        second subscription is refused, is looked for.
        """
        if request.mode != "subscription" or self._config.allow_multiple_subscriptions:
            return []
        return [
            record
            for record in uow.open_checkouts_for_user(
                user_id=request.user_id, created_after=now - _MAX_SESSION_LIFETIME
            )
            if record.mode == "subscription"
            and (record.expires_at is None or record.expires_at > now)
        ]

    def _check_at_stripe(
        self,
        request: _CheckoutRequest,
        duplicate: CheckoutRecord | None,
        in_flight: list[CheckoutRecord],
    ) -> tuple[CheckoutStart | None, str | None]:
        """Ask Stripe about the stored open sessions (one call each) and apply what it says.

        Each session is retrieved and applied through
        ``apply_checkout_session`` (the path of
        ``confirm_checkout`` and of the webhook, so the late webhook changes nothing). Then:
        a completed subscription checkout refuses a second subscription; an identical
        request's session still open is handed out again; otherwise the caller creates a
        new session, superseding the identical request's finished one (returned second).
        """
        records = list(in_flight)
        if duplicate is not None and duplicate.session_id not in {r.session_id for r in records}:
            records.append(duplicate)
        sessions: dict[str, CheckoutSession] = {}
        for record in records:
            try:
                sessions[record.session_id] = self._gateway.retrieve_checkout_session(
                    record.session_id
                )
            except GatewayNotFoundError:
                # Not in this Stripe account (e.g. a record from test mode): it cannot be paid.
                logger.warning("stored checkout session %s is unknown to Stripe", record.session_id)
        with self._repository.unit_of_work() as uow:
            for session in sessions.values():
                apply_checkout_session(uow, session, catalog=self._catalog)
        if request.mode == "subscription" and not self._config.allow_multiple_subscriptions:
            for session in sessions.values():
                if session.mode == "subscription" and session.status == "complete":
                    raise AlreadySubscribedError(
                        f"checkout session {session.id} has completed: the first payment went "
                        "through (its webhook has not arrived yet), so no second subscription "
                        "is started; show the subscription or send the user to the billing "
                        "portal"
                    )
        if duplicate is None:
            return None, None
        found = sessions.get(duplicate.session_id)
        if found is not None and found.status == "open" and duplicate.url:
            return (
                CheckoutStart(
                    session_id=duplicate.session_id,
                    url=duplicate.url,
                    expires_at=duplicate.expires_at,
                    reused=True,
                ),
                None,
            )
        return None, duplicate.session_id

    def _create_customer(self, user_id: str, email: str | None) -> str:
        customer = self._gateway.create_customer(
            user_id=user_id, email=email, idempotency_key=customer_idempotency_key(user_id)
        )
        link = CustomerLink(user_id=user_id, customer_id=customer.id, email=customer.email)
        try:
            with self._repository.unit_of_work() as uow:
                return uow.link_customer(link).customer_id
        except ConflictError:
            # Another request linked this user first (to another customer): use theirs.
            with self._repository.unit_of_work() as uow:
                winner = uow.customer_for_user(user_id)
            if winner is None:
                raise
            logger.warning(
                "user %s was linked to %s concurrently; Stripe customer %s is unused",
                user_id,
                winner.customer_id,
                customer.id,
            )
            return winner.customer_id

    def _replace_customer(self, user_id: str, email: str | None, deleted: str) -> str:
        """A fresh customer for a user whose customer was deleted; the old link is history.

        The idempotency key names the deleted customer, so retries and concurrent requests
        replacing the same customer make one new customer, and the first one's key (which
        Stripe would answer with the deleted customer) is never reused.
        """
        customer = self._gateway.create_customer(
            user_id=user_id,
            email=email,
            idempotency_key=customer_idempotency_key(user_id, replacing=deleted),
        )
        link = CustomerLink(user_id=user_id, customer_id=customer.id, email=customer.email)
        with self._repository.unit_of_work() as uow:
            return uow.relink_customer(link, replacing=deleted).customer_id

    # ------------------------------------------------------------------------- confirm

    def confirm_checkout(self, session_id: str, user_id: str) -> CheckoutConfirmation:
        """Check and apply a Checkout Session on the success page (one Stripe call).

        (Plus, with plans configured by lookup key and an expired price cache, the catalog's
        one ``list_prices`` reload.)

        Raises:
            InvalidInputError: an empty ``session_id`` or ``user_id``.
            CheckoutOwnershipError: the session was started for another user (by its
                ``client_reference_id``, its metadata, the stored record or its customer),
                or not by billingkit at all. Nothing is stored.
            GatewayError: Stripe failed (``GatewayNotFoundError`` for an unknown session).
        """
        session_id = _require_text("session_id", session_id)
        user_id = _require_text("user_id", user_id)
        session = self._gateway.retrieve_checkout_session(session_id)
        with self._repository.unit_of_work() as uow:
            self._check_owner(uow, session, user_id)
            applied = apply_checkout_session(uow, session, catalog=self._catalog, user_id=user_id)
            if session.mode == "payment":
                record = applied.record
                apply_purchase(
                    uow,
                    session,
                    user_id=user_id,
                    plan_key=record.plan_key if record is not None else None,
                )
        return self._confirmation(session, user_id, applied.record)

    def _confirmation(
        self, session: CheckoutSession, user_id: str, record: CheckoutRecord | None
    ) -> CheckoutConfirmation:
        subscription = session.subscription
        plan_key = record.plan_key if record is not None else session.metadata.get("plan_key")
        if plan_key is None and subscription is not None and subscription.price_id is not None:
            plan_key = self._catalog.plan_key_for_price(subscription.price_id, load=False)
        interval: Interval | None = record.interval if record is not None else None
        if interval is None and session.metadata.get("interval") in _INTERVAL_VALUES:
            interval = Interval(session.metadata["interval"])
        assert session.mode != "setup"  # refused by _check_owner
        return CheckoutConfirmation(
            session_id=session.id,
            user_id=user_id,
            mode=session.mode,
            status=session.status,
            payment_status=session.payment_status,
            plan_key=plan_key,
            interval=interval,
            customer_id=session.customer_id,
            subscription_id=session.subscription_id,
            subscription_status=subscription.status if subscription is not None else None,
        )

    def _check_owner(self, uow: UnitOfWork, session: CheckoutSession, user_id: str) -> None:
        claimed = {
            owner
            for owner in (session.client_reference_id, session.metadata.get("user_id"))
            if owner
        }
        record = uow.get_checkout(session.id)
        link = uow.customer_by_id(session.customer_id) if session.customer_id else None
        owned = (
            session.mode != "setup"
            and claimed == {user_id}
            and (record is None or record.user_id == user_id)
            and (link is None or link.user_id == user_id)
        )
        if not owned:
            raise CheckoutOwnershipError(
                f"checkout session {session.id} was not started for this user"
            )

    # ------------------------------------------------------------------------- portal

    def open_billing_portal(self, user_id: str, return_url: str) -> str:
        """The URL of a Stripe billing-portal session for the user (one Stripe call).

        Raises:
            InvalidInputError: an empty ``user_id`` or a malformed ``return_url``.
            NoCustomerError: the user has no Stripe customer (never started a checkout), or
                it was deleted at Stripe (``customer.deleted``).
            GatewayError: Stripe failed.
        """
        user_id = _require_text("user_id", user_id)
        return_url = _require_url("return_url", return_url)
        with self._repository.unit_of_work() as uow:
            link = uow.customer_for_user(user_id)
        if link is None:
            raise NoCustomerError("this user has no Stripe customer yet; start a checkout first")
        if link.deleted:
            raise NoCustomerError(
                "this user's Stripe customer was deleted; a new checkout creates a new one"
            )
        portal = self._gateway.create_billing_portal_session(
            customer_id=link.customer_id, return_url=return_url
        )
        return portal.url

    # ------------------------------------------------------------------ payment method

    def start_payment_method_update(
        self, user_id: str, success_url: str, cancel_url: str
    ) -> CheckoutStart:
        """Open Checkout in ``setup`` mode so the user saves a new payment method (1 call).

        Nothing is charged. When the user completes it, Stripe sends
        ``checkout.session.completed`` (mode ``setup``) and ``setup_intent.succeeded``; the
        webhook handler of the latter makes the new method the customer's default and the
        default of each of its live subscriptions (see ``docs/payment-methods.md``). The
        session and its SetupIntent carry ``metadata["billingkit_purpose"]`` and
        ``metadata["user_id"]``. A repeated call with the same inputs within
        ``checkout_dedupe_seconds`` sends the same idempotency key, so Stripe answers the
        same session; the key also carries the customer's stored default method, so once a
        completed update is reported (the default changed) the next call opens a new session.

        Raises:
            InvalidInputError: an empty ``user_id`` or a malformed URL.
            NoCustomerError: the user has no Stripe customer, or it was deleted.
            GatewayError: Stripe failed.
        """
        user_id = _require_text("user_id", user_id, max_length=_MAX_CLIENT_REFERENCE_ID)
        success_url = _require_url("success_url", success_url)
        cancel_url = _require_url("cancel_url", cancel_url)
        with self._repository.unit_of_work() as uow:
            link = uow.customer_for_user(user_id)
            default = uow.default_payment_method(link.customer_id) if link is not None else None
            default = uow.default_payment_method(link.customer_id) if link is not None else None
        if link is None:
            raise NoCustomerError("this user has no Stripe customer yet; start a checkout first")
        if link.deleted:
            raise NoCustomerError(
                "this user's Stripe customer was deleted; a new checkout creates a new one"
            )
        window = max(self._config.checkout_dedupe_seconds, 1)
        bucket = to_timestamp(self._clock()) // window
        key = (
            "billingkit-setup-"
            + _digest(
                "billingkit/setup/v1",
                user_id,
                link.customer_id,
                success_url,
                cancel_url,
                str(bucket),
                (default.payment_method_id or "") if default is not None else "",
            )[:48]
        )
        session = self._gateway.create_setup_checkout_session(
            SetupSessionRequest(
                customer_id=link.customer_id,
                success_url=success_url,
                cancel_url=cancel_url,
                client_reference_id=user_id,
                metadata={PURPOSE_METADATA_KEY: PAYMENT_METHOD_UPDATE, "user_id": user_id},
                idempotency_key=key,
            )
        )
        if not session.url:
            raise GatewayError(f"Stripe returned checkout session {session.id} without a URL")
        return CheckoutStart(session_id=session.id, url=session.url, expires_at=session.expires_at)
