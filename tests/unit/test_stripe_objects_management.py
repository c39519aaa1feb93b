"""The stripe_objects readers for subscription management, across API shapes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billingkit.domain import Money
from billingkit.errors import WebhookPayloadError
from billingkit.stripe_objects import (
    invoice_preview_from_stripe,
    promotion_code_from_stripe,
    subscription_schedule_from_stripe,
)


def _coupon(**fields: Any) -> dict[str, Any]:
    coupon = {"id": "co_1", "percent_off": None, "amount_off": None, "currency": None}
    coupon.update(duration="forever", duration_in_months=None)
    coupon.update(fields)
    return coupon


def test_promotion_code_before_clover_has_the_coupon_at_the_top() -> None:
    promo = promotion_code_from_stripe(
        {
            "id": "promo_1",
            "code": "TENOFF",
            "active": True,
            "coupon": _coupon(amount_off=1000, currency="EUR", duration="once"),
            "expires_at": 1767603600,
            "max_redemptions": 5,
            "times_redeemed": 2,
        }
    )
    assert promo.amount_off == Money(amount=1000, currency="eur")
    assert promo.percent_off is None and promo.times_redeemed == 2
    assert promo.expires_at is not None and promo.expires_at.year == 2026


def test_promotion_code_percent_is_exact() -> None:
    promo = promotion_code_from_stripe(
        {
            "id": "promo_2",
            "code": "HALF",
            "active": True,
            "promotion": {"type": "coupon", "coupon": _coupon(percent_off=12.5)},
        }
    )
    assert promo.percent_off == Decimal("12.5")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"coupon": "co_1"}, "coupon: expected the expanded coupon"),
        ({"coupon": _coupon(amount_off=100)}, "coupon.currency: missing"),
        ({"coupon": _coupon(duration="sometimes")}, "unknown value 'sometimes'"),
    ],
)
def test_malformed_promotion_codes_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message):
        promotion_code_from_stripe({"id": "promo_3", "code": "X", **fields})


def test_preview_reads_pre_basil_proration_lines_and_discounts() -> None:
    preview = invoice_preview_from_stripe(
        {
            "currency": "usd",
            "amount_due": 900,
            "total": 900,
            "next_payment_attempt": 1767603600,
            "total_discount_amounts": [{"amount": 100, "discount": "di_1"}],
            "lines": {
                "data": [
                    {"amount": -500, "proration": True, "price": {"id": "price_old"}},
                    {"amount": 1500, "proration": False, "price": "price_new", "quantity": 1},
                ]
            },
        },
        charged_now=False,
    )
    assert preview.due_now == Money(amount=0, currency="usd")
    assert preview.next_invoice_total == Money(amount=900, currency="usd")
    assert preview.proration_total == Money(amount=-500, currency="usd")
    assert preview.discount_total == Money(amount=100, currency="usd")
    assert [line.price_id for line in preview.lines] == ["price_old", "price_new"]


def test_schedule_rejects_an_unknown_status() -> None:
    with pytest.raises(WebhookPayloadError, match=r"subscription_schedule\.status"):
        subscription_schedule_from_stripe(
            {"id": "sub_sched_1", "customer": "cus_1", "status": "paused", "phases": []}
        )
