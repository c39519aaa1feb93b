"""``billingkit reconcile`` and ``billingkit backfill`` over the fake: output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from billingkit.domain import Subscription
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.errors import GatewayServerError
from billingkit.ports import Page

from .cli_support import App, assert_clean_error


def _stored(app: App, subscription_id: str) -> object:
    with app.repository.unit_of_work() as uow:
        return uow.get_subscription(subscription_id)


def _missed_subscription(app: App, user_id: str = "user-1") -> str:
    app.subscribe(user_id)
    app.stripe.drain_events()  # the webhooks never arrived
    app.stripe.advance(timedelta(minutes=5))
    subscription_id: str = app.stripe.subscription_ids()[-1]
    return subscription_id


def _legacy_customers(app: App, count: int) -> list[str]:
    price = app.stripe.list_prices(lookup_keys=["pro_monthly"])[0].id
    ids = []
    for number in range(count):
        customer = app.stripe.add_customer(
            email=f"legacy{number}@example.com", metadata={"app_user": f"legacy-{number}"}
        )
        app.stripe.add_subscription(customer.id, price)
        ids.append(customer.id)
    app.stripe.advance(timedelta(minutes=5))
    return ids


def test_in_sync_exits_0_with_a_summary(
    app: App, run: Callable[..., Result], tmp_path: Path
) -> None:
    app.subscribe()
    app.deliver_all()
    app.stripe.advance(timedelta(minutes=5))
    result = run("reconcile", "--checkpoint", str(tmp_path / "cp.json"))
    assert result.exit_code == 0, result.output
    assert "1 listed at Stripe, 1 in sync" in result.stdout
    assert "1 Stripe call(s), 0 row(s) written" in result.stdout
    assert "missing_here" in result.stdout  # the drift table, every class listed
    assert "drifted subscriptions" not in result.stdout


def test_a_dry_run_with_drift_exits_1_and_writes_nothing(
    app: App, run: Callable[..., Result], tmp_path: Path
) -> None:
    sub_id = _missed_subscription(app)
    checkpoint = tmp_path / "cp.json"
    result = run("reconcile", "--dry-run", "--json", "--checkpoint", str(checkpoint))
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["drift"]["missing_here"] == 1
    assert report["actions"]["would_fix"] == 1
    assert report["rows_written"] == 0
    assert report["findings"][0]["subscription"] == sub_id
    assert _stored(app, sub_id) is None
    assert not checkpoint.exists()

    text = run("reconcile", "--dry-run", "--checkpoint", str(checkpoint))
    assert "(dry run: nothing written)" in text.stdout
    assert sub_id in text.stdout


def test_fixing_every_drift_exits_0(app: App, run: Callable[..., Result], tmp_path: Path) -> None:
    sub_id = _missed_subscription(app)
    result = run("reconcile", "--json", "--checkpoint", str(tmp_path / "cp.json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["actions"]["fixed"] == 1
    assert _stored(app, sub_id) is not None


def test_unknown_customers_exit_1(app: App, run: Callable[..., Result], tmp_path: Path) -> None:
    _legacy_customers(app, 2)
    result = run("reconcile", "--json", "--checkpoint", str(tmp_path / "cp.json"))
    assert result.exit_code == 1
    assert json.loads(result.stdout)["drift"]["unknown_customer"] == 2


def test_user_and_since_options(app: App, run: Callable[..., Result], tmp_path: Path) -> None:
    _missed_subscription(app, "user-1")
    _missed_subscription(app, "user-2")
    cp = str(tmp_path / "cp.json")
    one = json.loads(
        run("reconcile", "--dry-run", "--json", "--user", "user-2", "--checkpoint", cp).stdout
    )
    assert [f["user"] for f in one["findings"]] == ["user-2"]
    late = json.loads(
        run("reconcile", "--dry-run", "--json", "--since", "2099-01-01", "--checkpoint", cp).stdout
    )
    assert late["listed"] == 0
    bad = run("reconcile", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "--since" in bad.stderr


def _checkpoint(app: App) -> ReconcileCheckpoint | None:
    with app.repository.unit_of_work() as uow:
        return uow.get_reconcile_checkpoint("reconcile")


def test_an_interrupted_run_exits_3_and_resumes_from_the_database(
    app: App, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    price = app.stripe.list_prices(lookup_keys=["pro_monthly"])[0].id
    for number in range(150):
        customer = app.stripe.add_customer(metadata={"user_id": f"u{number}"})
        app.stripe.add_subscription(customer.id, price, metadata={"user_id": f"u{number}"})
    app.stripe.advance(timedelta(minutes=5))

    app.stripe.fail_next("list_subscriptions", GatewayServerError("Stripe is down"))
    assert_clean_error(run("reconcile"), 3, "Stripe error", "Stripe is down")
    assert _checkpoint(app) is None  # the first call failed: nothing done, nothing saved

    original = app.stripe.list_subscriptions

    def failing_second_page(**options: Any) -> Iterator[Page[Subscription]]:
        for number, page in enumerate(original(**options), start=1):
            if number == 1:
                app.stripe.fail_next("list_subscriptions", GatewayServerError("Stripe is down"))
            yield page

    monkeypatch.setattr(app.stripe, "list_subscriptions", failing_second_page)
    assert_clean_error(run("reconcile"), 3, "Stripe error")
    saved = _checkpoint(app)
    assert saved is not None and saved.counts["listed"] == 100
    monkeypatch.setattr(app.stripe, "list_subscriptions", original)

    app.stripe.reset_calls()
    resumed = run("reconcile", "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert report["resumed_from"] == saved.starting_after
    assert report["listed"] == 150
    assert report["actions"]["fixed"] == 150
    assert app.stripe.calls["list_subscriptions"] == 1
    assert _checkpoint(app) is None


def test_a_checkpoint_file_instead_of_the_database(
    app: App, run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    price = app.stripe.list_prices(lookup_keys=["pro_monthly"])[0].id
    for number in range(101):
        customer = app.stripe.add_customer(metadata={"user_id": f"u{number}"})
        app.stripe.add_subscription(customer.id, price, metadata={"user_id": f"u{number}"})
    app.stripe.advance(timedelta(minutes=5))
    original = app.stripe.list_subscriptions

    def failing_second_page(**options: Any) -> Iterator[Page[Subscription]]:
        for number, page in enumerate(original(**options), start=1):
            if number == 1:
                app.stripe.fail_next("list_subscriptions", GatewayServerError("Stripe is down"))
            yield page

    monkeypatch.setattr(app.stripe, "list_subscriptions", failing_second_page)
    path = tmp_path / "cp.json"
    assert run("reconcile", "--checkpoint", str(path)).exit_code == 3
    assert json.loads(path.read_text())["counts"]["listed"] == 100
    assert _checkpoint(app) is None
    monkeypatch.setattr(app.stripe, "list_subscriptions", original)
    done = run("reconcile", "--resume", "--checkpoint", str(path), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["listed"] == 101
    assert not path.exists()


def test_backfill_needs_exactly_one_source(
    run: Callable[..., Result], app: App, tmp_path: Path
) -> None:
    assert run("backfill").exit_code == 2
    csv_file = tmp_path / "map.csv"
    csv_file.write_text("u,cus_1\n")
    both = run("backfill", "--link-by", "metadata:k", "--map", str(csv_file))
    assert both.exit_code == 2
    assert "exactly one of" in both.stderr
    wrong = run("backfill", "--link-by", "email")
    assert wrong.exit_code == 2
    assert "metadata:KEY" in wrong.stderr


def test_backfill_by_metadata_is_a_dry_run_until_apply(
    app: App, run: Callable[..., Result]
) -> None:
    customers = _legacy_customers(app, 3)
    dry = run("backfill", "--link-by", "metadata:app_user", "--json")
    assert dry.exit_code == 1, dry.output
    report = json.loads(dry.stdout)
    assert report["counts"]["would_link"] == 3
    assert report["reconcile"]["dry_run"] is True
    with app.repository.unit_of_work() as uow:
        assert uow.customer_by_id(customers[0]) is None

    applied = run("backfill", "--link-by", "metadata:app_user", "--apply", "--json")
    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.stdout)
    assert report["counts"]["linked"] == 3
    assert report["reconcile"]["actions"]["fixed"] == 3
    details = app.billing.customers.for_user("legacy-1")
    assert (details.plan_key, details.has_access) == ("pro", True)

    again = run("backfill", "--link-by", "metadata:app_user", "--apply")
    assert again.exit_code == 0
    assert "3 already linked" in again.stdout


def test_backfill_refuses_conflicting_links(
    app: App, run: Callable[..., Result], tmp_path: Path
) -> None:
    app.subscribe("user-1")
    app.deliver_all()
    customers = _legacy_customers(app, 2)
    with app.repository.unit_of_work() as uow:
        linked = uow.customer_for_user("user-1")
    assert linked is not None
    csv_file = tmp_path / "map.csv"
    csv_file.write_text(
        "user_id,customer_id\n"
        f"user-1,{customers[0]}\n"  # user already linked to another customer
        f"newbie,{linked.customer_id}\n"  # customer already linked to user-1
        f"twice,{customers[1]}\n"
        "twice,cus_other\n"  # the same user mapped to two customers
        "ghost,cus_nowhere\n"  # no such customer at Stripe
        f"\nuser-1,{linked.customer_id}\n"  # the stored pair, but user-1 is mapped twice
    )
    result = run("backfill", "--map", str(csv_file), "--apply", "--json")
    assert result.exit_code == 1, result.output
    links = {(x["user"], x["customer"]): x for x in json.loads(result.stdout)["links"]}
    assert "user already linked" in links[("user-1", customers[0])]["reason"]
    assert (
        "customer already linked to user user-1" in links[("newbie", linked.customer_id)]["reason"]
    )
    assert "user also mapped to" in links[("twice", "cus_other")]["reason"]
    assert links[("twice", customers[1])]["outcome"] == "linked"
    assert links[("ghost", "cus_nowhere")]["reason"] == "no such customer at Stripe"
    assert "user also mapped to" in links[("user-1", linked.customer_id)]["reason"]

    text = run("backfill", "--map", str(csv_file))
    assert "conflict" in text.stdout and text.exit_code == 1


def test_a_malformed_map_is_a_usage_error(
    app: App, run: Callable[..., Result], tmp_path: Path
) -> None:
    csv_file = tmp_path / "map.csv"
    csv_file.write_text("user-1,not-a-customer\n")
    assert_clean_error(
        run("backfill", "--map", str(csv_file)), 2, "map.csv:1", "user_id,customer_id"
    )


def test_the_progress_line_counts_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from billingkit.cli.reconcile import _progress

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with _progress(console) as tick:
        for _ in range(3):
            tick()
    assert "reconciling" in out.getvalue()
    assert "3 subscriptions" in out.getvalue()
