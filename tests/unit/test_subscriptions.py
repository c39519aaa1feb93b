"""SubscriptionService over the fake Stripe and the in-memory repository.

Every operation: one Stripe call (two for a promotion code), the answer stored at once, and
each hook fired exactly once whichever of the API answer and the webhook stores it first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from billingkit import (
    AmbiguousSubscriptionError,
    Billing,
    BillingConfig,
    CancelScheduled,
    CancelUndone,
    HookEvent,
    HookKind,
    InMemoryRepository,
    InvalidInputError,
    InvalidPromotionCodeError,
    NoSubscriptionError,
    PlanChanged,
    PlanChangeScheduled,
    PlanDefinition,
    PriceRef,
    QuantityChanged,
    Subscription,
    SubscriptionCanceled,
    SubscriptionOwnershipError,
    SubscriptionRecovered,
    SubscriptionService,
    SubscriptionStateError,
    SubscriptionStatus,
    UnknownPlanError,
)
from billingkit.domain import Money
from billingkit.errors import GatewayCardError, GatewayServerError
from billingkit.ports import (
    FETCHED_WATERMARK,
    PromotionCode,
    SubscriptionUpdate,
    SubscriptionUpdateResult,
)
from billingkit.services.apply import apply_answer
from billingkit.services.hooks import API_EVENT_PREFIX
from billingkit.services.subscriptions import operation_key
from billingkit.testing import Delivery, FakeStripeGateway

FREE = PlanDefinition(key="free", name="Free")
BASIC = PlanDefinition(
    key="basic",
    name="Basic",
    order=1,
    prices={"month": PriceRef(lookup_key="basic_m"), "year": PriceRef(lookup_key="basic_y")},
)
PRO = PlanDefinition(
    key="pro",
    name="Pro",
    order=2,
    prices={"month": PriceRef(lookup_key="pro_m"), "year": PriceRef(lookup_key="pro_y")},
)
ALL_KINDS = list(HookKind)


class DelayedGateway(FakeStripeGateway):
    """A fake whose ``before_answer`` runs after Stripe acted, before the app sees the answer.

    Lets a test deliver webhooks *before* the API answer is stored.
    """

    before_answer: Callable[[], None] | None = None

    def modify_subscription(self, update: SubscriptionUpdate) -> SubscriptionUpdateResult:
        answer = super().modify_subscription(update)
        if self.before_answer is not None:
            self.before_answer()
        return answer


class World:
    def __init__(self, *, quantity: int = 1) -> None:
        self.stripe = DelayedGateway(webhook_secret="whsec_subscriptions")
        self.stripe.add_price(amount=1000, interval="month", lookup_key="basic_m")
        self.stripe.add_price(amount=10000, interval="year", lookup_key="basic_y")
        self.stripe.add_price(amount=3000, interval="month", lookup_key="pro_m")
        self.stripe.add_price(amount=30000, interval="year", lookup_key="pro_y")
        self.config = BillingConfig(
            plans=(FREE, BASIC, PRO), free_plan="free", webhook_secrets=("whsec_subscriptions",)
        )
        self.repository = InMemoryRepository()
        self.billing = Billing.build(
            self.config, self.stripe, self.repository, clock=self.stripe.now
        )
        self.hooks: list[HookEvent] = []
        for kind in ALL_KINDS:
            self.billing.webhooks.on(kind.value, self.hooks.append)
        self.sub_id = self.subscribe("u1", quantity=quantity)
        self.hooks.clear()
        self.stripe.reset_calls()

    @property
    def service(self) -> SubscriptionService:
        return self.billing.subscriptions

    def subscribe(self, user_id: str, plan_key: str = "basic", quantity: int = 1) -> str:
        start = self.billing.checkout.start_checkout(
            user_id=user_id,
            email=f"{user_id}@example.com",
            plan_key=plan_key,
            interval="month",
            quantity=quantity,
            success_url="https://app.example/ok",
            cancel_url="https://app.example/no",
        )
        session = self.stripe.complete_checkout(start.session_id)
        self.deliver()
        assert session.subscription_id is not None
        return session.subscription_id

    def deliver(self, deliveries: list[Delivery] | None = None) -> None:
        for delivery in self.stripe.drain_events() if deliveries is None else deliveries:
            self.billing.webhooks.handle(delivery.payload, delivery.signature)

    def later(self, delta: timedelta) -> None:
        """Move time on, deliver what happened, warm the price cache, zero the counters."""
        self.stripe.advance(delta)
        self.deliver()
        self.billing.catalog.plans()
        self.stripe.reset_calls()
        self.hooks.clear()

    def stored(self, sub_id: str | None = None) -> Subscription:
        with self.repository.unit_of_work() as uow:
            found = uow.get_subscription(sub_id or self.sub_id)
        assert found is not None
        return found

    def fired(self) -> Counter[HookKind]:
        return Counter(event.kind for event in self.hooks)

    def price(self, lookup_key: str) -> str:
        return self.billing.catalog.price_for(lookup_key.split("_")[0], "month").id


@pytest.fixture
def w() -> World:
    return World()


# --------------------------------------------------------------------------- change plan


def test_upgrade_is_one_call_stored_at_once_and_the_webhook_fires_nothing_more(w: World) -> None:
    result = w.service.change_plan("u1", "pro")

    assert result.outcome == "applied" and result.applied and not result.pending_payment
    assert w.stripe.calls == Counter({"modify_subscription": 1})
    pro = w.billing.catalog.price_for("pro", "month").id
    assert w.stored().price_id == pro and w.stored().plan_key == "pro"
    assert w.billing.customers.for_user("u1").plan_key == "pro"
    assert w.fired() == Counter({HookKind.PLAN_CHANGED: 1})
    changed = w.hooks[0]
    assert isinstance(changed, PlanChanged)
    assert changed.event_id.startswith(API_EVENT_PREFIX)
    assert changed.event_type == "billingkit.subscriptions.change_plan"
    assert changed.previous_plan_key == "basic" and changed.user_id == "u1"

    w.deliver()  # customer.subscription.updated follows
    assert w.fired() == Counter({HookKind.PLAN_CHANGED: 1})
    assert w.stored().price_id == pro


def test_webhook_first_then_answer_fires_once_from_the_webhook(w: World) -> None:
    w.stripe.before_answer = w.deliver
    w.service.change_plan("u1", "pro")
    assert w.fired() == Counter({HookKind.PLAN_CHANGED: 1})
    assert not w.hooks[0].event_id.startswith(API_EVENT_PREFIX)  # the webhook's
    assert w.stored().plan_key == "pro"


def test_webhook_delivered_twice_after_the_answer_fires_nothing(w: World) -> None:
    w.service.set_quantity("u1", 3)
    deliveries = w.stripe.drain_events()
    w.deliver(deliveries)
    w.deliver(deliveries)
    assert w.fired() == Counter({HookKind.QUANTITY_CHANGED: 1})
    event = w.hooks[0]
    assert isinstance(event, QuantityChanged) and event.previous_quantity == 1
    assert w.billing.customers.for_user("u1").quantity == 3


def test_changing_to_the_current_plan_makes_no_call(w: World) -> None:
    result = w.service.change_plan("u1", "basic", "month")
    assert result.outcome == "unchanged"
    assert w.stripe.total_calls == 0


def test_declined_upgrade_charged_now_stays_on_the_old_plan_pending_payment(w: World) -> None:
    basic = w.stored().price_id
    w.stripe.set_card_declining(w.stored().customer_id)
    result = w.service.change_plan("u1", "pro", proration="always_invoice")

    assert result.outcome == "pending_payment" and result.pending_payment
    assert result.hosted_invoice_url is not None and result.invoice_id is not None
    assert result.pending_expires_at is not None
    assert w.stripe.calls == Counter({"modify_subscription": 1})
    assert w.stored().price_id == basic
    w.deliver()
    assert w.stored().price_id == basic and w.fired()[HookKind.PLAN_CHANGED] == 0

    # The user pays the invoice: Stripe applies the pending update, the webhook tells.
    w.stripe.set_card_declining(w.stored().customer_id, False)
    w.stripe.retry_payment(w.sub_id)
    w.deliver()
    assert w.stored().plan_key == "pro"
    assert w.fired()[HookKind.PLAN_CHANGED] == 1


def test_interval_switch_is_invoiced_now(w: World) -> None:
    result = w.service.change_plan("u1", "pro", "year")
    assert result.applied and result.invoice_id is not None
    assert w.stored().price_id == w.billing.catalog.price_for("pro", "year").id


def test_proration_none_and_a_pinned_proration_date(w: World) -> None:
    at = w.stripe.now()
    result = w.service.change_plan("u1", "pro", proration="none", proration_date=at)
    assert (result.applied and result.invoice_id is None) or result.applied


def test_change_to_the_free_plan_cancels_at_period_end(w: World) -> None:
    result = w.service.change_plan("u1", "free")
    assert result.applied
    assert result.effective_at == w.stored().current_period_end
    assert w.stored().cancel_at_period_end
    assert w.fired() == Counter({HookKind.CANCEL_SCHEDULED: 1})
    w.deliver()
    assert w.fired() == Counter({HookKind.CANCEL_SCHEDULED: 1})


def test_unknown_plan_and_bad_arguments_make_no_call(w: World) -> None:
    with pytest.raises(UnknownPlanError):
        w.service.change_plan("u1", "gold")
    with pytest.raises(InvalidInputError):
        w.service.change_plan("u1", "pro", proration="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        w.service.change_plan("u1", "pro", when="later")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        w.service.change_plan(" ", "pro")
    with pytest.raises(InvalidInputError):
        w.service.set_quantity("u1", 0)
    assert w.stripe.total_calls == 0


# --------------------------------------------------------------------------- schedules


def test_period_end_downgrade_is_scheduled_then_applied_at_renewal(w: World) -> None:
    w.service.change_plan("u1", "pro")
    w.deliver()
    w.hooks.clear()
    w.stripe.reset_calls()

    result = w.service.change_plan("u1", "basic", when="period_end")
    assert result.outcome == "scheduled" and result.schedule_id is not None
    assert result.effective_at == w.stored().current_period_end
    assert w.stripe.calls == Counter({"schedule_subscription_change": 1})
    assert w.stored().schedule_id == result.schedule_id
    assert w.stored().plan_key == "pro"
    scheduled = w.hooks[0]
    assert isinstance(scheduled, PlanChangeScheduled)
    assert scheduled.plan_key == "basic" and scheduled.schedule_id == result.schedule_id
    w.deliver()
    assert w.fired() == Counter({HookKind.PLAN_CHANGE_SCHEDULED: 1})

    w.stripe.advance(timedelta(days=32))
    w.deliver()
    assert w.stored().plan_key == "basic"
    assert w.fired()[HookKind.PLAN_CHANGED] == 1


def test_scheduled_change_can_be_undone(w: World) -> None:
    w.service.change_plan("u1", "pro", when="period_end")
    w.deliver()
    with pytest.raises(SubscriptionStateError):
        w.service.change_plan("u1", "pro", "year")  # a now-change while one is scheduled
    w.stripe.reset_calls()

    result = w.service.undo_scheduled_change("u1")
    assert result.applied and w.stored().schedule_id is None
    assert w.stripe.calls == Counter({"release_subscription_schedule": 1})
    w.deliver()
    w.stripe.advance(timedelta(days=32))
    w.deliver()
    assert w.stored().plan_key == "basic"
    with pytest.raises(SubscriptionStateError):
        w.service.undo_scheduled_change("u1")


def test_changing_back_to_the_current_plan_undoes_the_schedule(w: World) -> None:
    w.service.change_plan("u1", "pro", when="period_end")
    result = w.service.change_plan("u1", "basic")
    assert result.applied and w.stored().schedule_id is None


# --------------------------------------------------------------------------- preview


def test_preview_is_one_call_and_stores_nothing(w: World) -> None:
    before = w.stored()
    preview = w.service.preview_change("u1", "pro")
    assert w.stripe.calls == Counter({"preview_invoice": 1})
    assert preview.due_now == Money(amount=0, currency="usd")  # create_prorations: later
    assert preview.next_invoice_total is not None and preview.next_invoice_total.amount > 0
    assert w.stored() == before

    now = w.service.preview_change("u1", "pro", proration="always_invoice")
    assert now.due_now.amount > 0 and now.due_now.amount < 3000  # the rest of the period

    switch = w.service.preview_change("u1", "pro", "year")
    assert switch.proration == "always_invoice"
    assert switch.due_now.amount > 0


def test_preview_then_change_bills_what_was_shown(w: World) -> None:
    w.later(timedelta(days=10))
    preview = w.service.preview_change("u1", "pro", proration="always_invoice")
    result = w.service.change_plan(
        "u1", "pro", proration="always_invoice", proration_date=preview.proration_date
    )
    assert result.invoice_id is not None
    invoice = w.stripe.stripe_object(result.invoice_id)
    assert invoice["amount_due"] == preview.due_now.amount


# --------------------------------------------------------------------------- seats


def test_set_quantity_is_one_call_and_shown_in_details() -> None:
    w = World(quantity=2)
    assert w.billing.customers.for_user("u1").quantity == 2
    result = w.service.set_quantity("u1", 5, proration="none")
    assert result.applied and w.stored().quantity == 5
    assert w.stripe.calls == Counter({"modify_subscription": 1})
    assert w.service.set_quantity("u1", 5).outcome == "unchanged"
    assert w.stripe.total_calls == 1


# --------------------------------------------------------------------------- cancel / resume


def test_cancel_at_period_end_then_resume_each_hook_once(w: World) -> None:
    result = w.service.cancel("u1")
    assert result.applied and result.effective_at == w.stored().current_period_end
    assert w.stripe.calls == Counter({"modify_subscription": 1})
    assert w.service.cancel("u1").outcome == "unchanged"
    w.deliver()
    resumed = w.service.resume("u1")
    assert resumed.applied and not w.stored().cancel_at_period_end
    w.deliver()
    assert w.fired() == Counter({HookKind.CANCEL_SCHEDULED: 1, HookKind.CANCEL_UNDONE: 1})
    scheduled, undone = w.hooks
    assert isinstance(scheduled, CancelScheduled) and isinstance(undone, CancelUndone)
    assert scheduled.cancel_at == w.stored().current_period_end
    with pytest.raises(SubscriptionStateError):
        w.service.resume("u1")


def test_cancel_now_with_proration_credit(w: World) -> None:
    w.later(timedelta(days=15))
    result = w.service.cancel("u1", at_period_end=False, prorate=True)
    assert result.subscription.status is SubscriptionStatus.CANCELED
    assert w.stripe.calls == Counter({"cancel_subscription_now": 1})
    assert w.billing.customers.for_user("u1").plan_key == "free"
    w.deliver()
    assert w.fired() == Counter({HookKind.SUBSCRIPTION_CANCELED: 1})
    assert isinstance(w.hooks[0], SubscriptionCanceled)
    with pytest.raises(NoSubscriptionError):
        w.service.cancel("u1")


def test_resume_a_paused_subscription_fires_recovered_once(w: World) -> None:
    w.stripe.pause_subscription(w.sub_id)
    w.deliver()
    w.hooks.clear()
    w.stripe.reset_calls()
    with pytest.raises(SubscriptionStateError):
        w.service.change_plan("u1", "pro")
    result = w.service.resume("u1")
    assert result.subscription.status is SubscriptionStatus.ACTIVE
    assert w.stripe.calls == Counter({"resume_paused_subscription": 1})
    w.deliver()
    # it granted access before the pause: a return is a recovery, not a second activation
    assert w.fired() == Counter({HookKind.SUBSCRIPTION_RECOVERED: 1})
    recovered = w.hooks[0]
    assert isinstance(recovered, SubscriptionRecovered)
    assert recovered.previous_status is SubscriptionStatus.PAUSED


# --------------------------------------------------------------------------- promotion codes


def test_promotion_code_is_looked_up_and_applied(w: World) -> None:
    w.stripe.add_promotion_code("SPRING", percent_off=20)
    result = w.service.apply_promotion_code("u1", " SPRING ")
    assert result.applied
    assert w.stripe.calls == Counter({"find_promotion_code": 1, "modify_subscription": 1})


def test_bad_or_expired_codes_are_typed_errors_and_store_nothing(w: World) -> None:
    expired = w.stripe.now() + timedelta(hours=1)
    w.stripe.add_promotion_code("SOON", amount_off=500, currency="usd", expires_at=expired)
    w.later(timedelta(hours=2))
    before = w.stored()
    for code in ("NOPE", "SOON"):
        with pytest.raises(InvalidPromotionCodeError):
            w.service.apply_promotion_code("u1", code)
    assert w.stripe.calls == Counter({"find_promotion_code": 2})
    assert w.stored() == before
    with pytest.raises(InvalidInputError):
        w.service.apply_promotion_code("u1", "")


# --------------------------------------------------------------------------- selection


def test_another_users_subscription_is_refused_before_any_call(w: World) -> None:
    other = w.subscribe("u2")
    w.stripe.reset_calls()
    with pytest.raises(SubscriptionOwnershipError):
        w.service.cancel("u1", subscription_id=other)
    with pytest.raises(SubscriptionOwnershipError):
        w.service.change_plan("u1", "pro", subscription_id=other)
    with pytest.raises(NoSubscriptionError):
        w.service.cancel("u1", subscription_id="sub_unknown")
    with pytest.raises(NoSubscriptionError):
        w.service.cancel("u3")
    assert w.stripe.total_calls == 0


def test_several_live_subscriptions_need_an_id() -> None:
    w = World()
    config = w.config.model_copy(update={"allow_multiple_subscriptions": True})
    w.billing = Billing.build(config, w.stripe, w.repository, clock=w.stripe.now)
    second = w.subscribe("u1", "pro")
    w.stripe.reset_calls()
    with pytest.raises(AmbiguousSubscriptionError):
        w.service.set_quantity("u1", 2)
    assert w.service.set_quantity("u1", 2, subscription_id=second).applied
    assert w.stored(second).quantity == 2 and w.stored().quantity == 1


def test_reads_make_no_call(w: World) -> None:
    assert w.service.subscription("u1").id == w.sub_id
    assert w.billing.customers.for_user("u1").quantity == 1
    assert w.stripe.total_calls == 0


# --------------------------------------------------------------------------- idempotency, failures


def test_a_failed_call_stores_nothing_and_the_retry_uses_the_same_key(w: World) -> None:
    before = w.stored()
    seen = len(w.stripe.emitted_events())
    w.stripe.fail_next(
        "modify_subscription",
        GatewayServerError("boom", http_status=500, retryable=True),
        after_applying=True,
    )
    with pytest.raises(GatewayServerError) as raised:
        w.service.change_plan("u1", "pro")
    assert raised.value.retryable
    assert w.stored() == before and w.hooks == []
    # The retry sends the same key: Stripe replays the change it made, not a second one.
    result = w.service.change_plan("u1", "pro")
    assert result.applied and w.stored().plan_key == "pro"
    assert w.fired() == Counter({HookKind.PLAN_CHANGED: 1})
    updates = [e["type"] for e in w.stripe.emitted_events()[seen:]]
    assert updates == ["customer.subscription.updated"]  # one change at Stripe, not two
    assert w.stripe.calls == Counter({"modify_subscription": 2})


def test_a_declined_card_without_pending_behaviour_is_a_typed_error(w: World) -> None:
    w.stripe.fail_next(
        "modify_subscription", GatewayCardError("declined", http_status=402, code="card_declined")
    )
    with pytest.raises(GatewayCardError):
        w.service.set_quantity("u1", 4)
    assert w.stored().quantity == 1


def test_operation_key_is_stable_for_the_same_state_and_changes_with_it(w: World) -> None:
    state = w.stored()
    key = operation_key("change_plan", "u1", state, "price_x", "none")
    assert key == operation_key("change_plan", "u1", state, "price_x", "none")
    assert key != operation_key("change_plan", "u2", state, "price_x", "none")
    moved = state.model_copy(update={"quantity": 2})
    assert key != operation_key("change_plan", "u1", moved, "price_x", "none")


def test_a_subscription_stored_without_item_id_is_fetched_once(w: World) -> None:
    with w.repository.unit_of_work() as uow:
        stored = uow.get_subscription(w.sub_id)
        assert stored is not None
        uow.save_subscription(stored.model_copy(update={"item_id": None}), allow_tie=True)
    assert w.stored().item_id is None
    w.service.set_quantity("u1", 2)
    assert w.stripe.calls == Counter({"retrieve_subscription": 1, "modify_subscription": 1})
    assert w.stored().item_id is not None


# --------------------------------------------------------------------------- edges


def test_preview_of_a_seat_count_and_a_bad_one(w: World) -> None:
    preview = w.service.preview_change("u1", "basic", quantity=3)
    assert preview.quantity == 3 and preview.price_id == w.stored().price_id
    with pytest.raises(InvalidInputError):
        w.service.preview_change("u1", "basic", quantity=0)
    assert w.stripe.calls == Counter({"preview_invoice": 1})


def test_cancel_while_a_change_is_scheduled_is_refused(w: World) -> None:
    w.service.change_plan("u1", "pro", when="period_end")
    w.stripe.reset_calls()
    with pytest.raises(SubscriptionStateError):
        w.service.cancel("u1")
    assert w.stripe.total_calls == 0


class OtherCustomersCode(DelayedGateway):
    def find_promotion_code(self, code: str) -> PromotionCode | None:
        found = super().find_promotion_code(code)
        return None if found is None else found.model_copy(update={"customer_id": "cus_other"})


def test_a_code_restricted_to_another_customer_is_refused() -> None:
    w = World()
    w.stripe.__class__ = OtherCustomersCode
    w.stripe.add_promotion_code("MINE", percent_off=10)
    w.stripe.reset_calls()
    with pytest.raises(InvalidPromotionCodeError):
        w.service.apply_promotion_code("u1", "MINE")
    assert w.stripe.calls == Counter({"find_promotion_code": 1})


class ItemlessGateway(DelayedGateway):
    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        return super().retrieve_subscription(subscription_id).model_copy(update={"item_id": None})


def test_a_subscription_without_any_item_cannot_change(w: World) -> None:
    w.stripe.__class__ = ItemlessGateway
    with w.repository.unit_of_work() as uow:
        stored = uow.get_subscription(w.sub_id)
        assert stored is not None
        uow.save_subscription(stored.model_copy(update={"item_id": None}), allow_tie=True)
    with pytest.raises(SubscriptionStateError):
        w.service.set_quantity("u1", 2)
    assert w.stripe.calls == Counter({"retrieve_subscription": 1})


def test_an_unknown_current_price_needs_an_explicit_interval(w: World) -> None:
    for price_id in ("price_elsewhere", None):
        with w.repository.unit_of_work() as uow:
            stored = uow.get_subscription(w.sub_id)
            assert stored is not None
            update = {"price_id": price_id, "plan_key": None, "watermark": stored.watermark + 1}
            uow.save_subscription(stored.model_copy(update=update))
        with pytest.raises(UnknownPlanError):
            w.service.change_plan("u1", "pro")
    assert w.stripe.total_calls == 0


def test_an_ended_subscription_named_by_id_is_not_acted_on(w: World) -> None:
    w.stripe.cancel_subscription(w.sub_id)
    w.deliver()
    w.stripe.reset_calls()
    with pytest.raises(NoSubscriptionError):
        w.service.set_quantity("u1", 2, subscription_id=w.sub_id)
    assert w.stripe.total_calls == 0


def test_an_answer_for_a_subscription_not_stored_yet_is_stored_as_fetched(w: World) -> None:
    fresh = w.stored().model_copy(update={"id": "sub_fresh", "watermark": 0})
    with w.repository.unit_of_work() as uow:
        change = apply_answer(uow, fresh, answered_at=1_900_000_000, catalog=w.billing.catalog)
    assert change.written and change.previous is None
    assert w.stored("sub_fresh").watermark == FETCHED_WATERMARK
