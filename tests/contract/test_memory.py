"""The Repository contract on ``InMemoryRepository``, plus its own rules of use."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from tests.contract.repository_contract import RepositoryContract, make_subscription

from billingkit.adapters.memory import InMemoryRepository
from billingkit.ports import Repository


class TestInMemoryRepository(RepositoryContract):
    @pytest.fixture
    def repository(self) -> Iterator[Repository]:
        repo = InMemoryRepository()
        yield repo
        repo.close()


class TestInMemoryRulesOfUse:
    """Beyond the contract's rules of use (moved there): nesting is per repository; waiting."""

    def test_units_of_work_of_two_repositories_may_nest(self) -> None:
        first, second = InMemoryRepository(), InMemoryRepository()
        with first.unit_of_work() as a, second.unit_of_work() as b:
            a.save_subscription(make_subscription("sub_a"))
            b.save_subscription(make_subscription("sub_b"))
        with first.unit_of_work() as a, second.unit_of_work() as b:
            assert a.get_subscription("sub_b") is None
            assert b.get_subscription("sub_a") is None

    def test_a_second_thread_waits_for_the_open_unit_of_work(self) -> None:
        repo = InMemoryRepository()
        inside = threading.Event()
        seen: list[object] = []

        def reader() -> None:
            inside.wait(timeout=10)
            with repo.unit_of_work() as uow:
                seen.append(uow.get_subscription("sub_1"))

        thread = threading.Thread(target=reader)
        thread.start()
        with repo.unit_of_work() as uow:
            inside.set()
            thread.join(timeout=0.2)  # cannot finish: the lock is held
            assert thread.is_alive()
            uow.save_subscription(make_subscription())
        thread.join(timeout=10)
        assert seen == [make_subscription()]


def test_units_of_work_are_serializable_for_read_modify_write() -> None:
    """Each thread reads, yields the GIL, then writes: no update may be lost."""
    repo = InMemoryRepository()
    with repo.unit_of_work() as uow:
        uow.save_subscription(make_subscription(watermark=1, quantity=1))
    threads = 8
    barrier = threading.Barrier(threads)

    def increment() -> None:
        barrier.wait(timeout=30)
        with repo.unit_of_work() as uow:
            current = uow.get_subscription("sub_1")
            assert current is not None
            time.sleep(0.001)
            uow.save_subscription(
                current.model_copy(
                    update={"quantity": current.quantity + 1, "watermark": current.watermark + 1}
                )
            )

    pool = [threading.Thread(target=increment) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    with repo.unit_of_work() as uow:
        final = uow.get_subscription("sub_1")
    assert final is not None
    assert (final.quantity, final.watermark) == (1 + threads, 1 + threads)
