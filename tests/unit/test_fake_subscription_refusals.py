"""FakeStripeGateway's subscription changes: Stripe's refusals and the less common paths.

Bad items, prices and proration dates; pending updates; metadata; forever coupons;
previews that keep the cancel or make no proration; cancel now without an invoice; reusing
and refusing subscription schedules.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import test_fake_subscriptions
from test_fake_subscriptions import (
    PERIOD_END,
    TEN_DAYS_IN,
    World,
    event_types,
    line_amounts,
    update,
)

from billingkit.domain import SubscriptionStatus
from billingkit.errors import GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.ports import InvoicePreviewRequest, ScheduledChange

#: The customer subscribed to the basic monthly price at PERIOD_START, as there.
world = test_fake_subscriptions.world


def preview(w: World, **fields: object) -> InvoicePreviewRequest:
    return InvoicePreviewRequest(
        customer_id=w.customer_id, subscription_id=w.sub_id, item_id=w.item_id, **fields
    )


# ------------------------------------------------------------------ refusals


def test_another_item_of_the_subscription_is_stripes_404(world: World) -> None:
    stripe = world.stripe
    with pytest.raises(GatewayNotFoundError, match="subscription_item"):
        stripe.modify_subscription(
            update(world, "k", price_id=world.pro).model_copy(update={"item_id": "si_other"})
        )
    assert event_types(stripe) == []


def test_an_inactive_or_one_time_price_is_refused(world: World) -> None:
    stripe = world.stripe
    retired = stripe.add_price(amount=2000, active=False)
    once = stripe.add_price(amount=2000, interval="one_time")
    stripe.drain_events()
    for key, price in (("retired", retired.id), ("once", once.id)):
        with pytest.raises(GatewayInvalidRequestError, match="active recurring"):
            stripe.modify_subscription(update(world, key, price_id=price))
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic
    assert event_types(stripe) == []


def test_a_price_in_another_currency_is_refused(world: World) -> None:
    euro = world.stripe.add_price(amount=900, currency="eur")
    with pytest.raises(GatewayInvalidRequestError, match="one currency"):
        world.stripe.modify_subscription(update(world, "eur", price_id=euro.id))


def test_a_proration_date_outside_the_period_is_refused(world: World) -> None:
    stripe = world.stripe
    with pytest.raises(GatewayInvalidRequestError, match="proration_date"):
        stripe.modify_subscription(
            update(world, "late", quantity=2, proration_date=PERIOD_END + timedelta(seconds=1))
        )
    with pytest.raises(GatewayInvalidRequestError, match="proration_date"):
        stripe.preview_invoice(
            preview(world, quantity=2, proration_date=PERIOD_END + timedelta(days=1))
        )


def test_a_preview_for_another_customer_is_refused(world: World) -> None:
    stripe = world.stripe
    other = stripe.create_customer(user_id="u2", email="u2@example.com", idempotency_key="c2")
    with pytest.raises(GatewayInvalidRequestError, match="does not belong"):
        stripe.preview_invoice(
            preview(world, quantity=2).model_copy(update={"customer_id": other.id})
        )


def test_a_pending_update_blocks_further_item_changes(world: World) -> None:
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
    with pytest.raises(GatewayInvalidRequestError, match="pending update"):
        stripe.modify_subscription(update(world, "seats", quantity=2))
    # Changes that leave the items alone are still allowed.
    result = stripe.modify_subscription(update(world, "meta", metadata={"team": "blue"}))
    assert result.subscription.price_id == world.basic
    assert stripe.stripe_object(world.sub_id)["metadata"] == {"team": "blue"}


@pytest.mark.parametrize(
    "extra",
    [{"metadata": {"a": "b"}}, {"cancel_at_period_end": True}],
)
def test_pending_if_incomplete_only_changes_items(world: World, extra: dict[str, object]) -> None:
    stripe = world.stripe
    with pytest.raises(GatewayInvalidRequestError, match="pending_if_incomplete"):
        stripe.modify_subscription(
            update(
                world, "k", price_id=world.pro, payment_behavior="pending_if_incomplete", **extra
            )
        )
    assert stripe.retrieve_subscription(world.sub_id).price_id == world.basic
    assert event_types(stripe) == []


def test_pending_if_incomplete_refuses_a_promotion_code(world: World) -> None:
    stripe = world.stripe
    promo = stripe.add_promotion_code("TEN", percent_off=10)
    with pytest.raises(GatewayInvalidRequestError, match="pending_if_incomplete"):
        stripe.modify_subscription(
            update(
                world,
                "k",
                quantity=2,
                payment_behavior="pending_if_incomplete",
                promotion_code=promo.id,
            )
        )
    found = stripe.find_promotion_code("TEN")
    assert found is not None and found.times_redeemed == 0  # nothing was redeemed


def test_an_unusable_promotion_code_is_refused(world: World) -> None:
    stripe = world.stripe
    promo = stripe.add_promotion_code("OFF", percent_off=10, active=False)
    with pytest.raises(GatewayInvalidRequestError, match="not active"):
        stripe.modify_subscription(update(world, "k", promotion_code=promo.id))
    with pytest.raises(GatewayNotFoundError):
        stripe.modify_subscription(update(world, "k2", promotion_code="promo_missing"))


# ------------------------------------------------------------------ less common paths


def test_an_update_that_changes_nothing_emits_nothing(world: World) -> None:
    stripe = world.stripe
    result = stripe.modify_subscription(update(world, "same", quantity=1))
    assert result.applied and result.subscription.quantity == 1
    assert event_types(stripe) == []


def test_metadata_is_replaced_and_announced(world: World) -> None:
    stripe = world.stripe
    stripe.modify_subscription(update(world, "m1", metadata={"team": "blue"}))
    deliveries = stripe.drain_events()
    assert [d.type for d in deliveries] == ["customer.subscription.updated"]
    assert deliveries[0].data_object()["metadata"] == {"team": "blue"}


def test_a_change_dated_at_the_period_end_makes_no_proration(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    stripe.modify_subscription(update(world, "up", price_id=world.pro, proration_date=PERIOD_END))
    stripe.advance_to(PERIOD_END)
    assert line_amounts(stripe.latest_invoice(world.sub_id)) == [3000]


def test_a_forever_coupon_discounts_every_renewal(world: World) -> None:
    stripe = world.stripe
    promo = stripe.add_promotion_code("ALWAYS", amount_off=100, currency="usd", duration="forever")
    stripe.modify_subscription(update(world, "promo", promotion_code=promo.id))
    for months in range(1, 4):
        stripe.advance(timedelta(days=31))
        assert stripe.latest_invoice(world.sub_id)["amount_due"] == 900, months


def test_a_preview_with_a_promotion_code_redeems_nothing(world: World) -> None:
    stripe = world.stripe
    promo = stripe.add_promotion_code("HALF", percent_off=50, max_redemptions=1)
    shown = stripe.preview_invoice(preview(world, promotion_code=promo.id))
    assert shown.amount_due.amount == 500 and shown.discount_total.amount == 500
    assert stripe.find_promotion_code("HALF") is not None
    assert event_types(stripe) == []


def test_a_preview_without_prorations_shows_the_plain_renewal(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    shown = stripe.preview_invoice(preview(world, price_id=world.pro, proration_behavior="none"))
    assert shown.proration_total.amount == 0
    assert [line.amount.amount for line in shown.lines] == [3000]
    assert shown.next_invoice_at == PERIOD_END


def test_a_preview_of_a_canceling_subscription_has_no_renewal_line(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    shown = stripe.preview_invoice(preview(world, quantity=2, cancel_at_period_end=True))
    assert [line.amount.amount for line in shown.lines] == [-677, 1355]
    assert shown.amount_due.amount == 1355 - 677


def test_cancel_now_without_invoice_leaves_the_credit_on_the_customer(world: World) -> None:
    stripe = world.stripe
    stripe.advance_to(TEN_DAYS_IN)
    paid = stripe.latest_invoice(world.sub_id)["id"]
    canceled = stripe.cancel_subscription_now(world.sub_id, prorate=True, idempotency_key="end")
    assert canceled.status is SubscriptionStatus.CANCELED
    assert stripe.latest_invoice(world.sub_id)["id"] == paid  # no final invoice
    assert "invoice.created" not in event_types(stripe)


def test_cancel_now_of_a_paused_subscription_prorates_nothing(world: World) -> None:
    stripe = world.stripe
    stripe.pause_subscription(world.sub_id)
    stripe.advance_to(TEN_DAYS_IN)
    stripe.drain_events()
    canceled = stripe.cancel_subscription_now(
        world.sub_id, prorate=True, invoice_now=True, idempotency_key="end"
    )
    assert canceled.status is SubscriptionStatus.CANCELED
    assert event_types(stripe) == ["customer.subscription.deleted"]


# ------------------------------------------------------------------ schedules


def test_a_second_schedule_is_refused_and_the_first_can_be_reused(world: World) -> None:
    stripe = world.stripe
    first = stripe.schedule_subscription_change(
        ScheduledChange(subscription_id=world.sub_id, price_id=world.pro, idempotency_key="s1")
    )
    with pytest.raises(GatewayInvalidRequestError) as caught:
        stripe.schedule_subscription_change(
            ScheduledChange(subscription_id=world.sub_id, price_id=world.pro, idempotency_key="s2")
        )
    assert caught.value.code == "subscription_schedule_exists"
    stripe.drain_events()
    again = stripe.schedule_subscription_change(
        ScheduledChange(
            subscription_id=world.sub_id,
            price_id=world.basic,
            quantity=2,
            existing_schedule_id=first.id,
            metadata={"why": "downgrade"},
            idempotency_key="s3",
        )
    )
    assert again.id == first.id
    assert [(p.price_id, p.quantity) for p in again.phases] == [(world.basic, 1), (world.basic, 2)]
    assert stripe.stripe_object(first.id)["metadata"] == {"why": "downgrade"}
    assert event_types(stripe) == ["subscription_schedule.updated"]


def test_a_released_schedule_cannot_be_reused(world: World) -> None:
    stripe = world.stripe
    first = stripe.schedule_subscription_change(
        ScheduledChange(subscription_id=world.sub_id, price_id=world.pro, idempotency_key="s1")
    )
    stripe.release_subscription_schedule(first.id, idempotency_key="r")
    with pytest.raises(GatewayInvalidRequestError, match="does not drive"):
        stripe.schedule_subscription_change(
            ScheduledChange(
                subscription_id=world.sub_id,
                price_id=world.pro,
                existing_schedule_id=first.id,
                idempotency_key="s2",
            )
        )
    with pytest.raises(GatewayNotFoundError):
        stripe.schedule_subscription_change(
            ScheduledChange(
                subscription_id=world.sub_id,
                price_id=world.pro,
                existing_schedule_id="sub_sched_missing",
                idempotency_key="s3",
            )
        )
