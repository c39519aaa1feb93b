"""Shared pieces of the ``billingkit`` command: exit codes, errors, output and progress."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import IntEnum
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from billingkit.errors import BillingError, GatewayError, RepositoryError

__all__ = [
    "EXIT_CODES_HELP",
    "CliError",
    "ExitCode",
    "echo_json",
    "error_from",
    "exit_with",
    "iso",
    "progress",
    "stderr_console",
    "stdout_console",
]


#: Width of tables written to a pipe or file (no terminal to fit).
_PIPE_WIDTH = 200


class ExitCode(IntEnum):
    """The exit codes every ``billingkit`` command uses (documented in ``--help``)."""

    #: Done, nothing to report.
    OK = 0
    #: The command ran and found a problem: a pending migration (``migrate --check``), a
    #: price missing at Stripe, a failed ``doctor`` check, an event that failed again on
    #: replay, a non-2xx answer.
    PROBLEM = 1
    #: A usage mistake: bad option or argument, app not found (click's own code).
    USAGE = 2
    #: An operation failed: Stripe, the database or the app's configuration refused.
    ERROR = 3
    #: An event id is not in the ledger.
    NOT_FOUND = 4


#: The exit-code paragraph appended to every command's help (``\b`` keeps click's lines).
EXIT_CODES_HELP = """\b
Exit codes: 0 ok; 1 a problem was found; 2 usage error (bad option, app
not found); 3 an operation failed (Stripe, database, configuration);
4 event not found."""


class CliError(click.ClickException):
    """A user-facing failure: its message is printed as ``Error: ...`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = ExitCode.ERROR) -> None:
        super().__init__(message)
        self.exit_code = int(exit_code)  # type: ignore[misc]  # per instance


def exit_with(code: int) -> NoReturn:
    """End the command now with ``code`` (after click's clean-up)."""
    raise click.exceptions.Exit(int(code))


def error_from(exc: BillingError) -> CliError:
    """The ``CliError`` for a billingkit exception (exit 3), with a retry hint."""
    kind = "Stripe" if isinstance(exc, GatewayError) else None
    if isinstance(exc, RepositoryError):
        kind = "database"
    prefix = f"{kind} error" if kind else type(exc).__name__
    hint = " (temporary: retry later)" if exc.retryable else ""
    return CliError(f"{prefix}: {exc}{hint}", ExitCode.ERROR)


def stdout_console() -> Console:
    """A console on the current standard output (tables; plain text when not a terminal).

    Piped output is not wrapped at 80 columns (rows stay greppable) unless ``COLUMNS`` says.
    """
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = _PIPE_WIDTH
    return console


def stderr_console() -> Console:
    """A console on standard error, for progress bars and notes that are not data."""
    return Console(stderr=True, highlight=False)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (keys in the order given: they are stable)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def iso(moment: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 (``...+00:00``), or ``None``."""
    return None if moment is None else moment.isoformat()


class _RateColumn(ProgressColumn):
    """Items per second, once rich has measured a speed."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        """The current rate, e.g. ``12.5 events/s``."""
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"? {self._unit}/s", style="progress.data.speed")
        return Text(f"{speed:.1f} {self._unit}/s", style="progress.data.speed")


@contextmanager
def progress(
    total: int, description: str, *, unit: str = "events", console: Console | None = None
) -> Iterator[Callable[[], None]]:
    """A progress bar with count, rate and ETA on standard error; silent when not a TTY.

    Yields a function to call once per finished item.
    """
    console = console or stderr_console()
    if not console.is_terminal or total <= 0:
        yield lambda: None
        return
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(unit),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


def json_or_text(data: Mapping[str, Any], as_json: bool, text: Callable[[], None]) -> None:
    """Print ``data`` as JSON when ``as_json``, else call ``text`` to print it for people."""
    if as_json:
        echo_json(data)
    else:
        text()
