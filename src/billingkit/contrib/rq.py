"""RQ glue for deferred webhooks: the job function ``process_event`` and ``RqDispatcher``.

Install with ``pip install "billingkit[rq]"``.

::

    # the web process: Billing with the dispatcher
    from redis import Redis
    from rq import Queue
    from billingkit.contrib.rq import RqDispatcher

    queue = Queue("billing", connection=Redis())
    billing = Billing.build(config, gateway, repository, dispatcher=RqDispatcher(queue))

    # the workers find the app's Billing through BILLINGKIT_APP
    BILLINGKIT_APP=myapp.billing:create_billing rq worker billing --with-scheduler

The dispatcher enqueues ``billingkit.contrib.rq.process_event(event_id)``. In the worker,
``process_event`` finds the app's ``Billing`` on its first job: the one
given to ``configure`` (call it in your own worker script, before the worker starts),
else the one named by ``BILLINGKIT_APP`` (``module:attribute``, as for the ``billingkit``
command), and calls ``process``.

Retries follow the ledger: when ``process`` fails, the event is recorded ``failed`` with its
``next_attempt_at`` (exponential back-off with jitter, ``BillingConfig.webhook_retry_*``), and
the job enqueues its retry for that time on the same queue (``Queue.enqueue_in``: run the
workers ``--with-scheduler``); after ``webhook_max_attempts`` the event is ``dead`` and no
retry is scheduled. The failed job itself stays in RQ's failed registry, for inspection. A
dispatch lost altogether (Redis was down, a crash between the commit and the enqueue, a
worker killed mid-job, a retry scheduled on a worker without a scheduler) is swept by
``drain``: the ledger decides what is applied, exactly once.

This is the only module of billingkit that imports RQ or redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from billingkit._optional import requires_extra
from billingkit.composition import Billing
from billingkit.contrib._worker import BillingSource, retry_countdown
from billingkit.errors import InvalidInputError
from billingkit.services.webhooks import WebhookOutcome

with requires_extra("rq", "rq", "redis"):
    from rq import Queue, get_current_job

__all__ = ["JOB_FUNCTION", "RqDispatcher", "configure", "process_event"]

logger = logging.getLogger("billingkit.contrib.rq")

#: The dotted path of the job function the dispatcher enqueues.
JOB_FUNCTION = "billingkit.contrib.rq.process_event"
#: Back-off of a failure the ledger could not record (database unreachable): the n-th
#: consecutive one waits ``min(_FALLBACK_MAX, _FALLBACK_BASE * 2 ** (n - 1))`` seconds.
_FALLBACK_BASE = 2.0
_FALLBACK_MAX = 600.0
_RETRIES_META = "billingkit_retries"

_source = BillingSource()


def configure(billing: Billing | Callable[[], Billing] | None) -> None:
    """Tell ``process_event`` which ``Billing`` to use in this process.

    ``billing`` is the object or a factory taking no arguments (called once, on the first
    job); ``None`` goes back to ``BILLINGKIT_APP``. A ``Billing`` a previous factory built
    is closed. Raises ``ConfigurationError`` for anything else.
    """
    global _source
    new = BillingSource(billing)
    old, _source = _source, new
    built = old.reset()
    if built is not None:
        built.close()


def process_event(event_id: str) -> str:
    """The job: apply the stored event ``event_id`` (``WebhookProcessor.process``).

    Returns the outcome's value (``"processed"``, ``"duplicate"``, ...). On a failure the
    exception propagates (RQ records the job failed) after the retry the ledger asks for
    has been enqueued on the job's queue; ``"queued"`` (a failed event not due yet) also
    enqueues it for its due time. An id not in the ledger raises
    ``InvalidInputError`` and is not retried.
    """
    billing = _source.get()
    try:
        result = billing.webhooks.process(event_id)
    except InvalidInputError:
        raise  # not in the ledger: nothing to retry
    except Exception:
        _schedule_retry(billing, event_id)
        raise
    if result.outcome is WebhookOutcome.QUEUED:  # failed before and not due yet: wait
        _schedule_retry(billing, event_id)
    return result.outcome.value


def _schedule_retry(billing: Billing, event_id: str) -> None:
    job = get_current_job()
    if job is None:  # called directly, not by a worker: nothing to reschedule
        return
    try:
        countdown = retry_countdown(billing, event_id, datetime.now(timezone.utc))
    except Exception:  # the ledger cannot be read either: back off and retry
        countdown = 0.0
    if countdown is None:
        logger.warning("event %s failed and is not retried (dead or unknown)", event_id)
        return
    retries = int(job.meta.get(_RETRIES_META, 0)) + 1
    if countdown == 0.0:
        countdown = min(_FALLBACK_MAX, _FALLBACK_BASE * 2.0 ** (retries - 1))
    queue = Queue(job.origin, connection=job.connection)
    try:
        queue.enqueue_in(
            timedelta(seconds=countdown),
            JOB_FUNCTION,
            event_id,
            meta={_RETRIES_META: retries},
            description=f"billingkit event {event_id} (retry {retries})",
        )
    except Exception:
        logger.exception("could not schedule the retry of event %s; drain will", event_id)


class RqDispatcher:
    """A ``Dispatcher`` that enqueues ``process_event`` on ``queue``.

    ``enqueue_options`` go to ``Queue.enqueue_call`` (e.g. ``timeout``, ``result_ttl``,
    ``at_front``). Never raises: if Redis cannot be reached the error is logged and the
    event stays ``pending`` in the ledger, for ``drain``.
    """

    __slots__ = ("_options", "_queue")

    def __init__(self, queue: Queue, **enqueue_options: Any) -> None:
        self._queue = queue
        self._options = enqueue_options

    def dispatch(self, event_id: str) -> None:
        """Enqueue ``process_event(event_id)``; a Redis failure is logged, not raised."""
        try:
            self._queue.enqueue_call(
                JOB_FUNCTION,
                args=(event_id,),
                description=f"billingkit event {event_id}",
                **self._options,
            )
        except Exception:
            logger.exception(
                "could not send event %s to RQ; it stays pending until drain", event_id
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(queue={self._queue.name!r})"
