"""Typed events the webhook processor tells the app about, and their registry.

A hook is named by its event class or by its kind string (a ``HookKind`` value)::

    def welcome(event: SubscriptionActivated) -> None: ...

    processor.on(SubscriptionActivated, welcome)  # type-checked against the callback
    processor.on("payment_failed", notify_dunning)  # HookKind.PAYMENT_FAILED is this string

Callbacks run inside the event's unit of work, after its state was applied and before it
commits: one that raises fails the event (rolled back, recorded as failed, Stripe retries),
so callbacks must be idempotent (key effects on ``event.event_id``). When each fires, and
the "activated" rule (``billingkit.domain.access.is_activation`` under the configured
``AccessPolicy``): ``docs/webhooks.md#hooks``.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Literal, TypeVar, overload

from billingkit.domain import (
    Money,
    Purchase,
    Subscription,
    SubscriptionStatus,
    UTCDateTime,
    Value,
)
from billingkit.errors import InvalidInputError

__all__ = [
    "API_EVENT_PREFIX",
    "CancelScheduled",
    "CancelUndone",
    "CheckoutCompleted",
    "DisputeClosed",
    "DisputeHookEvent",
    "DisputeOpened",
    "HookEvent",
    "HookKind",
    "HookRegistry",
    "InvoiceHookEvent",
    "PaymentActionRequired",
    "PaymentFailed",
    "PlanChangeScheduled",
    "PlanChanged",
    "PurchaseCompleted",
    "PurchaseRefunded",
    "QuantityChanged",
    "SubscriptionActivated",
    "SubscriptionCanceled",
    "SubscriptionPlanUnknown",
    "SubscriptionRecovered",
    "TrialWillEnd",
]


class HookKind(str, Enum):
    """The things the webhook processor tells the app about."""

    SUBSCRIPTION_ACTIVATED = "subscription_activated"
    PLAN_CHANGED = "plan_changed"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_ACTION_REQUIRED = "payment_action_required"
    TRIAL_WILL_END = "trial_will_end"
    CHECKOUT_COMPLETED = "checkout_completed"
    PLAN_CHANGE_SCHEDULED = "plan_change_scheduled"
    QUANTITY_CHANGED = "quantity_changed"
    CANCEL_SCHEDULED = "cancel_scheduled"
    CANCEL_UNDONE = "cancel_undone"
    SUBSCRIPTION_PLAN_UNKNOWN = "subscription_plan_unknown"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_CLOSED = "dispute_closed"
    SUBSCRIPTION_RECOVERED = "subscription_recovered"
    PURCHASE_COMPLETED = "purchase_completed"
    PURCHASE_REFUNDED = "purchase_refunded"


#: Prefix of the synthetic ``event_id`` of a hook fired by a
#: ``SubscriptionService`` operation (Stripe's API
#: answer stored the transition before any webhook did): ``"bk_api:" + idempotency key``,
#: stable across retries of the same operation.
API_EVENT_PREFIX = "bk_api:"


class HookEvent(Value):
    """Base of every hook event.

    Attributes:
        event_id: the Stripe event id (stable across retries: use it to make effects
            idempotent). When a ``SubscriptionService`` operation's answer stored the
            transition first, ``API_EVENT_PREFIX`` + the operation's idempotency key.
        event_type: the Stripe event type, e.g. ``customer.subscription.updated``; for an
            operation's answer ``billingkit.subscriptions.<operation>``.
        user_id: the app's user, when known (metadata or customer link).
    """

    kind: ClassVar[HookKind]

    event_id: str
    event_type: str
    user_id: str | None = None


class SubscriptionActivated(HookEvent):
    """A subscription grants access for the first time (send the welcome e-mail here).

    It entered a status the access policy grants from one it does not, and not back from a
    lapse (that is `SubscriptionRecovered`). ``subscription`` is the stored state;
    ``previous_status`` is ``None`` for a subscription created in a granting status. See
    ``billingkit.domain.access.is_activation``.
    """

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_ACTIVATED

    subscription: Subscription
    previous_status: SubscriptionStatus | None = None


class PlanChanged(HookEvent):
    """A subscription moved to another price (and maybe plan): the change is applied.

    Fires once per change, whether ``change_plan``'s answer or the webhook stored it first;
    a change kept pending (payment not made) fires when it is applied.
    """

    kind: ClassVar[HookKind] = HookKind.PLAN_CHANGED

    subscription: Subscription
    previous_price_id: str
    previous_plan_key: str | None = None


class SubscriptionCanceled(HookEvent):
    """A subscription ended (status ``canceled``)."""

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_CANCELED

    subscription: Subscription


class PlanChangeScheduled(HookEvent):
    """A change was scheduled for the end of the period (a subscription schedule attached).

    ``price_id``/``plan_key`` name the target when the app's ``change_plan(...,
    when="period_end")`` stored it first; ``None`` when only the webhook told (Stripe's
    subscription event does not carry the schedule's phases). ``effective_at`` is the
    current period's end.
    """

    kind: ClassVar[HookKind] = HookKind.PLAN_CHANGE_SCHEDULED

    subscription: Subscription
    schedule_id: str
    price_id: str | None = None
    plan_key: str | None = None
    effective_at: UTCDateTime | None = None


class QuantityChanged(HookEvent):
    """The subscription's quantity (seats) changed."""

    kind: ClassVar[HookKind] = HookKind.QUANTITY_CHANGED

    subscription: Subscription
    previous_quantity: int


class CancelScheduled(HookEvent):
    """The subscription was set to cancel at the end of its period (``cancel_at``)."""

    kind: ClassVar[HookKind] = HookKind.CANCEL_SCHEDULED

    subscription: Subscription
    cancel_at: UTCDateTime | None = None


class CancelUndone(HookEvent):
    """A scheduled cancellation was withdrawn: the subscription renews again."""

    kind: ClassVar[HookKind] = HookKind.CANCEL_UNDONE

    subscription: Subscription


class TrialWillEnd(HookEvent):
    """A trial ends soon (Stripe sends this three days before ``trial_end``)."""

    kind: ClassVar[HookKind] = HookKind.TRIAL_WILL_END

    subscription: Subscription
    trial_end: UTCDateTime | None = None


class InvoiceHookEvent(HookEvent):
    """Fields shared by the invoice payment events.

    ``amount_due`` is in minor units; ``hosted_invoice_url`` is where the customer can pay or
    authenticate.
    """

    customer_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str
    amount_due: Money | None = None
    attempt_count: int | None = None
    next_payment_attempt: UTCDateTime | None = None
    hosted_invoice_url: str | None = None


class PaymentFailed(InvoiceHookEvent):
    """An invoice payment failed; Stripe may retry it (``next_payment_attempt``)."""

    kind: ClassVar[HookKind] = HookKind.PAYMENT_FAILED


class PaymentActionRequired(InvoiceHookEvent):
    """An invoice payment needs the customer (e.g. 3-D Secure): send them the invoice URL."""

    kind: ClassVar[HookKind] = HookKind.PAYMENT_ACTION_REQUIRED


class CheckoutCompleted(HookEvent):
    """A Checkout Session completed, or its delayed payment succeeded.

    ``plan_key`` comes from the checkout billingkit stored when starting it (``None`` for a
    session started elsewhere).
    """

    kind: ClassVar[HookKind] = HookKind.CHECKOUT_COMPLETED

    session_id: str
    customer_id: str | None = None
    mode: Literal["subscription", "payment", "setup"]
    payment_status: Literal["paid", "unpaid", "no_payment_required"]
    subscription_id: str | None = None
    plan_key: str | None = None


class SubscriptionPlanUnknown(HookEvent):
    """A subscription is now billed at a price no configured plan uses.

    Its ``plan_key`` is stored as ``None``, so the user gets no plan features: alert on it
    (a price created in the Dashboard, a legacy plan missing from the configuration). Fires
    once per transition of the subscription to such a price: when it is first stored, or
    when it moves to it from another price or from a known plan; not again for later
    events at the same price. ``BillingDetails.plan_problem`` says the same to readers.
    """

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_PLAN_UNKNOWN

    subscription_id: str
    price_id: str
    subscription: Subscription


class DisputeHookEvent(HookEvent):
    """Fields shared by the dispute events (billingkit only tells; the app decides).

    Attributes:
        dispute_id: ``du_...``.
        amount: the disputed amount.
        reason: Stripe's reason, e.g. ``fraudulent``.
        status: Stripe's dispute status, e.g. ``needs_response``, ``won``, ``lost``.
        charge_id: the disputed charge.
        payment_intent_id: its payment intent, when known.
        invoice_id: the invoice the charge paid, when billingkit has seen the link.
        customer_id: the Stripe customer, when known.
    """

    dispute_id: str
    amount: Money | None = None
    reason: str | None = None
    status: str | None = None
    charge_id: str | None = None
    payment_intent_id: str | None = None
    invoice_id: str | None = None
    customer_id: str | None = None


class DisputeOpened(DisputeHookEvent):
    """A customer disputed a charge (``charge.dispute.created``): e.g. suspend access."""

    kind: ClassVar[HookKind] = HookKind.DISPUTE_OPENED


class DisputeClosed(DisputeHookEvent):
    """A dispute ended (``charge.dispute.closed``); ``status`` says ``won`` or ``lost``."""

    kind: ClassVar[HookKind] = HookKind.DISPUTE_CLOSED


class SubscriptionRecovered(HookEvent):
    """A lapsed subscription grants access again: paid after ``past_due`` or ``unpaid``.

    Fires instead of ``SubscriptionActivated`` (which fires once, the first time), so a
    welcome e-mail is not sent twice; also for a return from ``paused`` after a trial that
    granted access. ``previous_status`` is the lapsed status. See
    ``billingkit.domain.access.is_recovery``.
    """

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_RECOVERED

    subscription: Subscription
    previous_status: SubscriptionStatus


class PurchaseCompleted(HookEvent):
    """A one-time purchase was paid: deliver what was bought (``purchase.plan_key``).

    Fires once per purchase: on ``checkout.session.completed`` when the payment went
    through at once, or on ``checkout.session.async_payment_succeeded`` for a delayed
    payment method (then the completed session was stored as ``pending`` first).
    ``purchase`` is the stored state.
    """

    kind: ClassVar[HookKind] = HookKind.PURCHASE_COMPLETED

    purchase: Purchase


class PurchaseRefunded(HookEvent):
    """Some or all of a one-time purchase was refunded (``charge.refunded``).

    ``refund`` is what this refund gave back; ``purchase.refunded`` the total so far;
    ``fully_refunded`` whether nothing is left (revoke what was bought then). Fires once
    per increase of the amount refunded: a repeated or out-of-order event fires nothing.
    """

    kind: ClassVar[HookKind] = HookKind.PURCHASE_REFUNDED

    purchase: Purchase
    refund: Money
    fully_refunded: bool


_E = TypeVar("_E", bound=HookEvent)
_EVENT_CLASSES: dict[HookKind, type[HookEvent]] = {
    cls.kind: cls
    for cls in (
        SubscriptionActivated,
        PlanChanged,
        SubscriptionCanceled,
        PaymentFailed,
        PaymentActionRequired,
        TrialWillEnd,
        CheckoutCompleted,
        PlanChangeScheduled,
        QuantityChanged,
        CancelScheduled,
        CancelUndone,
        SubscriptionPlanUnknown,
        DisputeOpened,
        DisputeClosed,
        SubscriptionRecovered,
        PurchaseCompleted,
        PurchaseRefunded,
    )
}
#: A registered callback; its return value is ignored.
HookCallback = Callable[[Any], object]


class HookRegistry:
    """Callbacks per ``HookKind``, called in registration order.

    Register everything at startup; registering while events are processed is not
    synchronised with them.
    """

    def __init__(self) -> None:
        self._callbacks: dict[HookKind, list[HookCallback]] = {}

    @overload
    def on(self, kind: type[_E], callback: Callable[[_E], object]) -> Callable[[_E], object]: ...
    @overload
    def on(self, kind: str, callback: HookCallback) -> HookCallback: ...

    def on(self, kind: Any, callback: Any) -> Any:
        """Register ``callback`` for ``kind``: an event class, or its kind string.

        The kind string is the ``HookKind`` value (``"payment_failed"``); a
        ``HookKind`` member is that string. Passing the class type-checks the callback.

        Returns ``callback`` unchanged. Raises ``InvalidInputError``
        for an unknown kind or a callback that is not callable.
        """
        resolved = _resolve_kind(kind)
        if not callable(callback):
            raise InvalidInputError("a hook callback must be callable")
        self._callbacks.setdefault(resolved, []).append(callback)
        return callback

    def wants(self, kind: HookKind) -> bool:
        """Whether any callback is registered for ``kind`` (events are built only then)."""
        return kind in self._callbacks

    def emit(self, event: HookEvent) -> None:
        """Call every callback registered for the event's kind; exceptions propagate."""
        for callback in self._callbacks.get(event.kind, ()):
            callback(event)


def _resolve_kind(kind: object) -> HookKind:
    if isinstance(kind, type) and issubclass(kind, HookEvent) and kind in _EVENT_CLASSES.values():
        return kind.kind
    if isinstance(kind, HookKind):
        return kind
    if isinstance(kind, str):
        try:
            return HookKind(kind)
        except ValueError:
            pass
    known = ", ".join(k.value for k in HookKind)
    raise InvalidInputError(f"unknown hook kind {kind!r}; known kinds: {known}")
