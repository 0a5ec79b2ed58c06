"""``fundflow serve``'s store connections (:class:`StorePool`), on SQLite
files: opened before the first request, lent to one call at a time, a
503 when all stay busy, a failed one replaced, all closed at the end."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.serve.http import ApiError
from fundflow.serve.state import ServeSettings, ServeState, StorePool
from fundflow.store import AlertFilter, SQLiteSink, StoreError, StoreNotFoundError


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "alerts.db"
    SQLiteSink(path).close()
    return str(path)


def test_open_opens_every_connection_before_any_call(db: str) -> None:
    pool = StorePool(db, 3)
    assert pool.opened == 0
    pool.open()
    assert pool.opened == 3
    pool.open()  # already open: nothing more
    assert pool.opened == 3
    lent = []
    with pool.borrow() as a, pool.borrow() as b, pool.borrow() as c:
        lent = [a, b, c]
        assert len({id(s) for s in lent}) == 3
        assert pool.opened == 3
    with pool.borrow() as again:
        assert again is a  # returned last (the with blocks close inner first): lent first
    pool.close()
    assert pool.opened == 0


def test_a_pool_not_opened_grows_to_its_size(db: str) -> None:
    pool = StorePool(db, 2)
    with pool.borrow() as a:
        assert pool.opened == 1
        with pool.borrow() as b:
            assert a is not b and pool.opened == 2
    pool.close()


def test_all_busy_is_a_503_with_retry_after(db: str) -> None:
    pool = StorePool(db, 1, wait_s=0.2)
    with pool.borrow():
        started = time.monotonic()
        with pytest.raises(ApiError) as refused, pool.borrow():
            pass
        assert time.monotonic() - started >= 0.2
    assert (refused.value.status, refused.value.error) == (503, "store_busy")
    assert refused.value.detail == "all 1 store connections stayed busy for 0.2 s"
    assert refused.value.headers == {"Retry-After": "1"}
    with pool.borrow():  # free again
        pass
    pool.close()


def test_a_waiting_call_gets_the_connection_returned(db: str) -> None:
    pool = StorePool(db, 1, wait_s=5.0)
    got: list[object] = []
    with pool.borrow() as first:
        waiter = threading.Thread(target=lambda: got.append(pool._take()))
        waiter.start()
        time.sleep(0.1)
        assert got == []
    waiter.join(5)
    assert got == [first]
    pool._give_back(first, broken=False)
    pool.close()


def test_no_connection_is_used_by_two_calls_at_once(db: str) -> None:
    state = ServeState(ServeSettings(db=db, pool=2))
    state.open()
    in_use: set[int] = set()
    seen: set[int] = set()
    clashes: list[int] = []
    guard = threading.Lock()

    def work(store: object) -> int:
        with guard:
            if id(store) in in_use:
                clashes.append(id(store))
            in_use.add(id(store))
            seen.add(id(store))
        time.sleep(0.002)
        n = store.count()  # type: ignore[attr-defined]
        with guard:
            in_use.discard(id(store))
        return n

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.extend(state.call(work) for _ in range(25)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert (clashes, len(results), set(results)) == ([], 200, {0})
    assert len(seen) == 2 and state.pool.opened == 2
    state.close()


def test_a_connection_whose_call_failed_is_replaced(db: str) -> None:
    state = ServeState(ServeSettings(db=db, pool=1))
    state.open()
    with state.pool.borrow() as before:
        pass

    def fail(store: object) -> None:
        raise StoreError("cannot read alert store: connection lost")

    with pytest.raises(ApiError) as refused:
        state.call(fail)
    assert (refused.value.status, refused.value.error) == (503, "store_unavailable")
    assert state.pool.opened == 0
    with pytest.raises(Exception, match="closed"):
        before.count()
    assert state.call(lambda s: s.count()) == 0  # a fresh one
    assert state.pool.opened == 1
    # Refusals that are not the connection's fault keep it.
    with pytest.raises(ApiError) as bad:
        state.call(lambda s: s.page(AlertFilter(), order="sideways"))
    assert bad.value.status == 400 and state.pool.opened == 1
    state.close()


def test_a_missing_store_is_refused_and_nothing_is_left_open(tmp_path: Path) -> None:
    pool = StorePool(str(tmp_path / "none.db"), 4)
    with pytest.raises(StoreNotFoundError):
        pool.open()
    assert pool.opened == 0


def test_close_closes_idle_and_returned_connections(db: str) -> None:
    pool = StorePool(db, 2)
    pool.open()
    with pool.borrow() as lent:
        pool.close()
        assert pool.opened == 1
        assert lent.count() == 0  # still usable by its call
    assert pool.opened == 0
    with pytest.raises(Exception, match="closed"):
        lent.count()
    with pytest.raises(ApiError) as refused, pool.borrow():
        pass
    assert (refused.value.status, refused.value.detail) == (503, "the server is stopping")


@pytest.mark.parametrize("size", [0, 101, -1])
def test_pool_size_is_checked(db: str, size: int) -> None:
    with pytest.raises(ValueError, match=rf"^pool must be 1 to 100 connections, got {size}$"):
        ServeSettings(db=db, pool=size)


@pytest.mark.parametrize("size", ["0", "101", "x"])
def test_serve_refuses_a_bad_pool(db: str, size: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--db", db, "--pool", size])
    assert result.exit_code == 2
    assert "--pool" in result.output
