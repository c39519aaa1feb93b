"""``UnitOfWorkBase``: the lifecycle every adapter inherits, and the ledger storage rule.

The lifecycle is driven through ``InMemoryRepository``'s unit of work with its hooks
wrapped, so a hook can be made to fail and the order of the calls is visible.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.contract.repository_contract import make_subscription

from billingkit import UnitOfWorkBase
from billingkit.adapters.memory import InMemoryRepository, _InMemoryUnitOfWork
from billingkit.errors import RepositoryError


class _Failure(Exception):
    """What a failing hook raises."""


class _BlockError(Exception):
    """What the with block raises."""


class _Recording(_InMemoryUnitOfWork):
    """The in-memory unit of work, recording its hook calls and failing where told."""

    def __init__(self, repository: InMemoryRepository, calls: list[str], fail: str = "") -> None:
        super().__init__(repository)
        self.calls = calls
        self.fail = fail

    def _hook(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail:
            raise _Failure(name)

    def _begin(self) -> None:
        if self.fail != "_begin":
            super()._begin()
        self._hook("_begin")

    def _commit(self) -> None:
        self._hook("_commit")
        super()._commit()

    def _rollback(self) -> None:
        super()._rollback()
        self._hook("_rollback")

    def _release(self) -> None:
        super()._release()
        self._hook("_release")


def _saved(repository: InMemoryRepository) -> bool:
    with repository.unit_of_work() as uow:
        return uow.get_subscription("sub_1") is not None


def test_a_normal_exit_commits_then_releases() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    with _Recording(repository, calls) as uow:
        uow.save_subscription(make_subscription())
    assert calls == ["_begin", "_commit", "_release"]
    assert _saved(repository)


def test_an_exception_rolls_back_then_releases() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    with pytest.raises(_BlockError), _Recording(repository, calls) as uow:
        uow.save_subscription(make_subscription())
        raise _BlockError
    assert calls == ["_begin", "_rollback", "_release"]
    assert not _saved(repository)


def test_a_failing_rollback_does_not_hide_the_blocks_exception() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    with pytest.raises(_BlockError), _Recording(repository, calls, fail="_rollback"):
        raise _BlockError
    assert calls == ["_begin", "_rollback", "_release"]
    with repository.unit_of_work() as uow:  # released: the repository is usable again
        uow.save_subscription(make_subscription())
    assert _saved(repository)


def test_a_failing_commit_raises_and_still_releases() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    unit = _Recording(repository, calls, fail="_commit")
    with pytest.raises(_Failure), unit:
        pass
    assert calls == ["_begin", "_commit", "_release"]
    with pytest.raises(RepositoryError, match="after"):
        unit.get_subscription("sub_1")
    with repository.unit_of_work() as uow:  # neither nested nor locked
        assert uow.get_subscription("sub_1") is None


def test_a_failing_begin_leaves_nothing_held() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    unit = _Recording(repository, calls, fail="_begin")
    with pytest.raises(_Failure), unit:
        pass
    assert calls == ["_begin"]  # nothing to commit, roll back or release
    with pytest.raises(RepositoryError, match="before"):
        unit.get_subscription("sub_1")
    with repository.unit_of_work() as uow:  # this thread holds no unit of work
        uow.save_subscription(make_subscription())
    assert _saved(repository)


def test_a_refused_nested_unit_of_work_never_begins() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    with repository.unit_of_work(), pytest.raises(RepositoryError, match="nested"):
        _Recording(repository, calls).__enter__()
    assert calls == []


def test_nesting_is_tracked_per_thread() -> None:
    repository, calls = InMemoryRepository(), list[str]()
    raised: list[BaseException] = []

    def other_thread() -> None:
        # fail="_begin" skips the lock: what matters is whether _begin is reached at all
        try:
            with _Recording(repository, calls, fail="_begin"):
                pass
        except BaseException as exc:
            raised.append(exc)

    with repository.unit_of_work():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
    # not refused as nested: this repository's unit of work is held by another thread
    assert calls == ["_begin"]
    assert len(raised) == 1 and isinstance(raised[0], _Failure)


# --------------------------------------------------------------------------- storage rule

_MAX = UnitOfWorkBase.MAX_ID_CHARS


def _is_storable(value: str) -> bool:
    return "\x00" not in value and not any("\ud800" <= char <= "\udfff" for char in value)


#: Any code point, lone surrogates included, with NUL and a surrogate drawn often.
_ANY_CHARACTER = st.one_of(
    st.characters(exclude_categories=()), st.sampled_from(["\x00", "\udc80", "a"])
)


@given(st.text(alphabet=_ANY_CHARACTER, max_size=600))
def test_every_id_gets_a_storable_key_and_storable_ids_are_their_own(value: str) -> None:
    key = UnitOfWorkBase._storable_id(value)
    assert len(key) <= _MAX and _is_storable(key)
    assert UnitOfWorkBase._storable_id(key) == key  # a key is found again by itself
    if len(value) <= _MAX and _is_storable(value):
        assert key == value


@given(st.text(alphabet=_ANY_CHARACTER, max_size=400), st.text(min_size=1, max_size=10))
def test_distinct_unstorable_ids_get_distinct_keys(prefix: str, tail: str) -> None:
    base = "evt_" + "a" * 300 + prefix
    assert UnitOfWorkBase._storable_id(base) != UnitOfWorkBase._storable_id(base + tail)


def test_storable_text_replaces_and_cuts() -> None:
    assert UnitOfWorkBase._storable_text("a\x00b\ud800c", 10) == "a\ufffdb\ufffdc"
    assert UnitOfWorkBase._storable_text("\u00e9" * 20, 5) == "\u00e9" * 5
    ordinary = "ordinary text\t\u00e9"
    assert UnitOfWorkBase._storable_text(ordinary, 100) is ordinary
