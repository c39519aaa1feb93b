"""Invoice and charge values: the save rule, the merges, and reading them in every API era."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billingkit.domain import Money
from billingkit.domain.invoices import (
    ChargeRecord,
    InvoiceStatus,
    InvoiceSummary,
    charge_from_columns,
    charge_to_columns,
    decide_invoice_save,
    invoice_from_columns,
    invoice_to_columns,
    merge_charge,
    merge_invoice,
)
from billingkit.errors import WebhookPayloadError
from billingkit.ports import SaveOutcome
from billingkit.stripe_objects import (
    charge_from_stripe,
    dispute_from_stripe,
    invoice_from_stripe,
    invoice_payment_from_stripe,
)

STRIPE = Path(__file__).parents[1] / "fixtures" / "stripe"
ERAS = sorted(p.name for p in (STRIPE / "openapi").iterdir() if (p / "invoice.json").exists())
S = InvoiceStatus


def load(relative: str) -> Any:
    return json.loads((STRIPE / relative).read_text(encoding="utf-8"))


def summary(
    status: InvoiceStatus, watermark: int, attempts: int = 0, **fields: Any
) -> InvoiceSummary:
    return InvoiceSummary(
        id="in_1", status=status, watermark=watermark, attempt_count=attempts, **fields
    )


# --------------------------------------------------------------------------- the save rule


@pytest.mark.parametrize(
    ("stored", "new", "outcome"),
    [
        (summary(S.OPEN, 10), summary(S.OPEN, 11), SaveOutcome.WRITTEN),
        (summary(S.OPEN, 10), summary(S.DRAFT, 9), SaveOutcome.STALE),
        (summary(S.PAID, 10), summary(S.OPEN, 20), SaveOutcome.STALE),  # terminal stays
        (summary(S.VOID, 10), summary(S.DRAFT, 20), SaveOutcome.STALE),
        (summary(S.UNCOLLECTIBLE, 10), summary(S.OPEN, 20), SaveOutcome.STALE),
        (summary(S.UNCOLLECTIBLE, 10), summary(S.PAID, 20), SaveOutcome.WRITTEN),
        (summary(S.DELETED, 10), summary(S.DRAFT, 20), SaveOutcome.STALE),
        (summary(S.DELETED, 10), summary(S.PAID, 20), SaveOutcome.STALE),  # tombstone stays
        (summary(S.DRAFT, 10), summary(S.DELETED, 10), SaveOutcome.WRITTEN),
        # same second: the further state wins, whichever arrives first
        (summary(S.DRAFT, 10), summary(S.OPEN, 10), SaveOutcome.WRITTEN),
        (summary(S.OPEN, 10), summary(S.DRAFT, 10), SaveOutcome.STALE),
        (summary(S.OPEN, 10, 2), summary(S.OPEN, 10, 1), SaveOutcome.STALE),
        (summary(S.OPEN, 10, 1), summary(S.OPEN, 10, 2), SaveOutcome.WRITTEN),
        (summary(S.OPEN, 10, 1), summary(S.OPEN, 10, 1), SaveOutcome.WRITTEN),
        (summary(S.UNCOLLECTIBLE, 10), summary(S.PAID, 10), SaveOutcome.WRITTEN),
        (summary(S.PAID, 10), summary(S.UNCOLLECTIBLE, 10), SaveOutcome.STALE),
    ],
)
def test_decide_invoice_save(
    stored: InvoiceSummary, new: InvoiceSummary, outcome: SaveOutcome
) -> None:
    assert decide_invoice_save(stored, new) is outcome


def test_merge_invoice_keeps_known_facts_and_never_stores_refunds() -> None:
    stored = summary(
        S.OPEN, 10, number="N-1", hosted_invoice_url="https://h", user_id="u", charge_id="ch_1"
    )
    new = summary(S.PAID, 11, amount_refunded=Money(amount=5, currency="usd"))
    merged = merge_invoice(stored, new)
    assert (merged.number, merged.hosted_invoice_url, merged.user_id) == ("N-1", "https://h", "u")
    assert merged.charge_id == "ch_1"
    assert merged.status is S.PAID and merged.watermark == 11
    assert merged.amount_refunded is None
    assert merge_invoice(None, summary(S.OPEN, 1)) == summary(S.OPEN, 1)


charges = st.builds(
    ChargeRecord,
    key=st.just("pi_1"),
    charge_id=st.sampled_from([None, "ch_1"]),
    payment_intent_id=st.sampled_from([None, "pi_1"]),
    invoice_id=st.sampled_from([None, "in_1"]),
    customer_id=st.sampled_from([None, "cus_1"]),
    amount_refunded=st.integers(0, 2000),
    refunded=st.booleans(),
)


@given(st.lists(charges, min_size=1, max_size=6), st.randoms())
def test_merging_charges_does_not_depend_on_order(records: list[ChargeRecord], rnd: Any) -> None:
    def fold(items: list[ChargeRecord]) -> ChargeRecord:
        result: ChargeRecord | None = None
        for item in items:
            result = merge_charge(result, item)
        assert result is not None
        return result

    shuffled = list(records)
    rnd.shuffle(shuffled)
    merged = fold(records)
    assert fold(shuffled) == merged
    assert merged.amount_refunded == max(r.amount_refunded for r in records)
    assert merged.refunded == any(r.refunded for r in records)


# --------------------------------------------------------------------------- reading eras


@pytest.mark.parametrize("era", ERAS)
def test_invoice_summary_reads_every_era(era: str) -> None:
    obj = load(f"openapi/{era}/invoice.json")
    invoice = invoice_from_stripe(obj)
    assert invoice.id == obj["id"]
    assert invoice.created == datetime.fromtimestamp(
        obj.get("created") or obj["date"], timezone.utc
    )
    total = obj.get("total", obj["amount_due"])
    assert invoice.total == Money(amount=total, currency=obj["currency"])
    assert invoice.number == obj.get("number")
    described = [line.get("description") for line in obj["lines"]["data"]]
    assert list(invoice.lines) == [d for d in described if d]
    if obj.get("status") is not None:
        assert invoice.status.value == obj["status"]
    if "period_start" in obj:
        assert invoice.period_start == datetime.fromtimestamp(obj["period_start"], timezone.utc)


def test_a_2017_invoice_without_status_reads_paid_from_paid() -> None:
    obj = load("openapi/2017-09-20_bb581d37/invoice.json")
    assert obj.get("status") is None
    assert invoice_from_stripe({**obj, "paid": True}).status is S.PAID
    assert invoice_from_stripe({**obj, "paid": False, "closed": True}).status is S.DRAFT
    assert invoice_from_stripe(obj).charge_id == obj["charge"]  # the pre-basil payment link


def test_the_subscription_moves_to_the_parent_in_basil() -> None:
    old = load("openapi/2025-02-14_b819eedc/invoice.json")
    new = load("openapi/2025-05-21_4c1fdc9a/invoice.json")
    assert invoice_from_stripe({**old, "subscription": "sub_old"}).subscription_id == "sub_old"
    assert invoice_from_stripe(new).subscription_id == "subscription"


def test_deleted_gives_the_tombstone_and_an_unknown_status_is_named() -> None:
    obj = load("openapi/2026-07-29_f0758b15/invoice.json")
    assert invoice_from_stripe(obj, deleted=True).status is S.DELETED
    with pytest.raises(WebhookPayloadError, match=r"invoice\.status"):
        invoice_from_stripe({**obj, "status": "deleted"})  # not a Stripe status
    with pytest.raises(WebhookPayloadError, match=r"invoice\.invoice_pdf"):
        invoice_from_stripe({**obj, "invoice_pdf": 3})


@pytest.mark.parametrize("era", ERAS)
def test_charges_read_every_era(era: str) -> None:
    obj = load(f"openapi/{era}/charge.json")
    charge = charge_from_stripe(obj)
    assert charge.charge_id == obj["id"]
    assert charge.key == (obj.get("payment_intent") or obj["id"])
    assert charge.amount == Money(amount=obj["amount"], currency=obj["currency"])
    assert charge.amount_refunded == obj["amount_refunded"]
    assert charge.invoice_id == obj.get("invoice")


def test_pay_refund_payload_and_invoice_payment_and_dispute() -> None:
    refund = charge_from_stripe(load("pay/charge.refunded.json")["object"])
    assert refund.key == "pm_1234" and refund.amount_refunded == 500 and not refund.refunded
    payment = invoice_payment_from_stripe(
        {"invoice": "in_1", "payment": {"type": "charge", "charge": "ch_9"}, "currency": "eur"}
    )
    assert (payment.key, payment.invoice_id, payment.charge_id) == ("ch_9", "in_1", "ch_9")
    with pytest.raises(WebhookPayloadError, match=r"invoice_payment\.invoice"):
        invoice_payment_from_stripe({"payment": {"payment_intent": "pi_1"}})
    with pytest.raises(WebhookPayloadError, match=r"invoice_payment\.payment"):
        invoice_payment_from_stripe({"invoice": "in_1", "payment": {"type": "out_of_band"}})
    dispute = dispute_from_stripe(
        {"id": "du_1", "charge": {"id": "ch_1"}, "amount": 500, "currency": "JPY", "reason": "x"}
    )
    assert dispute.charge_id == "ch_1" and dispute.amount == Money(amount=500, currency="jpy")


def test_the_flat_forms_round_trip() -> None:
    usd = Money(amount=1900, currency="usd")
    invoice = summary(
        S.PAID,
        7,
        total=usd,
        amount_due=usd,
        amount_paid=usd,
        amount_remaining=Money(amount=0, currency="usd"),
        lines=("a", "b"),
        number="N",
        created=datetime(2031, 1, 1, tzinfo=timezone.utc),
    )
    row = invoice_to_columns(invoice)
    assert row["currency"] == "usd" and row["total"] == 1900 and row["status"] == "paid"
    assert "amount_refunded" not in row
    back = invoice_from_columns(row, refunded=300)
    assert back == invoice.model_copy(update={"amount_refunded": Money(amount=300, currency="usd")})
    bare = summary(S.DRAFT, 1)
    assert invoice_from_columns(invoice_to_columns(bare)) == bare
    charge = ChargeRecord(key="pi_1", amount=usd, amount_refunded=5, refunded=False)
    assert charge_from_columns(charge_to_columns(charge)) == charge
    assert charge_from_columns(charge_to_columns(ChargeRecord(key="ch_1"))) == ChargeRecord(
        key="ch_1"
    )
