"""The webhook hot path's SQL, built once per dialect and reused by every unit of work.

A Core statement built afresh for each call costs SQLAlchemy a cache-key walk of the whole
expression (and a ``values()`` coercion per column) before its compiled-statement cache can
answer. The statements here are built once (lazily, on first use, per dialect) with their
parameters left as bind parameters, so each execution is a compiled-cache hit and only the
parameter values change. Semantics are exactly those of the statements they replace.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    Update,
    and_,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite

from billingkit.adapters.sqlalchemy._schema import CUSTOMERS, EVENTS, SUBSCRIPTIONS
from billingkit.domain import TERMINAL_STATUSES, EventStatus
from billingkit.ports import FETCHED_WATERMARK

__all__ = [
    "EVENT_COLUMNS",
    "RECLAIMABLE",
    "SUBSCRIPTION_COLUMNS",
    "TERMINAL",
    "HotStatements",
    "hot_statements",
]

#: Column names, in table order (rows for the INSERTs below are built with exactly these).
SUBSCRIPTION_COLUMNS: tuple[str, ...] = tuple(column.name for column in SUBSCRIPTIONS.c)
EVENT_COLUMNS: tuple[str, ...] = tuple(column.name for column in EVENTS.c)
#: Stored status values of the terminal subscription states.
TERMINAL: tuple[str, ...] = tuple(sorted(status.value for status in TERMINAL_STATUSES))
#: Ledger statuses a delivery may claim again.
RECLAIMABLE: tuple[str, ...] = (EventStatus.FAILED.value, EventStatus.PENDING.value)

_ROWCOUNT = {"preserve_rowcount": True}


def _fixed(values: tuple[str, ...]) -> list[ColumnElement[str]]:
    """Constants for ``IN``: one plain bind each, so the SQL never needs re-rendering.

    (``in_()`` of plain values makes an "expanding" parameter, whose SQL SQLAlchemy
    re-renders on every execution.)
    """
    return [literal(value) for value in values]


@dataclass(frozen=True, slots=True)
class HotStatements:
    """Prebuilt statements for one dialect; parameters are named in each attribute's note.

    Attributes:
        claim: INSERT an event row (every column of :data:`EVENT_COLUMNS`), nothing on a
            duplicate id (PostgreSQL/SQLite ``ON CONFLICT DO NOTHING``; plain INSERT on
            MySQL, whose duplicate-key error the caller handles).
        reclaim: move event ``b_id`` from a reclaimable status to ``processing``.
        finish: set ``status`` and ``processed_at`` of event ``b_id``.
        get_subscription: the subscription row ``b_id``.
        subscription_state: status and watermark of subscription ``b_id``.
        customer_by_id: the customer row ``b_id``.
        save_subscription: keyed ``(allow_tie, incoming_is_terminal)``: INSERT a subscription
            row or, on its id, UPDATE it from the incoming values only if the stored
            watermark is older and not :data:`FETCHED_WATERMARK` (with ``allow_tie``: not newer)
            and, for a live incoming state, the stored state is not terminal;
            ``user_id``/``plan_key`` keep the stored value when the incoming one is NULL.
            PostgreSQL/SQLite only (empty on MySQL).
    """

    claim: Insert
    reclaim: Update
    finish: Update
    get_subscription: Select[Any]
    subscription_state: Select[Any]
    customer_by_id: Select[Any]
    save_subscription: dict[tuple[bool, bool], Insert]


@cache
def hot_statements(dialect: str) -> HotStatements:
    """The statements for ``dialect`` (``sqlite``, ``postgresql`` or ``mysql``), built once."""
    events, subs = EVENTS.c, SUBSCRIPTIONS.c
    claim: Insert
    upserts: dict[tuple[bool, bool], Insert] = {}
    if dialect == "mysql":
        claim = EVENTS.insert()
    else:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        claim = insert(EVENTS).on_conflict_do_nothing()
        for allow_tie in (False, True):
            for terminal in (False, True):
                upserts[allow_tie, terminal] = _upsert_subscription(insert, allow_tie, terminal)
    return HotStatements(
        claim=claim.execution_options(**_ROWCOUNT),
        reclaim=sql_update(EVENTS)
        .where(events.id == bindparam("b_id"), events.status.in_(_fixed(RECLAIMABLE)))
        .values(status=EventStatus.PROCESSING.value, attempts=events.attempts + 1),
        finish=sql_update(EVENTS).where(events.id == bindparam("b_id")),
        get_subscription=select(SUBSCRIPTIONS).where(subs.id == bindparam("b_id")),
        subscription_state=select(subs.status, subs.watermark).where(
            subs.id == bindparam("b_id")
        ),
        customer_by_id=select(CUSTOMERS).where(CUSTOMERS.c.customer_id == bindparam("b_id")),
        save_subscription=upserts,
    )


def _upsert_subscription(insert: Any, allow_tie: bool, terminal: bool) -> Insert:
    statement = insert(SUBSCRIPTIONS)
    incoming = statement.excluded
    stored = SUBSCRIPTIONS.c
    set_: dict[str, Any] = {name: incoming[name] for name in SUBSCRIPTION_COLUMNS if name != "id"}
    set_["user_id"] = func.coalesce(incoming.user_id, stored.user_id)
    set_["plan_key"] = func.coalesce(incoming.plan_key, stored.plan_key)
    newer: ColumnElement[bool] = (
        stored.watermark <= incoming.watermark
        if allow_tie
        else and_(stored.watermark < incoming.watermark, stored.watermark != FETCHED_WATERMARK)
    )
    if not terminal:
        newer = and_(newer, stored.status.not_in(_fixed(TERMINAL)))
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[stored.id], set_=set_, where=newer
    )
    return upsert.execution_options(**_ROWCOUNT)

