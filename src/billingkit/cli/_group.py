"""The click group class that turns billingkit's exceptions into clean exits."""

from __future__ import annotations

from typing import Any

import click

from billingkit.cli._common import error_from
from billingkit.errors import BillingError

__all__ = ["BillingGroup"]


class BillingGroup(click.Group):
    """A ``click.Group`` that prints a ``BillingError`` as one line, exit code 3.

    A ``BillingError`` becomes an ``Error:`` line instead of a
    traceback.
    Only billingkit's own exception tree is caught: anything else is a bug and keeps its
    traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a ``BillingError`` becomes ``CliError``."""
        try:
            return super().invoke(ctx)
        except BillingError as exc:
            raise error_from(exc) from None
