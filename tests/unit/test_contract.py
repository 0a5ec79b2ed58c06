"""The contract every detector keeps (STYLE.md point 10; river's
``test_estimators.py`` checks every estimator the same way).

Each test runs once per class in :data:`fundflow.detectors.engine.DETECTORS`
over :func:`ledger.mixed_stream`, on which every detector raises alerts (the
first test pins how many), so none of these checks can pass on silence.
"""

from __future__ import annotations

import copy

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger import (
    account,
    at,
    balance,
    clearing,
    custody,
    entity,
    loan,
    mixed_stream,
    product,
    report,
    run,
)
from typology_ledger import with_transfers

from fundflow.detectors import Detector
from fundflow.detectors.engine import DETECTORS, TYPOLOGIES
from fundflow.schemas.records import Alert

CLASSES = [*DETECTORS.values(), *TYPOLOGIES.values()]
NAMES = [*DETECTORS, *TYPOLOGIES]

# How many alerts each detector raises on the mixed stream, with finish():
# fund_pool: the gather-and-scatter through POOL and the money left idle in it;
# reserve_misuse: reserves moved to PI's operating account, and the shortfall
# of day 0 (the report of day 3 finds a smaller shortfall in the same
# episode: no new revision, since it neither grew 10 % nor rose a band);
# maturity_mismatch: 600,000 of 30-day money in a 90-day loan.
# self_financing: lender money through POOLQ to Q's executive;
# guaranteed_return: RISKQ pays a lender of the unrepaid loan QLN;
# excessive_return: QP30 above its peers and above QLN's rate, and OWNQ's subsidy.
# Alerts emitted, revisions included. fund_pool and reserve_misuse each state
# one final revision as their episode ends: the pool's last payout came after
# its first alert, and the reserve shortfall's last day fell to 16,000 yuan.
EXPECTED = {
    "fund_pool": 3,
    "reserve_misuse": 3,
    "maturity_mismatch": 1,
    "self_financing": 1,
    "guaranteed_return": 1,
    "excessive_return": 3,
}
# The records of ledger.beyond_core_records: PJ's five cross-bank transfers,
# SHADOW's payment, LND1's money reaching HOUSE, DPRIV's small ticket.
EXPECTED |= {
    "cross_bank_clearing": 1,
    "unlicensed_business": 1,
    "down_payment_loan": 1,
    "private_product_split": 1,
}

# typology_ledger.typology_stream, merged in on days 4-6: one raw-transfer
# instance of each typology (a fan-in, a fan-out, a loop, a pass-through hub,
# money re-converging), on accounts no other detector knows.
EXPECTED |= {"fan_in": 1, "fan_out": 1, "cycle": 1, "gather_scatter": 1, "scatter_gather": 1}
EXPECTED |= {"split_payments": 1, "off_profile": 1}
# BPA1-BPA3 each paying BPB1-BPB3: one bipartite group.
EXPECTED |= {"bipartite": 1}
# STS's money through STA1-STA2 and STB1-STB2 to STK: one stack.
EXPECTED |= {"stack": 1}
# PC0's money down PC1-PC3, each passing on 80-90 %, to PC4: one peel chain.
EXPECTED |= {"peel_chain": 1}

STREAM = with_transfers(mixed_stream())


def encoded(alerts: list[Alert]) -> bytes:
    return msgspec.json.encode(alerts)


def full_run(cls: type[Detector], stream=STREAM) -> list[Alert]:
    return run(cls(), stream, finish=True)


@pytest.fixture(params=CLASSES, ids=NAMES)
def cls(request) -> type[Detector]:
    return request.param


def test_every_detector_is_covered():
    assert set(EXPECTED) == set(NAMES)


def test_the_mixed_stream_makes_the_detector_alert(cls):
    alerts = full_run(cls)
    assert len(alerts) == EXPECTED[cls.name]
    assert all(isinstance(a, Alert) and a.detector == cls.name for a in alerts)
    # Every alert names its subject, a severity and its detector's version.
    assert all(a.subject_id and a.severity in ("low", "medium", "high", "critical") for a in alerts)
    assert all(a.detector_version == cls.version for a in alerts)


def test_update_returns_the_detector_and_drain_empties_alerts(cls):
    det = cls()
    for r in STREAM:
        assert det.update(r) is det
    assert det.advance(STREAM[-1].ts) is det
    assert det.finish() is det
    assert det.alerts
    drained = det.drain()
    assert len(drained) == EXPECTED[cls.name]
    assert det.alerts == []


def test_deterministic_replay(cls):
    first, second = full_run(cls), full_run(cls)
    assert first
    assert encoded(first) == encoded(second)


def test_alerts_do_not_depend_on_when_they_are_drained(cls):
    det = cls()
    step_by_step: list[Alert] = []
    for r in STREAM:
        step_by_step += det.update(r).drain()
    step_by_step += det.finish().drain()
    assert encoded(step_by_step) == encoded(full_run(cls))


@pytest.mark.parametrize("cut", [0, 40, len(STREAM)])
def test_reset_restores_a_fresh_state(cls, cut):
    det = cls()
    run(det, STREAM[:cut], finish=cut == len(STREAM))
    det.reset()
    assert det.alerts == []
    assert encoded(run(det, STREAM, finish=True)) == encoded(full_run(cls))


def test_input_records_are_not_mutated(cls):
    stream = with_transfers(mixed_stream())
    before = copy.deepcopy(stream)
    wire_before = [msgspec.json.encode(r) for r in stream]
    alerts = full_run(cls, stream)
    assert stream == before
    assert [msgspec.json.encode(r) for r in stream] == wire_before
    # The same record objects fed to two detectors, interleaved, give each
    # the alerts of a run on its own.
    a, b = cls(), cls()
    for r in stream:
        a.update(r)
        b.update(r)
    a.finish()
    b.finish()
    assert encoded(a.drain()) == encoded(b.drain()) == encoded(alerts)
    assert stream == before


def test_an_empty_stream_and_finish_on_an_empty_detector(cls):
    det = cls()
    assert det.alerts == []
    assert det.finish().drain() == []
    assert det.advance(at(0)).advance(at(400)).finish().drain() == []
    assert run(cls(), [], finish=True) == []


def test_reference_data_alone_raises_nothing(cls):
    reference = [r for r in STREAM if r.TYPE in ("entity", "account", "product", "loan")]
    assert run(cls(), reference, finish=True) == []


@pytest.mark.parametrize("cut", [1, 45, 70, 85, 89, len(STREAM)])
def test_snapshot_restore_round_trip(cls, cut):
    # The uninterrupted run, drained at the cut.
    plain = cls()
    run(plain, STREAM[:cut])
    expected = run(plain, STREAM[cut:], finish=True)

    det = cls()
    run(det, STREAM[:cut])
    blob = det.snapshot()
    assert isinstance(blob, bytes)
    restored = cls().restore(blob)
    assert encoded(run(restored, STREAM[cut:], finish=True)) == encoded(expected)
    # Taking the snapshot changed nothing in the detector it came from.
    assert encoded(run(det, STREAM[cut:], finish=True)) == encoded(expected)
    # Restoring replaces whatever state a used detector had.
    used = cls()
    run(used, STREAM, finish=True)
    used.restore(blob)
    assert encoded(run(used, STREAM[cut:], finish=True)) == encoded(expected)


def test_detectors_restored_from_one_snapshot_share_nothing(cls):
    det = cls()
    run(det, STREAM[:45])
    blob = det.snapshot()
    expected = run(det, STREAM[45:], finish=True)
    a, b = cls().restore(blob), cls().restore(blob)
    assert encoded(run(a, STREAM[45:], finish=True)) == encoded(expected)
    assert encoded(run(b, STREAM[45:], finish=True)) == encoded(expected)


# -- odd data -------------------------------------------------------------------

ODD = [
    entity("SELF", "company", related=[("SELF", "affiliate"), ("NOBODY", "controller")]),
    account("ORPHAN", "NOBODY", "platform_custody", platform="GHOSTP", bank="NOBANK"),
    account("ODDRES", "NOBODY", "client_reserve", bank="NOBANK"),
    product("P1DAY", 1, platform="GHOSTP"),
    loan("LGHOST", 10_000, "1", platform="GHOSTP", borrower="NOWHERE", issued_at=at(900)),
    # unknown accounts, unknown platform, unknown product and loan ids
    custody(
        "O1",
        at(1),
        "NOPE1",
        "NOPE2",
        "100",
        "invest",
        platform="GHOSTP",
        product="NOPROD",
        loan="NOLOAN",
    ),
    custody("O2", at(1, 1), "NOPE1", "ORPHAN", "100", "invest", platform="GHOSTP", product="P1DAY"),
    custody("O3", at(1, 2), "ORPHAN", "NOPE3", "100", "disburse", platform="GHOSTP", loan="LGHOST"),
    custody("O4", at(1, 3), "NOPE3", "NOPE1", "1000", "repay", platform="GHOSTP", loan="LGHOST"),
    custody("O5", at(1, 4), "NOPE3", "NOPE1", "1000", "repay", platform="GHOSTP", loan="NOLOAN"),
    # reports and balances for nobody known
    report("GHOSTINST", 1, "1000000"),
    report("GHOSTINST", -30, "0.01"),
    balance("NOACCOUNT", at(1), "5"),
    balance("ODDRES", at(2), "0"),
    # another currency, on the accounts that matter to each detector
    custody(
        "U1", at(2), "L01", "POOL", "5000000", "invest", product="P30", loan="LN90", currency="USD"
    ),
    custody("U2", at(2, 1), "POOL", "B01", "5000000", "disburse", loan="LN90", currency="USD"),
    clearing("U3", at(2, 2), "R1", "OPS", "900000", currency="EUR"),
    clearing("U4", at(2, 3), "EXT", "ODDRES", "1", purpose="interest", currency="EUR"),
    # the smallest amount, and a time before everything else
    clearing("TINY", at(2, 4), "ODDRES", "NOPE9", "0.01"),
    custody("EARLY", at(-400), "NOPE1", "POOL", "1", "fee"),
]


def test_odd_data_never_raises(cls):
    det = cls()
    alerts = run(det, [*STREAM[:60], *ODD, *STREAM[60:]], finish=True)
    assert all(a.detector == cls.name for a in alerts)
    # Odd data alone, with nothing known.
    run(cls(), ODD, finish=True)


def test_records_in_reverse_time_order_never_raise(cls):
    reference = [r for r in STREAM if r.TYPE in ("entity", "account", "product", "loan")]
    rest = [r for r in STREAM if r.TYPE not in ("entity", "account", "product", "loan")]
    alerts = run(cls(), [*reference, *reversed(rest)], finish=True)
    assert all(a.detector == cls.name for a in alerts)
    run(cls(), list(reversed(STREAM)), finish=True)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(STREAM + ODD))
def test_any_order_never_raises_and_replays_identically(cls, order):
    first = run(cls(), order, finish=True)
    assert encoded(first) == encoded(run(cls(), order, finish=True))
