"""The two ports the services depend on, and the boundary values they exchange.

* ``StripeGateway`` — every call to Stripe. Adapters: ``StripeSdkGateway`` (the real
  one) and ``billingkit.testing.FakeStripeGateway``.
* ``Repository`` — everything that persists, through an explicit ``UnitOfWork``
  (one transaction that commits or rolls back as a whole). Adapters: ``InMemoryRepository``
  (the reference semantics) and ``SqlAlchemyRepository``; ``UnitOfWorkBase`` gives a
  new adapter the unit-of-work lifecycle, so it only writes its transaction calls and queries.

Gateways return billingkit's own values, never SDK objects, and raise only the
``GatewayError`` tree. Repositories raise only the
``RepositoryError`` tree.
"""

from __future__ import annotations

import abc
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from threading import get_ident
from types import TracebackType
from typing import ClassVar, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import Field, model_validator
from typing_extensions import Self

from billingkit.domain import (
    CheckoutRecord,
    CustomerLink,
    EventRecord,
    EventStatus,
    Money,
    Price,
    Purchase,
    Subscription,
    UTCDateTime,
    Value,
)
from billingkit.domain.invoices import ChargeRecord, InvoiceSummary
from billingkit.domain.ordering import FETCHED_WATERMARK, SaveOutcome
from billingkit.domain.payment_methods import (
    DefaultPaymentMethod,
    EntitlementSummary,
    PaymentMethodSummary,
)
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.domain.usage import UsageRecord, UsageStatus, UsageTotal
from billingkit.errors import ConfigurationError, RepositoryError

__all__ = [
    "FETCHED_WATERMARK",
    "LIST_PAGE_SIZE",
    "CheckoutSession",
    "CheckoutSessionRequest",
    "ClaimOutcome",
    "Clock",
    "Dispatcher",
    "InvoiceLine",
    "InvoicePreview",
    "InvoicePreviewRequest",
    "MeterEvent",
    "Page",
    "PaymentBehavior",
    "PortalSession",
    "PromotionCode",
    "ProrationBehavior",
    "Repository",
    "SaveOutcome",
    "ScheduledChange",
    "SetupSessionRequest",
    "StripeCustomer",
    "StripeGateway",
    "SubscriptionSchedule",
    "SubscriptionSchedulePhase",
    "SubscriptionUpdate",
    "SubscriptionUpdateResult",
    "UnitOfWork",
    "UnitOfWorkBase",
    "WebhookEndpoint",
    "require_aware_clock",
    "system_clock",
]

#: Returns the current time as an aware UTC datetime; injected so tests can move time.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real current time in UTC."""
    return datetime.now(timezone.utc)


def require_aware_clock(clock: Clock) -> Clock:
    """Check ``clock`` once, when a service is built, and return it unchanged.

    Calls it a single time; a result that is not a timezone-aware ``datetime`` (a naive one
    from ``datetime.now()`` or ``datetime.utcnow()``, say) raises
    ``ConfigurationError`` now, instead of failing at the first
    checkout or event. Any aware timezone is accepted: billingkit converts to UTC itself.
    """
    now = clock()
    if not isinstance(now, datetime):
        raise ConfigurationError(
            f"the clock must return a timezone-aware datetime, not {type(now).__name__}"
        )
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigurationError(
            "the clock returned a naive datetime; it must return a timezone-aware one "
            "(e.g. datetime.now(timezone.utc))"
        )
    return clock


# --------------------------------------------------------------------------- gateway values


class StripeCustomer(Value):
    """A Stripe customer as billingkit needs it."""

    id: str
    email: str | None = None
    name: str | None = None
    metadata: Mapping[str, str] = Field(default_factory=dict)
    deleted: bool = False
    livemode: bool = False


class CheckoutSessionRequest(Value):
    """Everything needed to create a Checkout Session; built by ``CheckoutService`` only.

    The price always comes from the catalog, never from the client.
    """

    mode: Literal["subscription", "payment"]
    customer_id: str
    price_id: str
    quantity: int = Field(default=1, ge=1)
    success_url: str
    cancel_url: str
    client_reference_id: str
    metadata: Mapping[str, str] = Field(default_factory=dict)
    #: Copied to ``subscription_data.metadata`` (subscription mode only).
    subscription_metadata: Mapping[str, str] = Field(default_factory=dict)
    trial_days: int | None = Field(default=None, ge=1)
    allow_promotion_codes: bool = False
    #: The price is metered: its line item is sent without a quantity (Stripe bills usage).
    metered: bool = False
    idempotency_key: str
    #: Stripe Tax: ``automatic_tax[enabled]`` with ``customer_update[address]=auto`` (Stripe
    #: needs the customer's address to compute the tax; Checkout saves what is entered).
    automatic_tax: bool = False
    #: ``tax_id_collection[enabled]``, with ``customer_update[name]=auto`` (required then).
    tax_id_collection: bool = False
    #: ``billing_address_collection`` (``None``: Stripe's default, ``auto``).
    billing_address_collection: Literal["auto", "required"] | None = None
    #: ``payment_method_collection`` (subscription mode): ``if_required`` lets a trial start
    #: without a card; ``trial_end_behavior`` then says what happens if none is added.
    payment_method_collection: Literal["always", "if_required"] | None = None
    #: ``subscription_data.trial_settings.end_behavior.missing_payment_method``.
    trial_end_behavior: Literal["cancel", "pause", "create_invoice"] | None = None
    #: ``discounts``: a coupon id or a promotion code id (``promo_...``), applied up front.
    #: At most one of them, and not with ``allow_promotion_codes`` (Stripe refuses both).
    coupon: str | None = None
    promotion_code: str | None = None
    #: ``locale`` of the Checkout page (``auto``, ``de``, ``pt-BR``...; ``None``: Stripe's).
    locale: str | None = None

    @model_validator(mode="after")
    def _options_fit(self) -> CheckoutSessionRequest:
        if self.coupon is not None and self.promotion_code is not None:
            raise ValueError("give a coupon or a promotion code, not both")
        if (self.coupon is not None or self.promotion_code is not None) and (
            self.allow_promotion_codes
        ):
            raise ValueError("a discount applied up front excludes allow_promotion_codes")
        if self.mode != "subscription" and (
            self.payment_method_collection is not None or self.trial_end_behavior is not None
        ):
            raise ValueError("payment_method_collection and trial_end_behavior need a subscription")
        if self.trial_end_behavior is not None and self.trial_days is None:
            raise ValueError("trial_end_behavior needs trial_days")
        return self


class CheckoutSession(Value):
    """A Stripe Checkout Session.

    ``subscription`` is filled when the gateway retrieved the session with its subscription
    expanded (``retrieve_checkout_session`` does), so confirming costs one call.
    """

    id: str
    url: str | None = None
    mode: Literal["subscription", "payment", "setup"]
    status: Literal["open", "complete", "expired"] | None = None
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    customer_id: str | None = None
    customer_email: str | None = None
    client_reference_id: str | None = None
    metadata: Mapping[str, str] = Field(default_factory=dict)
    subscription_id: str | None = None
    subscription: Subscription | None = None
    payment_intent_id: str | None = None
    amount_total: int | None = None
    currency: str | None = None
    created: UTCDateTime
    expires_at: UTCDateTime | None = None
    livemode: bool = False


class PortalSession(Value):
    """A Stripe billing-portal session: redirect the user to ``url``."""

    id: str
    url: str
    customer_id: str
    return_url: str | None = None


#: Stripe's ``proration_behavior``: credit/charge the rest of the period as invoice items on
#: the next invoice (Stripe's default), nothing, or invoice and charge them at once.
ProrationBehavior = Literal["create_prorations", "none", "always_invoice"]
#: Stripe's ``payment_behavior`` for subscription updates. ``pending_if_incomplete`` keeps
#: the subscription unchanged (a ``pending_update``) until the invoice it creates is paid.
PaymentBehavior = Literal[
    "allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"
]


class SubscriptionUpdate(Value):
    """One ``POST /v1/subscriptions/{id}``: change the one item, the discount or the end.

    ``item_id`` (``si_...``) names the item whose ``price_id``/``quantity`` change; it is
    required when either is given (Stripe would otherwise *add* an item). Leave a field
    ``None`` to keep it. ``promotion_code`` (a ``promo_...`` id) replaces the discounts.
    ``proration_date`` pins the second prorations are computed at (as a preview used).
    """

    subscription_id: str = Field(min_length=1)
    item_id: str | None = None
    price_id: str | None = None
    quantity: int | None = Field(default=None, ge=1)
    proration_behavior: ProrationBehavior | None = None
    proration_date: UTCDateTime | None = None
    payment_behavior: PaymentBehavior | None = None
    promotion_code: str | None = None
    cancel_at_period_end: bool | None = None
    metadata: Mapping[str, str] | None = None
    idempotency_key: str = Field(min_length=1)

    @model_validator(mode="after")
    def _item_named(self) -> SubscriptionUpdate:
        if (self.price_id is not None or self.quantity is not None) and not self.item_id:
            raise ValueError("item_id is required to change the price or the quantity")
        return self


class SubscriptionUpdateResult(Value):
    """What an update did: the subscription now, and the invoice it created, if any.

    ``applied`` is ``False`` when Stripe kept the change as a ``pending_update``
    (``payment_behavior="pending_if_incomplete"`` and the payment did not go through): the
    subscription is still on its old price until ``invoice_id`` is paid (at
    ``hosted_invoice_url``) before ``pending_expires_at``. ``payment_intent_status``
    (``requires_action`` means 3-D Secure) is filled when Stripe's answer carried it.
    """

    subscription: Subscription
    #: The id of the subscription's first item (``si_...``), for the next change.
    item_id: str | None = None
    applied: bool = True
    pending_expires_at: UTCDateTime | None = None
    invoice_id: str | None = None
    invoice_status: Literal["draft", "open", "paid", "uncollectible", "void"] | None = None
    hosted_invoice_url: str | None = None
    payment_intent_status: str | None = None


class InvoicePreviewRequest(Value):
    """``POST /v1/invoices/create_preview`` for a change of an existing subscription.

    The preview is the invoice Stripe would issue: with ``always_invoice`` the one charged
    now, otherwise the next renewal invoice with the prorations on it. Same field rules as
    ``SubscriptionUpdate``; pass the same ``proration_date`` to the update to be billed
    exactly what was shown.
    """

    customer_id: str = Field(min_length=1)
    subscription_id: str = Field(min_length=1)
    item_id: str | None = None
    price_id: str | None = None
    quantity: int | None = Field(default=None, ge=1)
    proration_behavior: ProrationBehavior = "create_prorations"
    proration_date: UTCDateTime | None = None
    promotion_code: str | None = None
    cancel_at_period_end: bool | None = None

    @model_validator(mode="after")
    def _item_named(self) -> InvoicePreviewRequest:
        if (self.price_id is not None or self.quantity is not None) and not self.item_id:
            raise ValueError("item_id is required to preview a price or quantity change")
        return self


class InvoiceLine(Value):
    """One line of an invoice: a period of a price, or a proration (credit is negative)."""

    amount: Money
    description: str | None = None
    price_id: str | None = None
    quantity: int | None = None
    proration: bool = False
    period_start: UTCDateTime | None = None
    period_end: UTCDateTime | None = None


class InvoicePreview(Value):
    """What a change would bill, as money.

    ``due_now`` is charged when the change is made (``always_invoice``; zero otherwise);
    ``next_invoice_total`` and ``next_invoice_at`` describe the next invoice when the preview
    is of it (``None`` for an ``always_invoice`` preview, whose next invoice is the new
    price). ``proration_total`` sums the proration lines (negative for a net credit);
    ``amount_due`` is the previewed invoice's amount after discounts and balance.
    """

    currency: str
    amount_due: Money
    total: Money
    discount_total: Money
    proration_total: Money
    due_now: Money
    next_invoice_total: Money | None = None
    next_invoice_at: UTCDateTime | None = None
    lines: tuple[InvoiceLine, ...] = ()


class SubscriptionSchedulePhase(Value):
    """One phase of a subscription schedule: the item's price and quantity for a time."""

    price_id: str
    quantity: int = 1
    start: UTCDateTime
    end: UTCDateTime | None = None
    proration_behavior: ProrationBehavior | None = None


class SubscriptionSchedule(Value):
    """A Stripe subscription schedule (``sub_sched_...``) driving one subscription.

    ``status`` is ``not_started``, ``active``, ``completed``, ``released`` or ``canceled``;
    ``end_behavior`` ``release`` leaves the subscription running after the last phase.
    """

    id: str
    subscription_id: str | None = None
    customer_id: str
    status: Literal["not_started", "active", "completed", "released", "canceled"]
    end_behavior: Literal["release", "cancel", "none", "renew"] = "release"
    current_phase_start: UTCDateTime | None = None
    current_phase_end: UTCDateTime | None = None
    phases: tuple[SubscriptionSchedulePhase, ...] = ()
    released_subscription_id: str | None = None
    metadata: Mapping[str, str] = Field(default_factory=dict)


class ScheduledChange(Value):
    """Move a subscription to ``price_id``/``quantity`` at the end of its current period.

    Creates a schedule from the subscription (its current phase) and adds a second phase
    from the period end with the new item (``end_behavior="release"``).
    ``existing_schedule_id`` reuses a schedule the subscription already has.
    """

    subscription_id: str = Field(min_length=1)
    price_id: str = Field(min_length=1)
    quantity: int = Field(default=1, ge=1)
    existing_schedule_id: str | None = None
    metadata: Mapping[str, str] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1)


class PromotionCode(Value):
    """An active promotion code (``promo_...``) and its coupon.

    Exactly one of ``percent_off`` (a percentage, e.g. ``Decimal("12.5")``) or ``amount_off``
    is set. ``duration`` is the coupon's (``once``, ``repeating`` for
    ``duration_in_months``, ``forever``).
    """

    id: str
    code: str
    active: bool = True
    coupon_id: str
    percent_off: Decimal | None = None
    amount_off: Money | None = None
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_in_months: int | None = None
    expires_at: UTCDateTime | None = None
    max_redemptions: int | None = None
    times_redeemed: int = 0
    customer_id: str | None = None
    metadata: Mapping[str, str] = Field(default_factory=dict)


#: Page size of the gateway's list calls (Stripe's maximum): n objects cost ceil(n/100) calls.
LIST_PAGE_SIZE = 100

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """One page of a Stripe list call (one request).

    Attributes:
        items: the objects of the page, in Stripe's order (newest ``created`` first).
        has_more: whether Stripe has more objects after this page.
        next_cursor: the id to pass as ``starting_after`` for the next page (the last
            item's), ``None`` when the page is the last one.
    """

    items: tuple[_T, ...]
    has_more: bool
    next_cursor: str | None


class WebhookEndpoint(Value):
    """A webhook endpoint of the Stripe account (``we_...``), as ``doctor`` checks it.

    ``enabled_events`` holds the event types the endpoint receives (``"*"`` for all);
    ``api_version`` is the version its payloads are rendered in (``None``: the account's
    default version).
    """

    id: str
    url: str
    status: Literal["enabled", "disabled"]
    enabled_events: tuple[str, ...] = ()
    api_version: str | None = None
    livemode: bool = False
    description: str | None = None


class SetupSessionRequest(Value):
    """A Checkout Session in ``setup`` mode: collect a new payment method, charge nothing.

    Built by ``CheckoutService.start_payment_method_update`` only. ``metadata`` is set on
    the session and on its SetupIntent (``setup_intent_data.metadata``), so the
    ``setup_intent.succeeded`` event names the user and the purpose.
    """

    customer_id: str = Field(min_length=1)
    success_url: str
    cancel_url: str
    client_reference_id: str
    metadata: Mapping[str, str] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1)


class MeterEvent(Value):
    """A Stripe Billing Meter event (``POST /v1/billing/meter_events``) as Stripe stored it.

    ``identifier`` is unique per account (Stripe keeps it at least 24 hours): a second event
    with the same identifier is not counted again.
    """

    identifier: str
    event_name: str
    customer_id: str
    value: int
    timestamp: UTCDateTime
    livemode: bool = False


class StripeGateway(abc.ABC):
    """Every call billingkit makes to Stripe.

    Create calls take an ``idempotency_key`` derived by the caller from stable inputs, so a
    retried request never creates a second object. Failures raise
    ``GatewayError`` subclasses with ``retryable`` set.
    """

    @abc.abstractmethod
    def create_customer(
        self,
        *,
        user_id: str,
        email: str | None,
        idempotency_key: str,
        metadata: Mapping[str, str] | None = None,
    ) -> StripeCustomer:
        """Create a customer whose metadata carries ``user_id``."""

    @abc.abstractmethod
    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        """Fetch a customer (``deleted`` set for a deleted one); 404 raises NotFound."""

    @abc.abstractmethod
    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        """Create a Checkout Session from a fully resolved request."""

    @abc.abstractmethod
    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """Fetch a Checkout Session with its subscription expanded, in one call."""

    @abc.abstractmethod
    def list_prices(
        self, *, price_ids: Sequence[str] = (), lookup_keys: Sequence[str] = ()
    ) -> list[Price]:
        """Fetch all the given prices, with their products, in as few calls as possible.

        The result holds every price found (in any order); unknown ids or keys are absent.
        """

    @abc.abstractmethod
    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        """Fetch a subscription's current state (``watermark`` left at 0)."""

    @abc.abstractmethod
    def create_billing_portal_session(
        self, *, customer_id: str, return_url: str, idempotency_key: str | None = None
    ) -> PortalSession:
        """Create a billing-portal session for the customer."""

    # subscription management ---------------------------------------------------------------
    @abc.abstractmethod
    def modify_subscription(self, update: SubscriptionUpdate) -> SubscriptionUpdateResult:
        """Change the subscription's item, discount or scheduled end in one request.

        Prorations follow ``update.proration_behavior``; with ``pending_if_incomplete`` a
        payment that fails leaves the subscription unchanged and the result not ``applied``.
        A declined card under another payment behaviour raises
        ``GatewayCardError``.
        """

    @abc.abstractmethod
    def cancel_subscription_now(
        self,
        subscription_id: str,
        *,
        prorate: bool = False,
        invoice_now: bool = False,
        idempotency_key: str,
    ) -> Subscription:
        """End the subscription at once (``DELETE /v1/subscriptions/{id}``).

        ``prorate`` credits the unused time; ``invoice_now`` invoices pending items (and
        that credit) immediately. Cancelling at period end is a ``modify_subscription``
        with ``cancel_at_period_end=True``.
        """

    @abc.abstractmethod
    def resume_paused_subscription(
        self, subscription_id: str, *, idempotency_key: str
    ) -> Subscription:
        """Resume a ``paused`` subscription (``POST /v1/subscriptions/{id}/resume``).

        A new period starts now and is invoiced. Undoing a scheduled cancel is a
        ``modify_subscription`` with ``cancel_at_period_end=False``.
        """

    @abc.abstractmethod
    def preview_invoice(self, request: InvoicePreviewRequest) -> InvoicePreview:
        """What the change in ``request`` would bill (``invoices.create_preview``); one call."""

    @abc.abstractmethod
    def schedule_subscription_change(self, change: ScheduledChange) -> SubscriptionSchedule:
        """Schedule the change for the end of the current period (a subscription schedule).

        Two requests when no ``existing_schedule_id`` is given (Stripe creates a schedule
        ``from_subscription`` only without phases), each with a key derived from
        ``change.idempotency_key``.
        """

    @abc.abstractmethod
    def release_subscription_schedule(
        self, schedule_id: str, *, idempotency_key: str
    ) -> SubscriptionSchedule:
        """Release the schedule: the subscription keeps its current state and runs on.

        This is how a scheduled change is undone before it takes effect.
        """

    @abc.abstractmethod
    def find_promotion_code(self, code: str) -> PromotionCode | None:
        """The *active* promotion code whose customer-facing ``code`` this is, or ``None``.

        Expired, exhausted or deactivated codes answer ``None``.
        """

    # list calls (reconcile, backfill, doctor) ------------------------------------------------
    @abc.abstractmethod
    def list_subscriptions(
        self,
        *,
        customer_id: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[Subscription]]:
        """Every subscription, of every status (``canceled`` included), page by page.

        Newest ``created`` first, as Stripe lists them; optionally of one customer and
        created at or after ``created_gte``. ``starting_after`` (a subscription id) resumes
        after that subscription. Lazy: each page is one request, made when the iterator
        is advanced to it, so n subscriptions cost ceil(n / ``page_size``) requests and
        only one page is held at a time.
        """

    @abc.abstractmethod
    def list_customers(
        self,
        *,
        email: str | None = None,
        created_gte: datetime | None = None,
        starting_after: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> Iterator[Page[StripeCustomer]]:
        """Every (non-deleted) customer, page by page, newest first; lazy like the others.

        Optionally only those with exactly that ``email`` or created at or after
        ``created_gte``.
        """

    @abc.abstractmethod
    def list_webhook_endpoints(
        self, *, starting_after: str | None = None, page_size: int = LIST_PAGE_SIZE
    ) -> Iterator[Page[WebhookEndpoint]]:
        """The account's webhook endpoints, page by page (one request per page)."""

    # payment methods -----------------------------------------------------------------------
    @abc.abstractmethod
    def create_setup_checkout_session(self, request: SetupSessionRequest) -> CheckoutSession:
        """Create a Checkout Session in ``setup`` mode (one request, idempotent)."""

    @abc.abstractmethod
    def set_default_payment_method(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        subscription_ids: Sequence[str] = (),
        idempotency_key: str,
    ) -> None:
        """Make the method the customer's default and each subscription's default.

        One request for the customer (``invoice_settings.default_payment_method``) plus one
        per subscription (``default_payment_method``), each with a key derived from
        ``idempotency_key``: ``1 + len(subscription_ids)`` calls.
        """

    # usage-based billing ---------------------------------------------------------------------
    @abc.abstractmethod
    def create_meter_event(
        self,
        *,
        event_name: str,
        customer_id: str,
        value: int,
        identifier: str,
        timestamp: datetime,
    ) -> MeterEvent:
        """Report ``value`` units of ``event_name`` for a customer (one meter event).

        ``identifier`` is the event's idempotency at Stripe: sending the same identifier
        again is answered without counting the usage twice. A meter that does not exist or
        is inactive raises ``GatewayInvalidRequestError``.
        """


# --------------------------------------------------------------------------- repository


class ClaimOutcome(str, Enum):
    """What claiming an event id in the ledger found."""

    CLAIMED = "claimed"  # new, or a failed/pending event taken up again: apply it now
    DUPLICATE = "duplicate"  # already processed, ignored, stale, or being processed


class UnitOfWork(abc.ABC):
    """One transaction over the billing tables.

    Obtained from ``Repository.unit_of_work``; everything done through it commits together
    when the ``with`` block exits normally and is rolled back if it raises.
    """

    # customers ------------------------------------------------------------------------------
    @abc.abstractmethod
    def customer_for_user(self, user_id: str) -> CustomerLink | None:
        """The Stripe customer linked to ``user_id``."""

    @abc.abstractmethod
    def customer_by_id(self, customer_id: str) -> CustomerLink | None:
        """The link for a Stripe customer id."""

    @abc.abstractmethod
    def link_customer(self, link: CustomerLink) -> CustomerLink:
        """Store ``link`` atomically, unique in both directions.

        Returns the stored link: ``link`` itself, or the existing one when the same pair is
        already stored. Raises ``ConflictError`` when the user is
        linked to another customer or the customer to another user.
        """

    @abc.abstractmethod
    def relink_customer(self, link: CustomerLink, *, replacing: str) -> CustomerLink:
        """Link ``link.user_id`` to a fresh customer in place of the deleted ``replacing``.

        Atomic compare-and-swap on the user's current link: when it is ``replacing`` and
        marked ``deleted``, ``link`` becomes the current link and the old one is kept as
        history (``customer_by_id`` still answers it, the user's subscriptions on it are
        still the user's); ``customer_for_user`` answers ``link`` from then on. Returns
        the user's current link: ``link``, or the one another writer put in place of
        ``replacing`` first. Raises ``ConflictError`` when the user's
        current link is not ``replacing`` nor a replacement of it, when ``replacing`` is not
        deleted, or when ``link.customer_id`` is already linked.
        """

    @abc.abstractmethod
    def update_customer(self, link: CustomerLink) -> SaveOutcome:
        """Replace the stored email/deleted of ``link.customer_id`` if ``link`` is newer.

        Same watermark rule as ``save_subscription`` (ties count as written). The user
        id never changes. Returns ``STALE`` when the customer is not linked at all.
        """

    # subscriptions --------------------------------------------------------------------------
    @abc.abstractmethod
    def get_subscription(self, subscription_id: str) -> Subscription | None:
        """The stored subscription with that id."""

    @abc.abstractmethod
    def subscriptions_for_user(self, user_id: str) -> list[Subscription]:
        """Subscriptions whose ``user_id`` is ``user_id`` or whose customer is linked to it.

        Newest first (by ``created``, then id).
        """

    @abc.abstractmethod
    def save_subscription(
        self, subscription: Subscription, *, allow_tie: bool = False
    ) -> SaveOutcome:
        """Store ``subscription`` only if it is newer than the stored state, atomically.

        Rules, in order: no stored row -> insert (``WRITTEN``); stored status terminal and
        the new one not -> ``STALE``; new watermark lower -> ``STALE``; equal, or the stored
        watermark is ``FETCHED_WATERMARK`` (a state fetched outside any event) ->
        ``WRITTEN`` if ``allow_tie`` else ``TIE``; higher -> ``WRITTEN``. A write never
        erases a known ``user_id`` (a ``None`` keeps the stored value); a ``None``
        ``plan_key`` keeps the stored one only when ``price_id`` is unchanged (a move to a
        price no plan uses must not keep the old plan's features).
        """

    # checkout sessions ----------------------------------------------------------------------
    @abc.abstractmethod
    def save_checkout(self, record: CheckoutRecord) -> None:
        """Insert or replace the record for ``record.session_id``."""

    @abc.abstractmethod
    def get_checkout(self, session_id: str) -> CheckoutRecord | None:
        """The stored checkout session."""

    @abc.abstractmethod
    def find_open_checkout(
        self, *, user_id: str, request_key: str, created_after: datetime
    ) -> CheckoutRecord | None:
        """The newest ``open`` checkout of the user with that request key, created after."""

    @abc.abstractmethod
    def open_checkouts_for_user(
        self, *, user_id: str, created_after: datetime
    ) -> list[CheckoutRecord]:
        """The user's ``open`` checkouts (any request key) created after, newest first.

        Ordered by ``created_at`` then session id, both descending. ``CheckoutService`` asks
        for the last day only (Stripe sessions expire within 24 hours), to find a payment
        that may have gone through before its webhook arrived.
        """

    # event ledger -----------------------------------------------------------------------------
    @abc.abstractmethod
    def claim_event(self, record: EventRecord) -> ClaimOutcome:
        """Claim an event id atomically (a unique constraint, never read-then-write).

        Absent -> inserted with ``record``'s fields and status ``PROCESSING``, ``CLAIMED``.
        Stored as ``FAILED`` or ``PENDING`` -> status ``PROCESSING``, ``attempts`` + 1,
        ``CLAIMED``. Anything else -> ``DUPLICATE``, nothing changed.

        A ``record`` whose status is final (``PROCESSED``, ``IGNORED`` or ``STALE``) is
        claimed with that status and ``processed_at`` (``received_at`` when unset) instead
        of ``PROCESSING``: a caller that knows the outcome of the event writes the ledger
        row once (it is invisible until the unit of work commits, and rolled back with it),
        and calls `finish_event` only if the outcome turns out different.
        """

    @abc.abstractmethod
    def finish_event(self, event_id: str, status: EventStatus, *, processed_at: datetime) -> None:
        """Set the final status (processed, ignored or stale) of a claimed event."""

    @abc.abstractmethod
    def mark_event_failed(self, record: EventRecord, error: str) -> EventRecord:
        """Record a failure in its own unit of work, after the event's one rolled back.

        Absent -> inserted from ``record`` with status ``FAILED``, ``attempts`` 1. Stored as
        failed/pending/processing -> status ``FAILED``, ``attempts`` + 1, ``last_error``.
        A processed/ignored/stale event is left alone. Returns the stored record.
        """

    @abc.abstractmethod
    def get_event(self, event_id: str) -> EventRecord | None:
        """The ledger entry, with its raw payload."""

    @abc.abstractmethod
    def list_events(
        self, *, status: EventStatus | None = None, limit: int = 100
    ) -> list[EventRecord]:
        """Ledger entries, oldest ``received_at`` first, optionally of one status."""

    # deferred webhook processing --------------------------------------------------------------
    @abc.abstractmethod
    def store_pending_event(self, record: EventRecord) -> ClaimOutcome:
        """Insert ``record`` as ``PENDING`` unless its id is in the ledger, atomically.

        Absent -> inserted with ``record``'s id, type, created, livemode, payload and
        received_at, status ``PENDING``, ``attempts`` 0, no error, no times: ``CLAIMED``.
        Present (any status) -> ``DUPLICATE``, nothing changed. A unique constraint decides,
        never a read-then-write.
        """

    @abc.abstractmethod
    def claim_stored_event(self, event_id: str, *, now: datetime) -> EventRecord | None:
        """Take up one stored event by id, atomically, and return it with its payload.

        Claimable: ``PENDING``, or ``FAILED`` with ``next_attempt_at`` ``None`` or not after
        ``now``. It becomes ``PROCESSING``, ``attempts`` + 1, ``next_attempt_at`` ``None``.
        Anything else (absent, not due, dead, finished, or being processed by another unit
        of work, which it waits for) -> ``None``, nothing changed.
        """

    @abc.abstractmethod
    def claim_due_events(self, *, now: datetime, limit: int) -> list[EventRecord]:
        """Claim up to ``limit`` claimable events (as ``claim_stored_event``).

        Oldest ``created`` first, then id. Events another open unit of work holds are
        skipped, never waited for (``FOR UPDATE SKIP LOCKED``; a single writer on SQLite):
        concurrent callers never get the same event. Returns the claimed records, already
        ``PROCESSING`` with ``attempts`` + 1.
        """

    @abc.abstractmethod
    def schedule_event_retry(self, event_id: str, *, error: str, next_attempt_at: datetime) -> None:
        """A failed attempt: status ``FAILED``, ``last_error``, due again at ``next_attempt_at``.

        Applies to a ``PROCESSING``, ``PENDING`` or ``FAILED`` event; ``attempts`` is not
        changed (the claim counted it). Any other status or an absent id: nothing changed.
        """

    @abc.abstractmethod
    def mark_event_dead(self, event_id: str, *, error: str) -> None:
        """The last allowed attempt failed: status ``DEAD``, ``last_error``, no next attempt.

        Same statuses as ``schedule_event_retry``; a dead event is never claimed.
        """

    @abc.abstractmethod
    def revive_event(self, event_id: str) -> EventRecord | None:
        """Make a ``DEAD`` or ``FAILED`` event due now (status ``FAILED``, no next attempt).

        Returns the stored record after the change (unchanged for other statuses), or
        ``None`` for an id not in the ledger.
        """

    @abc.abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: if its block raises, only its writes are rolled back.

        The exception propagates; the unit of work stays usable and what was written before
        the savepoint is kept.
        """

    @abc.abstractmethod
    def count_events(self, status: EventStatus) -> int:
        """How many ledger entries have ``status``."""

    @abc.abstractmethod
    def oldest_received_at(self, status: EventStatus) -> datetime | None:
        """The earliest ``received_at`` among entries with ``status`` (``None``: none)."""

    # invoices and charges (issue 13) ----------------------------------------------------------
    @abc.abstractmethod
    def get_invoice(self, invoice_id: str) -> InvoiceSummary | None:
        """The stored invoice summary (a deleted draft too, with status ``deleted``).

        ``amount_refunded`` is filled as in ``invoices_for_user``.
        """

    @abc.abstractmethod
    def save_invoice(self, invoice: InvoiceSummary) -> SaveOutcome:
        """Store ``invoice`` only if it is newer than the stored state, atomically.

        No stored row -> insert (``WRITTEN``); otherwise
        ``decide_invoice_save`` decides (``WRITTEN`` or
        ``STALE``, never ``TIE``) and a write is merged with
        ``merge_invoice`` (a ``None`` keeps the stored user,
        number, URLs, payment ids, subscription and period). ``amount_refunded`` is not stored.
        """

    @abc.abstractmethod
    def invoices_for_user(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[InvoiceSummary]:
        """The user's invoices, newest first (``created`` then id, descending), not deleted.

        An invoice is the user's when its ``user_id`` is ``user_id`` or its customer is linked
        to the user. ``before`` (a ``(created, id)`` key) keeps only invoices strictly after
        it in that order. ``amount_refunded`` is the sum of ``amount_refunded`` over the
        stored charges whose ``invoice_id`` is the invoice's, in the invoice currency
        (``None`` without a currency).
        """

    @abc.abstractmethod
    def save_charge(self, charge: ChargeRecord) -> ChargeRecord:
        """Merge ``charge`` into the record stored under its key, atomically; return it.

        The stored record is ``merge_charge`` of both, so
        the result does not depend on the order of the saves.
        """

    @abc.abstractmethod
    def get_charge(self, key: str) -> ChargeRecord | None:
        """The charge stored under ``key`` (payment intent id, else charge id)."""

    # reconcile ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_reconcile_checkpoint(self, name: str) -> ReconcileCheckpoint | None:
        """The checkpoint stored under ``name``, if any."""

    @abc.abstractmethod
    def save_reconcile_checkpoint(self, checkpoint: ReconcileCheckpoint) -> None:
        """Insert the checkpoint, or replace the one stored under the same name."""

    @abc.abstractmethod
    def delete_reconcile_checkpoint(self, name: str) -> None:
        """Forget the checkpoint stored under ``name`` (nothing happens if there is none)."""

    @abc.abstractmethod
    def subscription_ids_created_between(
        self,
        *,
        newer_than: datetime | None,
        at_most: datetime | None,
        customer_id: str | None = None,
    ) -> list[str]:
        """Ids of stored subscriptions created in ``(newer_than, at_most]``.

        ``None`` leaves a side unbounded; ``customer_id`` keeps one customer's. Newest
        ``created`` first, then id descending. Reconcile asks for one listed page's span of
        seconds at a time, to find what Stripe no longer lists without holding every id.
        """

    # one-time purchases ----------------------------------------------------------------------
    @abc.abstractmethod
    def save_purchase(self, purchase: Purchase) -> None:
        """Insert or replace the purchase of ``purchase.session_id``.

        The caller decides the new state (``advance_purchase``
        against the stored one, read in the same unit of work).
        """

    @abc.abstractmethod
    def get_purchase(self, session_id: str) -> Purchase | None:
        """The purchase made through Checkout Session ``session_id``."""

    @abc.abstractmethod
    def purchase_by_payment_intent(self, payment_intent_id: str) -> Purchase | None:
        """The purchase paid by ``payment_intent_id`` (``pi_...``), for its refunds."""

    @abc.abstractmethod
    def purchases_for_user(self, user_id: str) -> list[Purchase]:
        """The user's purchases, newest first (``created_at``, then session id, descending)."""

    # payment methods and entitlements ---------------------------------------------------------
    @abc.abstractmethod
    def save_payment_method(self, method: PaymentMethodSummary) -> SaveOutcome:
        """Store ``method`` only if not older than the stored state, atomically.

        No stored row -> insert (``WRITTEN``); otherwise
        ``decide_payment_method`` decides (a detached
        method stays detached; a lower watermark is ``STALE``; ties are written). A
        ``customer_id`` of ``None`` (a detach) keeps the stored customer.
        """

    @abc.abstractmethod
    def get_payment_method(self, payment_method_id: str) -> PaymentMethodSummary | None:
        """The stored payment method with that id (detached ones included)."""

    @abc.abstractmethod
    def payment_methods_for_customer(self, customer_id: str) -> list[PaymentMethodSummary]:
        """The customer's methods that are not detached, newest ``created`` first, then id."""

    @abc.abstractmethod
    def save_default_payment_method(self, default: DefaultPaymentMethod) -> SaveOutcome:
        """Store the customer's default unless the stored one has a higher watermark.

        Ties are written. Atomic, like ``save_payment_method``.
        """

    @abc.abstractmethod
    def default_payment_method(self, customer_id: str) -> DefaultPaymentMethod | None:
        """The stored default of the customer."""

    @abc.abstractmethod
    def save_entitlements(self, summary: EntitlementSummary) -> SaveOutcome:
        """Store the customer's active entitlements unless the stored ones are newer.

        Ties are written. Atomic, like ``save_payment_method``.
        """

    @abc.abstractmethod
    def entitlements_for_customer(self, customer_id: str) -> EntitlementSummary | None:
        """The stored entitlement summary of the customer."""

    # usage outbox -----------------------------------------------------------------------------
    @abc.abstractmethod
    def add_usage(self, record: UsageRecord) -> bool:
        """Insert ``record`` into the usage outbox unless its identifier is there, atomically.

        Absent -> inserted as given: ``True``. Present (any status) -> ``False``, nothing
        changed (a unique constraint decides, so recording twice is harmless).
        """

    @abc.abstractmethod
    def claim_due_usage(
        self, *, now: datetime, limit: int, lease_until: datetime
    ) -> list[UsageRecord]:
        """Claim up to ``limit`` due usage records for sending, oldest first.

        Due: ``pending``; ``failed`` with ``next_attempt_at`` ``None`` or not after ``now``;
        ``sending`` whose lease (``next_attempt_at``) ended by ``now`` (its flush died).
        They become ``sending`` with ``next_attempt_at`` = ``lease_until``; ``attempts`` is
        unchanged. Ordered by ``recorded_at`` then identifier. Records another open unit of
        work holds are skipped, never waited for (``FOR UPDATE SKIP LOCKED``): concurrent
        callers never get the same record.
        """

    @abc.abstractmethod
    def mark_usage_sent(self, identifiers: Sequence[str], *, sent_at: datetime) -> int:
        """Records Stripe accepted: status ``sent``, ``sent_at``, no next attempt, no error.

        Applies to records not yet ``sent``; returns how many changed.
        """

    @abc.abstractmethod
    def release_usage(self, identifiers: Sequence[str]) -> None:
        """Give back ``sending`` records a flush did not try: due now again.

        Each becomes ``pending`` (``failed`` if it has failed before) with no next attempt.
        """

    @abc.abstractmethod
    def schedule_usage_retry(
        self, identifier: str, *, error: str, next_attempt_at: datetime
    ) -> None:
        """A failed attempt: ``failed``, ``attempts`` + 1, ``last_error``, due at the time.

        Applies to a ``pending``, ``sending`` or ``failed`` record; otherwise nothing changes.
        """

    @abc.abstractmethod
    def mark_usage_dead(self, identifier: str, *, error: str) -> None:
        """The last allowed attempt failed: ``dead``, ``attempts`` + 1, ``last_error``.

        Same statuses as ``schedule_usage_retry``; a dead record is never claimed.
        """

    @abc.abstractmethod
    def get_usage(self, identifier: str) -> UsageRecord | None:
        """The stored usage record with that identifier."""

    @abc.abstractmethod
    def list_usage(
        self, *, status: UsageStatus | None = None, limit: int = 100
    ) -> list[UsageRecord]:
        """Usage records, oldest ``recorded_at`` first (then identifier), of one status or all."""

    @abc.abstractmethod
    def usage_total(
        self, user_id: str, event_name: str, *, start: datetime, end: datetime
    ) -> UsageTotal:
        """Sum of the user's records of ``event_name`` with ``start <= timestamp < end``.

        Dead records are left out; ``unsent`` counts the others not yet ``sent``.
        """


@runtime_checkable
class Dispatcher(Protocol):
    """Hands a received event's id to whatever applies it (deferred mode).

    Called by ``WebhookProcessor.receive`` after the ``pending`` ledger row committed. It
    must not raise: a dispatch that is lost (the queue is down, the process crashed) leaves
    the event pending, and ``WebhookProcessor.drain`` picks it up. The queue is a wake-up
    call; the ledger decides what is applied, exactly once.
    """

    def dispatch(self, event_id: str) -> None:
        """Arrange for ``WebhookProcessor.process(event_id)`` to run, now or soon."""


class Repository(abc.ABC):
    """Persistence for billingkit: hands out units of work."""

    @abc.abstractmethod
    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]:
        """Open a transaction: commit on normal exit, roll back if the block raises."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections or other resources; the default does nothing."""


# --------------------------------------------------------------------------- adapter base

#: Lifecycle states of a ``UnitOfWorkBase``: created, inside its ``with`` block, exited.
_NEW, _OPEN, _CLOSED = 0, 1, 2

#: Characters no database stores in a text column: NUL (PostgreSQL refuses it) and lone
#: surrogates (not encodable in UTF-8, so every driver refuses them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


#: ``(id(scope), thread ident)`` of every open unit of work: a thread holds at most one per
#: scope (set operations are atomic under the GIL; each key is only ever added or removed by
#: its own thread).
_HELD: set[tuple[int, int]] = set()
#: The storage limits (see ``UnitOfWorkBase``).
_MAX_ID_CHARS = 255
_MAX_TEXT_CHARS = 16_000


class UnitOfWorkBase(UnitOfWork):
    """The unit-of-work lifecycle, written once; an adapter adds its transaction and queries.

    A template method (as in *Architecture Patterns with Python*): ``__enter__`` and
    ``__exit__`` live here and call the adapter's ``_begin``, then ``_commit`` when
    the ``with`` block exits normally or ``_rollback`` when it raises (any exception,
    ``KeyboardInterrupt`` included), then ``_release``. The base enforces the rules of
    use every repository shares, with the same ``RepositoryError``
    messages:

    * a unit of work is entered once;
    * it is used only inside its ``with`` block, by the thread that entered it — every port
      method starts with ``_check``;
    * units of work do not nest: entering one while this thread holds another one of the
      same *scope* (the object passed to ``__init__``, normally the repository) is refused
      before ``_begin`` runs (waiting could deadlock, and silently joining the outer
      transaction would hide a design error);
    * an error raised by ``_rollback`` is suppressed: the block's own exception is the
      one that propagates.

    It also gives the ledger writes their storage rule (``_storable_id``,
    ``_storable_text``), so a failure can always be recorded.

    A minimal third-party adapter (``mydb`` stands for any database client)::

        from billingkit.ports import Repository, UnitOfWorkBase


        class MyDbRepository(Repository):
            def __init__(self, pool: mydb.Pool) -> None:
                self.pool = pool

            def unit_of_work(self) -> MyDbUnitOfWork:
                return MyDbUnitOfWork(self)


        class MyDbUnitOfWork(UnitOfWorkBase):
            def __init__(self, repository: MyDbRepository) -> None:
                super().__init__(repository)  # nesting is refused per repository
                self._pool = repository.pool

            def _begin(self) -> None:
                self._tx = self._pool.transaction()

            def _commit(self) -> None:
                self._tx.commit()

            def _rollback(self) -> None:
                self._tx.rollback()

            def get_subscription(self, subscription_id: str) -> Subscription | None:
                self._check()
                row = self._tx.fetch_one("SELECT ... WHERE id = ?", subscription_id)
                return None if row is None else Subscription.model_validate(row)

            ...  # the other UnitOfWork methods: queries only

    Run ``tests/contract/``'s suite against it to check it keeps the port's promises.
    """

    __slots__ = ("_owner", "_scope", "_state")

    #: The longest id the SQL schemas store (``VARCHAR(255)``; Stripe's own limit).
    MAX_ID_CHARS: ClassVar[int] = _MAX_ID_CHARS
    #: The longest event type stored, like ids.
    MAX_TYPE_CHARS: ClassVar[int] = _MAX_ID_CHARS
    #: The longest ``last_error`` stored: 16,000 characters are at most 64,000 bytes of
    #: UTF-8, within MySQL's ``TEXT``.
    MAX_ERROR_CHARS: ClassVar[int] = _MAX_TEXT_CHARS

    def __init__(self, scope: object) -> None:
        """Start a unit of work of ``scope``; one per thread and scope may be open at a time."""
        self._scope = scope
        self._state = _NEW
        self._owner: int | None = None

    # ------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        if self._state != _NEW:
            raise RepositoryError("a unit of work can be entered only once")
        me = get_ident()
        key = (id(self._scope), me)
        if key in _HELD:
            raise RepositoryError(
                "nested unit of work: this thread already holds a unit of work of this "
                "repository; finish it before opening another one"
            )
        self._begin()
        _HELD.add(key)
        self._state = _OPEN
        self._owner = me
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state != _OPEN:
            return
        try:
            if exc_type is None:
                self._commit()
            else:
                with suppress(Exception):
                    self._rollback()
        finally:
            _HELD.discard((id(self._scope), self._owner))
            self._state = _CLOSED
            self._owner = None
            self._release()

    def _check(self) -> None:
        """Raise ``RepositoryError`` unless usable here and now.

        Usable means: inside the ``with`` block, on the thread that entered it. Call it
        first in every port method.
        """
        if self._owner != get_ident():
            if self._state == _NEW:
                raise RepositoryError("unit of work used before its with block was entered")
            if self._state == _CLOSED:
                raise RepositoryError("unit of work used after its with block exited")
            raise RepositoryError("unit of work used from another thread than its owner")

    # -------------------------------------------------------------------- adapter hooks

    @abc.abstractmethod
    def _begin(self) -> None:
        """Start the transaction; if this raises, it must leave nothing to release."""

    @abc.abstractmethod
    def _commit(self) -> None:
        """Make the block's writes durable (the block exited normally)."""

    @abc.abstractmethod
    def _rollback(self) -> None:
        """Undo the block's writes (the block raised)."""

    def _release(self) -> None:
        """Return what ``_begin`` took (a connection, a lock); runs after every exit.

        Called once after ``_commit`` or ``_rollback``, even when they raise.
        """

    # ------------------------------------------------------------- ledger storage rule

    @staticmethod
    def _storable_id(value: str) -> str:
        """The ledger id under which ``value`` is stored: ``value`` itself when storable.

        A storable id has at most ``MAX_ID_CHARS`` characters, none of them NUL or a
        lone surrogate (every real Stripe id). Any other id becomes its cleaned prefix plus
        ``~`` and a SHA-256 digest of the whole id: storable, distinct for distinct ids, and
        the same on every call, so claiming, finishing, failing and reading an event agree.
        """
        if len(value) <= _MAX_ID_CHARS and (
            "\x00" not in value if value.isascii() else _UNSTORABLE.search(value) is None
        ):
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        prefix = _UNSTORABLE.sub("\ufffd", value[: _MAX_ID_CHARS - len(digest) - 1])
        return f"{prefix}~{digest}"

    @staticmethod
    def _storable_text(value: str, limit: int) -> str:
        """``value`` with NUL and lone surrogates replaced by U+FFFD, cut to ``limit`` chars."""
        if len(value) <= limit and (
            "\x00" not in value if value.isascii() else _UNSTORABLE.search(value) is None
        ):
            return value
        return _UNSTORABLE.sub("\ufffd", value[:limit])
