"""The usage outbox: ``record()`` against a raw INSERT + COMMIT, and flush throughput.

Run from the repository root::

    PYTHONPATH=src python bench/usage.py                  # 5 rounds of 1000 records per database
    PYTHONPATH=src python bench/usage.py -n 500 -r 3 --databases sqlite

``record()`` cost, per database (a SQLite file with WAL and ``synchronous=FULL``, and a
scratch PostgreSQL database: ``BILLINGKIT_POSTGRES_URL``, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres`` as the admin connection):

* ``record`` — ``UsageService.record`` on ``SqlAlchemyRepository`` over the migrated schema,
  one record per unit of work: argument checks + value + BEGIN + INSERT + COMMIT;
* ``floor`` — the same row (the same eleven columns and values) inserted into a copy of the
  outbox table with one ``INSERT`` + ``COMMIT`` through the same driver connection (DB-API,
  no SQLAlchemy), with the same connection settings.

Each round feeds both contenders ``-n`` records in alternating batches of 50 (same machine
load); a warm-up batch is not counted. Printed: the median over rounds of each rate
(records per second), the median per-round ratio and its range. Target: record >= 0.5x floor.

Flush throughput: ``-n`` recorded records flushed to ``FakeStripeGateway`` (in process: what
is measured is billingkit's own cost per record, claims and write-backs included, not
Stripe's latency), batch size 100, on each database and on ``InMemoryRepository``: records
per second (median over rounds) and Stripe calls per 1,000 records. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import URL, make_url, text

from billingkit.adapters.memory import InMemoryRepository
from billingkit.adapters.sqlalchemy import SqlAlchemyRepository, create_engine, upgrade
from billingkit.config import BillingConfig
from billingkit.domain import CustomerLink, PlanDefinition
from billingkit.ports import Repository
from billingkit.services.usage import UsageService
from billingkit.testing import FakeStripeGateway

SECRET = "whsec_bench_usage"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
START = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
METER = "api_calls"
BATCH = 50
FLUSH_BATCH = 100


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


def _config() -> BillingConfig:
    return BillingConfig(
        plans=[PlanDefinition(key="free", name="Free")], free_plan="free", webhook_secrets=[SECRET]
    )


def _service(repository: Repository) -> tuple[UsageService, FakeStripeGateway]:
    fake = FakeStripeGateway(webhook_secret=SECRET, start=START)
    fake.add_meter(METER)
    customer = fake.create_customer(user_id="user_bench", email=None, idempotency_key="bench")
    with repository.unit_of_work() as uow:
        uow.link_customer(CustomerLink(user_id="user_bench", customer_id=customer.id))
    return UsageService(_config(), gateway=fake, repository=repository, clock=fake.now), fake


# --------------------------------------------------------------------------- contenders


class Record:
    """``UsageService.record`` on ``SqlAlchemyRepository`` over the migrated schema."""

    def __init__(self, url: URL) -> None:
        upgrade(url)
        self.repository = SqlAlchemyRepository(url)
        self.service, _ = _service(self.repository)
        self.serial = 0

    def run(self, count: int) -> float:
        """Record ``count`` records; return the seconds it took."""
        record = self.service.record
        started = time.perf_counter()
        for _ in range(count):
            self.serial += 1
            record("user_bench", METER, 1, identifier=f"rec_{self.serial:09d}")
        return time.perf_counter() - started

    def close(self) -> None:
        self.repository.close()


class Floor:
    """The same row, one raw INSERT + COMMIT each, through the same DB-API driver."""

    COLUMNS = (
        "identifier, user_id, event_name, value, timestamp, recorded_at, status, attempts, "
        "last_error, next_attempt_at, sent_at"
    )

    def __init__(self, url: URL) -> None:
        self.engine = create_engine(url)  # the same connection settings as the repository's
        postgres = self.engine.dialect.name == "postgresql"
        when = "TIMESTAMP WITH TIME ZONE" if postgres else "DATETIME"
        marker = "%s" if self.engine.dialect.paramstyle in ("format", "pyformat") else "?"
        self.insert = (
            f"INSERT INTO bench_usage ({self.COLUMNS}) VALUES ({', '.join([marker] * 11)})"
        )
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE bench_usage (identifier VARCHAR(100) PRIMARY KEY, "
                "user_id VARCHAR(255) NOT NULL, event_name VARCHAR(100) NOT NULL, "
                f"value BIGINT NOT NULL, timestamp {when} NOT NULL, recorded_at {when} NOT NULL, "
                "status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, "
                f"next_attempt_at {when}, sent_at {when})"
            )
            connection.exec_driver_sql(
                "CREATE INDEX ix_bench_usage_due ON bench_usage (status, recorded_at)"
            )
            connection.exec_driver_sql(
                "CREATE INDEX ix_bench_usage_user ON bench_usage (user_id, event_name, timestamp)"
            )
        self.explicit = self.engine.dialect.name == "sqlite"
        self.moment: Any = START if postgres else START.replace(tzinfo=None).isoformat(" ")
        self.raw = self.engine.raw_connection()
        self.serial = 0

    def run(self, count: int) -> float:
        cursor = self.raw.cursor()
        moment = self.moment
        started = time.perf_counter()
        for _ in range(count):
            self.serial += 1
            row = (f"rec_{self.serial:09d}", "user_bench", METER, 1, moment, moment)
            if self.explicit:
                cursor.execute("BEGIN")
            cursor.execute(self.insert, (*row, "pending", 0, None, None, None))
            if self.explicit:
                cursor.execute("COMMIT")
            else:
                self.raw.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
        return elapsed

    def close(self) -> None:
        self.raw.close()
        self.engine.dispose()


class RecordFigures(NamedTuple):
    """One database's ``record()`` result."""

    database: str
    record: float  # records/s, median over rounds
    floor: float
    ratio: float  # median of the per-round record/floor ratios
    ratio_low: float
    ratio_high: float


class FlushFigures(NamedTuple):
    """One repository's flush result."""

    repository: str
    rate: float  # records/s, median over rounds
    calls_per_1000: float


def measure_record(database: str, count: int, rounds: int) -> RecordFigures:
    """Interleave ``record()`` and the floor on ``database``; median rates and ratio."""
    with DATABASES[database]() as url_a, DATABASES[database]() as url_b:
        record, floor = Record(url_a), Floor(url_b)
        try:
            record.run(BATCH)
            floor.run(BATCH)
            rates: list[tuple[float, float]] = []
            for _ in range(rounds):
                spent = [0.0, 0.0]
                done = 0
                while done < count:
                    size = min(BATCH, count - done)
                    spent[0] += record.run(size)
                    spent[1] += floor.run(size)
                    done += size
                rates.append((count / spent[0], count / spent[1]))
        finally:
            record.close()
            floor.close()
    ratios = [a / b for a, b in rates]
    return RecordFigures(
        database,
        statistics.median(a for a, _ in rates),
        statistics.median(b for _, b in rates),
        statistics.median(ratios),
        min(ratios),
        max(ratios),
    )


@contextmanager
def _repository(kind: str) -> Iterator[Repository]:
    if kind == "memory":
        yield InMemoryRepository()
        return
    with DATABASES[kind]() as url:
        upgrade(url)
        repository = SqlAlchemyRepository(url)
        try:
            yield repository
        finally:
            repository.close()


def measure_flush(kind: str, count: int, rounds: int) -> FlushFigures:
    """Record ``count`` records (untimed), flush them all (timed), ``rounds`` times."""
    rates = []
    calls = 0
    with _repository(kind) as repository:
        service, fake = _service(repository)
        serial = 0
        for _ in range(rounds):
            for _ in range(count):
                serial += 1
                service.record("user_bench", METER, 1, identifier=f"fl_{serial:09d}")
            fake.reset_calls()
            started = time.perf_counter()
            result = service.flush(batch_size=FLUSH_BATCH)
            elapsed = time.perf_counter() - started
            if result.sent != count:
                raise AssertionError(f"flushed {result.sent} of {count}")
            calls = fake.calls["create_meter_event"]
            rates.append(count / elapsed)
            fake.advance(timedelta(seconds=1))
    return FlushFigures(kind, statistics.median(rates), 1000 * calls / count)


def main(argv: Sequence[str] | None = None) -> tuple[list[RecordFigures], list[FlushFigures]]:
    """Measure and print; returns the figures (for the smoke test)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", "--records", type=int, default=1000, help="records per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres")
    args = parser.parse_args(argv)
    databases = [name for name in args.databases.split(",") if name]
    recorded = []
    for database in databases:
        figures = measure_record(database, args.records, args.rounds)
        recorded.append(figures)
        print(
            f"record() {database:8s}: {figures.record:9.0f}/s  floor {figures.floor:9.0f}/s  "
            f"ratio {figures.ratio:.2f}x (range {figures.ratio_low:.2f}-{figures.ratio_high:.2f})"
        )
    flushed = []
    for kind in ["memory", *databases]:
        result = measure_flush(kind, args.records, args.rounds)
        flushed.append(result)
        print(
            f"flush    {kind:8s}: {result.rate:9.0f} records/s to the fake, "
            f"{result.calls_per_1000:.0f} Stripe calls per 1,000 records"
        )
    sys.stdout.flush()
    return recorded, flushed


if __name__ == "__main__":
    main()
