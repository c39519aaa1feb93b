from __future__ import annotations

import io
import runpy
import sys

import pytest

from billingkit import demo


def test_walkthrough_prints_plans_prices_and_details() -> None:
    out = io.StringIO()
    assert demo.run(out) == 0
    text = out.getvalue()
    assert "Pro   19.00 USD / month, 190.00 USD / year" in text
    assert "Team  4900 JPY / month, 49000 JPY / year" in text
    assert "Free  free" in text
    assert "listed twice: 1 (list_prices)" in text
    assert "user user-42: plan Free (no subscription), access: True" in text
    assert "projects limit: 1" in text
    assert "Stripe calls to answer: 0" in text
    titles = [line for line in text.splitlines() if line[:1].isdigit()]
    assert titles == [f"{n}. {step.title}" for n, step in enumerate(demo.STEPS, start=1)]


def test_steps_are_extensible() -> None:
    seen: list[str] = []

    def extra(d: demo.Demo) -> None:
        seen.append(d.user_id)
        d.say(f"  plans: {len(d.billing.catalog.plans())}")

    out = io.StringIO()
    demo.run(out, steps=[demo.Step("Extra", extra)])
    assert seen == ["user-42"]
    assert "1. Extra\n  plans: 3\n" in out.getvalue()
    assert "Done: 1 step, 1 Stripe calls in all." in out.getvalue()


def test_module_runs_as_a_script_and_exits_zero(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["python -m billingkit.demo"])
    monkeypatch.delitem(sys.modules, "billingkit.demo", raising=False)
    with pytest.raises(SystemExit) as caught:
        runpy.run_module("billingkit.demo", run_name="__main__")
    assert caught.value.code == 0
    assert f"Done: {len(demo.STEPS)} steps" in capsys.readouterr().out


def test_list_option_prints_the_step_titles(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--list"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1. The app's plans"


def test_walkthrough_covers_the_whole_billing_flow() -> None:
    out = io.StringIO()
    assert demo.run(out) == 0
    text = out.getvalue()
    assert "double submit returned the same session: True" in text
    assert "success page: session complete, payment paid, subscription active" in text
    assert "checkout.session.completed         -> processed; redelivered -> duplicate" in text
    assert "forged webhook answered 400" in text
    # After paying: Pro and active; a failed renewal: past_due with access during the grace
    # days, without it after them; fixed card: active again; cancel at period end: Free.
    details = [line.strip() for line in text.splitlines() if line.startswith("  user user-42")]
    assert details == [
        "user user-42: plan Free (no subscription), access: True",
        "user user-42: plan Pro (active), access: True",
        "user user-42: plan Pro (active), access: True",
        "user user-42: plan Pro (past_due), access: True",
        "user user-42: plan Pro (past_due), access: False",
        "user user-42: plan Pro (active), access: True",
        "user user-42: plan Pro (active), access: True",
        "user user-42: plan Free (no subscription), access: True",
    ]
    assert "current period ends for good" in text
    assert "app hook: PaymentFailed" in text
    assert "app hook: SubscriptionCanceled" in text
