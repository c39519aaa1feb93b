"""The Flask example in deferred mode, Celery workers applying its events: the pieces.

* :func:`build_history`: 500 events over 60 subscriptions (the harness's lifecycles, made
  with its generators, without same-second ties: the example's fake Stripe cannot re-fetch
  subscriptions it never created) plus unhandled types.
* :func:`create_billing` / :data:`celery_app`: the worker side, loaded by
  ``celery -A tests.stress.flask_proof:celery_app worker``: the example's own
  ``build_billing`` and Celery settings (``examples/flask_app/tasks.py``), with the harness's
  counters (every handler application and hook call, written in the event's transaction)
  and one stall: the hook of the event named by ``BK_PROOF_STALL`` writes the worker's pid
  to ``BK_PROOF_MARKERS/stalled`` and sleeps, the first time only, so the test can kill
  that worker while it holds the event's transaction open.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from examples.flask_app.app import worker_settings
from examples.flask_app.billing import build_billing
from examples.flask_app.tasks import make_celery
from tests.stress import harness

from billingkit import Billing
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.contrib.celery import install
from billingkit.services.hooks import HookEvent, HookKind
from billingkit.services.webhooks import processor as webhooks

__all__ = ["STALL_SECONDS", "build_history", "celery_app", "create_billing", "process_event"]

#: How long the stalled hook waits for the test to kill its worker.
STALL_SECONDS = 120.0


def build_history(*, subscriptions: int = 60, total: int = 500) -> harness.History:
    """``total`` events: 7 per subscription (lifecycle, a failed invoice), the rest unhandled."""
    history = harness.History()
    serial = 0

    def add(event_type: str, created: int, obj: dict[str, Any], previous: Any = None) -> None:
        nonlocal serial
        serial += 1
        event = harness._event(f"evt_p{serial:04d}", event_type, created, obj, previous)
        history.events.append(event)

    sub = harness._subscription
    basic, pro = harness.PRICE_BASIC, harness.PRICE_PRO
    updated = "customer.subscription.updated"
    for i in range(subscriptions):
        base = harness.SIGNED_AT - 50_000 + i * 100
        add("customer.subscription.created", base, sub(i, "incomplete", basic, base))
        add(updated, base + 1, sub(i, "active", basic, base), {"status": "incomplete"})
        invoice = {
            "id": f"in_{i:03d}",
            "object": "invoice",
            "customer": f"cus_{i:03d}",
            "subscription": f"sub_{i:03d}",
            "amount_due": 1500,
            "currency": "eur",
            "attempt_count": 1,
        }
        add("invoice.payment_failed", base + 2, invoice)
        add(updated, base + 2, sub(i, "past_due", basic, base), {"status": "active"})
        add(updated, base + 3, sub(i, "active", basic, base), {"status": "past_due"})
        items = {"object": "list", "data": [{"price": {"id": basic}, "quantity": 1}]}
        add(updated, base + 4, sub(i, "active", pro, base), {"items": items})
        if i % 2 == 0:
            last = sub(i, "canceled", pro, base, canceled_at=base + 5)
            add("customer.subscription.deleted", base + 5, last)
        else:
            last = sub(i, "active", pro, base, cancel_at_period_end=True)
            add(updated, base + 5, last, {"cancel_at_period_end": False})
        history.final[last["id"]] = last
        history.newest[last["id"]] = base + 5
    for n in range(total - len(history.events)):
        kind = "charge.succeeded" if n % 2 else "payment_intent.created"
        add(kind, harness.SIGNED_AT - 60_000 + n, {"id": f"ch_{n:03d}", "object": "charge"})
    assert len(history.events) == total
    return history


def _stall_once(markers: Path) -> None:
    try:
        fd = os.open(markers / "stalled", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # stalled once already: this is the redelivery or the drain
    with os.fdopen(fd, "w") as marker:
        marker.write(str(os.getpid()))
    time.sleep(STALL_SECONDS)


def create_billing() -> Billing:
    """The example's worker ``Billing`` (from the environment), counting what it applies."""
    billing = build_billing(worker_settings(os.environ), dispatch=False)
    repository = billing.repository
    assert isinstance(repository, SqlAlchemyRepository)
    # This runs in a worker (or drain) process of its own: the patch is contained.
    webhooks.HANDLERS = harness.counted_handlers(repository)  # type: ignore[attr-defined]
    stall = os.environ.get("BK_PROOF_STALL", "")
    markers = Path(os.environ.get("BK_PROOF_MARKERS", "."))

    def count_hook(event: HookEvent) -> None:
        repository.current_connection().execute(
            harness.HOOKS.insert().values(event_id=event.event_id, kind=event.kind.value)
        )
        if event.event_id == stall:
            _stall_once(markers)

    for kind in HookKind:
        billing.webhooks.on(kind, count_hook)
    return billing


#: The example's Celery settings (``BILLING_BROKER_URL``, ``BILLING_QUEUE``).
celery_app = make_celery(os.environ)
celery_app.conf.update(worker_hijack_root_logger=False)
#: ``billingkit.process_event`` on the counting ``Billing``.
process_event = install(celery_app, create_billing)
