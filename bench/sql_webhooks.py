"""Webhook throughput on SQL databases: the full pipeline against the database's own floor.

Run from the repository root::

    PYTHONPATH=src python bench/sql_webhooks.py            # 5 rounds of 1000 events per database
    PYTHONPATH=src python bench/sql_webhooks.py -n 500 -r 3 --databases sqlite

Both contenders get the same signed ``customer.subscription.updated`` deliveries as
``bench/webhooks.py`` (~4.7 KB each, distinct ids, every event newer than the last; each
subscription's ``metadata`` holds the ``user_id``, ``plan_key`` and ``interval`` that
billingkit's checkout sets through ``subscription_data.metadata``):

* ``pipeline`` — ``WebhookProcessor.handle`` on ``SqlAlchemyRepository``, one event per
  transaction: size check + signature + parse + ledger claim (the row inserted with its
  final status) + apply (ordering guard, subscription stored) + COMMIT;
* ``floor`` — the same (already verified) payloads inserted as raw rows ``(id, payload)``,
  one ``INSERT`` + ``COMMIT`` per event, through the same driver connection (DB-API, no
  SQLAlchemy), with the same connection settings (SQLite: WAL, ``synchronous=FULL``).

Databases: a SQLite file in a temporary directory and a scratch PostgreSQL database
(``BILLINGKIT_POSTGRES_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``
as the admin connection; ``billingkit_bench_<random>`` is created and dropped), one of each
per contender. Each round feeds both contenders the same ``-n`` new deliveries in alternating
batches of 50 events, so both see the same machine load; a warm-up batch is not counted.
Printed: the median over rounds of each rate (events per second) and of the per-round ratio,
and the range of the ratio; then how many statements the pipeline sends per event and, on
SQLite, how many WAL pages each contender writes per event (both counted on extra, untimed
events). Target: pipeline >= 0.5x floor on both. Not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import URL, make_url, text

from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine, upgrade
from billingkit.config import BillingConfig
from billingkit.domain import Interval, PlanDefinition
from billingkit.services.catalog import PlanCatalog
from billingkit.services.webhooks import WebhookOutcome, WebhookProcessor
from billingkit.signature import verify_signature
from billingkit.testing import FakeStripeGateway

# Same deliveries as bench/webhooks.py (bench/ is not a package: load it by path).
_spec = importlib.util.spec_from_file_location(
    "bench_webhooks", Path(__file__).with_name("webhooks.py")
)
assert _spec is not None and _spec.loader is not None
bench_webhooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_webhooks)

SECRET: str = bench_webhooks.SECRET
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

Deliveries = Sequence[tuple[bytes, str]]


# --------------------------------------------------------------------------- databases


@contextmanager
def sqlite_database() -> Iterator[URL]:
    """A fresh SQLite file."""
    with tempfile.TemporaryDirectory() as directory:
        yield make_url(f"sqlite:///{Path(directory) / 'bench.db'}")


@contextmanager
def postgres_database() -> Iterator[URL]:
    """A scratch PostgreSQL database, dropped afterwards."""
    admin_url = make_url(os.environ.get("BILLINGKIT_POSTGRES_URL", POSTGRES_ADMIN))
    name = f"billingkit_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


DATABASES: dict[str, Callable[[], Any]] = {"sqlite": sqlite_database, "postgres": postgres_database}


# --------------------------------------------------------------------------- contenders


class Pipeline:
    """``WebhookProcessor.handle`` on ``SqlAlchemyRepository`` over a migrated schema."""

    def __init__(self, url: URL, now: int, *, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self.repository = SqlAlchemyRepository(url)
        config = BillingConfig(
            plans=(
                PlanDefinition(
                    key="basic", name="Basic", prices={Interval.MONTH: "price_bench_month"}
                ),
            ),
            webhook_secrets=(SECRET,),
        )
        gateway = FakeStripeGateway(webhook_secret=SECRET)
        moment = datetime.fromtimestamp(now, tz=timezone.utc)
        self.processor = WebhookProcessor(
            config,
            gateway=gateway,
            repository=self.repository,
            catalog=PlanCatalog(config, gateway=gateway),
            clock=lambda: moment,
        )

    def run(self, batch: Deliveries) -> float:
        """Handle ``batch``; return the seconds it took."""
        started = time.perf_counter()
        for payload, signature in batch:
            result = self.processor.handle(payload, signature)
            if result.outcome is not WebhookOutcome.PROCESSED:
                raise AssertionError(f"unexpected outcome {result.outcome}")
        return time.perf_counter() - started

    def checkpoint(self, mode: str) -> Any:
        """SQLite: run ``PRAGMA wal_checkpoint(mode)``; returns its row."""
        with self.repository.engine.connect() as connection:
            return connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()

    def close(self) -> None:
        self.repository.close()


class Floor:
    """One raw INSERT + COMMIT per verified payload through the same DB-API driver."""

    def __init__(self, url: URL, now: int) -> None:
        self.now = now
        self.engine = create_engine(url)  # the same connection settings as the repository's
        blob = "BYTEA" if self.engine.dialect.name == "postgresql" else "BLOB"
        marker = "%s" if self.engine.dialect.paramstyle in ("format", "pyformat") else "?"
        self.insert = f"INSERT INTO bench_raw (id, payload) VALUES ({marker}, {marker})"
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE TABLE bench_raw (id VARCHAR(255) PRIMARY KEY, payload {blob} NOT NULL)"
            )
        # SQLite connections from create_engine leave BEGIN/COMMIT to the caller (the
        # driver's implicit transactions are off); psycopg begins one implicitly.
        self.explicit = self.engine.dialect.name == "sqlite"
        self.raw = self.engine.raw_connection()
        self.serial = 0

    def run(self, batch: Deliveries) -> float:
        """Insert ``batch`` (verified first, untimed, like the pipeline's input)."""
        payloads = []
        for payload, signature in batch:
            verify_signature(payload, signature, [SECRET], now=self.now, tolerance=300)
            payloads.append(payload)
        cursor = self.raw.cursor()
        started = time.perf_counter()
        for payload in payloads:
            self.serial += 1
            if self.explicit:
                cursor.execute("BEGIN")
            cursor.execute(self.insert, (f"evt_floor_{self.serial:08d}", payload))
            if self.explicit:
                cursor.execute("COMMIT")
            else:
                self.raw.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
        return elapsed

    def checkpoint(self, mode: str) -> Any:
        """SQLite: run ``PRAGMA wal_checkpoint(mode)``; returns its row."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(f"PRAGMA wal_checkpoint({mode})")
            return cursor.fetchone()
        finally:
            cursor.close()

    def close(self) -> None:
        self.raw.close()
        self.engine.dispose()


BATCH = 50


class Figures(NamedTuple):
    """One database's result: median rates (events/s), median and range of the ratio."""

    database: str
    pipeline: float
    floor: float
    ratio: float
    ratio_low: float
    ratio_high: float
    statements: float
    #: SQLite only: WAL pages written per event by (pipeline, floor).
    wal_pages: tuple[float, float] | None


def _statements_per_event(pipeline: Pipeline, batch: Deliveries) -> float:
    """Statements the pipeline sends per event (BEGIN/COMMIT excluded), untimed."""
    count = 0

    def counter(*_: Any) -> None:
        nonlocal count
        count += 1

    engine = pipeline.repository.engine
    sqlalchemy.event.listen(engine, "before_cursor_execute", counter)
    try:
        pipeline.run(batch)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", counter)
    return count / len(batch)


def _wal_pages(checkpoint: Callable[[str], Any], run: Callable[[], Any], events: int) -> float:
    """SQLite: WAL frames (page writes) per event of ``run``, untimed.

    The WAL is emptied first (``wal_checkpoint(TRUNCATE)``); ``run`` writes fewer frames
    than the auto-checkpoint threshold (1000), so the frame count afterwards is all its own.
    """
    checkpoint("TRUNCATE")
    run()
    _busy, frames, _done = checkpoint("PASSIVE")
    return int(frames) / events


def measure(database: str, events: int, rounds: int) -> Figures:
    """Median rates of (pipeline, floor) on ``database`` over ``rounds`` rounds.

    The machine may be busy with other work; alternating batches of ``BATCH`` events
    between the two contenders exposes both to the same conditions, so each round's ratio
    is fair even when the absolute rates drift; the median discards outlier rounds.
    """
    now = int(time.time())
    deliveries = bench_webhooks.make_deliveries(BATCH + events * rounds + 2 * BATCH, now)
    warm_up, timed, counted = (
        deliveries[:BATCH],
        deliveries[BATCH : -2 * BATCH],
        deliveries[-2 * BATCH :],
    )
    pipeline_rates, floor_rates, ratios = [], [], []
    with DATABASES[database]() as floor_url, DATABASES[database]() as pipeline_url:
        floor, pipeline = Floor(floor_url, now), Pipeline(pipeline_url, now)
        try:
            floor.run(warm_up)
            pipeline.run(warm_up)
            for number in range(rounds):
                chunk = timed[number * events : (number + 1) * events]
                floor_seconds = pipeline_seconds = 0.0
                for start in range(0, events, BATCH):
                    batch = chunk[start : start + BATCH]
                    floor_seconds += floor.run(batch)
                    pipeline_seconds += pipeline.run(batch)
                pipeline_rates.append(events / pipeline_seconds)
                floor_rates.append(events / floor_seconds)
                ratios.append(floor_seconds / pipeline_seconds)
            statements = _statements_per_event(pipeline, counted[:BATCH])
            pages = None
            if database == "sqlite":
                paged = counted[BATCH:]
                pages = (
                    _wal_pages(pipeline.checkpoint, lambda: pipeline.run(paged), BATCH),
                    _wal_pages(floor.checkpoint, lambda: floor.run(paged), BATCH),
                )
        finally:
            floor.close()
            pipeline.close()
    return Figures(
        database,
        statistics.median(pipeline_rates),
        statistics.median(floor_rates),
        statistics.median(ratios),
        min(ratios),
        max(ratios),
        statements,
        pages,
    )


def main(argv: Sequence[str] | None = None) -> list[Figures]:
    """Run the benchmark and print one line per database; returns the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--events", type=int, default=1000, help="events per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be positive")
    figures = []
    print(
        f"{args.rounds} rounds of {args.events} events, alternating batches of {BATCH}, "
        "one event per transaction; medians over rounds"
    )
    for database in args.databases.split(","):
        result = measure(database, args.events, args.rounds)
        figures.append(result)
        print(
            f"{database:9s} pipeline {result.pipeline:8.0f} ev/s   "
            f"floor {result.floor:8.0f} ev/s   ratio {result.ratio:.2f}x "
            f"(rounds {result.ratio_low:.2f}-{result.ratio_high:.2f}; target >= 0.50x)   "
            f"pipeline statements/event {result.statements:.1f} (floor 1)"
        )
        if result.wal_pages is not None:
            print(
                f"{'':9s} WAL pages/event: pipeline {result.wal_pages[0]:.1f}, "
                f"floor {result.wal_pages[1]:.1f}"
            )
        sys.stdout.flush()
    return figures


if __name__ == "__main__":
    main()
