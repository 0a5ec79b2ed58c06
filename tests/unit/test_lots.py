"""The one FIFO lot module (detectors/lots.py): money taken oldest first
across lots and in part, an account spent out, amounts of 0 or less, the
window passing lots over, eviction and trimming by age with the allowed lateness, lots of
any layout, and old checkpoints' tables."""

from __future__ import annotations

import sys
from collections import deque

import pytest

from fundflow.detectors.lots import Fifo, restored

DAY = 86_400_000


def filled(fifo: Fifo, *lots: tuple) -> dict:
    table: dict = {}
    for lot in lots:
        fifo.add(table, "A", lot)
    return table


def test_money_is_taken_oldest_first_across_lots_the_last_in_part():
    fifo = Fifo()
    table = filled(fifo, (1, 300, "T1"), (2, 200, "T2"), (3, 500, "T3"))
    assert fifo.take(table, "A", 600, ts=5) == [(1, 300, "T1"), (2, 200, "T2"), (3, 100, "T3")]
    assert table == {"A": [(3, 400, "T3")]}
    assert fifo.take(table, "A", 150, ts=6) == [(3, 150, "T3")]
    assert table == {"A": [(3, 250, "T3")]}


def test_a_lot_taken_whole_is_the_lot_itself_and_leaves_the_list():
    fifo = Fifo()
    lot = (1, 300, "T1")
    table = filled(fifo, lot, (2, 200, "T2"))
    (taken,) = fifo.take(table, "A", 300, ts=5)
    assert taken is lot
    assert table == {"A": [(2, 200, "T2")]}


def test_an_account_spent_out_leaves_the_table():
    fifo = Fifo()
    table = filled(fifo, (1, 300, "T1"), (2, 200, "T2"))
    assert fifo.take(table, "A", 900, ts=5) == [(1, 300, "T1"), (2, 200, "T2")]
    assert table == {}
    assert fifo.take(table, "A", 100, ts=6) == []
    assert fifo.take(table, "B", 100, ts=6) == []


@pytest.mark.parametrize("amount", [0, -1, -500])
def test_an_amount_of_zero_or_less_takes_nothing(amount):
    fifo = Fifo()
    table = filled(fifo, (1, 300, "T1"))
    assert fifo.take(table, "A", amount, ts=5) == []
    assert table == {"A": [(1, 300, "T1")]}


def test_a_lot_older_than_the_window_is_passed_over_not_dropped():
    fifo = Fifo(window_ms=10 * DAY, lateness_ms=3 * DAY)
    table = filled(fifo, (0, 300, "OLD"), (5 * DAY, 200, "NEW"))
    # A record on day 11: OLD came in 11 days before it, NEW 6.
    assert fifo.take(table, "A", 250, ts=11 * DAY) == [(5 * DAY, 200, "NEW")]
    assert table == {"A": [(0, 300, "OLD")]}
    # A record two days late, dated day 9, still takes OLD: exactly as in order.
    assert fifo.take(table, "A", 300, ts=9 * DAY) == [(0, 300, "OLD")]
    assert table == {}


def test_the_window_edge_is_inclusive():
    fifo = Fifo(window_ms=10 * DAY)
    table = filled(fifo, (0, 300, "T1"))
    assert fifo.take(table, "A", 300, ts=10 * DAY + 1) == []
    assert fifo.take(table, "A", 300, ts=10 * DAY) == [(0, 300, "T1")]


def test_eviction_keeps_a_lot_while_a_record_within_the_lateness_can_take_it():
    fifo = Fifo(window_ms=10 * DAY, lateness_ms=3 * DAY)
    table = filled(fifo, (5 * DAY, 200, "YOUNG"), (0, 300, "OLD"))  # out of time order
    table["B"] = [(DAY, 100, "B1")]
    assert fifo.evict(table, clock=13 * DAY) == 3  # a record dated day 10 could take OLD
    assert fifo.evict(table, clock=13 * DAY + 1) == 2
    assert table == {"A": [(5 * DAY, 200, "YOUNG")], "B": [(DAY, 100, "B1")]}
    assert fifo.evict(table, clock=14 * DAY + 1) == 1
    assert table == {"A": [(5 * DAY, 200, "YOUNG")]}
    assert fifo.evict(table, clock=30 * DAY) == 0
    assert table == {}


def test_trimming_drops_from_the_front_up_to_a_lot_that_must_stay():
    fifo = Fifo(window_ms=10 * DAY, lateness_ms=3 * DAY)
    table = filled(
        fifo, (0, 300, "OLD"), (DAY, 100, "OLD2"), (5 * DAY, 200, "YOUNG"), (0, 50, "BEHIND")
    )
    table["B"] = [(DAY, 100, "B1")]
    table["C"] = [(6 * DAY, 100, "C1")]
    fifo.trim(table, clock=13 * DAY)  # day 0 is still within the lateness
    assert [lot[2] for lot in table["A"]] == ["OLD", "OLD2", "YOUNG", "BEHIND"]
    fifo.trim(table, clock=14 * DAY + 1)
    assert table == {
        "A": [(5 * DAY, 200, "YOUNG"), (0, 50, "BEHIND")],  # BEHIND waits for YOUNG
        "C": [(6 * DAY, 100, "C1")],
    }
    # Meanwhile every take passes BEHIND over, as it would if it were gone.
    assert fifo.take(table, "A", 250, ts=14 * DAY) == [(5 * DAY, 200, "YOUNG")]
    assert table["A"] == [(0, 50, "BEHIND")]
    fifo.trim(table, clock=14 * DAY + 1)
    assert table == {"C": [(6 * DAY, 100, "C1")]}
    fifo.trim(table, clock=30 * DAY)
    assert table == {}
    forever = Fifo()
    table = filled(forever, (0, 1, "T"))
    forever.trim(table, clock=10_000 * DAY)
    assert table == {"A": [(0, 1, "T")]}  # without a window nothing is dropped


def test_eviction_by_each_lots_own_subject_clock():
    fifo = Fifo(window_ms=10 * DAY, ts_at=1, fen_at=2)
    table = filled(fifo, ("P", 0, 300), ("Q", 0, 300))
    clocks = {"P": 11 * DAY, "Q": 9 * DAY}
    assert fifo.evict(table, lambda lot: clocks[lot[0]]) == 1
    assert table == {"A": [("Q", 0, 300)]}


def test_without_a_window_lots_stay_until_spent():
    fifo = Fifo()
    table = filled(fifo, (0, 300, "T1"))
    assert fifo.evict(table, clock=10_000 * DAY) == 1
    assert fifo.take(table, "A", 300, ts=10_000 * DAY) == [(0, 300, "T1")]


def test_any_layout_names_where_the_time_and_the_fen_are():
    fifo = Fifo(window_ms=10 * DAY, ts_at=2, fen_at=3)
    table = filled(fifo, ("P", "LN1", 0, 6000, 0, ("L1",)), ("P", "LN1", DAY, 4000, 0, ("L2",)))
    assert fifo.take(table, "A", 7000, ts=2 * DAY) == [
        ("P", "LN1", 0, 6000, 0, ("L1",)),
        ("P", "LN1", DAY, 1000, 0, ("L2",)),
    ]
    assert table == {"A": [("P", "LN1", DAY, 3000, 0, ("L2",))]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_ms": -1}, "window_ms must be >= 0 or None, got -1"),
        ({"lateness_ms": -1}, "lateness_ms must be >= 0, got -1"),
        ({"ts_at": 1, "fen_at": 1}, "ts_at and fen_at must be two positions, got 1, 1"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Fifo(**kwargs)


def test_memory_held_is_the_lots_left_as_tuples_in_plain_lists():
    fifo = Fifo()
    table = filled(fifo, *[(i, 100, f"T{i}") for i in range(10)])
    fifo.take(table, "A", 750, ts=20)
    held = table["A"]
    assert type(held) is list and all(type(lot) is tuple for lot in held)
    assert [lot[1] for lot in held] == [50, 100, 100]
    # A three-field lot costs a 64-byte tuple, not a list's 88 or more.
    assert sys.getsizeof(held[0]) == sys.getsizeof((0, 0, ""))
    assert sys.getsizeof(held[0]) < sys.getsizeof([0, 0, ""])


def test_a_table_from_an_old_checkpoint_is_lists_of_tuples():
    old = {"A": deque([[1, 300, "T1"], [2, 200, "T2"]])}
    table = restored(old)
    assert table == {"A": [(1, 300, "T1"), (2, 200, "T2")]}
    assert Fifo().take(table, "A", 400, ts=5) == [(1, 300, "T1"), (2, 100, "T2")]


def _run(ops: list, window, deque_at: int, monkeypatch) -> tuple[list, dict]:
    from fundflow.detectors import lots

    monkeypatch.setattr(lots, "DEQUE_AT", deque_at)
    fifo = Fifo(window_ms=window, lateness_ms=5)
    table: dict = {}
    out = []
    for op in ops:
        if op[0] == "add":
            fifo.add(table, op[1], op[2])
        elif op[0] == "take":
            out.append(fifo.take(table, op[1], op[2], op[3]))
        elif op[0] == "trim":
            fifo.trim(table, op[1])
        else:
            out.append(fifo.evict(table, op[1]))
    return out, {a: list(held) for a, held in table.items()}


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("window", [None, 40])
def test_an_account_of_many_lots_holds_them_in_a_deque_and_takes_the_same(
    seed, window, monkeypatch
):
    """Random adds, takes (some passing lots over), trims and evictions on
    accounts that grow past DEQUE_AT lots give what plain lists give."""
    import random

    rng = random.Random(seed)
    ops, t = [], 0
    for _ in range(3000):
        t += rng.randint(0, 2)
        account = rng.choice("AB")
        r = rng.random()
        if r < 0.6:
            ops.append(("add", account, (t - rng.randint(0, 30), rng.randint(1, 500), f"T{t}")))
        elif r < 0.95:
            ops.append(("take", account, rng.randint(-5, 900), t - rng.randint(0, 10)))
        elif r < 0.98:
            ops.append(("trim", t))
        else:
            ops.append(("evict", t))
    as_lists = _run(ops, window, 10**9, monkeypatch)
    with_deques = _run(ops, window, 8, monkeypatch)
    assert with_deques == as_lists
    assert sum(len(v) for v in as_lists[1].values()) > 0


def test_a_deque_from_the_threshold_and_back_to_lists_from_a_checkpoint():
    from fundflow.detectors.lots import DEQUE_AT

    fifo = Fifo()
    table = filled(fifo, *[(i, 1, f"T{i}") for i in range(DEQUE_AT - 1)])
    assert type(table["A"]) is list
    fifo.add(table, "A", (99, 1, "T99"))
    assert type(table["A"]) is deque and len(table["A"]) == DEQUE_AT
    assert fifo.take(table, "A", 2, ts=100) == [(0, 1, "T0"), (1, 1, "T1")]
    again = restored({"A": table["A"], "B": [[1, 2, "x"]]})
    assert type(again["A"]) is list and again["B"] == [(1, 2, "x")]
    assert list(again["A"]) == list(table["A"])
