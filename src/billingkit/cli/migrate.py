"""``billingkit migrate``: bring the SQL schema of the billingkit tables to head."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import click

from billingkit.cli._app import AppLocator
from billingkit.cli._common import EXIT_CODES_HELP, CliError, ExitCode, echo_json, exit_with
from billingkit.errors import RepositoryUnavailableError

if TYPE_CHECKING:
    from billingkit.adapters.sqlalchemy import SqlAlchemyRepository
    from billingkit.composition import Billing

__all__ = ["MigrationState", "migrate"]


@dataclass(frozen=True)
class MigrationState:
    """Where the database stands: its revisions, the package's heads, and what is pending."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    #: Pending revisions, oldest first, as ``(revision, message)``.
    pending: tuple[tuple[str, str], ...]

    @property
    def at_head(self) -> bool:
        """Whether nothing is pending."""
        return not self.pending

    def as_json(self) -> dict[str, Any]:
        """The state as stable JSON keys."""
        return {
            "current": list(self.current),
            "heads": list(self.heads),
            "at_head": self.at_head,
            "pending": [{"revision": rev, "message": doc} for rev, doc in self.pending],
        }


def _sql_repository(billing: Billing) -> SqlAlchemyRepository:
    repository = billing.repository
    # Not loaded means the repository cannot be one: no need to import SQLAlchemy to say so.
    adapter = sys.modules.get("billingkit.adapters.sqlalchemy")
    cls = getattr(adapter, "SqlAlchemyRepository", None)
    if cls is None or not isinstance(repository, cls):
        raise CliError(
            "migrate needs a SqlAlchemyRepository; this app's repository "
            f"({type(repository).__name__}) keeps no SQL schema: nothing to migrate",
            ExitCode.USAGE,
        )
    return cast("SqlAlchemyRepository", repository)


def _is_database_error(exc: BaseException) -> bool:
    """Errors of SQLAlchemy, its drivers or Alembic (matched by module: no import here)."""
    return type(exc).__module__.split(".")[0] in ("sqlalchemy", "alembic")


def _database_error(exc: BaseException, url: str) -> RepositoryUnavailableError:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = first[0][:300] if first else ""
    return RepositoryUnavailableError(
        f"could not read the migration state of {url}: {type(exc).__name__}: {reason}"
    )


def migration_state(repository: SqlAlchemyRepository) -> MigrationState:
    """Read the database's billingkit revisions and compare them with the shipped heads."""
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    from billingkit.adapters.sqlalchemy import alembic_config

    config = alembic_config()
    assert isinstance(config, Config)
    script = ScriptDirectory.from_config(config)
    heads = tuple(script.get_heads())
    found: list[str] = []

    def read_current(rev: Any, context: Any) -> list[Any]:
        found.extend(context.get_current_heads())
        return []

    engine = repository.engine
    url = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            with EnvironmentContext(config, script, fn=read_current, dont_mutate=True):
                script.run_env()
    except Exception as exc:
        if _is_database_error(exc):
            raise _database_error(exc, url) from exc
        raise
    current = tuple(sorted(found))
    lower: Any = current or "base"
    pending = tuple(
        (revision.revision, (revision.doc or "").strip())
        for revision in reversed(list(script.iterate_revisions("heads", lower)))
    )
    return MigrationState(current=current, heads=heads, pending=pending)


def _upgrade_sql(repository: SqlAlchemyRepository, state: MigrationState) -> str:
    """The SQL that would bring the database from its current revision to head."""
    import io

    from alembic import command
    from alembic.config import Config

    from billingkit.adapters.sqlalchemy import alembic_config

    # Offline mode needs only the dialect: never hand the real URL (and password) around.
    config = alembic_config(f"{repository.engine.url.drivername}://")
    assert isinstance(config, Config)
    buffer = io.StringIO()
    config.output_buffer = buffer
    start = ",".join(state.current)
    command.upgrade(config, f"{start}:heads" if start else "heads", sql=True)
    return buffer.getvalue()


@click.command(
    epilog=f"""\b
Examples:
  billingkit migrate            # apply pending migrations
  billingkit migrate --check    # in a deploy pipeline: exit 1 if one is pending
  billingkit migrate --sql > upgrade.sql   # for a DBA to review and run

{EXIT_CODES_HELP} For --check, 1 means a migration is pending."""
)
@click.option("--check", is_flag=True, help="Apply nothing; exit 1 if a migration is pending.")
@click.option("--sql", is_flag=True, help="Print the SQL of the pending migrations; apply nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_obj
def migrate(app: AppLocator, check: bool, sql: bool, as_json: bool) -> None:
    """Bring the billingkit tables to the newest schema (SqlAlchemyRepository only).

    Safe to run on every deploy: applied revisions are recorded in the
    billingkit_alembic_version table, and the app's own Alembic history is not touched.
    """
    if check and sql:
        raise click.UsageError("--check and --sql cannot be combined")
    if sql and as_json:
        raise click.UsageError("--sql prints SQL; it cannot be combined with --json")
    repository = _sql_repository(app.load())
    state = migration_state(repository)
    if sql:
        if state.at_head:
            click.echo(f"-- billingkit tables already at head ({', '.join(state.heads)})")
            return
        click.echo(_upgrade_sql(repository, state), nl=False)
        return
    if check:
        _report_check(state, as_json)
        return
    if not state.at_head:
        from billingkit.adapters.sqlalchemy import upgrade

        upgrade(repository.engine)
    after = migration_state(repository)
    if as_json:
        echo_json({**after.as_json(), "applied": [rev for rev, _ in state.pending]})
        return
    if state.at_head:
        click.echo(f"billingkit tables already at head ({', '.join(after.current)})")
        return
    for revision, message in state.pending:
        click.echo(f"applied {revision}  {message}")
    click.echo(f"billingkit tables now at head ({', '.join(after.current)})")


def _report_check(state: MigrationState, as_json: bool) -> None:
    if as_json:
        echo_json(state.as_json())
    elif state.at_head:
        click.echo(f"billingkit tables at head ({', '.join(state.heads)})")
    else:
        current = ", ".join(state.current) or "no billingkit tables"
        click.echo(f"{len(state.pending)} migration(s) pending (database at: {current}):")
        for revision, message in state.pending:
            click.echo(f"  {revision}  {message}")
        click.echo("run: billingkit migrate")
    if not state.at_head:
        exit_with(ExitCode.PROBLEM)
