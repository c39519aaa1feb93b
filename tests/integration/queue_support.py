"""Real queue workers for the tests: broker checks, worker processes, waiting, checking.

Brokers (a URL per kind; an unreachable one skips its tests with the reason, or fails them
under ``BILLINGKIT_REQUIRE_SERVICES=1``, like the database servers):

* ``BILLINGKIT_REDIS_URL``, default ``redis://127.0.0.1:6379/0``
* ``BILLINGKIT_RABBITMQ_URL``, default ``amqp://guest:guest@127.0.0.1:5672//``

:class:`WorkerProcess` starts a worker command (``celery ... worker``, ``rq worker``) in a
process group of its own, logging to a file, and stops the whole group (SIGTERM, then
SIGKILL) however the test ends. Each test uses queue names of its own (:func:`unique_name`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from types import TracebackType

import pytest
from sqlalchemy import URL, select
from tests.integration.databases import services_required
from tests.stress import harness

from billingkit import Billing, BillingConfig, InMemoryRepository
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.domain import EventRecord, EventStatus
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.services.webhooks.registry import HANDLERS
from billingkit.signature import signature_header
from billingkit.stripe_objects import subscription_from_stripe

ROOT = Path(__file__).resolve().parents[2]
_DEFAULTS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
#: Every state an event can stay in once nothing more will happen to it on its own.
SETTLED = frozenset(
    {EventStatus.PROCESSED, EventStatus.STALE, EventStatus.IGNORED, EventStatus.DEAD}
)


def broker_url(kind: str) -> str:
    """The broker URL for ``kind`` (``redis`` or ``rabbitmq``)."""
    return os.environ.get(f"BILLINGKIT_{kind.upper()}_URL", _DEFAULTS[kind])


@cache
def _unreachable(kind: str) -> str | None:
    try:
        if kind == "redis":
            from redis import Redis

            client = Redis.from_url(broker_url(kind), socket_connect_timeout=5)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(broker_url(kind), connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def require_broker(kind: str) -> None:
    """Skip (or, with BILLINGKIT_REQUIRE_SERVICES=1, fail) unless ``kind`` answers."""
    reason = _unreachable(kind)
    if reason is None:
        return
    message = f"{kind} not reachable at {broker_url(kind)} ({reason})"
    if services_required():
        pytest.fail(f"{message}; BILLINGKIT_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def unique_name(prefix: str) -> str:
    """A queue (or worker) name no other test run uses."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker: this one, with ``src`` and the project root importable.

    The test run's own ``PYTHONPATH`` comes first, so workers import the same billingkit.
    """
    env = dict(os.environ)
    paths = [env.get("PYTHONPATH", ""), str(ROOT / "src"), str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def celery_command(queue: str, *, concurrency: int = 2, pool: str = "prefork") -> list[str]:
    """``celery -A tests.integration.queue_app worker`` on ``queue``."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.integration.queue_app:celery_app",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "-Q",
        queue,
        "-n",
        f"{queue}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
    ]


def rq_command(queue: str, url: str, name: str) -> list[str]:
    """``rq worker`` (one process, no fork per job) with its scheduler on ``queue``."""
    return [
        str(Path(sys.executable).with_name("rq")),
        "worker",
        "--url",
        url,
        "--with-scheduler",
        "--worker-class",
        "rq.worker.SimpleWorker",
        "--name",
        name,
        queue,
    ]


class WorkerProcess:
    """A worker command in a process group of its own; stopped (group and all) on exit."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.command = list(command)
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=dict(env),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def alive(self) -> bool:
        """Whether the worker's main process still runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: the worker dies mid-task, as on a crashed machine."""
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the group (a warm shutdown), SIGKILL whatever is left after ``timeout``."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self._signal_group(signal.SIGKILL)  # prefork children that outlived their parent
        if self.alive():
            self.process.wait(timeout=30)
        self._log_file.close()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def output(self) -> str:
        """What the worker wrote so far (for failure messages)."""
        return self.log.read_text(errors="replace")


def signed(events: Iterable[Mapping[str, object]]) -> list[tuple[bytes, str]]:
    """Each event as (raw body, ``Stripe-Signature`` header), signed now."""
    now = int(time.time())
    deliveries = []
    for event in events:
        body = json.dumps(event, separators=(",", ":")).encode()
        deliveries.append((body, signature_header(body, [harness.SECRET], now)))
    return deliveries


def ledger(billing: Billing) -> dict[str, EventRecord]:
    """Every ledger entry by id."""
    with billing.repository.unit_of_work() as uow:
        return {record.id: record for record in uow.list_events(limit=10_000)}


def wait_until(
    condition: Callable[[], bool],
    describe: Callable[[], str],
    *,
    workers: Sequence[WorkerProcess] = (),
    timeout: float = 120.0,
) -> None:
    """Poll ``condition`` until it holds; fail with ``describe()`` and the workers' logs.

    The timeout only keeps a broken run from hanging: nothing asserts how long it took.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.command[:6]}\n{w.output()[-4000:]}" for w in workers)
            pytest.fail(f"not settled after {timeout:.0f} s: {describe()}\n{logs}")
        time.sleep(0.2)


def settled(billing: Billing, ids: Iterable[str]) -> Callable[[], bool]:
    """A condition: every event of ``ids`` is in the ledger in a settled status."""
    wanted = set(ids)

    def check() -> bool:
        entries = ledger(billing)
        return all(eid in entries and entries[eid].status in SETTLED for eid in wanted)

    return check


def status_summary(billing: Billing) -> Callable[[], str]:
    """A description of the ledger by status, for failure messages."""
    return lambda: str(Counter(record.status.value for record in ledger(billing).values()))


def check_applied_once(url: URL | str, history: harness.History) -> None:
    """Every event applied exactly once, every hook once, each subscription in its newest state.

    The same guarantees as :func:`tests.stress.harness.check`, read from the database alone
    (the ledger and the counter rows committed with each event).
    """
    events = {str(event["id"]): event for event in history.events}
    handled = {eid for eid, event in events.items() if event["type"] in HANDLERS}
    repository = SqlAlchemyRepository(url)
    try:
        with repository.unit_of_work() as uow:
            entries = {record.id: record for record in uow.list_events(limit=10_000)}
            stored = {sub_id: uow.get_subscription(sub_id) for sub_id in history.final}
        with repository.engine.connect() as connection:
            applications = connection.execute(
                select(harness.APPLICATIONS.c.event_id, harness.APPLICATIONS.c.status)
            ).all()
            hooks = connection.execute(select(harness.HOOKS.c.event_id, harness.HOOKS.c.kind)).all()
    finally:
        repository.close()

    assert set(entries) == set(events)
    statuses = Counter(record.status for record in entries.values())
    assert set(statuses) <= {EventStatus.PROCESSED, EventStatus.STALE, EventStatus.IGNORED}, (
        statuses
    )
    assert statuses[EventStatus.IGNORED] == len(events) - len(handled)

    applied = Counter(event_id for event_id, _ in applications)
    assert set(applied) == handled
    assert set(applied.values()) == {1}, [eid for eid, n in applied.items() if n > 1]
    assert all(entries[eid].status.value == status for eid, status in applications)

    calls = Counter((event_id, kind) for event_id, kind in hooks)
    assert calls and set(calls.values()) == {1}
    assert all(entries[eid].status is EventStatus.PROCESSED for eid, _ in calls)
    failed_invoices = {eid for eid, e in events.items() if e["type"] == "invoice.payment_failed"}
    assert {eid for eid, kind in calls if kind == "payment_failed"} == failed_invoices
    deletions = {eid for eid, e in events.items() if e["type"] == "customer.subscription.deleted"}
    assert {eid for eid, kind in calls if kind == "subscription_canceled"} == deletions

    for sub_id, final in history.final.items():
        current = stored[sub_id]
        assert current is not None, sub_id
        assert current.same_state(subscription_from_stripe(final)), sub_id
        assert current.watermark == history.newest[sub_id]


def delete_celery_queue(kind: str, queue: str) -> None:
    """Remove what a test's Celery queue left on the broker (best effort)."""
    from kombu import Connection, Queue

    try:
        with Connection(broker_url(kind), connect_timeout=5) as connection:
            Queue(queue, channel=connection.default_channel).delete()
    except Exception:
        pass


class MovableClock:
    """A clock the test moves (``advance``); starts at the real time, so signatures verify.

    With ``tick`` set, every reading moves it on by that much: each retry is then due at once.
    """

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc).replace(microsecond=0)
        self.tick = timedelta(0)

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.tick
        return now

    def advance(self, delta: timedelta) -> None:
        """Move the time forward."""
        self.now += delta


@dataclass
class MemoryApp:
    """An in-process app on the in-memory repository whose hook can be made to fail."""

    billing: Billing
    clock: MovableClock
    #: event id -> how many more times its hook raises (-1: always)
    failing: dict[str, int] = field(default_factory=dict)
    #: (event id, hook kind) of every hook call that went through
    calls: list[tuple[str, str]] = field(default_factory=list)

    def sign(self, event: Mapping[str, object]) -> tuple[bytes, str]:
        """The event as (raw body, header), signed at the app's current time."""
        body = json.dumps(event, separators=(",", ":")).encode()
        return body, signature_header(body, [harness.SECRET], int(self.clock.now.timestamp()))

    def store(self, event: Mapping[str, object]) -> str:
        """``receive`` the event (no dispatcher: stored only); its id."""
        result = self.billing.webhooks.receive(*self.sign(event))
        return result.event_id


def memory_app(history: harness.History, *, max_attempts: int = 3) -> MemoryApp:
    """A :class:`MemoryApp` whose hooks record their calls and fail as ``failing`` says."""
    clock = MovableClock()
    config = BillingConfig(
        webhook_secrets=(harness.SECRET,),
        webhook_max_attempts=max_attempts,
        webhook_retry_base_seconds=60.0,
        webhook_retry_jitter=0.0,
    )
    billing = Billing.build(
        config, harness.StressGateway(history.final), InMemoryRepository(), clock=clock
    )
    app = MemoryApp(billing, clock)

    def hook(event: HookEvent) -> None:
        left = app.failing.get(event.event_id, 0)
        if left:
            app.failing[event.event_id] = left - 1 if left > 0 else left
            raise RuntimeError(f"hook of {event.event_id} fails")
        app.calls.append((event.event_id, event.kind.value))

    for kind in HookKind:
        billing.webhooks.on(kind, hook)
    return app


def first_event_of(history: harness.History, event_type: str) -> Mapping[str, object]:
    """The first event of ``event_type`` in the history."""
    return next(event for event in history.events if event["type"] == event_type)
