"""Proof: the Flask example in deferred mode, 4 Celery workers on Redis, one killed mid-event.

500 signed events (60 subscriptions' interleaved lifecycles and unhandled types), 100 of
them sent twice, all in a shuffled order, are POSTed over real HTTP by 4 threads to
``python -m examples.flask_app`` running with ``BILLING_DEFERRED=celery`` on PostgreSQL.
Four ``celery worker`` processes (``--pool=solo``) apply them. The hook of one event stalls
inside its transaction; that worker is then killed with SIGKILL (its transaction is rolled
back by the database, its message is never acknowledged). When the others have applied
everything else, one ``drain`` sweep applies the orphan. Then: every event applied exactly
once, every hook called once, every subscription in its newest state, nothing pending, and
the example's Stripe clock page shows the counts.
"""

from __future__ import annotations

import http.cookiejar
import json
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from examples.flask_app.billing import FAKE_WEBHOOK_SECRET
from sqlalchemy import URL
from tests.integration import queue_support
from tests.integration.queue_support import WorkerProcess
from tests.stress import flask_proof, harness

from billingkit import Billing, BillingConfig
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.domain import EventStatus
from billingkit.signature import signature_header
from billingkit.testing import FakeStripeGateway

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WORKERS = 4
DUPLICATES = 100


def _start_web(env: dict[str, str], log: Path) -> tuple[WorkerProcess, str]:
    web = WorkerProcess([sys.executable, "-m", "examples.flask_app", "--port", "0"], env, log)
    found: list[str] = []

    def listening() -> bool:
        found[:] = re.findall(r"Open (http://127\.0\.0\.1:\d+)/", web.output())
        return bool(found) or not web.alive()

    queue_support.wait_until(listening, lambda: "the example never listened", workers=[web])
    assert found, web.output()
    return web, found[0]


def _post(base: str, delivery: tuple[bytes, str]) -> tuple[int, str]:
    body, header = delivery
    request = urllib.request.Request(
        base + "/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": header},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())["outcome"]
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _sign(events: list[dict[str, object]]) -> list[tuple[bytes, str]]:
    now = int(time.time())
    deliveries = []
    for event in events:
        body = json.dumps(event, separators=(",", ":")).encode()
        deliveries.append((body, signature_header(body, [FAKE_WEBHOOK_SECRET], now)))
    return deliveries


def _reader(url: URL) -> Billing:
    """A plain ``Billing`` on the proof's database, to read the ledger from the test."""
    return Billing.build(
        BillingConfig(webhook_secrets=(FAKE_WEBHOOK_SECRET,)),
        FakeStripeGateway(webhook_secret=FAKE_WEBHOOK_SECRET),
        SqlAlchemyRepository(url),
    )


def _clock_page(base: str) -> str:
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with browser.open(base + "/login", timeout=30) as page:
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.read().decode())
    assert token is not None
    form = urllib.parse.urlencode({"email": "ops@example.com", "csrf_token": token.group(1)})
    browser.open(base + "/login", data=form.encode(), timeout=30).close()
    with browser.open(base + "/fake-stripe/clock", timeout=30) as page:
        return str(page.read().decode())


def _count(page: str, name: str) -> int:
    found = re.search(rf'id="count-{name}">(\d+)<', page)
    assert found is not None, name
    return int(found.group(1))


def test_flask_example_with_celery_workers_applies_each_event_once_despite_a_killed_worker(
    postgres_url: URL, tmp_path: Path
) -> None:
    queue_support.require_broker("redis")
    harness.prepare(postgres_url)
    history = flask_proof.build_history()
    rng = random.Random(14)
    repeated = rng.sample(history.events, DUPLICATES)
    order = history.events + repeated
    rng.shuffle(order)
    # The stalled event: a failed invoice (its hook runs) about a third of the way in.
    stall = next(
        str(e["id"]) for e in order[len(order) // 3 :] if e["type"] == "invoice.payment_failed"
    )
    markers = tmp_path / "markers"
    markers.mkdir()
    queue = queue_support.unique_name("bk-proof")
    env = queue_support.worker_env(
        BILLING_DATABASE_URL=postgres_url.render_as_string(hide_password=False),
        BILLING_DEFERRED="celery",
        BILLING_BROKER_URL=queue_support.broker_url("redis"),
        BILLING_QUEUE=queue,
        BK_PROOF_STALL=stall,
        BK_PROOF_MARKERS=str(markers),
        STRIPE_API_KEY="",
        STRIPE_WEBHOOK_SECRET="",
    )
    reader = _reader(postgres_url)
    web, base = _start_web(env, tmp_path / "web.log")
    workers = [
        WorkerProcess(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.stress.flask_proof:celery_app",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-n",
                f"w{index}-{queue}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            env,
            tmp_path / f"worker{index}.log",
        )
        for index in range(WORKERS)
    ]
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda d: _post(base, d), _sign(order)))
        assert {status for status, _ in answers} == {200}, Counter(answers).most_common(3)
        assert Counter(outcome for _, outcome in answers) == {
            "queued": len(history.events),
            "duplicate": DUPLICATES,
        }

        # One worker is inside the stalled event's transaction: kill it (SIGKILL).
        stalled = markers / "stalled"
        queue_support.wait_until(
            stalled.exists, lambda: "no worker reached the stalled event", workers=workers
        )
        queue_support.wait_until(
            lambda: stalled.read_text().isdigit(), lambda: "no pid", workers=workers
        )
        pid = int(stalled.read_text())
        [victim] = [worker for worker in workers if worker.process.pid == pid]
        victim.kill()
        survivors = [worker for worker in workers if worker is not victim]

        # The survivors apply everything else; the stalled event is back to pending.
        others = [str(e["id"]) for e in history.events if e["id"] != stall]
        queue_support.wait_until(
            queue_support.settled(reader, others),
            queue_support.status_summary(reader),
            workers=survivors,
            timeout=180,
        )
        assert all(worker.alive() for worker in survivors)
        assert queue_support.ledger(reader)[stall].status is EventStatus.PENDING
        assert reader.webhooks.pending_count() == 1

        # The sweep for lost dispatches: one drain, with the same counting worker Billing.
        sweep = subprocess.run(
            [
                sys.executable,
                "-c",
                "from tests.stress.flask_proof import create_billing;"
                "print(create_billing().webhooks.drain().processed)",
            ],
            cwd=queue_support.ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert sweep.returncode == 0, sweep.stderr[-4000:]
        assert sweep.stdout.split()[-1] == "1"

        queue_support.check_applied_once(postgres_url, history)
        assert reader.webhooks.pending_count() == 0
        entries = queue_support.ledger(reader)
        processed = sum(1 for r in entries.values() if r.status is EventStatus.PROCESSED)
        page = _clock_page(base)
        assert "Webhook processing: celery" in page
        assert _count(page, "pending") == 0
        assert _count(page, "failed") == 0
        assert _count(page, "dead") == 0
        assert _count(page, "processed") == processed
    finally:
        for worker in workers:
            worker.stop()
        web.stop()
        reader.close()
        queue_support.delete_celery_queue("redis", queue)
