"""The ordering stage alone: per-feed release, the lateness bound, refusals,
releases across feeds, checkpoints; and the engine's ordered path."""

from __future__ import annotations

import pickle
from zoneinfo import ZoneInfo

from ledger import HOUR_MS, account, at, balance, custody, report

from fundflow.detectors import Engine, load_config
from fundflow.detectors.ordering import EventOrder, sort_key

L = 10


def filled(*pushes: tuple[str, int]) -> EventOrder:
    o = EventOrder(L)
    for feed, ts in pushes:
        assert o.push(feed, (ts, 0, f"{feed}{ts}"), f"{feed}{ts}")
    return o


def test_a_record_leaves_once_its_feed_is_more_than_the_lateness_past_it():
    o = filled(("P", 5), ("P", 15))
    assert o.ready("P") == []  # 15 - 5 is the lateness: not more
    assert o.push("P", (16, 0, "P16"), "P16")
    assert o.ready("P") == ["P5"]
    assert len(o) == 2


def test_late_records_of_a_feed_go_in_their_place():
    o = filled(("P", 1), ("P", 9), ("P", 4), ("P", 7))
    assert o.push("P", (30, 0, "P30"), "P30")  # moves the mark by at most L: to 19
    assert o.ready("P") == ["P1", "P4", "P7"]
    assert o.release_until() == ["P9", "P30"]


def test_a_record_behind_what_its_feed_released_is_refused_others_are_not():
    o = filled(("P", 1), ("P", 5), ("P", 12))
    assert o.ready("P") == ["P1"]
    assert not o.push("P", (0, 0, "P0"), "P0")
    assert o.push("P", (1, 0, "P1"), "P1")  # the same key: a redelivery, in order
    assert o.push("Q", (0, 0, "Q0"), "Q0")  # another feed: its own order
    assert o.release_until() == ["Q0", "P1", "P5", "P12"]


def test_ties_follow_the_records_not_their_arrival():
    a, b = EventOrder(L), EventOrder(L)
    for key in ((3, 1, "T2"), (3, 0, "T9"), (3, 1, "T1")):
        a.push("P", key, key)
    for key in ((3, 1, "T1"), (3, 1, "T2"), (3, 0, "T9")):
        b.push("P", key, key)
    assert a.release_until() == b.release_until() == [(3, 0, "T9"), (3, 1, "T1"), (3, 1, "T2")]


def test_a_bounded_release_takes_every_feed_up_to_the_bound_in_order():
    o = filled(("P", 3), ("Q", 1), ("P", 8), ("Q", 6))
    assert o.release_until(6) == ["Q1", "P3", "Q6"]
    assert o.oldest() == 8
    assert not o.push("Q", (5, 0, "Q5"), "Q5")


def test_the_stage_survives_a_checkpoint():
    o = filled(("P", 3), ("P", 1))
    back = pickle.loads(pickle.dumps(o))
    assert len(back) == 2
    assert back.release_until() == ["P1", "P3"]


def test_a_reserve_report_is_known_at_the_end_of_its_local_day():
    zone = ZoneInfo("Asia/Shanghai")
    rec = report("I1", 0, "100")
    assert sort_key(rec, zone) == (at(1) - 1, 2, "I1")


def test_the_engine_refuses_what_it_cannot_put_in_place_and_counts_it():
    eng = Engine(load_config())
    lateness = eng.config.engine.dedup_window_ms
    first = custody("T1", at(0), "L1", "POOL", "100", "invest")
    later = custody("T2", at(0) + lateness + HOUR_MS, "L2", "POOL", "100", "invest")
    again = custody("T3", at(0) + lateness + HOUR_MS, "L3", "POOL", "100", "invest")
    before = custody("T0", at(0) - 1, "L0", "POOL", "100", "invest")
    # The second moves the feed's mark one lateness on (a jump is capped), the third past T1.
    for rec in (first, later, again):
        eng.submit(rec)
    assert eng.counts == {"accepted": 1, "duplicates": 0, "too_late": 0}  # T1 released
    eng.submit(before)
    assert [d.reason for d in eng.dead_letters] == ["too_late"]
    assert "can no longer be processed in its place" in eng.dead_letters[0].detail
    eng.finish()
    assert eng.counts == {"accepted": 3, "duplicates": 0, "too_late": 1}


def test_while_holding_records_wait_before_their_feed_is_known():
    """A balance of a reserve account whose reference record is still on its
    way: held, its feed is the owner's once the account is known."""
    eng = Engine(load_config())
    eng.holding = True
    assert eng.submit(balance("R1", at(0), "100")) == []
    assert eng.held == 1 and len(eng.order) == 0
    eng.submit(account("R1", "I1", "client_reserve"))  # reference: applied at once
    eng.holding = False
    assert eng.release_ready() == []
    assert set(eng.order._feeds) == {"I1"}
    assert eng.held == 1
    eng.finish()
    assert eng.held == 0 and eng.counts["accepted"] == 2
