"""Reconcile: compare every subscription at Stripe with what is stored, and fix the drift.

Used by ``billingkit reconcile`` and ``billingkit backfill``, and callable without the
command::

    report = Reconciler(gateway, repository, catalog=billing.catalog).run()
    print(report.counts)

How it works:

* Stripe's subscriptions are listed (all statuses) 100 per page, lazily: n subscriptions
  cost ceil(n / 100) calls and only one page is in memory at a time.
* Each listed subscription is compared with the stored one and its drift classified
  (``Drift``): missing here; status, plan, period or cancel flag differ; other fields
  differ; unknown customer (no user to attach it to: ``backfill`` links them); gone at
  Stripe (stored, no longer listed: found one page's span of ``created`` seconds at a
  time, so no set of every id is held). Gone ones are reported, never deleted.
* A drift is fixed through the repository's conditional write, the ordering guard every
  state goes through. The listed state is given the watermark of the second the page was
  requested, minus ``DEFAULT_CLOCK_SKEW`` (Stripe's clock and ours may differ): a state
  stored from an event created before that is older than what Stripe just listed and is
  replaced; a state from a newer event (or a terminal one) is kept — never overwritten —
  and counted as ``kept``. An older event delivered after the reconcile is stale; a newer
  one wins, as always.
* Nothing is written when nothing drifted, and nothing at all on a dry run.
* After each page the position (the last subscription id) and the counts so far are saved
  in a ``CheckpointStore`` (the repository's ``billingkit_reconcile_checkpoints``
  table with ``RepositoryCheckpointStore``, or a file); ``resume=True`` starts after
  it. A finished run deletes its checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Protocol

from billingkit.domain import Subscription
from billingkit.domain.ordering import FETCHED_WATERMARK, SaveOutcome, decide_save
from billingkit.domain.reconcile import ReconcileCheckpoint
from billingkit.errors import ConfigurationError, ConflictError, GatewayNotFoundError
from billingkit.ports import (
    LIST_PAGE_SIZE,
    Clock,
    Repository,
    StripeGateway,
    UnitOfWork,
    system_clock,
)
from billingkit.services.apply import PlanResolver, link_customer

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "BackfillReport",
    "Checkpoint",
    "CheckpointStore",
    "Drift",
    "DriftFinding",
    "FileCheckpointStore",
    "LinkFinding",
    "MemoryCheckpointStore",
    "ReconcileReport",
    "Reconciler",
    "RepositoryCheckpointStore",
    "backfill",
    "pairs_from_metadata",
]

#: How far Stripe's clock may be ahead of ours: a listed state is ordered as if carried by an
#: event created this long before the page was requested.
DEFAULT_CLOCK_SKEW = timedelta(seconds=60)
#: Findings kept in a report (the counts cover everything; memory stays flat).
DEFAULT_KEPT_FINDINGS = 1000


class Drift(str, Enum):
    """How a stored subscription differs from Stripe's."""

    MISSING_HERE = "missing_here"  # at Stripe, not stored
    STATUS = "status"
    PLAN = "plan"  # price, plan or quantity
    PERIOD = "period"  # current period start or end
    CANCEL_FLAG = "cancel_flag"  # cancel_at_period_end or cancel_at
    OTHER = "other"  # trial, cancel/end dates, metadata
    UNKNOWN_CUSTOMER = "unknown_customer"  # at Stripe, its customer linked to no user
    GONE_AT_STRIPE = "gone_at_stripe"  # stored here, Stripe no longer has it

    def __str__(self) -> str:
        return self.value


#: What was done about a finding.
Action = str
FIXED: Action = "fixed"
WOULD_FIX: Action = "would_fix"  # dry run
KEPT: Action = "kept"  # the stored state is newer (or terminal): the guard kept it
REPORTED: Action = "reported"  # nothing to write (unknown customer, gone at Stripe)


@dataclass(frozen=True, slots=True)
class DriftFinding:
    """One drifted subscription and what was done about it."""

    subscription_id: str
    customer_id: str
    user_id: str | None
    drifts: tuple[Drift, ...]
    action: Action
    stored_status: str | None
    stripe_status: str | None

    def as_json(self) -> dict[str, object]:
        """Stable JSON keys."""
        return {
            "subscription": self.subscription_id,
            "customer": self.customer_id,
            "user": self.user_id,
            "drift": [str(d) for d in self.drifts],
            "action": self.action,
            "stored_status": self.stored_status,
            "stripe_status": self.stripe_status,
        }


@dataclass
class ReconcileReport:
    """What a run found and did (across resumed runs when resumed).

    ``counts`` has one entry per ``Drift`` and per action (``fixed``, ``would_fix``,
    ``kept``, ``reported``), plus ``listed`` and ``in_sync``. ``stripe_calls`` counts the
    list pages requested by this run; ``rows_written`` the subscription writes.
    """

    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[DriftFinding] = field(default_factory=list)
    stripe_calls: int = 0
    rows_written: int = 0
    resumed_from: str | None = None

    @property
    def drifted(self) -> int:
        """Subscriptions with any drift."""
        return sum(self.counts[a] for a in (FIXED, WOULD_FIX, KEPT, REPORTED))

    def as_json(self) -> dict[str, object]:
        """Stable JSON keys."""
        return {
            "dry_run": self.dry_run,
            "listed": self.counts["listed"],
            "in_sync": self.counts["in_sync"],
            "drift": {str(d): self.counts[str(d)] for d in Drift},
            "actions": {a: self.counts[a] for a in (FIXED, WOULD_FIX, KEPT, REPORTED)},
            "stripe_calls": self.stripe_calls,
            "rows_written": self.rows_written,
            "resumed_from": self.resumed_from,
            "findings": [f.as_json() for f in self.findings],
        }


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where an interrupted run stopped: the scope it ran on, the last id done, the counts."""

    scope: str
    starting_after: str
    counts: Mapping[str, int]


class CheckpointStore(Protocol):
    """Keeps at most one ``Checkpoint`` (the last run's)."""

    def load(self) -> Checkpoint | None:
        """The stored checkpoint, if any."""
        ...

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint."""
        ...

    def clear(self) -> None:
        """Forget the checkpoint (a run finished)."""
        ...


class MemoryCheckpointStore:
    """A ``CheckpointStore`` in memory (tests, or a run inside one process)."""

    def __init__(self) -> None:
        self.checkpoint: Checkpoint | None = None
        #: How many times a checkpoint was saved.
        self.saves = 0

    def load(self) -> Checkpoint | None:
        """The stored checkpoint, if any."""
        return self.checkpoint

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint."""
        self.checkpoint = checkpoint
        self.saves += 1

    def clear(self) -> None:
        """Forget the checkpoint."""
        self.checkpoint = None


class RepositoryCheckpointStore:
    """A ``CheckpointStore`` in the repository (``billingkit_reconcile_checkpoints``).

    Each save is its own small unit of work, after the page's own one committed. ``name``
    keeps runs apart (``reconcile`` for the command).
    """

    def __init__(
        self, repository: Repository, *, name: str = "reconcile", clock: Clock = system_clock
    ) -> None:
        self._repository = repository
        self.name = name
        self._clock = clock

    def load(self) -> Checkpoint | None:
        """The stored checkpoint of this name, if any."""
        with self._repository.unit_of_work() as uow:
            stored = uow.get_reconcile_checkpoint(self.name)
        if stored is None:
            return None
        return Checkpoint(stored.scope, stored.starting_after, dict(stored.counts))

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the stored checkpoint of this name."""
        value = ReconcileCheckpoint(
            name=self.name,
            scope=checkpoint.scope,
            starting_after=checkpoint.starting_after,
            counts=dict(checkpoint.counts),
            updated_at=self._clock(),
        )
        with self._repository.unit_of_work() as uow:
            uow.save_reconcile_checkpoint(value)

    def clear(self) -> None:
        """Delete the stored checkpoint of this name."""
        with self._repository.unit_of_work() as uow:
            uow.delete_reconcile_checkpoint(self.name)


class FileCheckpointStore:
    """A ``CheckpointStore`` in a small JSON file, replaced atomically on each save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Checkpoint | None:
        """The checkpoint in the file; a missing file is none, a broken one an error."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return Checkpoint(
                scope=str(raw["scope"]),
                starting_after=str(raw["starting_after"]),
                counts={str(k): int(v) for k, v in dict(raw["counts"]).items()},
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"the reconcile checkpoint {self.path} is unreadable ({exc}); delete it to "
                "start over"
            ) from None

    def save(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint (to a temporary file renamed over the old one)."""
        data = {
            "scope": checkpoint.scope,
            "starting_after": checkpoint.starting_after,
            "counts": dict(checkpoint.counts),
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".reconcile-")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, self.path)

    def clear(self) -> None:
        """Delete the file."""
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the run


def _classify(stored: Subscription, listed: Subscription, plan_key: str | None) -> list[Drift]:
    drifts: list[Drift] = []
    if stored.status != listed.status:
        drifts.append(Drift.STATUS)
    if (
        stored.price_id != listed.price_id
        or stored.quantity != listed.quantity
        or (plan_key is not None and stored.plan_key != plan_key)
    ):
        drifts.append(Drift.PLAN)
    if (
        stored.current_period_start != listed.current_period_start
        or stored.current_period_end != listed.current_period_end
    ):
        drifts.append(Drift.PERIOD)
    if (
        stored.cancel_at_period_end != listed.cancel_at_period_end
        or stored.cancel_at != listed.cancel_at
    ):
        drifts.append(Drift.CANCEL_FLAG)
    if not drifts and not stored.same_state(listed):
        drifts.append(Drift.OTHER)
    return drifts


class _GoneFinder:
    """Finds stored subscriptions Stripe no longer lists, one listed page's span at a time.

    Stripe lists newest ``created`` first, so once a page ends at second ``low`` every listed
    subscription created after ``low`` has been seen: the stored ones created in
    ``(low, previous low]`` that were not listed are gone. Only the ids listed at the
    boundary second are carried from page to page, so memory stays flat. After a resume the
    pages before it are not seen again: the first page's own first second is left out.
    """

    def __init__(self, customer_id: str | None, since: datetime | None, *, resumed: bool) -> None:
        self._customer_id = customer_id
        self._floor = None if since is None else since - timedelta(microseconds=1)
        self._boundary: datetime | None = None
        self._boundary_ids: set[str] = set()
        self._resumed = resumed
        self._started = False

    def after_page(
        self, uow: UnitOfWork, items: Sequence[Subscription], *, last: bool
    ) -> list[str]:
        """Ids decided gone once ``items`` (a page, newest first) were listed."""
        gone: list[str] = []
        if items:
            low = min(sub.created for sub in items)
            if not self._started and self._resumed:
                # The second this page starts at may have been listed before the resume.
                first = max(sub.created for sub in items)
                self._boundary = first - timedelta(microseconds=1)
                self._boundary_ids = set()
            self._started = True
            if self._boundary is None or low < self._boundary:
                listed = self._boundary_ids | {sub.id for sub in items if sub.created > low}
                gone += self._unlisted(uow, low, self._boundary, listed)
                self._boundary = low
                self._boundary_ids = set()
            self._boundary_ids.update(sub.id for sub in items if sub.created == low)
        if last:
            if not self._started and self._resumed:
                return gone  # nothing listed after the resume point: nothing to decide
            gone += self._unlisted(uow, self._floor, self._boundary, self._boundary_ids)
        return gone

    def _unlisted(
        self,
        uow: UnitOfWork,
        newer_than: datetime | None,
        at_most: datetime | None,
        listed: set[str],
    ) -> list[str]:
        # Stripe lists only what was created at or after ``since``, so every page's span
        # is already above the floor; the last span starts at the floor itself.
        stored = uow.subscription_ids_created_between(
            newer_than=newer_than, at_most=at_most, customer_id=self._customer_id
        )
        return [sub_id for sub_id in stored if sub_id not in listed]


class Reconciler:
    """Compares Stripe's subscriptions with the stored ones and fixes the drift.

    Args:
        gateway: lists subscriptions (one call per 100).
        repository: where the subscriptions are stored.
        catalog: resolves a price to its plan key (``PlanCatalog``).
        clock: the current time (aware); the listed states' order is derived from it.
        clock_skew: see ``DEFAULT_CLOCK_SKEW``.
        checkpoints: where to keep the position of a run (``None``: not resumable).
        kept_findings: at most this many findings are kept in the report.
    """

    def __init__(
        self,
        gateway: StripeGateway,
        repository: Repository,
        *,
        catalog: PlanResolver,
        clock: Clock = system_clock,
        clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
        checkpoints: CheckpointStore | None = None,
        kept_findings: int = DEFAULT_KEPT_FINDINGS,
    ) -> None:
        if clock_skew < timedelta(0):
            raise ConfigurationError("clock_skew must not be negative")
        self._gateway = gateway
        self._repository = repository
        self._catalog = catalog
        self._clock = clock
        self._skew = int(clock_skew.total_seconds())
        self._checkpoints = checkpoints
        self._kept_findings = kept_findings

    def run(
        self,
        *,
        dry_run: bool = False,
        user_id: str | None = None,
        customer_id: str | None = None,
        since: datetime | None = None,
        resume: bool = False,
        on_subscription: Callable[[], None] | None = None,
    ) -> ReconcileReport:
        """Reconcile every subscription (or one user's, or one customer's, or those since).

        ``user_id`` restricts the run to the user's linked customer (nothing to do when the
        user has none).
        ``since`` (aware) keeps subscriptions created at or after it. ``resume`` continues
        after the checkpoint of an interrupted run with the same scope.
        ``on_subscription`` is called once per listed subscription (a progress bar).
        A ``GatewayError`` stops the run where it is; the
        checkpoint then holds the last complete page.
        """
        if since is not None and since.tzinfo is None:
            raise ConfigurationError("since must be a timezone-aware datetime")
        report = ReconcileReport(dry_run=dry_run)
        if user_id is not None:
            with self._repository.unit_of_work() as uow:
                link = uow.customer_for_user(user_id)
            if link is None:
                return report
            customer_id = link.customer_id
        scope = json.dumps(
            [customer_id, None if since is None else since.isoformat()], separators=(",", ":")
        )
        starting_after = self._resume_point(scope, report) if resume else None
        gone = _GoneFinder(customer_id, since, resumed=starting_after is not None)
        pages = self._gateway.list_subscriptions(
            customer_id=customer_id,
            created_gte=since,
            starting_after=starting_after,
            page_size=LIST_PAGE_SIZE,
        )
        while True:
            requested_at = self._clock()
            report.stripe_calls += 1
            page = next(pages, None)
            if page is None:  # pragma: no cover - a list always has a first page
                report.stripe_calls -= 1
                break
            watermark = max(int(requested_at.timestamp()) - self._skew, FETCHED_WATERMARK + 1)
            last = page.next_cursor is None
            with self._repository.unit_of_work() as uow:
                self._reconcile_page(uow, page.items, watermark, report, dry_run, on_subscription)
                for gone_id in gone.after_page(uow, page.items, last=last):
                    self._report_gone(uow, gone_id, report)
            if last:
                break
            if self._checkpoints is not None and not dry_run:
                assert page.next_cursor is not None
                self._checkpoints.save(Checkpoint(scope, page.next_cursor, dict(report.counts)))
        if self._checkpoints is not None and not dry_run:
            self._checkpoints.clear()
        return report

    def _resume_point(self, scope: str, report: ReconcileReport) -> str | None:
        checkpoint = self._checkpoints.load() if self._checkpoints is not None else None
        if checkpoint is None:
            return None
        if checkpoint.scope != scope:
            raise ConfigurationError(
                "the checkpoint is of a run with other options (--user/--since); run with "
                "the same options to resume, or without --resume to start over"
            )
        report.counts.update(checkpoint.counts)
        report.resumed_from = checkpoint.starting_after
        return checkpoint.starting_after

    def _reconcile_page(
        self,
        uow: UnitOfWork,
        items: Iterable[Subscription],
        watermark: int,
        report: ReconcileReport,
        dry_run: bool,
        on_subscription: Callable[[], None] | None,
    ) -> None:
        for listed in items:
            report.counts["listed"] += 1
            self._reconcile_one(uow, listed, watermark, report, dry_run)
            if on_subscription is not None:
                on_subscription()

    def _reconcile_one(
        self,
        uow: UnitOfWork,
        listed: Subscription,
        watermark: int,
        report: ReconcileReport,
        dry_run: bool,
    ) -> None:
        stored = uow.get_subscription(listed.id)
        plan_key = None
        if listed.price_id is not None:
            plan_key = self._catalog.plan_key_for_price(listed.price_id)
        user_id = listed.user_id or (stored.user_id if stored is not None else None)
        if user_id is None:
            link = uow.customer_by_id(listed.customer_id)
            user_id = link.user_id if link is not None else None
        if stored is None:
            drifts = [Drift.MISSING_HERE] if user_id is not None else [Drift.UNKNOWN_CUSTOMER]
        else:
            drifts = _classify(stored, listed, plan_key)
        if not drifts:
            report.counts["in_sync"] += 1
            return
        if user_id is None and stored is None:
            action = REPORTED
        else:
            incoming = listed.model_copy(
                update={
                    "user_id": user_id,
                    "plan_key": plan_key or (stored.plan_key if stored is not None else None),
                    "watermark": watermark,
                }
            )
            action = self._fix(uow, stored, incoming, report, dry_run)
        for drift in drifts:
            report.counts[str(drift)] += 1
        self._record(
            report,
            DriftFinding(
                subscription_id=listed.id,
                customer_id=listed.customer_id,
                user_id=user_id,
                drifts=tuple(drifts),
                action=action,
                stored_status=None if stored is None else stored.status.value,
                stripe_status=listed.status.value,
            ),
        )

    def _fix(
        self,
        uow: UnitOfWork,
        stored: Subscription | None,
        incoming: Subscription,
        report: ReconcileReport,
        dry_run: bool,
    ) -> Action:
        """Write ``incoming`` through the conditional write (predicted on a dry run)."""
        # A stored fetched state ("order unknown") counts as older than Stripe's listing.
        allow_tie = stored is not None and stored.watermark == FETCHED_WATERMARK
        if dry_run:
            if stored is None:
                return WOULD_FIX
            outcome = decide_save(stored.status, stored.watermark, incoming, allow_tie)
            return WOULD_FIX if outcome is SaveOutcome.WRITTEN else KEPT
        outcome = uow.save_subscription(incoming, allow_tie=allow_tie)
        if outcome is SaveOutcome.WRITTEN:
            report.rows_written += 1
            return FIXED
        return KEPT

    def _report_gone(self, uow: UnitOfWork, subscription_id: str, report: ReconcileReport) -> None:
        stored = uow.get_subscription(subscription_id)
        if stored is None:  # pragma: no cover - listed by the same unit of work
            return
        report.counts[str(Drift.GONE_AT_STRIPE)] += 1
        self._record(
            report,
            DriftFinding(
                subscription_id=stored.id,
                customer_id=stored.customer_id,
                user_id=stored.user_id,
                drifts=(Drift.GONE_AT_STRIPE,),
                action=REPORTED,
                stored_status=stored.status.value,
                stripe_status=None,
            ),
        )

    def _record(self, report: ReconcileReport, finding: DriftFinding) -> None:
        report.counts[finding.action] += 1
        if len(report.findings) < self._kept_findings:
            report.findings.append(finding)


# --------------------------------------------------------------------------- backfill


@dataclass(frozen=True, slots=True)
class LinkFinding:
    """One proposed user <-> customer link and what became of it.

    ``outcome`` is ``linked`` (written), ``would_link`` (dry run), ``already_linked`` (the
    same pair is stored) or ``conflict`` (``reason`` says with what; nothing written).
    """

    user_id: str
    customer_id: str
    outcome: str
    reason: str | None = None

    def as_json(self) -> dict[str, object]:
        """Stable JSON keys."""
        return {
            "user": self.user_id,
            "customer": self.customer_id,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class BackfillReport:
    """The links found, their outcomes, and the reconcile of the linked subscriptions."""

    apply: bool
    links: list[LinkFinding] = field(default_factory=list)
    reconcile: ReconcileReport | None = None

    def count(self, outcome: str) -> int:
        """How many links ended with ``outcome``."""
        return sum(1 for link in self.links if link.outcome == outcome)

    @property
    def conflicts(self) -> list[LinkFinding]:
        """The refused links."""
        return [link for link in self.links if link.outcome == "conflict"]

    def as_json(self) -> dict[str, object]:
        """Stable JSON keys."""
        return {
            "apply": self.apply,
            "counts": {
                outcome: self.count(outcome)
                for outcome in ("linked", "would_link", "already_linked", "conflict")
            },
            "links": [link.as_json() for link in self.links],
            "reconcile": None if self.reconcile is None else self.reconcile.as_json(),
        }


def pairs_from_metadata(gateway: StripeGateway, key: str) -> Iterable[tuple[str, str]]:
    """``(user_id, customer_id)`` for every customer whose metadata has ``key`` (paged)."""
    if not key:
        raise ConfigurationError("the metadata key must not be empty")
    for page in gateway.list_customers():
        for customer in page.items:
            user_id = customer.metadata.get(key, "").strip()
            if user_id:
                yield user_id, customer.id


def backfill(
    pairs: Iterable[tuple[str, str]],
    *,
    gateway: StripeGateway,
    repository: Repository,
    reconciler: Reconciler,
    apply: bool = False,
    check_customers: bool = False,
) -> BackfillReport:
    """Link existing Stripe customers to the app's users, then reconcile their subscriptions.

    ``pairs`` are ``(user_id, customer_id)`` (from ``pairs_from_metadata`` or a CSV
    map). A link is refused, with the reason, when the user or the customer is already
    linked to someone else, or appears twice with different partners in ``pairs``;
    ``check_customers`` first retrieves each customer (one call each) and refuses unknown
    or deleted ones. Nothing is written unless ``apply``; then the links are stored and one
    reconcile stores the subscriptions of every customer (ceil(n/100) calls). A dry run
    still reports what the reconcile would do.
    """
    report = BackfillReport(apply=apply)
    by_user: dict[str, str] = {}
    by_customer: dict[str, str] = {}
    proposed: list[tuple[str, str]] = []
    for user_id, customer_id in pairs:
        if by_user.get(user_id, customer_id) != customer_id:
            reason = f"user also mapped to {by_user[user_id]}"
        elif by_customer.get(customer_id, user_id) != user_id:
            reason = f"customer also mapped to user {by_customer[customer_id]}"
        else:
            reason = None
        if reason is not None:
            report.links.append(LinkFinding(user_id, customer_id, "conflict", reason))
            continue
        if by_user.get(user_id) == customer_id:
            continue  # the same pair twice
        by_user[user_id] = customer_id
        by_customer[customer_id] = user_id
        proposed.append((user_id, customer_id))
    for user_id, customer_id in proposed:
        report.links.append(
            _link(repository, gateway, user_id, customer_id, apply, check_customers)
        )
    if report.count("linked") or report.count("would_link") or report.count("already_linked"):
        report.reconcile = reconciler.run(dry_run=not apply)
    return report


def _link(
    repository: Repository,
    gateway: StripeGateway,
    user_id: str,
    customer_id: str,
    apply: bool,
    check_customers: bool,
) -> LinkFinding:
    if check_customers:
        try:
            customer = gateway.retrieve_customer(customer_id)
        except GatewayNotFoundError:
            return LinkFinding(user_id, customer_id, "conflict", "no such customer at Stripe")
        if customer.deleted:
            return LinkFinding(user_id, customer_id, "conflict", "the customer is deleted")
    with repository.unit_of_work() as uow:
        by_customer = uow.customer_by_id(customer_id)
        by_user = uow.customer_for_user(user_id)
        if by_customer is not None and by_customer.user_id == user_id:
            return LinkFinding(user_id, customer_id, "already_linked")
        if by_customer is not None:
            reason = f"customer already linked to user {by_customer.user_id}"
            return LinkFinding(user_id, customer_id, "conflict", reason)
        if by_user is not None:
            reason = f"user already linked to {by_user.customer_id}"
            return LinkFinding(user_id, customer_id, "conflict", reason)
        if not apply:
            return LinkFinding(user_id, customer_id, "would_link")
        try:
            link_customer(uow, user_id=user_id, customer_id=customer_id)
        except ConflictError as exc:  # pragma: no cover - a concurrent writer won the race
            return LinkFinding(user_id, customer_id, "conflict", str(exc))
    return LinkFinding(user_id, customer_id, "linked")
