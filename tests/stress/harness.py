"""Multi-process webhook delivery against one shared database.

The parent builds 200 signed Stripe events (subscription lifecycles over 25 subscriptions,
with a few same-second ties, invoice failures and unhandled types), hands every event to at
least two worker processes, and each worker delivers its share in its own random order
through ``WebhookProcessor.handle``, redelivering after a failure as Stripe does.

Inside every event's unit of work the workers count, through
``SqlAlchemyRepository.current_connection()``:

* each handler application in ``stress_applications`` (the processor's handler registry is
  wrapped for that), and
* each hook call in ``stress_hooks``.

Those rows commit or roll back with the event, so after the run they show exactly what was
applied. :func:`check` asserts the guarantees.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import URL, Column, Integer, MetaData, String, Table, create_engine, select

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade
from billingkit.config import BillingConfig
from billingkit.domain import EventStatus, Price, Subscription
from billingkit.errors import GatewayNotFoundError, WebhookError
from billingkit.ports import (
    CheckoutSession,
    CheckoutSessionRequest,
    PortalSession,
    StripeCustomer,
    StripeGateway,
)
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.services.webhooks import processor as webhooks
from billingkit.services.webhooks.handlers import HandlerContext
from billingkit.services.webhooks.registry import HANDLERS
from billingkit.signature import signature_header
from billingkit.stripe_objects import subscription_from_stripe

SECRET = "whsec_stress_test_secret"
SIGNED_AT = 1_800_000_000
SUBSCRIPTIONS = 25
PRICE_BASIC, PRICE_PRO = "price_basic", "price_pro"
PLANS = {PRICE_BASIC: "basic", PRICE_PRO: "pro"}
_MAX_ATTEMPTS = 25

counters = MetaData()
APPLICATIONS = Table(
    "stress_applications",
    counters,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
)
HOOKS = Table(
    "stress_hooks",
    counters,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
)


# --------------------------------------------------------------------------- the events


@dataclass
class History:
    """The events to deliver and what the database must hold afterwards."""

    events: list[dict[str, Any]] = field(default_factory=list)
    #: subscription id -> the state carried by its newest event (what Stripe returns now)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: subscription id -> created second of its newest event
    newest: dict[str, int] = field(default_factory=dict)

    def signed(self) -> list[tuple[bytes, str]]:
        """Every event as (raw body, Stripe-Signature header)."""
        deliveries = []
        for event in self.events:
            body = json.dumps(event, separators=(",", ":")).encode()
            deliveries.append((body, signature_header(body, [SECRET], SIGNED_AT)))
        return deliveries


def _subscription(
    index: int, status: str, price: str, created: int, **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"sub_{index:03d}",
        "object": "subscription",
        "customer": f"cus_{index:03d}",
        "status": status,
        "created": created,
        "livemode": False,
        "cancel_at_period_end": False,
        "current_period_start": created,
        "current_period_end": created + 30 * 86400,
        "metadata": {"user_id": f"user_{index:03d}"},
        "items": {"object": "list", "data": [{"price": {"id": price}, "quantity": 1}]},
        **extra,
    }


def _event(
    event_id: str,
    event_type: str,
    created: int,
    obj: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": created,
        "livemode": False,
        "api_version": "2025-03-31.basil",
        "data": data,
    }


def build_history() -> History:
    """200 events: 7 per subscription, 5 same-second ties, 20 of unhandled types."""
    history = History()
    serial = 0

    def add(event_type: str, created: int, obj: dict[str, Any], previous: Any = None) -> None:
        nonlocal serial
        serial += 1
        history.events.append(_event(f"evt_{serial:04d}", event_type, created, obj, previous))

    updated = "customer.subscription.updated"
    for i in range(SUBSCRIPTIONS):
        base = SIGNED_AT - 10_000 + i * 100
        add(
            "customer.subscription.created", base, _subscription(i, "incomplete", PRICE_BASIC, base)
        )
        add(
            updated,
            base + 1,
            _subscription(i, "active", PRICE_BASIC, base),
            {"status": "incomplete"},
        )
        add(
            "invoice.payment_failed",
            base + 2,
            {
                "id": f"in_{i:03d}",
                "object": "invoice",
                "customer": f"cus_{i:03d}",
                "subscription": f"sub_{i:03d}",
                "amount_due": 1500,
                "currency": "eur",
                "attempt_count": 1,
            },
        )
        add(
            updated, base + 2, _subscription(i, "past_due", PRICE_BASIC, base), {"status": "active"}
        )
        add(
            updated, base + 3, _subscription(i, "active", PRICE_BASIC, base), {"status": "past_due"}
        )
        if i % 5 == 0:  # a different state in the same second: resolved by a re-fetch
            tied = _subscription(i, "active", PRICE_BASIC, base)
            tied["metadata"] = {"user_id": f"user_{i:03d}", "note": "tie"}
            add(updated, base + 3, tied, {"metadata": {"user_id": f"user_{i:03d}"}})
        old_items = {"object": "list", "data": [{"price": {"id": PRICE_BASIC}, "quantity": 1}]}
        add(updated, base + 4, _subscription(i, "active", PRICE_PRO, base), {"items": old_items})
        if i % 2 == 0:
            last = _subscription(i, "canceled", PRICE_PRO, base, canceled_at=base + 5)
            add("customer.subscription.deleted", base + 5, last)
        else:
            last = _subscription(i, "active", PRICE_PRO, base, cancel_at_period_end=True)
            add(updated, base + 5, last, {"cancel_at_period_end": False})
        history.final[last["id"]] = last
        history.newest[last["id"]] = base + 5
    for n in range(200 - len(history.events)):
        kind = "charge.succeeded" if n % 2 else "payment_intent.created"
        add(kind, SIGNED_AT - 20_000 + n, {"id": f"ch_{n:03d}", "object": "charge"})
    assert len(history.events) == 200
    return history


# --------------------------------------------------------------------------- collaborators


class StressGateway(StripeGateway):
    """Answers ``retrieve_subscription`` with Stripe's current (final) state; nothing else.

    The processor only calls the gateway to resolve a same-second tie; any other call is a
    failure of the test.
    """

    def __init__(self, final: Mapping[str, dict[str, Any]]) -> None:
        self._final = final

    def retrieve_subscription(self, subscription_id: str) -> Subscription:
        try:
            return subscription_from_stripe(self._final[subscription_id])
        except KeyError:
            raise GatewayNotFoundError(f"no subscription {subscription_id}") from None

    def _unused(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the webhook pipeline called an unexpected gateway method")

    def create_customer(self, **kwargs: Any) -> StripeCustomer:
        return self._unused(**kwargs)  # type: ignore[no-any-return]

    def retrieve_customer(self, customer_id: str) -> StripeCustomer:
        return self._unused(customer_id)  # type: ignore[no-any-return]

    def create_checkout_session(self, request: CheckoutSessionRequest) -> CheckoutSession:
        return self._unused(request)  # type: ignore[no-any-return]

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        return self._unused(session_id)  # type: ignore[no-any-return]

    def list_prices(self, **kwargs: Any) -> list[Price]:
        return self._unused(**kwargs)  # type: ignore[no-any-return]

    def create_billing_portal_session(self, **kwargs: Any) -> PortalSession:
        return self._unused(**kwargs)  # type: ignore[no-any-return]

    def modify_subscription(self, update: Any) -> Any:
        return self._unused(update)

    def cancel_subscription_now(self, subscription_id: str, **kwargs: Any) -> Any:
        return self._unused(subscription_id, **kwargs)

    def resume_paused_subscription(self, subscription_id: str, **kwargs: Any) -> Any:
        return self._unused(subscription_id, **kwargs)

    def preview_invoice(self, request: Any) -> Any:
        return self._unused(request)

    def schedule_subscription_change(self, change: Any) -> Any:
        return self._unused(change)

    def release_subscription_schedule(self, schedule_id: str, **kwargs: Any) -> Any:
        return self._unused(schedule_id, **kwargs)

    def find_promotion_code(self, code: str) -> Any:
        return self._unused(code)

    def list_subscriptions(self, **kwargs: Any) -> Any:
        return self._unused(**kwargs)

    def list_customers(self, **kwargs: Any) -> Any:
        return self._unused(**kwargs)

    def list_webhook_endpoints(self, **kwargs: Any) -> Any:
        return self._unused(**kwargs)

    def create_setup_checkout_session(self, request: Any) -> Any:
        return self._unused(request)

    def set_default_payment_method(self, **kwargs: Any) -> None:
        self._unused(**kwargs)

    def create_meter_event(self, **params: Any) -> Any:
        return self._unused(params)


class StressCatalog:
    """The two plans of the test, by price id."""

    def plan_key_for_price(self, price_id: str) -> str | None:
        return PLANS.get(price_id)

    def invalidate(self) -> None:
        return None


def build_processor(
    repository: SqlAlchemyRepository, final: Mapping[str, dict[str, Any]]
) -> webhooks.WebhookProcessor:
    """A processor on ``repository`` whose hooks count their calls in ``stress_hooks``."""
    processor = webhooks.WebhookProcessor(
        BillingConfig(webhook_secrets=(SECRET,)),
        gateway=StressGateway(final),
        repository=repository,
        catalog=StressCatalog(),
        clock=lambda: datetime.fromtimestamp(SIGNED_AT, tz=timezone.utc),
    )

    def count_hook(event: HookEvent) -> None:
        repository.current_connection().execute(
            HOOKS.insert().values(event_id=event.event_id, kind=event.kind.value)
        )

    for kind in HookKind:
        processor.on(kind, count_hook)

    return processor


def counted_handlers(repository: SqlAlchemyRepository) -> dict[str, Any]:
    """The processor's handler registry, each handler also counting its applications."""

    def counted(handler: Any) -> Any:
        def apply(context: HandlerContext) -> EventStatus:
            status: EventStatus = handler(context)
            repository.current_connection().execute(
                APPLICATIONS.insert().values(event_id=context.event.id, status=status.value)
            )
            return status

        return apply

    return {kind: counted(handler) for kind, handler in HANDLERS.items()}


def prepare(url: URL) -> None:
    """Migrate the billingkit tables and create the counter tables."""
    upgrade(url)
    engine = create_engine(url)
    try:
        counters.create_all(engine)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- the run


def deliver(
    url: str, deliveries: Sequence[tuple[bytes, str]], final: Mapping[str, dict[str, Any]]
) -> dict[str, int]:
    """Worker body: deliver each event, redelivering after a failure (as Stripe does)."""
    repository = SqlAlchemyRepository(url)
    processor = build_processor(repository, final)
    # Count every application of a handler, inside the event's unit of work. Patching the
    # module global is fine here: this runs in a worker process of its own.
    webhooks.HANDLERS = counted_handlers(repository)  # type: ignore[attr-defined]
    tally: Counter[str] = Counter()
    try:
        for body, signature in deliveries:
            for attempt in range(_MAX_ATTEMPTS):
                try:
                    result = processor.handle(body, signature)
                except WebhookError:
                    raise  # a bad request is a bug of the test: never retried
                except Exception as exc:  # 500: Stripe redelivers later
                    tally[f"failed:{type(exc).__name__}"] += 1
                    time.sleep(0.01 * (attempt + 1))
                    continue
                tally[result.outcome.value] += 1
                break
            else:
                tally["gave_up"] += 1
    finally:
        repository.close()
    return dict(tally)


def _worker(
    url: str,
    deliveries: list[tuple[bytes, str]],
    final: dict[str, dict[str, Any]],
    queue: Any,
) -> None:
    try:
        queue.put(("ok", deliver(url, deliveries, final)))
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))
        raise


def run(url: URL, history: History, *, processes: int, copies: int, seed: int) -> Counter[str]:
    """Deliver every event ``copies`` times, to distinct processes, in random orders."""
    rng = random.Random(seed)
    shares: list[list[tuple[bytes, str]]] = [[] for _ in range(processes)]
    for delivery in history.signed():
        for worker in rng.sample(range(processes), copies):
            shares[worker].append(delivery)
    for share in shares:
        rng.shuffle(share)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    rendered = url.render_as_string(hide_password=False)
    workers = [
        context.Process(target=_worker, args=(rendered, share, history.final, queue))
        for share in shares
    ]
    for process in workers:
        process.start()
    total: Counter[str] = Counter()
    errors = []
    for _ in workers:
        kind, value = queue.get(timeout=240)
        if kind == "ok":
            total.update(value)
        else:
            errors.append(value)
    for process in workers:
        process.join(timeout=60)
    assert errors == [], errors
    assert all(process.exitcode == 0 for process in workers)
    return total


# --------------------------------------------------------------------------- the checks


def check(url: URL, history: History, outcomes: Counter[str]) -> None:
    """Assert exactly-once application, hook counts and the final states."""
    events = {event["id"]: event for event in history.events}
    handled = {eid for eid, event in events.items() if event["type"] in HANDLERS}
    assert outcomes["gave_up"] == 0, outcomes
    # exactly one delivery per event was not a duplicate
    decided = outcomes["processed"] + outcomes["stale"] + outcomes["ignored"]
    assert decided == len(events), outcomes

    repository = SqlAlchemyRepository(url)
    engine = repository.engine
    try:
        with repository.unit_of_work() as uow:
            ledger = {record.id: record for record in uow.list_events(limit=1000)}
            stored = {sub_id: uow.get_subscription(sub_id) for sub_id in history.final}
        with engine.connect() as connection:
            applications = connection.execute(
                select(APPLICATIONS.c.event_id, APPLICATIONS.c.status)
            ).all()
            hooks = connection.execute(select(HOOKS.c.event_id, HOOKS.c.kind)).all()
    finally:
        repository.close()

    # the ledger: 200 rows, every one decided
    assert set(ledger) == set(events)
    statuses = Counter(record.status for record in ledger.values())
    assert set(statuses) <= {EventStatus.PROCESSED, EventStatus.STALE, EventStatus.IGNORED}
    assert statuses[EventStatus.IGNORED] == len(events) - len(handled)
    assert statuses[EventStatus.PROCESSED] + statuses[EventStatus.STALE] == len(handled)
    assert statuses[EventStatus.PROCESSED] == outcomes["processed"]

    # every handled event applied exactly once, with the status the ledger holds
    applied = Counter(event_id for event_id, _ in applications)
    assert set(applied) == handled and set(applied.values()) == {1}
    assert all(ledger[eid].status.value == status for eid, status in applications)

    # each hook called at most once per event, and only for applied, processed events
    calls = Counter((event_id, kind) for event_id, kind in hooks)
    assert calls and set(calls.values()) == {1}
    assert all(ledger[eid].status is EventStatus.PROCESSED for eid, _ in calls)
    failed_invoices = {eid for eid, e in events.items() if e["type"] == "invoice.payment_failed"}
    assert {eid for eid, kind in calls if kind == "payment_failed"} == failed_invoices
    deletions = {eid for eid, e in events.items() if e["type"] == "customer.subscription.deleted"}
    assert {eid for eid, kind in calls if kind == "subscription_canceled"} == deletions

    # every subscription ends in the state of its newest event
    for sub_id, final in history.final.items():
        expected = subscription_from_stripe(final)
        current = stored[sub_id]
        assert current is not None, sub_id
        assert current.same_state(expected), (sub_id, current, expected)
        assert current.watermark == history.newest[sub_id]
        assert current.plan_key == PLANS[PRICE_PRO]
        assert current.user_id == final["metadata"]["user_id"]
