"""Retirement by event time: what maturity_mismatch keeps about a loan, and
when it lets go (engine.loan_retention_days, 90 by default).

Platform P, hand-made loans issued at T0. A loan repaid in full is
forgotten once its platform's clock passes maturity plus the retention; a
loan still open then is kept (it is still in the book) and forgotten with
its last repayment. Retiring changes no alert: the same stream with a
retention longer than the stream gives the same alerts.
"""

from __future__ import annotations

import pickle

import pytest
from ledger import DAY_MS, at, borrowers, custody, iso_at, lenders, loan, p2p_platform, product, run

from fundflow.detectors import Engine, MaturityMismatch, load_config
from fundflow.detectors.alerting import make_alert_id

SETUP = [
    *p2p_platform(),
    *lenders(10),
    *borrowers(4),
    product("P30", 30),
    product("P60", 60),
]
NEVER = {"engine": {"loan_retention_days": 3660}}


def aid(signal: str, *identity: object) -> str:
    return make_alert_id("maturity_mismatch", "P", signal, *identity)


def invest(txn_id: str, ts: int, amount: str, product_id: str, loan_id: str, borrower: str):
    return custody(txn_id, ts, "L01", borrower, amount, "invest", product=product_id, loan=loan_id)


def repay(txn_id: str, ts: int, amount: str, loan_id: str, borrower: str):
    return custody(txn_id, ts, borrower, "L01", amount, "repay", loan=loan_id)


def clock(txn_id: str, ts: int):
    """A custody fee of one fen on P: moves P's clock, nothing else."""
    return custody(txn_id, ts, "L09", "OWN", "0.01", "fee")


def held(det: MaturityMismatch) -> list[str]:
    return sorted(det.platforms["P"].loans)


# -- the setting ----------------------------------------------------------------


def test_the_retention_setting_is_checked():
    assert load_config().engine.loan_retention_ms == 90 * DAY_MS
    assert load_config(overrides=NEVER).engine.loan_retention_ms == 3660 * DAY_MS
    for bad in (0, 3661, "90", 1.5):
        with pytest.raises(ValueError, match="engine.loan_retention_days"):
            load_config(overrides={"engine": {"loan_retention_days": bad}})


# -- a settled loan -------------------------------------------------------------

# LN30 (30 days, 1,000,000) funded by a 60-day product and repaid in full on
# day 25: it matures on day 30 and is forgotten from day 120 (30 + 90).
SETTLED = [
    *SETUP,
    loan("LN30", 30, "1000000"),
    invest("F1", at(0, 10), "1000000", "P60", "LN30", "B01"),
    repay("R1", at(25, 10), "1000000", "LN30", "B01"),
]


def test_a_settled_loan_is_kept_until_maturity_plus_retention_then_forgotten():
    det = MaturityMismatch()
    assert run(det, [*SETTLED, clock("K1", at(119, 23, 59))]) == []
    assert held(det) == ["LN30"]
    entry = det.platforms["P"].loans["LN30"]
    assert (entry.funded, entry.repaid, entry.outstanding, entry.settled()) == (
        100_000_000,
        100_000_000,
        0,
        True,
    )
    assert run(det, [clock("K2", at(120, 0))]) == []
    assert held(det) == []
    st = det.platforms["P"]
    assert (st.book, st.exposure, st.loan_amount, st.retiring) == (0, 0, 0, [])


def test_a_heartbeat_retires_too():
    det = MaturityMismatch()
    run(det, SETTLED)
    det.advance(at(119, 23))
    assert held(det) == ["LN30"]
    det.advance(at(120, 0))
    assert held(det) == []


def test_a_loan_record_sent_again_after_retirement_is_not_booked_again():
    det = MaturityMismatch()
    run(det, [*SETTLED, clock("K1", at(120, 1))])
    assert held(det) == []
    run(det, [loan("LN30", 30, "1000000"), clock("K2", at(121, 1))])
    st = det.platforms["P"]
    assert (held(det), st.loan_amount, st.loan_weighted, st.pending_loans) == ([], 0, 0, [])


# -- an open loan past the retention --------------------------------------------

# LNA (60 days, 600,000) funded by the 30-day product: mismatched, alerted on
# day 0, repaid on day 50. LNC (60 days, 100,000) funded by the 60-day
# product is not repaid. Both mature on day 60 and reach the retention on
# day 150: LNA is forgotten, LNC is overdue and open, so it stays in the
# book until its last repayment. LNB (60 days) funded by the 30-day product
# just after the boundary opens a new exposure episode.
BOUNDARY = [
    *SETUP,
    loan("LNA", 60, "600000"),
    loan("LNC", 60, "100000", borrower="B03"),
    invest("FA", at(0, 10), "600000", "P30", "LNA", "B01"),
    invest("FC", at(0, 11), "100000", "P60", "LNC", "B03"),
    repay("RA", at(50, 10), "600000", "LNA", "B01"),
    clock("K1", at(150, 0)),
    loan("LNB", 60, "600000", borrower="B02", issued_at=at(150, 4)),
    invest("FB", at(150, 5), "600000", "P30", "LNB", "B02"),
]


def _boundary_alerts(config) -> tuple[list, MaturityMismatch]:
    det = MaturityMismatch(config)
    return run(det, BOUNDARY, finish=True), det


def test_an_open_loan_stays_and_the_next_alert_near_the_boundary_is_exact():
    alerts, det = _boundary_alerts(load_config())
    assert held(det) == ["LNB", "LNC"]
    assert det.platforms["P"].retiring == []
    # The first exposure closes with LNA's repayment on day 50: its final
    # revision states FC's later time and the 700,000 book.
    assert [(a.alert_id, a.revision, a.amount, a.last_ts) for a in alerts] == [
        (aid("mismatch_exposure", at(0, 10)), 1, "600000.00", iso_at(at(0, 10))),
        (aid("mismatch_exposure", at(0, 10)), 2, "600000.00", iso_at(at(0, 11))),
        (aid("mismatch_exposure", at(150, 5)), 1, "600000.00", iso_at(at(150, 5))),
    ]
    assert alerts[1].evidence["open_book"] == "700000.00"
    ev = alerts[2].evidence
    assert (ev["mismatched_exposure"], ev["open_book"], ev["sample_txn_ids"]) == (
        "600000.00",
        "700000.00",
        ["FA", "FB"],
    )
    assert [(r["loan_id"], r["open_mismatched"]) for r in ev["loans"]] == [("LNB", "600000.00")]
    assert alerts[2].accounts == ("B02",)


def test_retiring_changes_no_alert():
    kept_alerts, kept = _boundary_alerts(load_config(overrides=NEVER))
    alerts, _ = _boundary_alerts(load_config())
    assert held(kept) == ["LNA", "LNB", "LNC"]
    assert alerts == kept_alerts


def test_an_expired_open_loan_is_forgotten_with_its_last_repayment():
    det = MaturityMismatch()
    run(det, [*BOUNDARY, repay("RC1", at(151, 10), "40000", "LNC", "B03")])
    assert held(det) == ["LNB", "LNC"]
    run(det, [repay("RC2", at(152, 10), "60000", "LNC", "B03")])
    assert held(det) == ["LNB"]
    st = det.platforms["P"]
    assert (st.book, st.exposure, st.loan_amount) == (60_000_000, 60_000_000, 60_000_000)


# -- checkpoints ------------------------------------------------------------------


def test_retirement_survives_a_checkpoint():
    eng = Engine(detectors=["maturity_mismatch"])
    for r in SETTLED:
        eng.process(r)
    eng.process(clock("K1", at(30, 0)))
    blob = eng.snapshot()
    restored = Engine(detectors=["maturity_mismatch"]).restore(blob)
    det = restored.detectors[0]
    assert det.platforms["P"].retiring == [(at(120, 0), "LN30")]
    restored.process(clock("K2", at(120, 0)))
    assert held(det) == []


def test_a_checkpoint_from_before_retirement_restores_with_nothing_to_retire():
    det = MaturityMismatch()
    run(det, [*SETTLED, clock("K1", at(30, 0))])
    st = det.platforms["P"]
    old = {k: getattr(st, k) for k in st.__slots__ if k != "retiring"}
    fresh = type(st).__new__(type(st))
    fresh.__setstate__(old)
    assert (fresh.retiring, sorted(fresh.loans)) == ([], ["LN30"])
    assert pickle.loads(pickle.dumps(fresh)).retiring == []
