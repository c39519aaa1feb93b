"""Reconcile at scale: Stripe calls, wall time, memory peak and rows written when in sync.

Run from the repository root::

    PYTHONPATH=src python bench/reconcile.py                 # 1,000 / 5,000 / 10,000
    PYTHONPATH=src python bench/reconcile.py -n 2000 -n 20000

For each size n, ``FakeStripeGateway`` is seeded with n customers and n subscriptions
(``user_id`` in their metadata, as billingkit's checkout sets it; created two seconds apart
over the past, as an account's history is); a first reconcile stores
them all (``InMemoryRepository``); time passes; then the measured run reconciles an account
where nothing drifted:

* ``calls`` — ``list_subscriptions`` requests (target: ceil(n / 100), exactly 100 at 10,000);
* ``wall`` — the measured run, on the fake (a separate run from the traced ones), and
  ``wall (streamed)`` on the replayed pages below (billingkit's own time);
* ``peak (fake)`` — ``tracemalloc`` peak of the whole process during that run, the fake's
  own per-page work included (it sorts its store to find each page, O(n));
* ``peak (streamed)`` — the same run against Stripe's answers replayed as JSON pages
  rendered before measuring (as the network delivers them: each page parsed when fetched),
  so the figure is billingkit's own memory; target: flat, not growing with n;
* ``rows`` — subscription rows written by the measured run (target 0); ``checkpoints`` —
  checkpoint saves (one per page but the last).

Not a test: nothing is asserted on timings.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import BillingConfig
from billingkit.domain import PlanDefinition, Subscription
from billingkit.ports import LIST_PAGE_SIZE, Page
from billingkit.services.catalog import PlanCatalog
from billingkit.services.reconcile import MemoryCheckpointStore, Reconciler
from billingkit.stripe_objects import subscription_from_stripe
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_bench_reconcile_0123456789"
SIZES = (1_000, 5_000, 10_000)


class StreamedStripe(FakeStripeGateway):
    """The fake, but ``list_subscriptions`` replays JSON pages rendered beforehand."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.pages: list[bytes] = []

    def render_pages(self) -> None:
        """Render every page of the listing as Stripe's JSON, as the network would send it."""
        self.pages = []
        cursor = None
        while True:
            page = next(super().list_subscriptions(starting_after=cursor))
            raw = [self.stripe_object(sub.id) for sub in page.items]
            self.pages.append(
                json.dumps({"object": "list", "data": raw, "has_more": page.has_more}).encode()
            )
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def list_subscriptions(self, **options: Any) -> Iterator[Page[Subscription]]:
        """Parse one rendered page per request (counted like the fake's), once rendered."""
        if not self.pages:
            yield from super().list_subscriptions(**options)
            return
        for body in self.pages:
            self.calls["list_subscriptions"] += 1
            listing = json.loads(body)
            items = tuple(subscription_from_stripe(raw) for raw in listing["data"])
            more = bool(listing["has_more"])
            yield Page(items=items, has_more=more, next_cursor=items[-1].id if more else None)


def _seed(n: int) -> tuple[StreamedStripe, InMemoryRepository, PlanCatalog]:
    stripe = StreamedStripe(webhook_secret=SECRET)
    price = stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly")
    start = stripe.now()
    for number in range(n):
        user = {"user_id": f"user-{number}"}
        customer = stripe.add_customer(email=f"u{number}@example.com", metadata=user)
        # one subscription every ~2 seconds over the past n*2 seconds (imported history)
        created = start - timedelta(seconds=2 * (n - number))
        stripe.add_subscription(customer.id, price.id, metadata=user, created=created)
        if number % 500 == 499:
            stripe.drain_events()
    stripe.drain_events()
    config = BillingConfig(
        plans=[
            PlanDefinition(key="free", name="Free"),
            PlanDefinition(key="pro", name="Pro", order=1, prices={"month": "pro_monthly"}),
        ],
        free_plan="free",
        webhook_secrets=[SECRET],
    )
    catalog = PlanCatalog(config, gateway=stripe, clock=stripe.now)
    return stripe, InMemoryRepository(), catalog


def _measure(reconciler: Reconciler, checkpoints: MemoryCheckpointStore) -> dict[str, Any]:
    """One timed run, then one traced run (tracemalloc slows Python down several times)."""
    checkpoints.saves = 0
    started = time.perf_counter()
    report = reconciler.run()
    wall = time.perf_counter() - started
    tracemalloc.start()
    traced = reconciler.run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert traced.rows_written == 0
    return {
        "report": report,
        "wall": wall,
        "peak": peak,
        "checkpoints": checkpoints.saves // 2,
    }


def run_size(n: int) -> dict[str, Any]:
    """Seed n subscriptions, store them with a first reconcile, measure an in-sync one."""
    stripe, repository, catalog = _seed(n)
    checkpoints = MemoryCheckpointStore()
    reconciler = Reconciler(
        stripe, repository, catalog=catalog, clock=stripe.now, checkpoints=checkpoints
    )
    first = reconciler.run()
    assert first.counts["missing_here"] == n, first.counts
    stripe.advance(timedelta(minutes=5))
    catalog.plan_key_for_price("warm-up")  # the price cache, so only list calls are counted

    stripe.reset_calls()
    on_fake = _measure(reconciler, checkpoints)
    fake_calls = stripe.calls["list_subscriptions"] // 2

    stripe.render_pages()
    stripe.reset_calls()
    streamed = _measure(reconciler, checkpoints)
    report = streamed["report"]
    assert stripe.calls["list_subscriptions"] == 2 * fake_calls
    return {
        "n": n,
        "calls": fake_calls,
        "wall": on_fake["wall"],
        "wall_streamed": streamed["wall"],
        "peak_fake": on_fake["peak"],
        "peak_streamed": streamed["peak"],
        "rows": on_fake["report"].rows_written + report.rows_written,
        "in_sync": report.counts["in_sync"],
        "checkpoints": on_fake["checkpoints"],
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every size and print one table row per size; returns the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, action="append", help="subscriptions (repeatable)")
    args = parser.parse_args(argv)
    sizes = args.n or list(SIZES)
    print(
        f"{'n':>7} {'calls':>6} {'target':>6} {'wall':>8} {'wall (streamed)':>16} "
        f"{'peak (fake)':>12} "
        f"{'peak (streamed)':>16} {'rows':>5} {'checkpoints':>12}"
    )
    rows = []
    for n in sizes:
        row = run_size(n)
        rows.append(row)
        target = -(-n // LIST_PAGE_SIZE)
        print(
            f"{n:>7,} {row['calls']:>6} {target:>6} {row['wall']:>7.2f}s "
            f"{row['wall_streamed']:>15.2f}s "
            f"{row['peak_fake'] / 1024:>9,.0f} KB {row['peak_streamed'] / 1024:>13,.0f} KB "
            f"{row['rows']:>5} {row['checkpoints']:>12}",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    main()
