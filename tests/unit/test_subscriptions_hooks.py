"""Hooks fire exactly once per transition, over any interleaving of API answers and webhooks.

Hypothesis chooses, for each operation, how many of its webhooks arrive *before* its API
answer is stored and whether the rest arrive at once or later; the held-back ones are then
delivered in any order, some of them twice.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_subscriptions import World

from billingkit import HookKind
from billingkit.stripe_objects import subscription_from_stripe
from billingkit.testing import Delivery

OPERATIONS = 4
EXPECTED = Counter(
    {
        HookKind.PLAN_CHANGED: 1,
        HookKind.QUANTITY_CHANGED: 1,
        HookKind.CANCEL_SCHEDULED: 1,
        HookKind.CANCEL_UNDONE: 1,
    }
)

plans = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3), st.booleans()),
    min_size=OPERATIONS,
    max_size=OPERATIONS,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans, order=st.randoms(use_true_random=False), repeats=st.integers(0, 3))
def test_each_hook_fires_once_whatever_the_interleaving(
    plan: list[tuple[int, bool]], order: object, repeats: int
) -> None:
    w = World()
    held: list[Delivery] = []
    operations: list[Callable[[], object]] = [
        lambda: w.service.change_plan("u1", "pro"),
        lambda: w.service.set_quantity("u1", 3),
        lambda: w.service.cancel("u1"),
        lambda: w.service.resume("u1"),
    ]
    for operation, (early, hold) in zip(operations, plan, strict=True):

        def before_answer(early: int = early) -> None:
            deliveries = w.stripe.drain_events()
            w.deliver(deliveries[:early])
            held.extend(deliveries[early:])

        w.stripe.before_answer = before_answer
        operation()
        if not hold:
            w.deliver(held)
            held.clear()
        w.stripe.advance(timedelta(seconds=2))
        w.deliver()
    assert isinstance(order, random.Random)
    order.shuffle(held)
    w.deliver(held + held[:repeats])

    assert w.fired() == EXPECTED
    truth = subscription_from_stripe(w.stripe.stripe_object(w.sub_id))
    stored = w.stored()
    assert (stored.price_id, stored.quantity, stored.cancel_at_period_end) == (
        truth.price_id,
        truth.quantity,
        truth.cancel_at_period_end,
    )
