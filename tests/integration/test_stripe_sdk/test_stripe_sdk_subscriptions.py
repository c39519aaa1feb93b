"""StripeSdkGateway's subscription management calls over cassettes (all synthetic).

Each call is matched strictly (path, query, form body, idempotency key, API version), so a
changed parameter name or value fails here; the errors each call can meet map to the
GatewayError tree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from stripe_cassettes import CassetteKit

from billingkit.adapters.stripe_sdk import StripeSdkGateway
from billingkit.domain import Money, SubscriptionStatus
from billingkit.errors import GatewayCardError, GatewayInvalidRequestError, GatewayNotFoundError
from billingkit.ports import (
    InvoicePreviewRequest,
    ScheduledChange,
    SubscriptionUpdate,
)

SUB = "sub_1Pgc6rB7WZ01zgkWManage01"
CUS = "cus_QXg1ManageBk0001"
ITEM = "si_QXg1ManageItem01"
SCHED = "sub_sched_1PgcManageBk0001"
KEY = "bk-synthetic-manage"
NOW = datetime(2026, 7, 29, 8, tzinfo=timezone.utc)
MISSING = "sub_billingkitMissing0"


def seats(key: str, payment: str = "pending_if_incomplete") -> SubscriptionUpdate:
    return SubscriptionUpdate(
        subscription_id=SUB,
        item_id=ITEM,
        quantity=3,
        proration_behavior="always_invoice",
        payment_behavior=payment,
        idempotency_key=key,
    )


def test_update_applied_reads_the_expanded_invoice(
    gateway: StripeSdkGateway, cassettes: CassetteKit, no_sdk_objects: Any
) -> None:
    with cassettes.use("update_subscription_applied", synthetic=True) as cassette:
        result = gateway.modify_subscription(seats(f"{KEY}-seats"))
    assert cassettes.requests_made(cassette) == 1
    assert result.applied and result.pending_expires_at is None
    assert result.subscription.quantity == 3 and result.item_id == ITEM
    assert result.invoice_id == "in_1PgcManageProration1"
    assert result.invoice_status == "paid"
    no_sdk_objects(result)


def test_update_pending_when_the_card_declines(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with cassettes.use("update_subscription_pending", synthetic=True):
        result = gateway.modify_subscription(seats(f"{KEY}-seats-declined"))
    assert not result.applied
    assert result.subscription.quantity == 1  # still the old state
    assert result.pending_expires_at == datetime(2026, 7, 30, 7, tzinfo=timezone.utc)
    assert result.invoice_status == "open"
    assert result.hosted_invoice_url is not None
    assert result.hosted_invoice_url.startswith("https://invoice.stripe.com/")


def test_update_declined_with_error_if_incomplete_is_a_card_error(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("update_subscription_card_declined", synthetic=True),
        pytest.raises(GatewayCardError) as caught,
    ):
        gateway.modify_subscription(seats(f"{KEY}-seats-strict", "error_if_incomplete"))
    assert caught.value.http_status == 402 and caught.value.code == "card_declined"
    assert caught.value.user_message == "Your card was declined."


def test_update_unknown_subscription_is_not_found(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    update = SubscriptionUpdate(
        subscription_id=MISSING, cancel_at_period_end=True, idempotency_key=f"{KEY}-missing"
    )
    with (
        cassettes.use("update_subscription_not_found", synthetic=True),
        pytest.raises(GatewayNotFoundError) as caught,
    ):
        gateway.modify_subscription(update)
    assert caught.value.http_status == 404


def test_update_refused_is_invalid_request(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    update = SubscriptionUpdate(
        subscription_id=SUB,
        payment_behavior="pending_if_incomplete",
        promotion_code="promo_1PgcManageSpring25",
        idempotency_key=f"{KEY}-pending-discount",
    )
    with (
        cassettes.use("update_subscription_invalid", synthetic=True),
        pytest.raises(GatewayInvalidRequestError) as caught,
    ):
        gateway.modify_subscription(update)
    assert caught.value.http_status == 400 and not caught.value.retryable


def test_cancel_now_sends_prorate_and_invoice_now(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with cassettes.use("cancel_subscription_now", synthetic=True) as cassette:
        sub = gateway.cancel_subscription_now(
            SUB, prorate=True, invoice_now=True, idempotency_key=f"{KEY}-cancel"
        )
    assert cassettes.requests_made(cassette) == 1
    assert sub.status is SubscriptionStatus.CANCELED and sub.ended_at == NOW


def test_cancel_unknown_subscription_is_not_found(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("cancel_subscription_not_found", synthetic=True),
        pytest.raises(GatewayNotFoundError),
    ):
        gateway.cancel_subscription_now(MISSING, idempotency_key=f"{KEY}-cancel-missing")


def test_resume(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("resume_subscription", synthetic=True):
        sub = gateway.resume_paused_subscription(SUB, idempotency_key=f"{KEY}-resume")
    assert sub.status is SubscriptionStatus.ACTIVE


def test_resume_of_an_active_subscription_is_refused(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("resume_subscription_invalid", synthetic=True),
        pytest.raises(GatewayInvalidRequestError),
    ):
        gateway.resume_paused_subscription(SUB, idempotency_key=f"{KEY}-resume-active")


def _preview_request(**changes: Any) -> InvoicePreviewRequest:
    fields: dict[str, Any] = {
        "customer_id": CUS,
        "subscription_id": SUB,
        "item_id": ITEM,
        "quantity": 3,
        "proration_behavior": "always_invoice",
        "proration_date": NOW,
    }
    fields.update(changes)
    return InvoicePreviewRequest(**fields)


def test_preview_invoice_in_one_call(
    gateway: StripeSdkGateway, cassettes: CassetteKit, no_sdk_objects: Any
) -> None:
    with cassettes.use("preview_invoice", synthetic=True) as cassette:
        preview = gateway.preview_invoice(_preview_request())
    assert cassettes.requests_made(cassette) == 1
    usd = "usd"
    assert preview.due_now == Money(amount=2710, currency=usd)
    assert preview.proration_total == Money(amount=2710, currency=usd)
    assert preview.next_invoice_total is None
    assert [line.amount.amount for line in preview.lines] == [-1355, 4065]
    assert all(line.proration for line in preview.lines)
    no_sdk_objects(preview)


def test_preview_of_unknown_subscription_is_not_found(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("preview_invoice_not_found", synthetic=True),
        pytest.raises(GatewayNotFoundError),
    ):
        gateway.preview_invoice(_preview_request(subscription_id=MISSING))


def test_preview_with_a_bad_proration_date_is_invalid(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    late = datetime(2026, 8, 20, 8, tzinfo=timezone.utc)
    with (
        cassettes.use("preview_invoice_invalid", synthetic=True),
        pytest.raises(GatewayInvalidRequestError),
    ):
        gateway.preview_invoice(_preview_request(proration_date=late))


def test_schedule_change_creates_then_sets_two_phases(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    year = world["recorded"]["prices"]["billingkit_test_pro_year"]
    change = ScheduledChange(subscription_id=SUB, price_id=year, idempotency_key=f"{KEY}-schedule")
    with cassettes.use("schedule_subscription_change", synthetic=True) as cassette:
        schedule = gateway.schedule_subscription_change(change)
    assert cassettes.requests_made(cassette) == 2
    assert schedule.id == SCHED and schedule.status == "active"
    assert [phase.price_id for phase in schedule.phases][1] == year
    assert schedule.phases[1].start == schedule.phases[0].end


def test_schedule_change_on_a_scheduled_subscription_is_refused(
    gateway: StripeSdkGateway, cassettes: CassetteKit, world: dict[str, Any]
) -> None:
    year = world["recorded"]["prices"]["billingkit_test_pro_year"]
    change = ScheduledChange(
        subscription_id=SUB, price_id=year, idempotency_key=f"{KEY}-schedule-again"
    )
    with (
        cassettes.use("schedule_subscription_change_invalid", synthetic=True),
        pytest.raises(GatewayInvalidRequestError),
    ):
        gateway.schedule_subscription_change(change)


def test_release_schedule(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("release_subscription_schedule", synthetic=True):
        schedule = gateway.release_subscription_schedule(SCHED, idempotency_key=f"{KEY}-release")
    assert schedule.status == "released" and schedule.released_subscription_id == SUB
    assert schedule.subscription_id is None


def test_release_unknown_schedule_is_not_found(
    gateway: StripeSdkGateway, cassettes: CassetteKit
) -> None:
    with (
        cassettes.use("release_subscription_schedule_not_found", synthetic=True),
        pytest.raises(GatewayNotFoundError),
    ):
        gateway.release_subscription_schedule(
            "sub_sched_billingkitMissing", idempotency_key=f"{KEY}-release-missing"
        )


def test_find_promotion_code(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("find_promotion_code", synthetic=True):
        promo = gateway.find_promotion_code("SPRING25")
    assert promo is not None
    assert promo.id == "promo_1PgcManageSpring25" and promo.coupon_id == "spring25"
    assert promo.percent_off == Decimal("25.0") and promo.amount_off is None
    assert promo.duration == "repeating" and promo.duration_in_months == 3


def test_unknown_promotion_code_is_none(gateway: StripeSdkGateway, cassettes: CassetteKit) -> None:
    with cassettes.use("find_promotion_code_none", synthetic=True):
        assert gateway.find_promotion_code("NOSUCHCODE") is None
