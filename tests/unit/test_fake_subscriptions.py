"""FakeStripeGateway's subscription management.

Prorations, pending updates, schedules, cancel/resume, promotion codes, idempotency and
call counting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billingkit.domain import Money, SubscriptionStatus
from billingkit.errors import GatewayCardError, GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.ports import (
    CheckoutSessionRequest,
    InvoicePreviewRequest,
    ScheduledChange,
    SubscriptionUpdate,
)
from billingkit.stripe_objects import subscription_item_id
from billingkit.testing import FakeStripeGateway

PERIOD_START = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)  # DEFAULT_START
PERIOD_END = datetime(2026, 2, 5, 9, tzinfo=timezone.utc)  # 31 days later


@dataclass
class World:
    stripe: FakeStripeGateway
    customer_id: str
    sub_id: str
    item_id: str
    basic: str  # 10.00 USD / month
    pro: str  # 30.00 USD / month
    pro_year: str  # 300.00 USD / year


@pytest.fixture
def world() -> World:
    stripe = FakeStripeGateway(webhook_secret="whsec_subs")
    basic = stripe.add_price(amount=1000, interval="month", lookup_key="basic_m")
    pro = stripe.add_price(amount=3000, interval="month", lookup_key="pro_m")
    pro_year = stripe.add_price(
        amount=30000, interval="year", lookup_key="pro_y", product=pro.product_id
    )
    customer = stripe.create_customer(user_id="u1", email="u1@example.com", idempotency_key="c")
    session = stripe.create_checkout_session(
        CheckoutSessionRequest(
            mode="subscription",
            customer_id=customer.id,
            price_id=basic.id,
            success_url="https://app.example/ok",
            cancel_url="https://app.example/no",
            client_reference_id="u1",
            idempotency_key="checkout",
        )
    )
    stripe.complete_checkout(session.id)
    sub_id = stripe.subscription_ids()[0]
    stripe.drain_events()
    stripe.reset_calls()
    item_id = subscription_item_id(stripe.stripe_object(sub_id))
    assert item_id is not None
    return World(stripe, customer.id, sub_id, item_id, basic.id, pro.id, pro_year.id)


def update(w: World, key: str, **fields: object) -> SubscriptionUpdate:
    return SubscriptionUpdate(
        subscription_id=w.sub_id, item_id=w.item_id, idempotency_key=key, **fields
    )


def event_types(stripe: FakeStripeGateway) -> list[str]:
    return [delivery.type for delivery in stripe.drain_events()]


def line_amounts(invoice: dict[str, object]) -> list[int]:
    lines = invoice["lines"]["data"]  # type: ignore[index]
    return [int(line["amount"]) for line in lines]


# 10 days into a 31-day period, 21 days remain: 1000 * 21/31 = 677.42, 3000 * 21/31 = 2032.26
TEN_DAYS_IN = PERIOD_START + timedelta(days=10)


def test_upgrade_mid_period_creates_prorations_on_the_next_invoice(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    result = stripe.modify_subscription(update(world, "up", price_id=world.pro))

    assert result.applied and result.subscription.price_id == world.pro
    assert event_types(stripe) == ["customer.subscription.updated"]  # nothing billed now
    stripe.advance_to(PERIOD_END)
    renewal = stripe.latest_invoice(world.sub_id)
    assert sorted(line_amounts(renewal)) == [-677, 2032, 3000]
    assert renewal["amount_due"] == 3000 - 677 + 2032 == 4355
    assert renewal["status"] == "paid"


def test_always_invoice_charges_the_prorations_now(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    result = stripe.modify_subscription(
        update(world, "up", price_id=world.pro, proration_behavior="always_invoice")
    )
    invoice = stripe.latest_invoice(world.sub_id)
    assert line_amounts(invoice) == [-677, 2032]
    assert invoice["amount_paid"] == 1355 and invoice["billing_reason"] == "subscription_update"
    assert result.invoice_status == "paid" and result.payment_intent_status == "succeeded"
    assert event_types(stripe) == [
        "customer.subscription.updated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
    ]
    stripe.advance_to(PERIOD_END)
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [3000]  # nothing left over


def test_none_makes_no_proration(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    stripe.modify_subscription(update(world, "up", price_id=world.pro, proration_behavior="none"))
    stripe.advance_to(PERIOD_END)
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [3000]


def test_seats_prorate_by_quantity(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    result = stripe.modify_subscription(
        update(world, "seats", quantity=3, proration_behavior="always_invoice")
    )
    assert result.subscription.quantity == 3
    # credit 1 x 1000 x 21/31 = 677.42, charge 3 x 1000 x 21/31 = 2032.26
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [-677, 2032]


def test_declined_upgrade_with_pending_if_incomplete_stays_on_the_old_price(
    world: World,
) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    stripe.set_card_declining(world.customer_id)
    result = stripe.modify_subscription(
        update(
            world,
            "up",
            price_id=world.pro,
            proration_behavior="always_invoice",
            payment_behavior="pending_if_incomplete",
        )
    )

    assert not result.applied
    assert result.subscription.price_id == world.basic
    assert result.subscription.status is SubscriptionStatus.ACTIVE
    assert result.invoice_status == "open" and result.hosted_invoice_url
    assert result.payment_intent_status == "requires_payment_method"
    assert result.pending_expires_at == TEN_DAYS_IN + timedelta(hours=23)
    deliveries = stripe.drain_events()
    assert [d.type for d in deliveries] == [
        "invoice.created",
        "invoice.finalized",
        "invoice.payment_failed",
        "invoice.updated",
        "customer.subscription.updated",
    ]
    pending = deliveries[-1].data_object()["pending_update"]
    assert pending["subscription_items"][0]["price"]["id"] == world.pro

    stripe.advance(timedelta(hours=23))
    assert event_types(stripe) == ["customer.subscription.pending_update_expired"]
    assert stripe.stripe_object(world.sub_id)["pending_update"] is None
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic


def test_pending_update_applies_when_its_invoice_is_paid(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    stripe.set_card_declining(world.customer_id)
    stripe.modify_subscription(
        update(
            world,
            "up",
            price_id=world.pro,
            proration_behavior="always_invoice",
            payment_behavior="pending_if_incomplete",
        )
    )
    stripe.drain_events()
    stripe.set_card_declining(world.customer_id, False)
    stripe.advance(timedelta(hours=2))
    subscription = stripe.retry_payment(world.sub_id)

    assert subscription.price_id == world.pro
    assert event_types(stripe) == [
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice_payment.paid",
        "invoice.updated",
        "customer.subscription.updated",
        "customer.subscription.pending_update_applied",
    ]


def test_declined_upgrade_with_error_if_incomplete_changes_nothing(world: World) -> None:
    stripe = world.stripe
    stripe.set_card_declining(world.customer_id)
    with pytest.raises(GatewayCardError) as raised:
        stripe.modify_subscription(
            update(
                world,
                "up",
                price_id=world.pro,
                proration_behavior="always_invoice",
                payment_behavior="error_if_incomplete",
            )
        )
    assert raised.value.http_status == 402
    assert stripe.drain_events() == []
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic


def test_interval_switch_resets_the_cycle_and_bills_the_year_now(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    result = stripe.modify_subscription(update(world, "year", price_id=world.pro_year))
    sub = result.subscription
    assert sub.current_period_start == TEN_DAYS_IN
    assert sub.current_period_end == TEN_DAYS_IN.replace(year=2027)
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [30000, -677]


def test_preview_shows_what_the_update_bills(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    base = {
        "customer_id": world.customer_id,
        "subscription_id": world.sub_id,
        "item_id": world.item_id,
        "price_id": world.pro,
    }
    now = stripe.preview_invoice(InvoicePreviewRequest(**base, proration_behavior="always_invoice"))
    later = stripe.preview_invoice(InvoicePreviewRequest(**base))

    assert now.due_now == Money(amount=1355, currency="usd")
    assert now.proration_total == Money(amount=1355, currency="usd")
    assert later.due_now == Money(amount=0, currency="usd")
    assert later.next_invoice_total == Money(amount=4355, currency="usd")
    assert later.next_invoice_at == PERIOD_END
    assert stripe.drain_events() == []  # a preview changes nothing
    assert stripe.calls["preview_invoice"] == 2

    stripe.modify_subscription(
        update(world, "up", price_id=world.pro, proration_behavior="always_invoice")
    )
    assert stripe.latest_invoice(world.sub_id)["amount_paid"] == now.due_now.amount


def test_scheduled_downgrade_applies_at_period_end(world: World) -> None:
    stripe = world.stripe
    stripe.modify_subscription(update(world, "pro", price_id=world.pro, proration_behavior="none"))
    stripe.drain_events()
    schedule = stripe.schedule_subscription_change(
        ScheduledChange(subscription_id=world.sub_id, price_id=world.basic, idempotency_key="s")
    )
    assert schedule.status == "active" and [p.price_id for p in schedule.phases] == [
        world.pro,
        world.basic,
    ]
    assert schedule.phases[1].start == PERIOD_END
    assert event_types(stripe) == [
        "subscription_schedule.created",
        "customer.subscription.updated",
        "subscription_schedule.updated",
    ]
    stripe.advance_to(PERIOD_END - timedelta(seconds=1))
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.pro

    stripe.advance_to(PERIOD_END)
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [1000]
    types = event_types(stripe)
    assert types[0] == "subscription_schedule.updated"
    assert "customer.subscription.updated" in types and "invoice.paid" in types

    stripe.advance_to(datetime(2026, 3, 5, 9, tzinfo=timezone.utc))  # end of the last phase
    assert stripe.stripe_object(schedule.id)["status"] == "completed"
    assert "subscription_schedule.completed" in event_types(stripe)
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic


def test_released_schedule_undoes_the_scheduled_change(world: World) -> None:
    stripe = world.stripe
    schedule = stripe.schedule_subscription_change(
        ScheduledChange(subscription_id=world.sub_id, price_id=world.pro, idempotency_key="s")
    )
    stripe.drain_events()
    released = stripe.release_subscription_schedule(schedule.id, idempotency_key="r")
    assert released.status == "released" and released.released_subscription_id == world.sub_id
    assert event_types(stripe) == [
        "subscription_schedule.released",
        "customer.subscription.updated",
    ]
    stripe.advance_to(PERIOD_END)
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic
    with pytest.raises(GatewayInvalidRequestError):
        stripe.release_subscription_schedule(schedule.id, idempotency_key="r2")


def test_cancel_at_period_end_and_undo(world: World) -> None:
    stripe = world.stripe
    result = stripe.modify_subscription(update(world, "cancel", cancel_at_period_end=True))
    assert result.subscription.cancel_at_period_end
    assert result.subscription.cancel_at == PERIOD_END
    undone = stripe.modify_subscription(update(world, "keep", cancel_at_period_end=False))
    assert not undone.subscription.cancel_at_period_end
    stripe.advance_to(PERIOD_END)
    assert stripe.retrieve_subscription(world.sub_id).status is SubscriptionStatus.ACTIVE


def test_cancel_now_with_proration_credit_invoiced(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    stripe.drain_events()
    canceled = stripe.cancel_subscription_now(
        world.sub_id, prorate=True, invoice_now=True, idempotency_key="end"
    )
    assert canceled.status is SubscriptionStatus.CANCELED and canceled.ended_at == TEN_DAYS_IN
    final = stripe.latest_invoice(world.sub_id)
    assert line_amounts(final) == [-677] and final["amount_due"] == 0
    assert stripe.stripe_object(world.customer_id)["balance"] == -677
    assert event_types(stripe)[:3] == [
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.finalized",
    ]


def test_resume_a_paused_subscription_through_the_port(world: World) -> None:
    stripe = world.stripe
    stripe.pause_subscription(world.sub_id)
    stripe.drain_events()
    resumed = stripe.resume_paused_subscription(world.sub_id, idempotency_key="resume")
    assert resumed.status is SubscriptionStatus.ACTIVE
    assert event_types(stripe)[:2] == [
        "customer.subscription.resumed",
        "customer.subscription.updated",
    ]
    with pytest.raises(GatewayInvalidRequestError):
        stripe.resume_paused_subscription(world.sub_id, idempotency_key="resume-again")


def test_promotion_codes_are_found_only_while_usable(world: World) -> None:
    stripe = world.stripe
    added = stripe.add_promotion_code(
        "SPRING25",
        percent_off=25,
        duration="repeating",
        duration_in_months=2,
        max_redemptions=1,
        expires_at=PERIOD_END,
    )
    stripe.add_promotion_code("OLD", amount_off=500, currency="usd", active=False)
    found = stripe.find_promotion_code("spring25")
    assert found is not None and found.id == added.id
    assert found.percent_off == Decimal(25) and found.duration_in_months == 2
    assert stripe.find_promotion_code("OLD") is None
    assert stripe.find_promotion_code("NOPE") is None

    stripe.modify_subscription(update(world, "promo", promotion_code=found.id))
    assert stripe.find_promotion_code("SPRING25") is None  # max_redemptions reached
    stripe.advance_to(PERIOD_END)
    assert stripe.latest_invoice(world.sub_id)["amount_due"] == 750  # 25 % off 1000
    stripe.advance_to(datetime(2026, 3, 5, 9, tzinfo=timezone.utc))
    assert stripe.latest_invoice(world.sub_id)["amount_due"] == 750  # second month
    stripe.advance_to(datetime(2026, 4, 5, 9, tzinfo=timezone.utc))
    assert stripe.latest_invoice(world.sub_id)["amount_due"] == 1000  # coupon ran out


def test_expired_promotion_code_is_not_found(world: World) -> None:
    stripe = world.stripe
    stripe.add_promotion_code("SOON", percent_off=10, expires_at=TEN_DAYS_IN)
    assert stripe.find_promotion_code("SOON") is not None
    stripe.advance_to(TEN_DAYS_IN)
    assert stripe.find_promotion_code("SOON") is None


def test_same_idempotency_key_answers_the_same_result_without_a_second_event(
    world: World,
) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    request = update(world, "up-once", price_id=world.pro, proration_behavior="always_invoice")
    first = stripe.modify_subscription(request)
    events = event_types(stripe)
    again = stripe.modify_subscription(request)
    assert again == first
    assert event_types(stripe) == []
    assert len(events) == 7
    assert stripe.calls["modify_subscription"] == 2
    with pytest.raises(GatewayInvalidRequestError):
        stripe.modify_subscription(update(world, "up-once", price_id=world.basic))


def test_refusals_are_stripe_errors(world: World) -> None:
    stripe = world.stripe
    with pytest.raises(GatewayNotFoundError):
        stripe.modify_subscription(update(world, "k1", price_id="price_missing"))
    with pytest.raises(GatewayNotFoundError):
        stripe.modify_subscription(
            SubscriptionUpdate(
                subscription_id="sub_missing", item_id="si_x", quantity=2, idempotency_key="k2"
            )
        )
    with pytest.raises(GatewayNotFoundError):
        stripe.release_subscription_schedule("sub_sched_missing", idempotency_key="k3")
    with pytest.raises(ValueError, match="item_id"):
        SubscriptionUpdate(subscription_id=world.sub_id, price_id=world.pro, idempotency_key="k")


def test_every_new_port_method_is_counted_and_can_fail(world: World) -> None:
    stripe = world.stripe
    stripe.fail_next("find_promotion_code", GatewayCardError("boom"))
    with pytest.raises(GatewayCardError):
        stripe.find_promotion_code("X")
    stripe.find_promotion_code("X")
    stripe.modify_subscription(update(world, "q", quantity=2))
    assert stripe.calls == {"find_promotion_code": 2, "modify_subscription": 1}
