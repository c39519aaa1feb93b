"""Typed events the webhook processor tells the app about, and their registry.

Register a callback with ``WebhookProcessor.on(kind, callback)``, where ``kind`` is a
:class:`HookKind` (or its string value, or the event class itself)::

    def welcome(event: SubscriptionActivated) -> None: ...

    processor.on(HookKind.SUBSCRIPTION_ACTIVATED, welcome)
    processor.on(PaymentFailed, notify_dunning)  # the event class works too

Callbacks run **inside the event's unit of work**, after its state was applied and before it
commits: a callback that raises fails the whole event (its state changes are rolled back, the
ledger records the failure and Stripe gets a 500 and retries). Callbacks must therefore be
idempotent — key any side effect on ``event.event_id``, which is the same on every retry.

When each fires (judged by the Stripe event itself, so whether ``confirm_checkout`` ran first
does not matter). A stale event (older than the stored state) fires none of them, except
``TRIAL_WILL_END``, which is informational and fires while the stored subscription is still
trialing:

=============================  ============================================================
``SUBSCRIPTION_ACTIVATED``     a subscription becomes active or trialing: created so, or an
                               update/resume whose previous status was neither
``PLAN_CHANGED``               an update whose previous attributes show another price
``SUBSCRIPTION_CANCELED``      ``customer.subscription.deleted``, or an update to canceled
``PAYMENT_FAILED``             ``invoice.payment_failed``
``PAYMENT_ACTION_REQUIRED``    ``invoice.payment_action_required`` (e.g. 3-D Secure)
``TRIAL_WILL_END``             ``customer.subscription.trial_will_end`` while the stored
                               subscription is still trialing, even if the event is stale
``CHECKOUT_COMPLETED``         ``checkout.session.completed`` and
                               ``checkout.session.async_payment_succeeded`` (check
                               ``payment_status`` before delivering goods)
=============================  ============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar, Literal, TypeVar, overload

from billingkit.domain import Money, Subscription, SubscriptionStatus, UTCDateTime, Value
from billingkit.errors import InvalidInputError

__all__ = [
    "CheckoutCompleted",
    "HookEvent",
    "HookKind",
    "HookRegistry",
    "InvoiceHookEvent",
    "PaymentActionRequired",
    "PaymentFailed",
    "PlanChanged",
    "SubscriptionActivated",
    "SubscriptionCanceled",
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


class HookEvent(Value):
    """Base of every hook event.

    Attributes:
        event_id: the Stripe event id (stable across retries: use it to make effects
            idempotent).
        event_type: the Stripe event type, e.g. ``customer.subscription.updated``.
        user_id: the app's user, when known (metadata or customer link).
    """

    kind: ClassVar[HookKind]

    event_id: str
    event_type: str
    user_id: str | None = None


class SubscriptionActivated(HookEvent):
    """A subscription became active or trialing; ``subscription`` is the stored state."""

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_ACTIVATED

    subscription: Subscription
    previous_status: SubscriptionStatus | None = None


class PlanChanged(HookEvent):
    """A subscription moved to another price (and maybe plan)."""

    kind: ClassVar[HookKind] = HookKind.PLAN_CHANGED

    subscription: Subscription
    previous_price_id: str
    previous_plan_key: str | None = None


class SubscriptionCanceled(HookEvent):
    """A subscription ended (status ``canceled``)."""

    kind: ClassVar[HookKind] = HookKind.SUBSCRIPTION_CANCELED

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
    )
}
#: A registered callback; its return value is ignored.
HookCallback = Callable[[Any], object]


class HookRegistry:
    """Callbacks per :class:`HookKind`, called in registration order.

    Register everything at startup; registering while events are processed is not
    synchronised with them.
    """

    def __init__(self) -> None:
        self._callbacks: dict[HookKind, list[HookCallback]] = {}

    @overload
    def on(self, kind: type[_E], callback: Callable[[_E], object]) -> Callable[[_E], object]: ...
    @overload
    def on(
        self,
        kind: Literal[HookKind.SUBSCRIPTION_ACTIVATED],
        callback: Callable[[SubscriptionActivated], object],
    ) -> Callable[[SubscriptionActivated], object]: ...
    @overload
    def on(
        self, kind: Literal[HookKind.PLAN_CHANGED], callback: Callable[[PlanChanged], object]
    ) -> Callable[[PlanChanged], object]: ...
    @overload
    def on(
        self,
        kind: Literal[HookKind.SUBSCRIPTION_CANCELED],
        callback: Callable[[SubscriptionCanceled], object],
    ) -> Callable[[SubscriptionCanceled], object]: ...
    @overload
    def on(
        self, kind: Literal[HookKind.PAYMENT_FAILED], callback: Callable[[PaymentFailed], object]
    ) -> Callable[[PaymentFailed], object]: ...
    @overload
    def on(
        self,
        kind: Literal[HookKind.PAYMENT_ACTION_REQUIRED],
        callback: Callable[[PaymentActionRequired], object],
    ) -> Callable[[PaymentActionRequired], object]: ...
    @overload
    def on(
        self, kind: Literal[HookKind.TRIAL_WILL_END], callback: Callable[[TrialWillEnd], object]
    ) -> Callable[[TrialWillEnd], object]: ...
    @overload
    def on(
        self,
        kind: Literal[HookKind.CHECKOUT_COMPLETED],
        callback: Callable[[CheckoutCompleted], object],
    ) -> Callable[[CheckoutCompleted], object]: ...
    @overload
    def on(self, kind: str, callback: HookCallback) -> HookCallback: ...

    def on(self, kind: Any, callback: Any) -> Any:
        """Register ``callback`` for ``kind`` (a :class:`HookKind`, its value or event class).

        Returns ``callback`` unchanged. Raises :class:`~billingkit.errors.InvalidInputError`
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
