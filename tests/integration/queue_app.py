"""The app the queue workers of the tests load: its ``Billing`` and its Celery app.

Worker processes (``celery -A tests.integration.queue_app worker``, ``rq worker`` with
``BILLINGKIT_APP=tests.integration.queue_app:create_billing``) import this module and build
the ``Billing`` from environment variables the test fixture sets:

``BK_QUEUE_DB``
    SQLAlchemy URL of the shared database (migrated, with the stress counter tables).
``BK_QUEUE_FLAKY``
    ``evt_a=2,evt_b=always``: the hooks of those events raise their first 2 times, or
    always; attempts are counted in files under ``BK_QUEUE_COUNTERS``.
``BK_QUEUE_MAX_ATTEMPTS``, ``BK_QUEUE_RETRY_BASE``
    ``webhook_max_attempts`` and ``webhook_retry_base_seconds`` (no jitter).
``BK_CELERY_BROKER``, ``BK_CELERY_QUEUE``
    The Celery app's broker URL and default queue.

Every application of a handler and every hook call is counted in the harness's
``stress_applications`` / ``stress_hooks`` tables, inside the event's transaction, so the
rows show exactly what was committed.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from sqlalchemy import URL
from tests.stress import harness

from billingkit import Billing
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.config import BillingConfig
from billingkit.contrib.celery import install
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.services.webhooks import processor as webhooks

__all__ = ["FlakyHookError", "build_billing", "celery_app", "create_billing", "process_event"]


class FlakyHookError(RuntimeError):
    """Raised by the hook of an event listed in ``BK_QUEUE_FLAKY``."""


def _flaky_rules(spec: str) -> dict[str, int | None]:
    rules: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        event_id, _, times = item.partition("=")
        rules[event_id] = None if times == "always" else int(times)
    return rules


def _count_attempt(folder: Path, event_id: str) -> int:
    """Add one to the event's hook-call counter file (outside any transaction); the count."""
    path = folder / event_id
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


def build_billing(
    url: str | URL,
    *,
    count: bool,
    flaky: str = "",
    counters: Path | None = None,
    max_attempts: int = 8,
    retry_base: float = 30.0,
) -> Billing:
    """The test app's ``Billing`` on ``url``; ``count``: count applications and hooks."""
    history = harness.build_history()
    config = BillingConfig(
        webhook_secrets=(harness.SECRET,),
        webhook_max_attempts=max_attempts,
        webhook_retry_base_seconds=retry_base,
        webhook_retry_max_seconds=max(retry_base, 1.0),
        webhook_retry_jitter=0.0,
    )
    repository = SqlAlchemyRepository(url)
    billing = Billing.build(config, harness.StressGateway(history.final), repository)
    if not count:
        return billing
    # This runs in a worker process of its own: patching the module global is contained.
    webhooks.HANDLERS = harness.counted_handlers(repository)  # type: ignore[attr-defined]
    rules = _flaky_rules(flaky)

    def count_hook(event: HookEvent) -> None:
        if event.event_id in rules and counters is not None:
            limit = rules[event.event_id]
            attempt = _count_attempt(counters, event.event_id)
            if limit is None or attempt <= limit:
                raise FlakyHookError(f"hook of {event.event_id} fails (call {attempt})")
        repository.current_connection().execute(
            harness.HOOKS.insert().values(event_id=event.event_id, kind=event.kind.value)
        )

    for kind in HookKind:
        billing.webhooks.on(kind, count_hook)
    return billing


def create_billing() -> Billing:
    """The worker's ``Billing``, from the environment (see the module docstring)."""
    counters = os.environ.get("BK_QUEUE_COUNTERS")
    return build_billing(
        os.environ["BK_QUEUE_DB"],
        count=True,
        flaky=os.environ.get("BK_QUEUE_FLAKY", ""),
        counters=Path(counters) if counters else None,
        max_attempts=int(os.environ.get("BK_QUEUE_MAX_ATTEMPTS", "8")),
        retry_base=float(os.environ.get("BK_QUEUE_RETRY_BASE", "30")),
    )


celery_app = Celery("billingkit_queue_tests", broker=os.environ.get("BK_CELERY_BROKER"))
celery_app.conf.update(
    task_default_queue=os.environ.get("BK_CELERY_QUEUE", "billingkit-tests"),
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
process_event = install(celery_app, create_billing)
