"""``manage.py billingkit ...``: the ``billingkit`` command on this project's services.

Every argument goes to the click command of ``billingkit.cli`` (``billingkit[cli]``),
with the app's ``get_billing`` as its app, so no ``--app`` is
needed::

    python manage.py billingkit catalog
    python manage.py billingkit events list --status failed
    python manage.py billingkit events replay evt_123
    python manage.py billingkit --help

``billingkit migrate`` manages SQLAlchemy schemas: with this app, ``manage.py migrate``
creates billingkit's tables.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from billingkit._optional import requires_extra

with requires_extra("django"):
    from django.core.management.base import BaseCommand, CommandError, CommandParser

__all__ = ["APP", "Command"]

#: What ``--app`` the click command is given: the Django app's lazily built services.
APP = "billingkit.contrib.django._cli_app:billing"


class Command(BaseCommand):
    """Run the ``billingkit`` command (see the module docstring)."""

    help = "Operate billingkit: catalog, event ledger, doctor (billingkit --help for all)."

    def add_arguments(self, parser: CommandParser) -> None:
        """Everything after ``billingkit`` is the click command's."""
        parser.add_argument("args", nargs=argparse.REMAINDER)

    def run_from_argv(self, argv: list[str]) -> None:
        """``manage.py billingkit ARGS``: hand ``ARGS`` to click untouched (``--help`` too)."""
        sys.exit(self.run_cli(argv[2:], prog_name=f"{argv[0]} {argv[1]}"))

    def handle(self, *args: Any, **options: Any) -> None:
        """``call_command("billingkit", "events", "list")``; a failure is a CommandError."""
        code = self.run_cli(list(args), prog_name="manage.py billingkit")
        if code:
            raise CommandError(f"billingkit {' '.join(args)} exited with status {code}")

    def run_cli(self, args: list[str], *, prog_name: str) -> int:
        """Run the click command on ``args``; returns its exit status."""
        from billingkit.cli import cli

        code: object = 0
        try:  # click's standalone mode ends with SystemExit, carrying the exit status
            cli.main(args=["--app", APP, *args], prog_name=prog_name, standalone_mode=True)
        except SystemExit as done:
            code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
