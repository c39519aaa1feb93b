"""examples/flask_app's deferred switch: BILLING_DEFERRED, its workers' settings, the clock page.

The end-to-end proof with Celery workers is ``tests/stress/test_celery_flask_proof.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.flask_app.app import worker_settings
from examples.flask_app.billing import FAKE_WEBHOOK_SECRET, fake_gateway
from examples.flask_app.walkthrough import Browser
from redis import Redis
from rq import Queue
from tests.integration import queue_support
from tests.stress import harness

from billingkit.contrib.celery import CeleryDispatcher
from billingkit.contrib.flask import BillingKit
from billingkit.contrib.rq import RqDispatcher
from billingkit.errors import ConfigurationError
from billingkit.signature import signature_header


@pytest.fixture
def rq_queue() -> Iterator[str]:
    queue_support.require_broker("redis")
    name = queue_support.unique_name("bk-flask-rq")
    yield name
    connection = Redis.from_url(queue_support.broker_url("redis"))
    Queue(name, connection=connection).delete(delete_jobs=True)
    connection.close()


def _count(page: str, name: str) -> int:
    found = re.search(rf'id="count-{name}">(\d+)<', page)
    assert found is not None, name
    return int(found.group(1))


@pytest.mark.redis
def test_deferred_on_rq_stores_and_enqueues_and_the_clock_page_drains(
    make_flask_app: Callable[..., Any], tmp_path: Path, rq_queue: str
) -> None:
    app = make_flask_app(
        BILLING_DEFERRED="rq",
        BILLING_BROKER_URL=queue_support.broker_url("redis"),
        BILLING_QUEUE=rq_queue,
    )
    billing = BillingKit.billing_for(app)
    assert isinstance(billing.webhooks.dispatcher, RqDispatcher)
    fake = fake_gateway(billing)
    assert fake is not None
    event = queue_support.first_event_of(harness.build_history(), "invoice.payment_failed")
    body = json.dumps(event).encode()
    header = signature_header(body, [FAKE_WEBHOOK_SECRET], int(fake.now().timestamp()))
    answer = app.test_client().post(
        "/webhooks/stripe", data=body, headers={"Stripe-Signature": header}
    )
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "queued"
    connection = Redis.from_url(queue_support.broker_url("redis"))
    try:
        queue = Queue(rq_queue, connection=connection)
        [job] = queue.get_jobs()
        assert job.func_name == "billingkit.contrib.rq.process_event"
        assert tuple(job.args) == (event["id"],)
    finally:
        connection.close()

    browser = Browser(app)
    browser.submit("/login", email="ops@example.com")
    page = browser.get("/fake-stripe/clock").text
    assert "Webhook processing: rq" in page
    assert _count(page, "pending") == 1 and _count(page, "processed") == 0
    page = browser.submit("/fake-stripe/clock", action="drain").text
    assert "Drained 1 event(s): 1 processed." in page
    assert _count(page, "pending") == 0 and _count(page, "processed") == 1


def test_deferred_on_celery_gets_the_celery_dispatcher(make_flask_app: Callable[..., Any]) -> None:
    app = make_flask_app(BILLING_DEFERRED="celery", BILLING_QUEUE="shop-billing")
    dispatcher = BillingKit.billing_for(app).webhooks.dispatcher
    assert isinstance(dispatcher, CeleryDispatcher)
    assert "billingkit.process_event" in repr(dispatcher)


def test_inline_by_default_and_wrong_modes_refused(
    make_flask_app: Callable[..., Any], tmp_path: Path
) -> None:
    browser = Browser(make_flask_app())
    assert BillingKit.billing_for(browser.app).webhooks.dispatcher is None
    browser.submit("/login", email="ops@example.com")
    assert "Webhook processing: inline" in browser.get("/fake-stripe/clock").text
    with pytest.raises(ConfigurationError, match="BILLING_DEFERRED must be"):
        make_flask_app(BILLING_DEFERRED="kafka")
    from examples.flask_app import create_app

    with pytest.raises(ConfigurationError, match="needs BILLING_DATABASE_URL"):
        create_app({"BILLING_DEFERRED": "celery", "STRIPE_API_KEY": "", "FAKE_START": None})


def test_workers_read_the_environment_and_need_the_shared_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="set BILLING_DATABASE_URL"):
        worker_settings({"BILLING_DEFERRED": "celery"})
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    settings = worker_settings({"BILLING_DATABASE_URL": url, "BILLING_DEFERRED": "rq"})
    assert settings["BILLING_DATABASE_URL"] == url and settings["BILLING_DEFERRED"] == "rq"
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.setenv("BILLING_DEFERRED", "celery")
    for name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    from examples.flask_app.tasks import create_billing

    billing = create_billing()
    try:
        assert billing.webhooks.dispatcher is None  # a worker dispatches nothing
        assert fake_gateway(billing) is not None
        # its clock moves (the fake's stands still), so retry times come due
        first = billing.webhooks._clock()
        time.sleep(0.01)
        assert billing.webhooks._clock() > first
    finally:
        billing.close()
