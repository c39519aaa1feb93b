"""Signed events with wrong types and out-of-range values, on every repository.

Real events of each handled type (fixtures) are delivered once to seed the repository; then
hypothesis mutates one field of one of them (the envelope, and every field of
``data.object`` and ``data.previous_attributes`` the readers touch, found by recording their
reads as ``tests/unit/test_stripe_objects.py`` does), signs it under a fresh event id and
delivers it. On the in-memory repository, SQLite, PostgreSQL and MariaDB alike the answer
is 200 or 400, never 500 nor an exception; a 400 names the field; and after a 400 nothing
stored before changed (the refused event's own ledger entry aside).
"""

from __future__ import annotations

import copy
import importlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.databases import clear_tables, scratch_database

from billingkit.adapters.memory import InMemoryRepository
from billingkit.config import BillingConfig
from billingkit.domain import CustomerLink, Interval, PlanDefinition
from billingkit.ports import Repository
from billingkit.services.catalog import PlanCatalog
from billingkit.services.webhooks import WebhookProcessor
from billingkit.stripe_objects import (
    checkout_session_from_stripe,
    customer_from_stripe,
    invoice_from_stripe,
    invoice_subscription_id,
    previous_price_id,
    previous_status,
    subscription_from_stripe,
)
from billingkit.testing import FakeStripeGateway, build_event, sign_payload

#: The readers test's field recording and bad values, reused. Imported by name: mypy knows
#: that module as ``test_stripe_objects`` (tests/unit is a root), pytest as ``tests.unit...``.
_READERS_TEST = importlib.import_module("tests.unit.test_stripe_objects")
_DELETE: object = _READERS_TEST._DELETE
BAD_VALUES: st.SearchStrategy[Any] = _READERS_TEST.BAD_VALUES
_exists: Callable[[Any, tuple[str | int, ...]], bool] = _READERS_TEST._exists
dotted: Callable[[tuple[str | int, ...]], str] = _READERS_TEST.dotted
fields_touched: Callable[[Any, dict[str, Any]], list[tuple[str | int, ...]]] = (
    _READERS_TEST.fields_touched
)

STRIPE = Path(__file__).parents[1] / "fixtures" / "stripe"
SECRET = "whsec_fuzz_secret"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
#: Examples per repository: the server ones are kept small so the test runs in seconds.
EXAMPLES = {"memory": 200, "sqlite": 60, "postgres": 30, "mariadb": 30}

Path_ = tuple[str | int, ...]


def _load(relative: str) -> Any:
    return json.loads((STRIPE / relative).read_text(encoding="utf-8"))


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(type, data.object, data.previous_attributes) of each handled family."""
    sub_updated = _load("pay/subscription.updated.json")
    failed = _load("pay/invoice.payment_failed.json")
    action = _load("pay/invoice.payment_action_required.json")
    return [
        ("customer.subscription.created", _load("pay/subscription.created.json")["object"], None),
        (
            "customer.subscription.updated",
            sub_updated["object"],
            sub_updated.get("previous_attributes"),
        ),
        ("customer.subscription.deleted", _load("pay/subscription.deleted.json")["object"], None),
        (
            "customer.subscription.trial_will_end",
            _load("pay/subscription.trial_will_end.json")["object"],
            None,
        ),
        (
            "customer.subscription.updated",
            _load("openapi/2017-09-20_bb581d37/subscription.json"),
            None,
        ),
        (
            "checkout.session.completed",
            _load("pay/checkout.session.completed.json")["object"],
            None,
        ),
        (
            "checkout.session.expired",
            _load("openapi/2026-07-29_f0758b15/checkout.session.json"),
            None,
        ),
        ("invoice.payment_failed", failed["object"], None),
        ("invoice.payment_action_required", action["object"], None),
        ("invoice.paid", _load("openapi/2026-07-29_f0758b15/invoice.json"), None),
        ("customer.updated", _load("pay/customer.updated.json")["object"], None),
        ("customer.deleted", _load("pay/customer.deleted.json")["object"], None),
        ("price.updated", _load("openapi/2026-07-29_f0758b15/price.json"), None),
    ]


CASES = _cases()

#: The envelope fields ``parse_event`` reads.
ENVELOPE: list[Path_] = [
    ("id",),
    ("type",),
    ("object",),
    ("created",),
    ("livemode",),
    ("api_version",),
    ("data",),
    ("data", "object"),
    ("data", "previous_attributes"),
    ("data", "object", "id"),
]


def _session(obj: Any) -> Any:
    return checkout_session_from_stripe(obj, created_fallback=NOW)


def _invoice(obj: Any) -> Any:
    invoice_from_stripe(obj)
    return invoice_subscription_id(obj)


def _previous(previous: Any) -> Any:
    return previous_price_id(previous), previous_status(previous)


def _reader(event_type: str) -> Any:
    """The reader the handler of ``event_type`` applies to ``data.object`` (or ``None``)."""
    if event_type.startswith("customer.subscription."):
        return subscription_from_stripe
    if event_type.startswith("checkout.session."):
        return _session
    if event_type in ("invoice.payment_failed", "invoice.payment_action_required"):
        return _invoice
    if event_type.startswith("invoice."):
        return invoice_subscription_id
    if event_type.startswith("customer."):
        return customer_from_stripe
    return None  # price.*: nothing is read


def _fields(event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None) -> list[Path_]:
    """The envelope, and every field the readers touch (with their era fallbacks)."""
    fields = list(ENVELOPE)
    read = _reader(event_type)
    if read is not None:
        fields += [("data", "object", *path) for path in fields_touched(read, obj)]
    if previous is not None and event_type.startswith("customer.subscription."):
        fields += [("data", "previous_attributes", *p) for p in fields_touched(_previous, previous)]
    return fields


FIELDS = [_fields(kind, obj, previous) for kind, obj, previous in CASES]


def _named(path: Path_, error: str) -> bool:
    """Whether ``error`` names the field at ``path`` (or, for a nested one, its parent)."""
    if len(path) > 2 and path[0] == "data":
        inner = path[2:]
        candidates = [inner, inner[:-1]] if len(inner) > 1 else [inner]
        return any(dotted(c) in error or dotted(c).lstrip(".") in error for c in candidates)
    if path in (("data", "object"), ("data", "previous_attributes")):
        # The object replaced by another value: naming it, or the field inside it that is
        # wrong ("subscription.id: missing"), both name the field.
        return path[-1] in error or re.match(r"[a-z_.]+\.[\w.\[\]]+: ", error) is not None
    return any(step in error for step in path if isinstance(step, str))


def _mutated(event: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(event)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        if isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


# --------------------------------------------------------------------------- the world


def _param(kind: str) -> object:
    marks = {"postgres": [pytest.mark.postgres], "mariadb": [pytest.mark.mariadb]}
    return pytest.param(kind, marks=marks.get(kind, []), id=kind)


@pytest.fixture(
    scope="module", params=[_param(k) for k in ("memory", "sqlite", "postgres", "mariadb")]
)
def repository(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Repository]]:
    kind: str = request.param
    if kind == "memory":
        yield kind, InMemoryRepository()
        return
    from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade

    with scratch_database(kind, tmp_path_factory.mktemp("fuzz")) as url:
        upgrade(url)
        repo = SqlAlchemyRepository(url)
        clear_tables(repo)
        try:
            yield kind, repo
        finally:
            repo.close()


class World:
    """A processor over ``repository``, seeded with every case's event once."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.gateway = FakeStripeGateway(webhook_secret=SECRET)
        config = BillingConfig(
            plans=(
                PlanDefinition(key="free", name="Free"),
                PlanDefinition(key="pro", name="Pro", prices={Interval.MONTH: "price_pro"}),
            ),
            free_plan="free",
            webhook_secrets=(SECRET,),
        )
        self.now = NOW
        catalog = PlanCatalog(config, gateway=self.gateway, clock=lambda: self.now)
        self.processor = WebhookProcessor(
            config,
            gateway=self.gateway,
            repository=repository,
            catalog=catalog,
            clock=lambda: self.now,
        )
        self.events = [
            build_event(
                kind,
                obj,
                created=int(NOW.timestamp()) - 600 + index,
                event_id=f"evt_seed_{index}",
                previous_attributes=previous,
            )
            for index, (kind, obj, previous) in enumerate(CASES)
        ]
        self.customers = sorted(
            {c for _, obj, _ in CASES if isinstance(c := obj.get("customer"), str)}
            | {
                obj["id"]
                for kind, obj, _ in CASES
                if kind.startswith("customer.") and "sub" not in kind
            }
        )
        self.subscriptions = sorted(
            {obj["id"] for kind, obj, _ in CASES if kind.startswith("customer.subscription")}
            | {s for _, obj, _ in CASES if isinstance(s := obj.get("subscription"), str)}
        )
        self.sessions = sorted({obj["id"] for kind, obj, _ in CASES if kind.startswith("checkout")})
        with repository.unit_of_work() as uow:
            for index, customer in enumerate(self.customers):
                if uow.customer_by_id(customer) is None:
                    uow.link_customer(CustomerLink(user_id=f"user_{index}", customer_id=customer))
        for event in self.events:
            response = self.deliver(event)
            assert response.status == 200, response.body

    def deliver(self, event: dict[str, Any]) -> Any:
        payload = json.dumps(event).encode()
        signature = sign_payload(payload, SECRET, int(self.now.timestamp()))
        return self.processor.handle_http(payload, signature)

    def snapshot(self, *, without_event: str) -> dict[str, Any]:
        with self.repository.unit_of_work() as uow:
            return {
                "subscriptions": [uow.get_subscription(s) for s in self.subscriptions],
                "customers": [uow.customer_by_id(c) for c in self.customers],
                "checkouts": [uow.get_checkout(s) for s in self.sessions],
                "events": sorted(
                    (e.id, e.status, e.attempts, e.last_error)
                    for e in uow.list_events(limit=10_000)
                    if e.id != without_event
                ),
            }


def test_signed_mutations_answer_200_or_400_naming_the_field_and_change_nothing_on_a_400(
    repository: tuple[str, Repository],
) -> None:
    kind, repo = repository
    world = World(repo)
    counter = iter(range(10**9))

    @settings(
        max_examples=EXAMPLES[kind],
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(CASES) - 1), label="case")
        event = world.events[index]
        path = data.draw(st.sampled_from(FIELDS[index]), label="path")
        value = data.draw(BAD_VALUES, label="value")
        number = next(counter)
        event_id = f"evt_fuzz_{number}"
        # A second of its own: no same-second tie (which would re-fetch from the fake Stripe).
        fresh = {**event, "id": event_id, "created": int(NOW.timestamp()) + number}
        if not _exists(fresh, path):
            return  # a fallback whose parent this fixture lacks
        mutated = _mutated(fresh, path, value)
        recorded_id = mutated.get("id") if isinstance(mutated, dict) else None
        before = world.snapshot(without_event=str(recorded_id))
        response = world.deliver(mutated)
        assert response.status in (200, 400), response.body
        if response.status == 400:
            error = json.loads(response.body)["error"]
            assert _named(path, error), (dotted(path), error)
            assert world.snapshot(without_event=str(recorded_id)) == before

    check()
