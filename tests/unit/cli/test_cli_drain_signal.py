"""``billingkit drain --forever`` in a real process on a SQLite file, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import billingkit
from billingkit import Billing
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, upgrade

from .cli_support import SECRET, START, build_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

#: The app module the worker loads (``BILLINGKIT_APP=bk_drain_app:create_billing``): the
#: same plans over a fresh fake Stripe and the SQLite file; its activation hook writes a
#: line, says it started and then blocks until the test lets it finish.
WORKER_APP = f"""
import os
import time
from datetime import datetime
from pathlib import Path

from billingkit import Billing, SubscriptionActivated
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
from billingkit.testing import FakeStripeGateway
from tests_cli_support import make_config

DIRECTORY = Path(os.environ["BK_DRAIN_DIR"])


def create_billing():
    stripe = FakeStripeGateway(
        webhook_secret={SECRET!r}, start=datetime.fromisoformat({START.isoformat()!r})
    )
    stripe.add_price(amount=1900, interval="month", lookup_key="pro_monthly", product_name="Pro")
    stripe.add_price(amount=19000, interval="year", lookup_key="pro_yearly", product_name="Pro")
    repository = SqlAlchemyRepository("sqlite:///" + str(DIRECTORY / "billing.db"))
    billing = Billing.build(make_config(), stripe, repository, clock=stripe.now)

    def on_activated(event):
        with (DIRECTORY / "calls").open("a") as calls:
            calls.write(event.event_id + "\\n")
        (DIRECTORY / "started").touch()
        while not (DIRECTORY / "go").exists():
            time.sleep(0.01)

    billing.webhooks.on(SubscriptionActivated, on_activated)
    return billing
"""


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    """Until ``path`` exists; fails if the worker ends first or after a minute (a hang)."""
    deadline = time.monotonic() + 60
    while not path.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the worker ended early ({process.returncode}): {out}\n{err}")
        if time.monotonic() > deadline:  # pragma: no cover - only on a hang
            process.kill()
            pytest.fail("the worker never reached its hook")
        time.sleep(0.01)


def test_sigterm_stops_the_worker_after_its_batch_with_nothing_half_applied(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(url)
    base = build_app()
    repository = SqlAlchemyRepository(url)
    billing = Billing.build(base.billing.config, base.stripe, repository, clock=base.stripe.now)
    try:
        for user in ("user-1", "user-2"):
            started = billing.checkout.start_checkout(
                user_id=user,
                email=f"{user}@example.com",
                plan_key="pro",
                interval="month",
                success_url="https://app.example/ok?session_id={CHECKOUT_SESSION_ID}",
                cancel_url="https://app.example/pricing",
            )
            base.stripe.complete_checkout(started.session_id)
        received = [
            billing.webhooks.receive(d.payload, d.signature).event_id
            for d in base.stripe.drain_events()
        ]
        assert billing.webhooks.pending_count() == len(received) > 2

        (tmp_path / "bk_drain_app.py").write_text(textwrap.dedent(WORKER_APP))
        support = Path(__file__).with_name("cli_support.py")
        (tmp_path / "tests_cli_support.py").write_text(support.read_text())
        source = Path(billingkit.__file__).parent.parent
        env = {
            **os.environ,
            "BILLINGKIT_APP": "bk_drain_app:create_billing",
            "BK_DRAIN_DIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(source)]),
        }
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "billingkit.cli", "drain", "--forever"),
                *("--batch-size", "1", "--interval", "0.05", "--json"),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for(tmp_path / "started", worker)
        # SIGTERM arrives while the batch's hook runs: the batch must still finish
        worker.send_signal(signal.SIGTERM)
        (tmp_path / "go").touch()
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert "Traceback" not in err
        report = json.loads(out)
        assert report["stopped_by"] == "sigterm"
        assert report["failed"] == report["dead"] == 0

        with repository.unit_of_work() as uow:
            ledger = {r.id: r.status.value for r in uow.list_events(limit=100)}
        # the hook ran once, for user-1's activation: that event committed with it...
        calls = (tmp_path / "calls").read_text().split()
        assert len(calls) == 1
        assert ledger[calls[0]] == "processed"
        # ...no batch began after it, and none is left claimed half-way
        done = [i for i, status in ledger.items() if status != "pending"]
        assert report["total"] == report["batches"] == len(done)
        assert set(ledger.values()) <= {"pending", "processed", "ignored", "stale"}
        assert "pending" in ledger.values()
        assert billing.customers.for_user("user-1").is_subscribed
        assert not billing.customers.for_user("user-2").is_subscribed
    finally:
        repository.close()
