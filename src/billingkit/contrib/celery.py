"""Celery glue for deferred webhooks: the task ``billingkit.process_event`` and its dispatcher.

Install with ``pip install "billingkit[celery]"``.

::

    # myapp/tasks.py: the app's own Celery app
    from celery import Celery
    from billingkit.contrib.celery import CeleryDispatcher, install

    celery_app = Celery("myapp", broker="redis://127.0.0.1:6379/0")
    process_event = install(celery_app, "myapp.billing:create_billing")  # or a factory

    # myapp/billing.py: the web process builds its Billing with the dispatcher
    billing = Billing.build(config, gateway, repository,
                            dispatcher=CeleryDispatcher(process_event))

    # the workers
    celery -A myapp.tasks worker --concurrency 4

``install`` registers the task on the app's Celery app (no second Celery app, no import
of the app's code at import time). In the worker, the task finds the app's
``Billing`` on its first run: the ``Billing`` or factory given to
``install``, a ``module:attribute`` string, or ``BILLINGKIT_APP``. Each run calls
``process`` with the event id.

Retries follow the ledger: when ``process`` fails, the event is recorded ``failed`` with its
``next_attempt_at`` (exponential back-off with jitter, ``BillingConfig.webhook_retry_*``), and
the task retries itself at that time; after ``webhook_max_attempts`` the event is ``dead`` and
the task stops. A failure before anything could be recorded (the database is down) retries
with Celery's own exponential back-off. Messages are acknowledged after the run
(``acks_late``), so a worker that dies mid-task gives the message back; a dispatch lost
altogether (the broker was down when the event arrived, a crash between the commit and the
enqueue) is swept by ``drain``. The ledger decides what is
applied, exactly once: the queue is only a wake-up call.

This is the only module of billingkit that imports Celery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, cast

from billingkit._optional import requires_extra
from billingkit.composition import Billing
from billingkit.contrib._worker import BillingSource, retry_countdown
from billingkit.errors import InvalidInputError
from billingkit.services.webhooks import WebhookOutcome

with requires_extra("celery", "celery", "kombu"):
    from celery import Celery, Task
    from celery.utils.time import get_exponential_backoff_interval

__all__ = ["TASK_NAME", "CeleryDispatcher", "install"]

logger = logging.getLogger("billingkit.contrib.celery")

#: The name the task is registered under (route it with ``task_routes`` by this name).
TASK_NAME = "billingkit.process_event"


def _source(billing: Billing | Callable[[], Billing] | str | None) -> BillingSource:
    if isinstance(billing, str):
        from billingkit._discovery import find_billing

        target = billing
        return BillingSource(lambda: find_billing(target)[0])
    return BillingSource(billing)


def install(
    app: Celery,
    billing: Billing | Callable[[], Billing] | str | None = None,
    *,
    name: str = TASK_NAME,
    max_retries: int = 16,
    backoff_seconds: float = 2.0,
    backoff_max_seconds: float = 600.0,
    clock: Callable[[], datetime] | None = None,
    **task_options: Any,
) -> Task[[str], str]:
    """Register the task ``name`` on ``app`` and return it (pass it to ``CeleryDispatcher``).

    Args:
        app: the app's own Celery app.
        billing: how the worker finds its ``Billing``: the object, a
            factory taking no arguments, a ``"module:attribute"`` string, or ``None`` for
            ``BILLINGKIT_APP``. Built lazily, once per worker process, on the first task.
        name: the task name (default ``billingkit.process_event``).
        max_retries: how many times one message is retried at most (the ledger's
            ``webhook_max_attempts`` normally ends the retries first, with ``dead``).
        backoff_seconds: the first delay of Celery's exponential back-off (with full
            jitter), used for a failure the ledger could not record (database unreachable).
        backoff_max_seconds: the ceiling of that back-off.
        clock: the time the ledger's ``next_attempt_at`` is compared with, to compute the
            retry's countdown (default: the system clock, in UTC).
        task_options: any other Celery task option (``queue``, ``rate_limit``, ...).

    The task returns the outcome's value (``"processed"``, ``"duplicate"``, ...).
    """
    source = _source(billing)
    now = clock or (lambda: datetime.now(timezone.utc))
    options: dict[str, Any] = {
        "acks_late": True,
        "reject_on_worker_lost": True,
        # Only on ``app``: Celery shares tasks with every app by default, and two apps of
        # one process (a web app and its test, two tenants) must not swap their Billing.
        "shared": False,
        **task_options,
    }

    @app.task(name=name, bind=True, max_retries=max_retries, **options)
    def process_event(self: Task[[str], str], event_id: str) -> str:
        billing = source.get()
        try:
            result = billing.webhooks.process(event_id)
        except InvalidInputError:
            raise  # not in the ledger: nothing to retry
        except Exception as exc:
            countdown = _countdown(billing, event_id)
            if countdown is None:
                logger.warning("event %s failed and is not retried (dead or unknown)", event_id)
                raise
            raise self.retry(exc=exc, countdown=_backoff(self, countdown)) from exc
        if result.outcome is WebhookOutcome.QUEUED:  # failed before and not due yet: wait
            raise self.retry(countdown=_backoff(self, _countdown(billing, event_id) or 0.0))
        return str(result.outcome.value)

    def _countdown(billing: Billing, event_id: str) -> float | None:
        try:
            return retry_countdown(billing, event_id, now())
        except Exception:  # the ledger cannot be read either: back off and retry
            return 0.0

    def _backoff(task: Task[[str], str], countdown: float) -> float:
        if countdown > 0.0:
            return countdown
        return float(
            get_exponential_backoff_interval(
                factor=max(1, int(backoff_seconds)),
                retries=task.request.retries,
                maximum=max(1, int(backoff_max_seconds)),
                full_jitter=True,
            )
        )

    return cast("Task[[str], str]", process_event)


class CeleryDispatcher:
    """A ``Dispatcher`` that sends the event id to a Celery task.

    ``task`` is what ``install`` returned. Never raises: if the broker cannot be reached
    the error is logged and the event stays ``pending`` in the ledger, for
    ``drain`` to sweep. ``apply_options`` go to
    ``task.apply_async`` (e.g. ``queue``, ``priority``).
    """

    __slots__ = ("_options", "_task")

    def __init__(self, task: Task[[str], str], **apply_options: Any) -> None:
        self._task = task
        self._options = apply_options

    def dispatch(self, event_id: str) -> None:
        """Enqueue ``process_event(event_id)``; a broker failure is logged, not raised."""
        try:
            self._task.apply_async((event_id,), **self._options)
        except Exception:
            logger.exception(
                "could not send event %s to Celery; it stays pending until drain", event_id
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self._task.name!r})"
