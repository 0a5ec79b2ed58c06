"""The engine: deduplication by ``txn_id`` within the event-time horizon
(72 h by default), the ``too_late`` dead letter, its accounting, and
byte-identical alerts across runs and across a checkpoint."""

from __future__ import annotations

import msgspec
import pytest
from ledger import (
    HOUR_MS,
    account,
    at,
    balance,
    clearing,
    custody,
    iso_at,
    mixed_stream,
    payment_institution,
    report,
)

from fundflow.detectors import Engine, load_config, snapshots
from fundflow.detectors.engine import DETECTORS
from fundflow.schemas.decode import RecordDecoder, encode_record
from fundflow.schemas.records import Alert

STREAM = mixed_stream()
HORIZON = 72 * HOUR_MS


def process_all(eng: Engine, records) -> list[Alert]:
    return [a for r in records for a in eng.process(r)]


def full_run(records=STREAM) -> tuple[Engine, list[Alert]]:
    eng = Engine()
    alerts = process_all(eng, records)
    alerts += eng.finish()
    return eng, alerts


def txn(txn_id: str, ts: int):
    return custody(txn_id, ts, "L01", "B01", "100", "invest")


# -- deduplication ------------------------------------------------------------


def test_a_redelivered_txn_is_one_txn():
    eng = Engine()
    t = txn("T1", at(0, 10))
    assert eng.process(t) == []
    assert eng.process(t) == []
    assert eng.process(txn("T1", at(0, 11))) == []  # same id, whatever it says
    assert eng.counts == {"accepted": 1, "duplicates": 2, "too_late": 0}
    assert eng.dead_letters == []


def test_a_stream_delivered_twice_gives_the_alerts_of_one_delivery():
    doubled = []
    for r in STREAM:
        doubled.append(r)
        if r.TYPE in ("custody_txn", "clearing_txn"):
            doubled.append(r)
    n_txns = sum(r.TYPE in ("custody_txn", "clearing_txn") for r in STREAM)
    eng, alerts = full_run(doubled)
    assert msgspec.json.encode(alerts) == msgspec.json.encode(full_run()[1])
    assert eng.counts == {"accepted": len(STREAM), "duplicates": n_txns, "too_late": 0}


def test_ids_are_remembered_for_the_horizon_behind_the_newest_event():
    eng = Engine()
    eng.process(txn("T1", at(0)))
    eng.process(txn("T2", at(0) + HORIZON))  # exactly the horizon later
    eng.process(txn("T1", at(0)))
    assert eng.counts == {"accepted": 2, "duplicates": 1, "too_late": 0}
    eng.process(txn("T3", at(0) + HORIZON + 1))  # T1 is now beyond the horizon
    eng.process(txn("T1", at(0)))
    assert eng.counts == {"accepted": 3, "duplicates": 1, "too_late": 1}


def test_late_but_within_the_horizon_is_accepted():
    eng = Engine()
    eng.process(txn("T1", at(3)))
    eng.process(txn("T0", at(0)))  # 72 h behind the newest: still in
    assert eng.counts == {"accepted": 2, "duplicates": 0, "too_late": 0}
    eng.process(txn("TX", at(0) - 1))
    assert eng.counts == {"accepted": 2, "duplicates": 0, "too_late": 1}


def test_each_feed_has_its_own_watermark():
    # Custody and clearing are separate ordered feeds (separate topics in the
    # daemon): how they interleave must not decide what is too late.
    eng = Engine()
    eng.process(txn("NEW", at(10)))
    eng.process(clearing("OLD", at(1), "C1P", "R1", "12.34", purpose="topup"))
    assert eng.counts == {"accepted": 2, "duplicates": 0, "too_late": 0}


def test_too_late_is_a_dead_letter_with_its_reason_and_the_record():
    eng = Engine()
    eng.process(clearing("NEW", at(10), "C1P", "R1", "1.00", purpose="topup"))
    old = clearing("OLD", at(1), "C1P", "R1", "12.34", purpose="topup")
    assert eng.process(old, source="dump.jsonl:7") == []
    assert len(eng.dead_letters) == 1
    dl = eng.dead_letters[0]
    assert (dl.reason, dl.source) == ("too_late", "dump.jsonl:7")
    assert "72 h" in dl.detail
    assert msgspec.json.decode(dl.raw) == encode_record(old)
    # The raw record decodes back to the record that was refused.
    assert RecordDecoder().decode(dl.raw) == old


def test_accepted_plus_duplicates_plus_too_late_is_every_record_processed():
    records = list(STREAM)
    first_txn = next(i for i, r in enumerate(records) if r.TYPE == "custody_txn")
    records.insert(first_txn + 5, records[first_txn])  # a duplicate
    records.append(txn("STALE", at(0)))  # 20 days behind: too late
    records.append(records[-2])  # a duplicate of the newest
    records.append(custody("STALE2", at(1), "L01", "B01", "1", "fee"))
    eng = Engine()
    process_all(eng, records)
    eng.finish()
    c = eng.counts
    assert c == {"accepted": len(STREAM), "duplicates": 2, "too_late": 2}
    assert c["accepted"] + c["duplicates"] + c["too_late"] == len(records)
    assert [d.reason for d in eng.dead_letters] == ["too_late", "too_late"]


def test_custody_and_clearing_ids_are_separate_namespaces():
    eng = Engine()
    stream = [
        *payment_institution(),
        balance("R1", at(0), "1000000"),
        custody("SAME", at(0, 10), "C1P", "R1", "10000", "recharge", platform="PI", bank="BK1"),
        clearing("SAME", at(0, 11), "R1", "EXT", "50000", purpose="refund"),
        report("PI", 0, "1000000"),
    ]
    process_all(eng, stream)
    assert eng.counts == {"accepted": len(stream), "duplicates": 0, "too_late": 0}
    alerts = eng.finish()
    # Both moved the balance: 1,000,000 + 10,000 - 50,000.
    assert [(a.detector, a.amount, a.evidence["reserve_balance"]) for a in alerts] == [
        ("reserve_misuse", "40000.00", "960000.00")
    ]


# -- determinism and checkpoints --------------------------------------------------


def test_alerts_are_byte_identical_across_two_runs():
    _, first = full_run()
    _, second = full_run()
    # The sum of test_contract.EXPECTED: every detector's alerts on the mixed stream.
    assert len(first) == 16
    assert {a.detector for a in first} == set(DETECTORS)
    assert msgspec.json.encode(first) == msgspec.json.encode(second)


def test_the_engine_gives_each_detectors_alerts_of_a_run_on_its_own():
    _, alerts = full_run()
    for name, cls in DETECTORS.items():
        det = cls()
        for r in STREAM:
            det.update(r)
        alone = det.finish().drain()
        assert msgspec.json.encode(
            [a for a in alerts if a.detector == name]
        ) == msgspec.json.encode(alone)


def test_alerts_come_out_in_the_order_of_the_records_and_the_detectors():
    eng = Engine()
    per_record = [eng.process(r) for r in STREAM]
    firsts = [i for i, out in enumerate(per_record) if out]
    assert firsts  # the stream alerts before it ends
    for out in per_record:
        order = [list(DETECTORS).index(a.detector) for a in out]
        assert order == sorted(order)


@pytest.mark.parametrize("cut", [0, 30, 60, 72, 80, 88, len(STREAM)])
def test_snapshot_restore_gives_the_remaining_alerts_of_an_uninterrupted_run(cut):
    plain = Engine()
    process_all(plain, STREAM[:cut])
    expected = process_all(plain, STREAM[cut:]) + plain.finish()

    first = Engine()
    process_all(first, STREAM[:cut])
    blob = first.snapshot()
    resumed = Engine().restore(blob)
    got = process_all(resumed, STREAM[cut:]) + resumed.finish()
    assert msgspec.json.encode(got) == msgspec.json.encode(expected)
    assert resumed.counts == plain.counts


def test_deduplication_survives_a_checkpoint():
    eng = Engine()
    process_all(eng, STREAM[:70])
    resumed = Engine().restore(eng.snapshot())
    seen = [r for r in STREAM[:70] if r.TYPE == "custody_txn"][-1]
    assert resumed.process(seen) == []  # a txn seen before the checkpoint
    assert resumed.counts["duplicates"] == 1
    assert resumed.process(txn("OLD", at(-5))) == []
    assert resumed.counts["too_late"] == 1


def test_advance_without_records_settles_what_waits_for_time():
    # Lenders' money waits in POOL; the engine's clock moves on a heartbeat.
    eng = Engine()
    records = [r for r in STREAM if not (r.TYPE == "custody_txn" and r.txn_id == "IDLE")]
    out = process_all(eng, records)
    assert [a.evidence.get("signal") for a in out if a.detector == "fund_pool"] == [
        "gather_scatter"
    ]
    later = eng.advance(at(20, 10))
    # The heartbeat also ends the pool's episode (a window after its last
    # payout): its final revision states that payout's time.
    assert [
        (a.evidence["signal"], a.amount, a.revision, a.last_ts)
        for a in later
        if a.detector == "fund_pool"
    ] == [
        ("idle_investor_money", "300000.00", 1, iso_at(at(20, 10))),
        ("gather_scatter", "1200000.00", 2, iso_at(at(1, 10, 2))),
    ]
    # A second heartbeat at the same time has nothing more to say.
    assert [a for a in eng.advance(at(20, 10)) if a.detector == "fund_pool"] == []


def test_unknown_detector_names_are_refused():
    with pytest.raises(ValueError, match="unknown detector\\(s\\): nope"):
        Engine(detectors=["fund_pool", "nope"])


def test_an_engine_runs_only_the_detectors_it_is_given():
    eng = Engine(load_config(), detectors=["maturity_mismatch"])
    alerts = process_all(eng, STREAM) + eng.finish()
    assert [a.detector for a in alerts] == ["maturity_mismatch"]


def test_engines_sharing_one_reference_leave_it_out_of_their_snapshots():
    from fundflow.detectors.reference import Reference

    shared = Reference()
    a, b = Engine(reference=shared), Engine(reference=shared)
    a.process(account("SHARED", "P", "lender_sub"))
    assert b.ref.accounts["SHARED"].role == "lender_sub"
    blob = a.snapshot()
    fresh = Engine(reference=shared).restore(blob)
    assert fresh.ref is shared
    assert snapshots.loads(blob)["ref"] is None


def test_shell_sections_of_the_config_file_are_left_to_the_shells(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\nbootstrap = "127.0.0.1:9092"\n[fund_pool]\nmin_sources = 3\n')
    assert load_config(cfg).fund_pool.min_sources == 3
