"""The ``billingkit`` command: operate an app's billing from the shell (``billingkit[cli]``).

Built on click (commands) and rich (tables, progress bars), like Flask's and Celery's
command lines. Find the app with ``--app module:attribute`` or ``BILLINGKIT_APP``::

    $ export BILLINGKIT_APP=myapp.billing:billing
    $ billingkit migrate --check
    $ billingkit catalog
    $ billingkit events list --status failed
    $ billingkit events replay --status failed
    $ billingkit drain --forever

Every command has ``--help`` with an example and its exit codes (see
``docs/operations.md``); data commands take ``--json`` for scripts. Only this package
imports click and rich: importing it without them raises
``ConfigurationError`` naming the extra to install.
"""

from __future__ import annotations

from billingkit import __version__
from billingkit.errors import ConfigurationError

try:
    import click
    import rich  # noqa: F401 - checked here so every command can rely on it
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ConfigurationError(
        "the billingkit command needs click and rich: pip install 'billingkit[cli]' "
        f"({_missing.name} is missing)"
    ) from None

from billingkit.cli._app import APP_ENVVAR, AppLocator
from billingkit.cli._common import EXIT_CODES_HELP, ExitCode
from billingkit.cli._group import BillingGroup
from billingkit.cli.catalog import catalog
from billingkit.cli.doctor import doctor
from billingkit.cli.drain import drain
from billingkit.cli.events import events
from billingkit.cli.migrate import migrate
from billingkit.cli.reconcile import backfill_command, reconcile

__all__ = ["ExitCode", "cli", "main"]


@click.group(
    name="billingkit",
    cls=BillingGroup,
    epilog=f"""\b
Example:
  billingkit --app myapp.billing:billing catalog
  BILLINGKIT_APP=myapp.billing:create_billing billingkit events list

{EXIT_CODES_HELP}""",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--app",
    "app",
    envvar=APP_ENVVAR,
    metavar="MODULE:ATTR",
    help=(
        "The app's Billing: a Billing object or a zero-argument factory returning one "
        f"(default: ${APP_ENVVAR}). 'module' alone looks for 'billing' then 'create_billing'."
    ),
)
@click.version_option(__version__, prog_name="billingkit")
@click.pass_context
def cli(ctx: click.Context, app: str | None) -> None:
    """Operate billingkit from the shell: migrations, checks, catalog, the event ledger, drain."""
    locator = AppLocator(app)
    ctx.obj = locator
    ctx.call_on_close(locator.close)


cli.add_command(migrate)
cli.add_command(catalog)
cli.add_command(events)
cli.add_command(doctor)
cli.add_command(reconcile)
cli.add_command(backfill_command)
cli.add_command(drain)


def main() -> None:
    """Entry point of the ``billingkit`` console script."""
    cli(prog_name="billingkit")
