"""Out-of-order and late records: what the engine admits, refuses or counts
twice, with the default 72-hour deduplication horizon.

Each feed (custody transactions of one platform, clearing transactions of one
institution) has its own watermark. A transaction more than one horizon
behind its feed's watermark is a ``too_late`` dead letter; one within it is
processed whatever its order. A transaction far ahead of its feed's
watermark is processed but moves the watermark only one horizon forward.
"""

from __future__ import annotations

import sys

import msgspec
import pytest
from ledger import (
    HOUR_MS,
    at,
    balance,
    clearing,
    custody,
    day_str,
    payment_institution,
    report,
)

from fundflow.detectors import Deduplicator, Engine, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.decode import encode_record

H = 72 * HOUR_MS  # the default horizon
YEAR_2099 = 4_070_908_800_000  # 2099-01-01T00:00:00Z


def feed(engine: Engine, records: list) -> list[str]:
    """Each record's fate: accepted / duplicate / too_late (in order)."""
    fates = []
    for rec in records:
        before = dict(engine.counts)
        engine.process(rec)
        fates.append(next(k for k, v in engine.counts.items() if v != before[k]))
    return fates


def test_the_default_horizon_is_72_hours():
    assert load_config().engine.dedup_window_ms == H


def test_out_of_order_within_the_horizon_is_processed_beyond_it_is_too_late():
    eng = Engine()
    fates = feed(
        eng,
        [
            custody("T1", at(5), "L1", "POOL", "100", "invest"),
            custody("T2", at(3), "L2", "POOL", "100", "invest"),  # 48 h back
            custody("T3", at(2), "L3", "POOL", "100", "invest"),  # exactly 72 h back
            custody("T4", at(2) - 1, "L4", "POOL", "100", "invest"),  # 1 ms more
            custody("T5", at(5, 1), "L5", "POOL", "100", "invest"),
        ],
    )
    assert fates == ["accepted", "accepted", "accepted", "too_late", "accepted"]
    assert eng.counts == {"accepted": 4, "duplicates": 0, "too_late": 1}
    [letter] = eng.dead_letters
    assert letter.reason == "too_late"
    assert letter.detail == (
        "event time is more than 72 h behind the newest seen (the deduplication horizon)"
    )
    assert msgspec.json.decode(letter.raw)["txn_id"] == "T4"


def test_a_redelivery_older_than_the_horizon_is_too_late_not_a_duplicate():
    t1 = custody("T1", at(0), "L1", "POOL", "100", "invest")
    t2 = custody("T2", at(3), "L2", "POOL", "100", "invest")
    t3 = custody("T3", at(3, 1), "L3", "POOL", "100", "invest")
    assert feed(Engine(), [t1, t2, t3, t1]) == ["accepted", "accepted", "accepted", "too_late"]
    # Within the horizon the same id is a duplicate.
    assert feed(Engine(), [t1, t2, t1]) == ["accepted", "accepted", "duplicates"]


def test_a_gap_longer_than_the_horizon_keeps_ids_until_the_watermark_catches_up():
    # Four quiet days: the watermark moves one horizon (to day 3), so T1 is
    # still remembered and its redelivery is a duplicate, not a dead letter.
    t1 = custody("T1", at(0), "L1", "POOL", "100", "invest")
    eng = Engine()
    assert feed(eng, [t1, custody("T2", at(4), "L2", "POOL", "100", "invest"), t1]) == [
        "accepted",
        "accepted",
        "duplicates",
    ]
    assert eng.dedup.watermarks == {("custody_txn", "P"): at(3)}


def test_each_feed_has_its_own_watermark():
    eng = Engine()
    fates = feed(
        eng,
        [
            custody("A1", at(10), "L1", "POOL", "100", "invest", platform="P"),
            # Another platform's feed is ten days behind: still processed.
            custody("B1", at(0), "L2", "QPOOL", "100", "invest", platform="Q"),
            custody("B2", at(1), "L3", "QPOOL", "100", "invest", platform="Q"),
            # Platform P's own record ten days back is too late.
            custody("A2", at(0), "L4", "POOL", "100", "invest", platform="P"),
            # Clearing transactions initiated by P are a feed of their own.
            clearing("C1", at(0), "X1", "X2", "100", initiator="P"),
        ],
    )
    assert fates == ["accepted", "accepted", "accepted", "too_late", "accepted"]
    assert eng.dedup.watermarks == {
        ("custody_txn", "P"): at(10),
        ("custody_txn", "Q"): at(1),
        ("clearing_txn", "P"): at(0),
    }


def test_a_far_future_record_moves_its_feeds_watermark_one_horizon_only():
    eng = Engine()
    fates = feed(
        eng,
        [
            custody("T1", at(5), "L1", "POOL", "100", "invest"),
            custody("BAD", YEAR_2099, "L2", "POOL", "100", "invest"),
            custody("T2", at(5, 1), "L3", "POOL", "100", "invest"),
            custody("T3", at(5) - 1, "L4", "POOL", "100", "invest"),
            custody("T4", at(9), "L5", "POOL", "100", "invest"),
        ],
    )
    # The 2099 record is processed; the honest records after it are too,
    # except one older than the feed's time before it (its lateness allowance
    # is what the far-future record took away).
    assert fates == ["accepted", "accepted", "accepted", "too_late", "accepted"]
    assert eng.dedup.watermarks[("custody_txn", "P")] == at(9)


def test_each_far_future_record_adds_at_most_one_horizon():
    dedup = Deduplicator(H)
    assert dedup.admit("custody_txn", "P", "T1", at(0)) == "new"
    for i in range(3):
        assert dedup.admit("custody_txn", "P", f"BAD{i}", YEAR_2099 + i) == "new"
        assert dedup.watermarks[("custody_txn", "P")] == at(0) + (i + 1) * H
    # Honest time within the horizon of the pulled watermark is admitted ...
    assert dedup.admit("custody_txn", "P", "T2", at(6)) == "new"
    # ... older honest time is refused until the feed's time catches up.
    assert dedup.admit("custody_txn", "P", "T3", at(6) - 1) == "too_late"
    assert dedup.admit("custody_txn", "P", "BAD0", YEAR_2099) == "duplicate"
    assert dedup.watermarks[("custody_txn", "P")] == at(9)  # a redelivery moves nothing


def test_a_feed_resuming_after_a_month_catches_up_a_horizon_per_record():
    dedup = Deduplicator(H)
    assert dedup.admit("custody_txn", "P", "T0", at(0)) == "new"
    marks = []
    for i in range(12):
        assert dedup.admit("custody_txn", "P", f"T{i + 1}", at(30, i)) == "new"
        marks.append(dedup.watermarks[("custody_txn", "P")])
    assert marks == [at(0) + k * H for k in range(1, 11)] + [at(30, 10), at(30, 11)]
    assert dedup.admit("custody_txn", "P", "T5", at(30, 4)) == "duplicate"
    assert dedup.admit("custody_txn", "P", "OLD", at(26, 23)) == "too_late"


def test_a_feeds_first_record_sets_its_watermark_even_far_in_the_future():
    # The documented limit of the rule: with nothing before it, a first
    # record cannot be judged, and the feed's honest records then trail it.
    dedup = Deduplicator(H)
    assert dedup.admit("custody_txn", "P", "BAD", YEAR_2099) == "new"
    assert dedup.admit("custody_txn", "P", "T1", at(0)) == "too_late"
    assert dedup.admit("custody_txn", "Q", "T1", at(0)) == "new"


def test_the_watermarks_survive_a_snapshot():
    eng = Engine()
    feed(eng, [custody("T1", at(5), "L1", "POOL", "100", "invest")])
    feed(eng, [custody("BAD", YEAR_2099, "L2", "POOL", "100", "invest")])
    again = Engine().restore(eng.snapshot())
    assert again.dedup.watermarks == {("custody_txn", "P"): at(5) + H}
    assert feed(again, [custody("T2", at(5) - 1, "L3", "POOL", "100", "invest")]) == ["too_late"]


def test_ids_are_told_apart_by_their_text_whatever_it_holds():
    """Ids of any length, non-ASCII, and with no UTF-8 form (a lone
    surrogate, as text read with ``errors="surrogateescape"`` holds) are
    each their own; so are feeds and kinds."""
    dedup = Deduplicator(H)
    ids = ["", "T1", "T1\x00", "交易" * 20, "x" * 22, "x" * 23, "\udcff", "\udcfe", "\ud800"]
    for i, txn in enumerate(ids):
        assert dedup.admit("custody_txn", "P", txn, at(0) + i) == "new"
    for txn in ids:
        assert dedup.admit("custody_txn", "P", txn, at(1)) == "duplicate"
    assert dedup.admit("custody_txn", "\udcff", "T1", at(0)) == "new"
    assert dedup.admit("custody_txn", "\udcff", "T1", at(0)) == "duplicate"
    assert dedup.admit("\udcff", "P", "T1", at(0)) == "new"
    assert len(dedup) == len(ids) + 2
    assert list(dedup.seen[("custody_txn", "P")]) == ids  # in the order of their times
    assert dedup.seen[("custody_txn", "\udcff")] == {"T1": at(0)}


def test_a_deduplicators_state_is_read_back_as_it_was_given():
    """``watermarks``, ``seen`` and ``len`` are what a checkpoint keeps:
    loaded into a new deduplicator they judge as the first one does, a feed
    with a watermark and no id left included."""
    dedup = Deduplicator(H)
    assert dedup.admit("custody_txn", "P", "T2", at(2)) == "new"
    assert dedup.admit("custody_txn", "P", "T1", at(1)) == "new"
    assert dedup.admit("clearing_txn", "I1", "C1", at(0)) == "new"
    seen = dedup.seen
    assert seen == {
        ("custody_txn", "P"): {"T1": at(1), "T2": at(2)},
        ("clearing_txn", "I1"): {"C1": at(0)},
    }
    assert list(seen[("custody_txn", "P")]) == ["T1", "T2"]
    back = Deduplicator(H)
    back.load({**dedup.watermarks, ("custody_txn", "Q"): at(9)}, seen, len(dedup))
    assert back.watermarks == {
        ("custody_txn", "P"): at(2),
        ("clearing_txn", "I1"): at(0),
        ("custody_txn", "Q"): at(9),
    }
    assert back.seen == {**seen, ("custody_txn", "Q"): {}} and len(back) == 3
    assert back.admit("custody_txn", "P", "T1", at(1)) == "duplicate"
    assert back.admit("custody_txn", "Q", "T1", at(9) - H - 1) == "too_late"
    assert back.admit("clearing_txn", "I1", "C2", at(0)) == "new"


def test_an_id_that_is_not_text_is_refused_as_a_type_error():
    dedup = Deduplicator(H)
    for kind, feed, txn in [
        ("custody_txn", "P", 7),
        ("custody_txn", None, "T1"),
        (b"k", "P", "T1"),
    ]:
        with pytest.raises(TypeError):
            dedup.admit(kind, feed, txn, at(0))
    assert len(dedup) == 0 and dedup.watermarks == {}


def _lines(records: list) -> list[bytes]:
    return [msgspec.json.encode(encode_record(r)) for r in records]


def test_decode_then_engine_with_time_running_backwards_and_a_2099_line():
    dec = RecordDecoder()
    recs = [
        custody("T1", at(5), "L1", "POOL", "100", "invest"),
        custody("T2", at(4), "L2", "POOL", "100", "invest"),
        custody("BAD", YEAR_2099, "L3", "POOL", "100", "invest"),
        custody("T3", at(5, 2), "L4", "POOL", "100", "invest"),
        custody("T4", at(1), "L5", "POOL", "100", "invest"),
    ]
    lines = _lines(recs)
    lines.append(lines[3])  # a redelivery of T3
    lines.insert(3, lines[2].replace(b'"ts":4070908800000', b'"ts":4102444800000'))  # 2100
    eng = Engine()
    decoded = [dec.decode(line) for line in lines]
    dead = [d.reason for d in decoded if type(d) is DeadLetter]
    for rec in decoded:
        if type(rec) is not DeadLetter:
            eng.process(rec)
    assert dead == ["bad_time"]
    assert eng.counts == {"accepted": 4, "duplicates": 1, "too_late": 1}
    assert [msgspec.json.decode(d.raw)["txn_id"] for d in eng.dead_letters] == ["T4"]


# -- reserve reports and their day's payments ------------------------------------


def shortfall_id(day: int) -> str:
    return make_alert_id("reserve_misuse", "PI", "coverage_shortfall", day_str(day))


def run_engine(records: list) -> list:
    eng = Engine(detectors=["reserve_misuse"])
    alerts = []
    for r in records:
        alerts += eng.process(r)
    return alerts + eng.finish()


def test_a_report_arriving_before_its_days_payments_counts_them_in():
    # Day 0 closes with 1,000,000 held: the report of 1,000,000 is covered
    # although at its arrival only 950,000 was.
    records = [
        *payment_institution(),
        balance("R1", at(0), "900000"),
        clearing("IN1", at(0, 9), "C1P", "R1", "50000", purpose="topup"),
        report("PI", 0, "1000000"),
        clearing("IN2", at(0, 15), "C1P", "R1", "50000", purpose="topup"),
        clearing("IN3", at(1, 9), "C1P", "R1", "1", purpose="topup"),
    ]
    assert run_engine(records) == []


def test_a_report_before_its_day_is_compared_with_that_days_close():
    records = [
        *payment_institution(),
        balance("R1", at(0), "1000000"),
        report("PI", 1, "1000000"),  # tomorrow's report, early
        clearing("RF", at(1, 15), "R1", "EXT", "60000", purpose="refund"),
        clearing("IN", at(2, 9), "C1P", "R1", "1", purpose="topup"),
    ]
    alerts = run_engine(records)
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(1), "high", "60000.00")
    ]
    assert alerts[0].evidence["reserve_balance"] == "940000.00"


def test_a_report_later_than_the_kept_days_is_not_compared():
    eng = Engine(detectors=["reserve_misuse"])
    for r in [*payment_institution(), balance("R1", at(0), "1")]:
        eng.process(r)
    eng.process(clearing("IN", at(10, 1), "C1P", "R1", "1", purpose="topup"))
    assert eng.process(report("PI", 1, "1000000")) == []
    assert eng.detectors[0].unmatched_reports == 1
    # Day 2 is still within the 7 + 1 kept closing totals.
    assert [a.alert_id for a in eng.process(report("PI", 2, "1000000"))] == [shortfall_id(2)]
    assert eng.counts == {
        "accepted": len(payment_institution()) + 4,
        "duplicates": 0,
        "too_late": 0,
    }


def test_the_deduplicator_reports_the_memory_its_table_takes() -> None:
    """``sys.getsizeof`` counts the compiled table (what the memory bench
    reports): about 33 bytes a short id, more for one too long to be
    held inline."""
    dedup = Deduplicator(H)
    empty = sys.getsizeof(dedup)
    for i in range(10_000):
        dedup.admit("custody_txn", "P", f"T{i:07d}", at(0) + i)
    short = sys.getsizeof(dedup) - empty
    assert 33 * 10_000 <= short <= 2 * 33 * 16_384 + 4096
    for i in range(10_000):
        dedup.admit("custody_txn", "Q", f"{i:040d}", at(0) + i)
    assert sys.getsizeof(dedup) - empty - short >= 10_000 * (33 + 40)
