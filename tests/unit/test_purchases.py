"""One-time purchases: stored from payment-mode checkouts, delayed payments, refunds, hooks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from test_checkout import World, make_world

from billingkit.domain import Purchase, PurchaseStatus
from billingkit.domain.purchases import advance_purchase
from billingkit.errors import GatewayError, InvalidInputError
from billingkit.services.customers import CustomerDetails
from billingkit.services.hooks import HookEvent, PurchaseCompleted, PurchaseRefunded
from billingkit.services.webhooks import WebhookOutcome, WebhookProcessor
from billingkit.testing import Delivery

P = PurchaseStatus


class Shop:
    """A world with a processor whose purchase hooks are recorded."""

    def __init__(self) -> None:
        self.world: World = make_world()
        self.seen: list[HookEvent] = []
        self.processor: WebhookProcessor = self.world.processor()
        self.processor.on(PurchaseCompleted, self.seen.append)
        self.processor.on(PurchaseRefunded, self.seen.append)
        w = self.world
        self.details = CustomerDetails(
            w.config, repository=w.repo, catalog=w.catalog, clock=w.stripe.clock
        )

    def buy(self, user_id: str = "u1", *, delayed: bool = False) -> str:
        start = self.world.start(user_id, plan_key="lifetime", interval="one_time")
        self.world.stripe.complete_checkout(start.session_id, delayed=delayed)
        return str(start.session_id)

    def drain(self) -> list[Delivery]:
        return self.world.stripe.drain_events()

    def deliver(self, deliveries: list[Delivery] | None = None) -> list[WebhookOutcome]:
        batch = self.drain() if deliveries is None else deliveries
        return [self.processor.handle(d.payload, d.signature).outcome for d in batch]

    def purchases(self, user_id: str = "u1") -> list[Purchase]:
        self.world.stripe.reset_calls()
        found = self.details.purchases(user_id)
        assert self.world.stripe.total_calls == 0  # read from the repository only
        return found

    def hooks(self, kind: type[HookEvent]) -> list[HookEvent]:
        return [event for event in self.seen if isinstance(event, kind)]


@pytest.fixture
def shop() -> Shop:
    return Shop()


def test_a_paid_one_time_checkout_stores_a_purchase_and_fires_completed_once(
    shop: Shop,
) -> None:
    session_id = shop.buy()
    deliveries = shop.drain()
    shop.deliver(deliveries)
    assert set(shop.deliver(deliveries)) == {WebhookOutcome.DUPLICATE}  # delivered twice
    (purchase,) = shop.purchases()
    assert (purchase.session_id, purchase.user_id, purchase.plan_key) == (
        session_id,
        "u1",
        "lifetime",
    )
    assert (purchase.status, purchase.total.format()) == (P.PAID, "99.00 USD")
    assert purchase.payment_intent_id is not None and purchase.customer_id is not None
    completed = shop.hooks(PurchaseCompleted)
    assert len(completed) == 1
    assert isinstance(completed[0], PurchaseCompleted)
    assert completed[0].purchase == purchase and completed[0].user_id == "u1"
    assert completed[0].event_type == "checkout.session.completed"


def test_the_success_page_first_stores_it_and_the_webhook_still_fires_once(shop: Shop) -> None:
    session_id = shop.buy()
    confirmation = shop.world.service.confirm_checkout(session_id, "u1")
    assert confirmation.is_complete
    (stored,) = shop.purchases()
    assert stored.status is P.PAID
    assert not shop.seen  # the success page fires no hook
    shop.deliver()
    assert shop.purchases() == [stored]
    assert len(shop.hooks(PurchaseCompleted)) == 1


def test_a_delayed_payment_is_pending_then_paid(shop: Shop) -> None:
    session_id = shop.buy(delayed=True)
    shop.deliver()
    (pending,) = shop.purchases()
    assert pending.status is P.PENDING and not pending.status.is_paid
    assert not shop.seen
    shop.world.stripe.settle_delayed_payment(session_id)
    late = shop.drain()
    assert [d.type for d in late][-1] == "checkout.session.async_payment_succeeded"
    shop.deliver(late)
    shop.deliver(late)  # redelivered: duplicates
    (paid,) = shop.purchases()
    assert paid.status is P.PAID
    completed = shop.hooks(PurchaseCompleted)
    assert [e.event_type for e in completed] == ["checkout.session.async_payment_succeeded"]


def test_a_failed_delayed_payment_is_failed_and_fires_nothing(shop: Shop) -> None:
    session_id = shop.buy(delayed=True)
    shop.deliver()
    shop.world.stripe.settle_delayed_payment(session_id, succeeded=False)
    shop.deliver()
    (failed,) = shop.purchases()
    assert failed.status is P.FAILED
    assert not shop.seen
    with pytest.raises(GatewayError, match="no succeeded payment"):
        shop.world.stripe.refund_payment(session_id)


def test_partial_then_full_refunds_update_it_once_each_whatever_the_order(shop: Shop) -> None:
    session_id = shop.buy()
    shop.deliver()
    shop.world.stripe.refund_payment(session_id, 2000)
    shop.world.stripe.refund_payment(session_id)
    first, second = shop.drain()
    assert shop.deliver([second, first]) == [WebhookOutcome.PROCESSED, WebhookOutcome.STALE]
    assert shop.deliver([first, second]) == [WebhookOutcome.DUPLICATE] * 2
    (purchase,) = shop.purchases()
    assert (purchase.status, purchase.amount_refunded) == (P.REFUNDED, 9900)
    (refunded,) = shop.hooks(PurchaseRefunded)
    assert isinstance(refunded, PurchaseRefunded)
    assert (refunded.refund.amount, refunded.fully_refunded) == (9900, True)


def test_each_refund_fires_its_own_amount(shop: Shop) -> None:
    session_id = shop.buy()
    shop.deliver()
    shop.world.stripe.refund_payment(session_id, 2000)
    shop.deliver()
    (partial,) = shop.purchases()
    assert (partial.status, partial.refunded.amount) == (P.PARTIALLY_REFUNDED, 2000)
    assert partial.status.is_paid
    shop.world.stripe.refund_payment(session_id)
    shop.deliver()
    refunds = shop.hooks(PurchaseRefunded)
    assert [
        (e.refund.amount, e.fully_refunded) for e in refunds if isinstance(e, PurchaseRefunded)
    ] == [
        (2000, False),
        (7900, True),
    ]
    with pytest.raises(GatewayError, match="between 1 and 0"):
        shop.world.stripe.refund_payment(session_id)


def test_a_refund_of_a_charge_that_paid_no_purchase_touches_no_purchase(shop: Shop) -> None:
    other = Shop()
    session_id = other.buy()
    other.drain()
    other.world.stripe.refund_payment(session_id)
    (refund,) = other.drain()
    # the charge itself is kept for the invoice history; no purchase of ours changed
    assert shop.deliver([refund]) == [WebhookOutcome.PROCESSED]
    assert shop.purchases() == []
    assert shop.hooks(PurchaseRefunded) == []


def test_a_subscription_checkout_stores_no_purchase(shop: Shop) -> None:
    start = shop.world.start("u1")
    shop.world.stripe.complete_checkout(start.session_id)
    shop.deliver()
    assert shop.purchases() == []
    with pytest.raises(InvalidInputError):
        shop.details.purchases("")


def test_purchases_are_listed_per_user_newest_first(shop: Shop) -> None:
    first = shop.buy()
    shop.deliver()
    other = shop.world.start("u1", plan_key="lifetime", interval="one_time", quantity=2)
    shop.world.stripe.complete_checkout(other.session_id)
    shop.deliver()
    listed = shop.purchases()
    assert [p.session_id for p in listed] == [other.session_id, first]
    assert listed[0].amount == 2 * 9900
    assert shop.purchases("u2") == []


# --------------------------------------------------------------------------- the rule

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def _stored(status: PurchaseStatus, refunded: int = 0) -> Purchase:
    return Purchase(
        session_id="cs_1",
        user_id="u1",
        amount=1000,
        currency="eur",
        status=status,
        amount_refunded=refunded,
        created_at=NOW,
    )


@pytest.mark.parametrize(
    ("before", "status", "after"),
    [
        (P.PENDING, P.PAID, P.PAID),
        (P.PENDING, P.FAILED, P.FAILED),
        (P.PAID, P.PENDING, P.PAID),
        (P.FAILED, P.PAID, P.FAILED),
        (P.PAID, P.FAILED, P.PAID),
        (P.REFUNDED, P.PAID, P.REFUNDED),
    ],
)
def test_a_purchase_status_only_moves_forward(
    before: PurchaseStatus, status: PurchaseStatus, after: PurchaseStatus
) -> None:
    assert advance_purchase(_stored(before), status=status).status is after


def test_the_amount_refunded_only_grows_and_sets_the_refund_status() -> None:
    paid = _stored(P.PAID)
    partial = advance_purchase(paid, amount_refunded=300)
    assert (partial.status, partial.amount_refunded) == (P.PARTIALLY_REFUNDED, 300)
    assert advance_purchase(partial, amount_refunded=200) is partial
    full = advance_purchase(partial, amount_refunded=1000, payment_intent_id="pi_1")
    assert (full.status, full.amount_refunded, full.payment_intent_id) == (
        P.REFUNDED,
        1000,
        "pi_1",
    )
    assert advance_purchase(full, payment_intent_id="pi_2").payment_intent_id == "pi_1"
    assert str(P.REFUNDED) == "refunded" and full.refunded.format() == "10.00 EUR"
