"""The Flask example's queue workers, for deferred mode (``BILLING_DEFERRED=celery`` or ``rq``).

In deferred mode ``POST /webhooks/stripe`` only verifies and stores each event (``pending``)
and hands its id to the app's queue; these workers apply it::

    export BILLING_DATABASE_URL=postgresql+psycopg://.../shop   # shared by web and workers
    export BILLING_DEFERRED=celery BILLING_BROKER_URL=redis://127.0.0.1:6379/0
    python -m examples.flask_app                                 # the web app
    celery -A examples.flask_app.tasks worker --concurrency 4    # the workers

    export BILLING_DEFERRED=rq
    BILLINGKIT_APP=examples.flask_app.tasks:create_billing \\
        rq worker billing --url "$BILLING_BROKER_URL" --with-scheduler

Both read the same settings from the environment as the web app (:func:`settings_from_env`).
Nothing connects at import: the Celery app below is only configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from celery import Celery

from billingkit import Billing
from billingkit.contrib.celery import install

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_QUEUE",
    "celery_app",
    "create_billing",
    "make_celery",
    "process_event",
]

#: The broker (Redis) when ``BILLING_BROKER_URL`` is not set.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: The queue the web app sends events to and the workers listen on (``BILLING_QUEUE``).
DEFAULT_QUEUE = "billing"


def create_billing() -> Billing:
    """The worker's ``Billing``: the web app's settings from the environment, no dispatcher."""
    from examples.flask_app.app import worker_settings
    from examples.flask_app.billing import build_billing

    return build_billing(worker_settings(os.environ), dispatch=False)


def make_celery(settings: Mapping[str, Any]) -> Celery:
    """A Celery app on ``BILLING_BROKER_URL`` whose default queue is ``BILLING_QUEUE``."""
    app = Celery("flask_app", broker=settings.get("BILLING_BROKER_URL") or DEFAULT_BROKER_URL)
    app.conf.update(
        task_default_queue=settings.get("BILLING_QUEUE") or DEFAULT_QUEUE,
        worker_prefetch_multiplier=1,  # acks_late tasks: hold one message at a time
        broker_connection_retry_on_startup=True,
    )
    return app


#: ``celery -A examples.flask_app.tasks worker`` finds this app.
celery_app = make_celery(os.environ)
#: The task ``billingkit.process_event``, building the worker's ``Billing`` on first use.
process_event = install(celery_app, create_billing)
