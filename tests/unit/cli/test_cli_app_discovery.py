"""``--app`` / ``BILLINGKIT_APP``: finding the app's Billing, and every way that can fail."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from billingkit.cli import cli
from billingkit.cli._app import find_billing

from .cli_support import MODULE, App, assert_clean_error


def test_object_factory_and_module_default_all_find_the_same_billing(app: App) -> None:
    for target in (f"{MODULE}:billing", f"{MODULE}:create_billing", MODULE):
        found, built = find_billing(target)
        assert found is app.billing
        assert built == target.endswith("create_billing")


def test_the_environment_variable_names_the_app(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLINGKIT_APP", f"{MODULE}:create_billing")
    result = CliRunner().invoke(cli, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    assert '"plan": "pro"' in result.stdout


def test_no_app_given_is_a_usage_error(run: Callable[..., Result]) -> None:
    assert_clean_error(run("catalog", app=None), 2, "no app given", "BILLINGKIT_APP")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:billing", "could not import 'no_such_module_xyz'"),
        (f"{MODULE}:nope", f"module '{MODULE}' has no attribute 'nope'"),
        (f"{MODULE}:not_billing", "is a int, not a billingkit.Billing"),
        (f"{MODULE}:needs_args", "needs arguments"),
        (f"{MODULE}:returns_other", "returned a str, not a billingkit.Billing"),
        (f"{MODULE}:", "expected 'module:attribute'"),
        ("os", "module 'os' has no 'billing' or 'create_billing'"),
    ],
)
def test_wrong_targets_are_usage_errors_without_traceback(
    app: App, run: Callable[..., Result], target: str, message: str
) -> None:
    assert_clean_error(run("catalog", app=target), 2, message)


def test_a_module_that_fails_on_import_is_reported_in_one_line(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_cli_app.py").write_text("import not_installed_dep_xyz\n")
    (tmp_path / "raising_cli_app.py").write_text("raise RuntimeError('bad settings')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("broken_cli_app", "raising_cli_app"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert_clean_error(
        run("catalog", app="broken_cli_app:billing"),
        2,
        "importing 'broken_cli_app' failed",
        "not_installed_dep_xyz",
    )
    assert_clean_error(
        run("catalog", app="raising_cli_app:billing"), 2, "RuntimeError: bad settings"
    )


def test_a_module_in_the_current_directory_is_found(
    run: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "local_cli_app.py").write_text(
        "from billingkit import Billing, BillingConfig, InMemoryRepository\n"
        "from billingkit.testing import FakeStripeGateway\n"
        "def create_billing():\n"
        "    config = BillingConfig(webhook_secrets=['whsec_local'])\n"
        "    gateway = FakeStripeGateway(webhook_secret='whsec_local')\n"
        "    return Billing.build(config, gateway, InMemoryRepository())\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "local_cli_app", raising=False)
    result = run("events", "list", "--json", app="local_cli_app")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "[]"


def test_a_factory_raising_a_configuration_error_exits_3(
    app: App, run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from billingkit import BillingConfig

    def create() -> object:
        return BillingConfig(free_plan="missing")

    monkeypatch.setattr(sys.modules[MODULE], "bad_factory", create, raising=False)
    assert_clean_error(run("catalog", app=f"{MODULE}:bad_factory"), 3, "free_plan")


def test_help_works_without_any_app(run: Callable[..., Result]) -> None:
    for args in (["--help"], ["migrate", "--help"], ["events", "send", "--help"]):
        result = run(*args, app=None)
        assert result.exit_code == 0, result.output
        assert "Exit codes:" in result.stdout
        assert "billingkit" in result.stdout


def test_every_command_help_has_an_example_and_the_exit_codes(
    run: Callable[..., Result],
) -> None:
    commands = [
        ["migrate"],
        ["catalog"],
        ["doctor"],
        ["events", "list"],
        ["events", "show"],
        ["events", "replay"],
        ["events", "send"],
    ]
    for command in commands:
        result = run(*command, "--help", app=None)
        assert result.exit_code == 0, result.output
        assert "Example" in result.stdout, command
        assert "Exit codes: 0 ok" in result.stdout, command


def test_importing_the_cli_without_click_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['click'] = None\n"
        "try:\n"
        "    import billingkit.cli\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("ConfigurationError")
    assert "billingkit[cli]" in out


def test_importing_billingkit_does_not_import_click_or_rich() -> None:
    code = "import sys, billingkit; print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
