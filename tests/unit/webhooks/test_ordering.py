"""Ordering guard: any delivery order, with duplicates, ends in the newest state.

A subscription's history (incomplete -> trialing -> active -> past_due -> active -> plan
change -> cancel_at_period_end on -> off -> canceled) is delivered as real signed events in
any permutation with repeats. Seconds between events are drawn from {0, 1, 7}, so same-second
pairs are common. The gateway double answers ``retrieve_subscription`` with Stripe's truth
at that moment: the state of the newest event created so far (at least the newest one
delivered).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billingkit.services.webhooks import WebhookOutcome
from billingkit.stripe_objects import subscription_from_stripe

from .webhook_support import Harness, SubscriptionGateway, load

BASE = load("openapi/2026-07-29_f0758b15/subscription.json")
DAY = 86_400


def state(
    status: str,
    *,
    price: str = "price_basic_month",
    period: int = 0,
    cancel_at_period_end: bool = False,
    trial: bool = False,
) -> dict[str, Any]:
    """A derived subscription object (dahlia shape) in the given state."""
    obj: dict[str, Any] = copy.deepcopy(BASE)
    start = 1_767_225_600 + period * 30 * DAY
    obj.update(
        id="sub_history",
        customer="cus_history",
        status=status,
        cancel_at_period_end=cancel_at_period_end,
        canceled_at=start + 100 if status == "canceled" or cancel_at_period_end else None,
        ended_at=start + 200 if status == "canceled" else None,
        trial_start=start if trial else None,
        trial_end=start + 14 * DAY if trial else None,
        metadata={"user_id": "user_history"},
    )
    item = obj["items"]["data"][0]
    item["price"] = {**item["price"], "id": price}
    item["current_period_start"] = start
    item["current_period_end"] = start + 30 * DAY
    return obj


HISTORY: list[tuple[str, dict[str, Any]]] = [
    ("customer.subscription.created", state("incomplete")),
    ("customer.subscription.updated", state("trialing", trial=True)),
    ("customer.subscription.updated", state("active", period=1)),
    ("customer.subscription.updated", state("past_due", period=2)),
    ("customer.subscription.updated", state("active", period=2)),
    ("customer.subscription.updated", state("active", period=2, price="price_pro_month")),
    (
        "customer.subscription.updated",
        state("active", period=2, price="price_pro_month", cancel_at_period_end=True),
    ),
    ("customer.subscription.updated", state("active", period=3, price="price_pro_month")),
    ("customer.subscription.deleted", state("canceled", period=3, price="price_pro_month")),
]
N = len(HISTORY)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[int], list[int]]:
    gaps = draw(st.lists(st.sampled_from([0, 1, 7]), min_size=N - 1, max_size=N - 1))
    extras = draw(st.lists(st.integers(0, N - 1), max_size=N))
    order = draw(st.permutations(list(range(N)) + extras))
    # How far ahead of the deliveries Stripe's own state may be at each delivery.
    ahead = draw(st.lists(st.integers(0, 2), min_size=len(order), max_size=len(order)))
    return gaps, order, ahead


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_any_order_with_duplicates_ends_in_the_newest_state(
    scenario: tuple[list[int], list[int], list[int]],
) -> None:
    gaps, order, ahead = scenario
    frontier = [0]
    truth = [subscription_from_stripe(obj) for _, obj in HISTORY]
    gateway = SubscriptionGateway(lambda _id: truth[frontier[0]])
    h = Harness(gateway=gateway)
    created = [h.clock.seconds - 1000]
    for gap in gaps:
        created.append(created[-1] + gap)
    events = [
        h.event(kind, obj, created=created[i], event_id=f"evt_history_{i}")
        for i, (kind, obj) in enumerate(HISTORY)
    ]

    delivered: set[int] = set()
    for index, lead in zip(order, ahead, strict=True):
        # Stripe's state is at least as new as every event delivered so far.
        frontier[0] = max(frontier[0], index, min(N - 1, index + lead))
        before = h.stored_subscription("sub_history")
        calls = len(gateway.retrieved)
        result = h.deliver(events[index])
        if index in delivered:
            assert result.outcome is WebhookOutcome.DUPLICATE
        delivered.add(index)
        if len(gateway.retrieved) > calls:
            # Only a same-second tie with a different state may call Stripe, and once.
            assert len(gateway.retrieved) == calls + 1
            assert before is not None and before.watermark == created[index]
            assert not before.same_state(truth[index])

    final = h.stored_subscription("sub_history")
    assert final is not None
    newest = max(range(N), key=lambda i: (created[i], i))
    assert final.same_state(truth[newest])
    assert final.watermark == created[-1]
    assert final.user_id == "user_history"
    assert final.plan_key == "pro"
    if len(set(created)) == N:  # no same-second pair: Stripe is never called
        assert gateway.retrieved == []


def test_reverse_order_without_ties_makes_no_gateway_call() -> None:
    gateway = SubscriptionGateway()  # any call fails the test
    h = Harness(gateway=gateway)
    base = h.clock.seconds - 1000
    outcomes = [
        h.deliver(h.event(kind, obj, created=base + 10 * i, event_id=f"evt_r{i}")).outcome
        for i, (kind, obj) in reversed(list(enumerate(HISTORY)))
    ]
    assert outcomes[0] is WebhookOutcome.PROCESSED
    assert set(outcomes[1:]) == {WebhookOutcome.STALE}
    final = h.stored_subscription("sub_history")
    assert final is not None and final.status.value == "canceled"


def test_same_second_tie_with_equal_state_makes_no_gateway_call() -> None:
    gateway = SubscriptionGateway()  # any call fails the test
    h = Harness(gateway=gateway)
    kind, obj = HISTORY[2]
    created = h.clock.seconds - 100
    first = h.deliver(h.event(kind, obj, created=created, event_id="evt_a"))
    second = h.deliver(h.event(kind, obj, created=created, event_id="evt_b"))
    assert (first.outcome, second.outcome) == (WebhookOutcome.PROCESSED,) * 2


def test_terminal_state_wins_a_tie_without_gateway_call() -> None:
    gateway = SubscriptionGateway()
    h = Harness(gateway=gateway)
    created = h.clock.seconds - 100
    live_kind, live = HISTORY[7]
    dead_kind, dead = HISTORY[8]
    h.deliver(h.event(dead_kind, dead, created=created, event_id="evt_dead"))
    result = h.deliver(h.event(live_kind, live, created=created, event_id="evt_live"))
    assert result.outcome is WebhookOutcome.STALE
    h2 = Harness(gateway=gateway)
    h2.deliver(h2.event(live_kind, live, created=created, event_id="evt_live"))
    result = h2.deliver(h2.event(dead_kind, dead, created=created, event_id="evt_dead"))
    assert result.outcome is WebhookOutcome.PROCESSED
    final = h2.stored_subscription("sub_history")
    assert final is not None and final.status.value == "canceled"
    assert gateway.retrieved == []


def test_tie_with_different_live_states_refetches_once() -> None:
    truth = subscription_from_stripe(HISTORY[5][1])
    gateway = SubscriptionGateway(lambda _id: truth)
    h = Harness(gateway=gateway)
    created = h.clock.seconds - 100
    h.deliver(h.event(*HISTORY[5], created=created, event_id="evt_5"))
    result = h.deliver(h.event(*HISTORY[4], created=created, event_id="evt_4"))
    assert result.outcome is WebhookOutcome.PROCESSED
    assert gateway.retrieved == ["sub_history"]
    final = h.stored_subscription("sub_history")
    assert final is not None and final.same_state(truth)
    assert final.watermark == created
