"""Webhook throughput: billingkit's full pipeline against the stripe SDK and the bare floor.

Run from the repository root::

    PYTHONPATH=src python bench/webhooks.py            # 20000 events, best of 5 rounds
    PYTHONPATH=src python bench/webhooks.py -n 2000 -r 3

All three contenders get the same realistic payloads: ``customer.subscription.updated``
events (~4.7 KB, the 2026-07-29.dahlia subscription fixture) with distinct event ids,
signed with one secret. Each subscription carries the ``metadata`` billingkit's own
checkout puts on it (``subscription_data.metadata``: ``user_id``, ``plan_key``,
``interval``), as every subscription started through ``CheckoutService`` does:

* ``pipeline``  — ``WebhookProcessor.handle``: size check + signature + parse + ledger claim +
  apply (ordering guard, subscription stored) on ``InMemoryRepository``; it parses with
  orjson when the ``fast`` extra is installed, and then ``pipeline (json)`` is the same
  with the standard library's ``json``;
* ``construct_event`` — ``stripe.Webhook.construct_event`` alone (verify + build StripeObject);
* ``hmac+json`` — bare ``hmac`` SHA-256 + ``compare_digest`` + ``json.loads``: the floor.

Rates are events per second (best round); ratios compare them. Not a test: no timing is
asserted anywhere. Targets: pipeline >= 5x construct_event and >= 1/3 of hmac+json.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import stripe

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import BillingConfig
from billingkit.domain import Interval, PlanDefinition
from billingkit.services.catalog import PlanCatalog
from billingkit.services.webhooks import WebhookOutcome, WebhookProcessor
from billingkit.services.webhooks import event as event_module
from billingkit.signature import signature_header
from billingkit.testing import FakeStripeGateway, build_event

SECRET = "whsec_bench_secret_0123456789abcdef"
FIXTURE = (
    Path(__file__).resolve().parents[1]
    / "tests/fixtures/stripe/openapi/2026-07-29_f0758b15/subscription.json"
)
SUBSCRIPTIONS = 500  # distinct subscriptions the events are spread over


def make_deliveries(n: int, now: int) -> list[tuple[bytes, str]]:
    """``n`` signed ``customer.subscription.updated`` deliveries with distinct ids, in order."""
    base = json.loads(FIXTURE.read_text(encoding="utf-8"))
    deliveries = []
    for i in range(n):
        obj = copy.deepcopy(base)
        obj["id"] = f"sub_bench_{i % SUBSCRIPTIONS:05d}"
        obj["customer"] = f"cus_bench_{i % SUBSCRIPTIONS:05d}"
        obj["items"]["data"][0]["price"]["id"] = "price_bench_month"
        # What CheckoutService.start_checkout sets as subscription_data.metadata.
        obj["metadata"] = {
            "user_id": f"user_bench_{i % SUBSCRIPTIONS:05d}",
            "plan_key": "basic",
            "interval": "month",
        }
        # Each subscription's events are one second apart: every event is newer (processed).
        created = now - 10 * n + i
        event = build_event(
            "customer.subscription.updated", obj, created=created, event_id=f"evt_bench_{i:08d}"
        )
        payload = json.dumps(event).encode()
        deliveries.append((payload, signature_header(payload, [SECRET], now)))
    return deliveries


def make_processor() -> WebhookProcessor:
    """A processor over a fresh in-memory repository (the gateway is never called)."""
    config = BillingConfig(
        plans=(
            PlanDefinition(key="basic", name="Basic", prices={Interval.MONTH: "price_bench_month"}),
        ),
        webhook_secrets=(SECRET,),
    )
    gateway = FakeStripeGateway(webhook_secret=SECRET)
    return WebhookProcessor(
        config,
        gateway=gateway,
        repository=InMemoryRepository(),
        catalog=PlanCatalog(config, gateway=gateway),
    )


def run_pipeline(deliveries: Sequence[tuple[bytes, str]]) -> None:
    processor = make_processor()
    handle = processor.handle
    for payload, header in deliveries:
        if handle(payload, header).outcome is not WebhookOutcome.PROCESSED:
            raise AssertionError("every bench event must be processed")


def run_pipeline_stdlib(deliveries: Sequence[tuple[bytes, str]]) -> None:
    """The pipeline parsing with the standard library's ``json`` even if orjson is there."""
    fast = event_module._loads
    event_module._loads = event_module._stdlib_loads
    try:
        run_pipeline(deliveries)
    finally:
        event_module._loads = fast


def run_construct_event(deliveries: Sequence[tuple[bytes, str]]) -> None:
    construct = stripe.Webhook.construct_event
    for payload, header in deliveries:
        construct(payload, header, SECRET)


def run_floor(deliveries: Sequence[tuple[bytes, str]]) -> None:
    key = SECRET.encode()
    for payload, header in deliveries:
        timestamp, _, signature = header.partition(",v1=")
        signed = b"%s.%s" % (timestamp[2:].encode(), payload)
        digest = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(digest.encode(), signature.encode()):
            raise AssertionError("bad signature")
        json.loads(payload)


def best_rates(
    contenders: dict[str, Callable[[Sequence[tuple[bytes, str]]], None]],
    deliveries: Sequence[tuple[bytes, str]],
    rounds: int,
) -> dict[str, float]:
    """Events per second of each contender's fastest round.

    Rounds are interleaved (A, B, C, A, B, C, ...) so a noisy neighbour slows all three alike
    and the ratios stay meaningful on a shared machine.
    """
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run(deliveries)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(deliveries) / seconds for name, seconds in best.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print rates and ratios, and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--events", type=int, default=20_000)
    parser.add_argument("-r", "--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    deliveries = make_deliveries(args.events, int(time.time()))
    size = sum(len(p) for p, _ in deliveries) / len(deliveries)
    fast = event_module._loads is not event_module._stdlib_loads
    contenders = {
        "pipeline": run_pipeline,
        **({"pipeline (json)": run_pipeline_stdlib} if fast else {}),
        "construct_event": run_construct_event,
        "hmac+json": run_floor,
    }
    rates = best_rates(contenders, deliveries, args.rounds)
    print(f"{args.events} events of {size:.0f} bytes, best of {args.rounds} rounds")
    for name, rate in rates.items():
        print(f"  {name:<16} {rate:>10,.0f} events/s  {1e6 / rate:7.1f} us/event")
    parser_name = "orjson" if fast else "json"
    ratios = {
        "pipeline / construct_event": rates["pipeline"] / rates["construct_event"],
        f"pipeline ({parser_name}) / hmac+json": rates["pipeline"] / rates["hmac+json"],
    }
    if fast:
        ratios["pipeline (json) / hmac+json"] = rates["pipeline (json)"] / rates["hmac+json"]
    for name, ratio in ratios.items():
        print(f"  {name:<34} {ratio:6.2f}x")
    return {**rates, **ratios}


if __name__ == "__main__":
    main()
