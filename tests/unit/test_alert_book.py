"""The alert book itself (``detectors.alerting.AlertBook``, the compiled
core's ``core/src/book.rs``), through its Python API: when a finding is
stated again, the order waiting offers settle in, what a checkpoint keeps,
a failed statement, refusals, and the cycle collector."""

from __future__ import annotations

import gc
import sys
import weakref
from zoneinfo import ZoneInfo

import pytest

from fundflow.detectors.alerting import NO_END, AlertBook, AlertConfig, Stated, _Said

ZONE = ZoneInfo("Asia/Shanghai")


def book(growth: int = 10, thresholds: dict | None = None) -> AlertBook:
    return AlertBook("fund_pool", "1.0", ZONE, AlertConfig(reemit_growth_pct=growth,
                                                           sample_txns=5), thresholds)  # fmt: skip


def built(tag: str):
    return lambda: ([f"acct-{tag}"], f"summary {tag}", {"tag": tag})


def stated(b: AlertBook) -> list[tuple]:
    return [(a.alert_id, a.subject_id, a.revision, a.severity, a.amount, a.evidence["tag"])
            for a in b.drain()]  # fmt: skip


def test_an_alert_is_stated_when_new_grown_or_worse_and_never_steps_down():
    b = book(thresholds={"min_amount": "1.00"})
    assert b.offer("A", "P", "high", 100_00, 0, 1_000, built("1"))
    (first,) = b.out
    assert (first.detector, first.detector_version, first.accounts) == ("fund_pool", "1.0",
                                                                       ("acct-1",))  # fmt: skip
    assert (first.first_ts, first.last_ts) == ("1970-01-01T08:00:00+08:00",
                                               "1970-01-01T08:00:01+08:00")  # fmt: skip
    assert first.evidence == {"tag": "1", "thresholds": {"min_amount": "1.00"}}
    # 109.99 yuan is under 10 % more; 110.00 is 10 % more, stated, still high.
    assert not b.offer("A", "P", "low", 109_99, 0, 2_000, built("2"))
    assert b.offer("A", "P", "low", 110_00, 0, 3_000, built("3"))
    # The same amount in a higher band: stated.
    assert b.offer("A", "P", "critical", 110_00, 0, 3_000, built("4"))
    # The same figures again: nothing, nothing waiting.
    assert not b.offer("A", "P", "critical", 110_00, 0, 3_000, built("5"))
    assert stated(b) == [
        ("A", "P", 1, "high", "100.00", "1"),
        ("A", "P", 2, "high", "110.00", "3"),
        ("A", "P", 3, "critical", "110.00", "4"),
    ]
    assert b.waiting_len() == 0 and b.growth_pct == 10


def test_waiting_offers_settle_by_subject_clock_in_offer_order_then_id_order():
    b = book()
    # Subjects in code-point order: "P" < "Q" < "账"; offers X then W on P.
    for aid, subject in (("Z", "账"), ("X", "P"), ("W", "P"), ("V", "Q")):
        b.offer(aid, subject, "low", 100, 0, 0, built(aid), ends=50)
        b.offer(aid, subject, "low", 101, 0, 10, built(aid + "'"), ends=50)
    b.drain()
    # X offered again keeps its place before W.
    b.offer("X", "P", "low", 102, 0, 20, built("X''"), ends=50)
    b.settle("P", 50)  # not after 50 yet
    assert b.out == []
    b.settle("P", 51)
    assert [(a.alert_id, a.amount) for a in b.drain()] == [("X", "1.02"), ("W", "1.01")]
    b.settle_due(51)
    assert [a.alert_id for a in b.drain()] == ["V", "Z"]
    assert b.waiting_len() == 0


def test_an_open_episode_waits_for_its_close_or_the_end():
    b = book()
    for aid in ("B", "A"):
        b.offer(aid, "P", "low", 100, 0, 0, built(aid))
        b.offer(aid, "P", "low", 102, 0, 1, built(aid + "2"))
    b.drain()
    b.settle("P", 2**62)
    b.settle_due(2**62)
    assert b.out == [] and b.waiting_len() == 2
    b.close("P", "A")
    b.close("P", "nothing waits under this id")
    b.settle_open()
    assert stated(b) == [("A", "P", 2, "low", "1.02", "A2"), ("B", "P", 2, "low", "1.02", "B2")]


def test_a_checkpoint_keeps_what_was_said_and_what_waits_in_their_order():
    b = book()
    for aid in ("K2", "K1", "K3"):
        b.offer(aid, "P", "medium", 100, 5, 6, built(aid))
    b.offer("K1", "P", "high", 100, 5, 7, built("K1 again"))  # stated: keeps its place
    b.offer("K3", "Q", "medium", 105, 5, 9, built("late"), ends=99)
    b.offer("K2", "P", "medium", 104, 5, 8, built("open"))
    said, waiting = b.said, b.waiting_state()
    assert list(said) == ["K2", "K1", "K3"]
    assert [s.__getstate__() for s in said.values()] == [
        (1, "medium", 100, 6), (2, "high", 100, 7), (1, "medium", 100, 6)]  # fmt: skip
    assert list(waiting) == ["Q", "P"]
    q = waiting["Q"]["K3"]
    assert q[:4] == ["medium", 105, 5, 9] and q[5] == 99 and isinstance(q[4], Stated)
    assert q[4]() == (["acct-late"], "summary late", {"tag": "late"})
    assert waiting["P"]["K2"][5] == NO_END
    back = book()
    back.said = {aid: _Said(*s.__getstate__()) for aid, s in said.items()}
    back.load_waiting(waiting)
    assert [s.__getstate__() for s in back.said.values()] == [s.__getstate__() for s in said.values()]  # fmt: skip
    b.drain()
    for x in (b, back):
        x.settle_due(100)
        x.settle_open()
    assert stated(back) == stated(b) == [("K3", "Q", 2, "medium", "1.05", "late"),
                                         ("K2", "P", 2, "medium", "1.04", "open")]  # fmt: skip


def test_a_statement_that_fails_changes_nothing():
    b = book()
    b.offer("A", "P", "low", 100, 0, 0, built("A"))
    b.offer("A", "P", "low", 101, 0, 1, built("A2"), ends=10)

    def broken():
        raise RuntimeError("evidence could not be built")

    with pytest.raises(RuntimeError, match="could not be built"):
        b.offer("A", "P", "high", 200, 0, 2, broken)
    assert [s.__getstate__() for s in b.said.values()] == [(1, "low", 100, 0)]
    assert b.waiting_len() == 1
    b.settle("P", 11)
    assert [(a.revision, a.amount) for a in b.drain()] == [(1, "1.00"), (2, "1.01")]


def test_unknown_severities_and_impossible_amounts_are_refused():
    b = book()
    with pytest.raises(KeyError, match="severe"):
        b.offer("A", "P", "severe", 1, 0, 0, built("A"))
    with pytest.raises(OverflowError, match="beyond"):
        b.offer("A", "P", "low", 10**31, 0, 0, built("A"))
    with pytest.raises(ValueError, match="6 figures"):
        b.load_waiting({"P": {"A": ["low", 1, 0, 0]}})
    assert b.out == [] and b.said == {} and b.waiting_len() == 0
    # Amounts beyond 64 bits (sums of many large payments) are exact.
    assert b.offer("A", "P", "low", 2**70, 0, 0, built("A"))
    assert not b.offer("A", "P", "low", 2**70 + 2**70 // 20, 0, 1, built("A2"))
    assert b.offer("A", "P", "low", -(-(2**70) * 11 // 10), 0, 1, built("A3"))


def test_a_detector_referred_to_by_its_waiting_builders_is_collected():
    class Detector:
        def evidence(self) -> tuple:
            return [], "figures", {}

    det = Detector()
    det.book = book()
    # The builders are the detector's bound methods: a cycle through the book.
    det.book.offer("A", "P", "low", 100, 0, 0, det.evidence)
    det.book.offer("A", "P", "low", 101, 0, 1, det.evidence, ends=5)
    assert det.book.waiting_len() == 1
    gone = weakref.ref(det)
    del det
    gc.collect()
    assert gone() is None


def test_its_size_counts_what_it_remembers():
    b = book()
    empty = sys.getsizeof(b)
    for n in range(1000):
        b.offer(f"alert-{n:06d}", f"P{n % 7}", "low", 100, 0, 0, built("x"))
    grown = sys.getsizeof(b)
    # At least an id's text and its figures for each id said.
    assert grown - empty > 1000 * (12 + 40), (empty, grown)
