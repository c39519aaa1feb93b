"""Deferred processing and the inline path on SQL databases, against the raw INSERT floor.

Run from the repository root::

    PYTHONPATH=src python bench/deferred.py                       # all three databases + workers
    PYTHONPATH=src python bench/deferred.py -n 500 -r 3 --databases sqlite --workers ''

Every contender gets the same signed ``customer.subscription.updated`` deliveries as
``bench/webhooks.py`` and ``bench/sql_webhooks.py`` (~4.7 KB, distinct ids, every event newer
than the last, so every event is processed), each on its own fresh database:

* ``floor`` — the verified payloads (verified untimed) inserted as raw rows ``(id, payload)``,
  one ``INSERT`` + ``COMMIT`` per event through the same DB-API driver and connection
  settings (``bench/sql_webhooks.py``'s floor);
* ``handle`` — ``WebhookProcessor.handle`` (inline: verify, parse, claim, apply, commit);
* ``receive`` — ``WebhookProcessor.receive`` with no dispatcher (verify, parse, one
  ``INSERT`` of the pending ledger row, commit): what a web process does in deferred mode;
* ``drain`` — ``WebhookProcessor.drain(batch_size=100)``, one worker, over events received
  beforehand (the receive is not timed): claim 100 due events, apply each under a
  savepoint, one commit per batch.

Each round feeds every contender the same ``-n`` new deliveries in alternating batches of
100 events, so all see the same machine load. Printed per database: median rate of each
(events/s), median and range over rounds of its ratio to the floor.

Then, on PostgreSQL (``--workers 1,2,4``): ``--worker-events`` events are received (untimed)
and ``drain`` runs in that many worker *processes* at once (``FOR UPDATE SKIP LOCKED``
shares the ledger), timed from a common start to the last worker's end; worker counts are
interleaved within each round. Printed: median events/s per worker count and its range, the
speed-up over one worker; ``--chart PATH`` writes them as a PNG (matplotlib, a dev
dependency). Databases as in ``bench/sql_webhooks.py``, plus MariaDB
(``BILLINGKIT_MARIADB_URL``, default ``mysql+pymysql://root@127.0.0.1:3306/mysql`` as the
admin connection). Targets (issue 14): receive >= 0.8x floor on PostgreSQL and >= 0.6x on
SQLite; drain >= 1x; handle >= 0.4x; 4 workers >= 1.5x one. Not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import URL, make_url, text

from billingkit.services.webhooks import WebhookOutcome

# bench/ is not a package: load the SQL bench (and through it bench/webhooks.py) by path.
_spec = importlib.util.spec_from_file_location(
    "bench_sql_webhooks", Path(__file__).with_name("sql_webhooks.py")
)
assert _spec is not None and _spec.loader is not None
sql_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sql_bench)

MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/mysql"
BATCH = 100
CONTENDERS = ("handle", "receive", "drain")
TARGETS = {
    ("handle", "sqlite"): 0.4,
    ("handle", "postgres"): 0.4,
    ("receive", "sqlite"): 0.6,
    ("receive", "postgres"): 0.8,
    ("drain", "sqlite"): 1.0,
    ("drain", "postgres"): 1.0,
    ("drain", "mariadb"): 1.0,
}
Deliveries = Sequence[tuple[bytes, str]]


@contextmanager
def mariadb_database() -> Iterator[URL]:
    """A scratch MariaDB database (utf8mb4, binary collation), dropped afterwards."""
    admin_url = make_url(os.environ.get("BILLINGKIT_MARIADB_URL", MARIADB_ADMIN))
    name = f"billingkit_bench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(
                text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            )
        yield admin_url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


DATABASES: dict[str, Callable[[], Any]] = {**sql_bench.DATABASES, "mariadb": mariadb_database}


# --------------------------------------------------------------------------- contenders


def _handle(service: Any, batch: Deliveries) -> float:
    processor = service.processor
    started = time.perf_counter()
    for payload, signature in batch:
        if processor.handle(payload, signature).outcome is not WebhookOutcome.PROCESSED:
            raise AssertionError("every bench event must be processed")
    return time.perf_counter() - started


def _receive(service: Any, batch: Deliveries) -> float:
    processor = service.processor
    started = time.perf_counter()
    for payload, signature in batch:
        if processor.receive(payload, signature).outcome is not WebhookOutcome.QUEUED:
            raise AssertionError("every bench event must be queued")
    return time.perf_counter() - started


def _drain(service: Any, batch: Deliveries) -> float:
    processor = service.processor
    for payload, signature in batch:  # untimed: what the web processes did before
        processor.receive(payload, signature)
    started = time.perf_counter()
    result = processor.drain(batch_size=BATCH)
    elapsed = time.perf_counter() - started
    if result.processed != len(batch) or result.total != len(batch):
        raise AssertionError(f"drain did not process the batch: {result}")
    return elapsed


RUNS: dict[str, Callable[[Any, Deliveries], float]] = {
    "handle": _handle,
    "receive": _receive,
    "drain": _drain,
}


class Result(NamedTuple):
    """One contender on one database: median rate, median ratio to the floor and range."""

    database: str
    contender: str
    rate: float
    floor: float
    ratio: float
    ratio_low: float
    ratio_high: float


def measure(database: str, events: int, rounds: int) -> list[Result]:
    """Each contender against the floor on ``database``, interleaved in batches of 100."""
    now = int(time.time())
    deliveries = sql_bench.bench_webhooks.make_deliveries(BATCH + events * rounds, now)
    warm_up, timed = deliveries[:BATCH], deliveries[BATCH:]
    seconds: dict[str, list[float]] = {name: [] for name in ("floor", *CONTENDERS)}
    with contextlib_stack(DATABASES[database], 1 + len(CONTENDERS)) as urls:
        floor = sql_bench.Floor(urls[0], now)
        services = {
            name: sql_bench.Pipeline(url, now)
            for name, url in zip(CONTENDERS, urls[1:], strict=True)
        }
        try:
            floor.run(warm_up)
            for name, service in services.items():
                RUNS[name](service, warm_up)
            for number in range(rounds):
                chunk = timed[number * events : (number + 1) * events]
                spent = dict.fromkeys(seconds, 0.0)
                for start in range(0, events, BATCH):
                    batch = chunk[start : start + BATCH]
                    spent["floor"] += floor.run(batch)
                    for name, service in services.items():
                        spent[name] += RUNS[name](service, batch)
                for name, value in spent.items():
                    seconds[name].append(value)
        finally:
            floor.close()
            for service in services.values():
                service.close()
    results = []
    floor_rate = statistics.median(events / value for value in seconds["floor"])
    for name in CONTENDERS:
        ratios = [f / c for f, c in zip(seconds["floor"], seconds[name], strict=True)]
        results.append(
            Result(
                database,
                name,
                statistics.median(events / value for value in seconds[name]),
                floor_rate,
                statistics.median(ratios),
                min(ratios),
                max(ratios),
            )
        )
    return results


@contextmanager
def contextlib_stack(factory: Callable[[], Any], count: int) -> Iterator[list[URL]]:
    """``count`` fresh databases from ``factory`` at once."""
    if count == 0:
        yield []
        return
    with factory() as url, contextlib_stack(factory, count - 1) as others:
        yield [url, *others]


# --------------------------------------------------------------------------- worker processes


def _worker(url: URL, now: int, start: Any, ends: Any) -> None:
    """One drain worker process: wait for the start, drain until nothing is due, report."""
    service = sql_bench.Pipeline(url, now, migrate=False)
    start.wait()
    processed = 0
    while True:
        result = service.processor.drain(batch_size=BATCH)
        processed += result.processed + result.stale
        if result.total == 0:
            break
    ends.put((time.perf_counter(), processed))
    service.close()


class WorkerResult(NamedTuple):
    """Drain throughput of ``workers`` processes: median events/s and its range."""

    workers: int
    rate: float
    rate_low: float
    rate_high: float


def measure_workers(
    counts: Sequence[int], events: int, rounds: int, database: str = "postgres"
) -> list[WorkerResult]:
    """Events/s of ``drain`` in ``n`` processes for each ``n`` in ``counts``, interleaved."""
    context = multiprocessing.get_context("fork")
    now = int(time.time())
    total = events * rounds * len(counts)
    deliveries = sql_bench.bench_webhooks.make_deliveries(total, now)
    rates: dict[int, list[float]] = {count: [] for count in counts}
    position = 0
    with DATABASES[database]() as url:
        service = sql_bench.Pipeline(url, now)
        try:
            for _ in range(rounds):
                for count in counts:
                    batch = deliveries[position : position + events]
                    position += events
                    for payload, signature in batch:  # untimed
                        service.processor.receive(payload, signature)
                    service.repository.engine.dispose()  # nothing pooled across the fork
                    start = context.Barrier(count + 1)
                    ends = context.Queue()
                    workers = [
                        context.Process(target=_worker, args=(url, now, start, ends))
                        for _ in range(count)
                    ]
                    for worker in workers:
                        worker.start()
                    start.wait()
                    started = time.perf_counter()
                    finished = [ends.get(timeout=600) for _ in workers]
                    for worker in workers:
                        worker.join()
                    if sum(done for _, done in finished) != events:
                        raise AssertionError(f"{count} workers applied {finished}, not {events}")
                    rates[count].append(events / (max(end for end, _ in finished) - started))
                    if service.processor.pending_count() != 0:
                        raise AssertionError("events left pending")
        finally:
            service.close()
    return [
        WorkerResult(count, statistics.median(values), min(values), max(values))
        for count, values in rates.items()
    ]


def write_chart(results: Sequence[WorkerResult], path: Path) -> None:
    """A PNG of events/s against worker processes, with each count's range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.5), dpi=120)
    workers = [result.workers for result in results]
    rates = [result.rate for result in results]
    errors = [
        [result.rate - result.rate_low for result in results],
        [result.rate_high - result.rate for result in results],
    ]
    axes.errorbar(workers, rates, yerr=errors, marker="o", capsize=4, label="drain (median, range)")
    one = results[0].rate / results[0].workers
    axes.plot(workers, [one * count for count in workers], ls=":", c="grey", label="linear")
    axes.set_xticks(workers)
    axes.set_xlabel("drain worker processes (PostgreSQL, batches of 100)")
    axes.set_ylabel("events / s")
    axes.set_ylim(bottom=0)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> tuple[list[Result], list[WorkerResult]]:
    """Run the benchmark, print the figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", "--events", type=int, default=1000, help="events per round")
    parser.add_argument("-r", "--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres,mariadb")
    parser.add_argument("--workers", default="1,2,4", help="worker counts ('' to skip)")
    parser.add_argument("--worker-events", type=int, default=3000)
    parser.add_argument("--worker-rounds", type=int, default=3)
    parser.add_argument("--chart", type=Path, default=None, help="write the worker chart here")
    args = parser.parse_args(argv)
    if args.events < BATCH or args.events % BATCH or args.rounds < 1:
        parser.error(f"--events must be a positive multiple of {BATCH}, --rounds positive")
    print(
        f"{args.rounds} rounds of {args.events} events, alternating batches of {BATCH}; "
        "median rate, ratio to the floor: median (round range)"
    )
    results: list[Result] = []
    for database in filter(None, args.databases.split(",")):
        measured = measure(database, args.events, args.rounds)
        results.extend(measured)
        print(f"{database}: floor {measured[0].floor:,.0f} events/s")
        for result in measured:
            target = TARGETS.get((result.contender, database))
            wanted = f"target >= {target:.1f}x" if target is not None else ""
            print(
                f"  {result.contender:8s} {result.rate:8,.0f} events/s  {result.ratio:5.2f}x "
                f"({result.ratio_low:.2f}-{result.ratio_high:.2f})  {wanted}"
            )
        sys.stdout.flush()
    counts = [int(count) for count in args.workers.split(",") if count]
    worker_results: list[WorkerResult] = []
    if counts:
        worker_results = measure_workers(counts, args.worker_events, args.worker_rounds)
        print(
            f"drain workers on PostgreSQL, {args.worker_events} events, "
            f"{args.worker_rounds} rounds (median, range; speed-up over {counts[0]})"
        )
        for result in worker_results:
            print(
                f"  {result.workers} worker(s) {result.rate:8,.0f} events/s "
                f"({result.rate_low:,.0f}-{result.rate_high:,.0f})  "
                f"{result.rate / worker_results[0].rate:4.2f}x"
            )
        if args.chart is not None:
            write_chart(worker_results, args.chart)
            print(f"  chart: {args.chart}")
    return results, worker_results


if __name__ == "__main__":
    main()
