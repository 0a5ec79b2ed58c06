"""Metrics through the recording fake: a replay reports exactly what its
summary says, nothing per record, and subject labels stay capped.

The hand-made dump is the detector tests' mixed stream (every detector
alerts on it) with a duplicate, a transaction past the deduplication horizon
and four undecodable lines added; its figures are pinned. The simulated
world checks the same identities at scale, with alert revisions and an
escalation to critical, against the replay's own summary.
"""

from __future__ import annotations

import inspect
import json
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from ledger import DAY_MS, T0, custody, mixed_stream
from prometheus_client.parser import text_string_to_metric_families
from test_purity import _run_blocked
from typology_ledger import with_transfers

from fundflow.detectors import Engine, load_config
from fundflow.detectors.metrics import (
    OTHER,
    AlertReporter,
    CappedGauge,
    Metrics,
    NullMetrics,
    RecordingMetrics,
)
from fundflow.prom import PrometheusMetrics
from fundflow.replay import METRICS_BATCH, replay
from fundflow.schemas.decode import encode_record
from fundflow.schemas.records import Account, Alert, ClearingTxn, CustodyTxn
from fundflow.simulate import write_world

CONFIG = load_config()
BAD_LINES = [
    b"this is not json",
    b"[1, 2]",
    b'{"type": "no_such_kind"}',
    b'{"type":"custody_txn","txn_id":"TBAD","ts":1772330400000,"bank_id":"CB","platform_id":"P",'
    b'"debit_account":"L01","credit_account":"POOL","amount":"-5.00","purpose":"invest"}',
]


def _protocol_methods() -> list[str]:
    return sorted(
        name for name, fn in vars(Metrics).items() if callable(fn) and not name.startswith("_")
    )


# -- the hand-made dump ---------------------------------------------------------


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> Path:
    records = mixed_stream()
    first_txn = next(i for i, r in enumerate(records) if type(r) is CustodyTxn)
    lines = [msgspec.json.encode(encode_record(r)) for r in records]
    # The same transaction again, right after it: a duplicate.
    lines.insert(first_txn + 1, lines[first_txn])
    # Ten days behind the newest event time: past the 72 h horizon.
    late = custody("TLATE", T0 - 10 * DAY_MS, "L01", "POOL", "100", "invest")
    lines.append(msgspec.json.encode(encode_record(late)))
    lines += BAD_LINES
    path = tmp_path_factory.mktemp("dump") / "dump.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def dump_run(dump: Path) -> tuple[RecordingMetrics, object]:
    rec = RecordingMetrics()
    summary = replay([str(dump)], config=CONFIG, metrics=rec)
    return rec, summary


def test_hand_made_dump_counts_are_pinned(dump_run) -> None:
    rec, summary = dump_run
    assert rec.records == {
        # Core P and PI: 5 + 6; beyond_core_records: PD, RE, PJ, SHADOW;
        # beyond_core_stream: Q, QX.
        ("replay", "entity"): 11 + 4 + 2,
        # Core: 5 of P, 24 lenders, 4 borrowers, 7 of PI; then PD's four
        # sub-accounts, HOUSE, PJA, PJB; then Q's seven.
        ("replay", "account"): 40 + 7 + 7,
        # P30, P90; DP30, DPRIV; QP30 and its four peers ZP1-ZP4.
        ("replay", "product"): 2 + 2 + 5,
        ("replay", "loan"): 1 + 2 + 1,  # LN90; LND1, LND2; QLN
        ("replay", "reserve_report"): 2,
        ("replay", "balance"): 1,
        # Core: 24 investments, 3 disbursements, MM1, IDLE; DI1, DI2, DD1;
        # Q1-Q5; then the duplicate and the late one.
        ("replay", "custody_txn"): 29 + 3 + 5 + 2,
        ("replay", "clearing_txn"): 4 + 6,  # CL01-CL04; PJ1-PJ5 and UL1
        ("replay", "invalid"): 4,
    }
    # Every record of the mixed stream once; the duplicate apart; the late
    # one and the four bad lines are dead letters.
    assert (rec.accepted_total, rec.duplicates_total) == (134, 1)
    assert rec.dead == {
        "too_late": 1,
        "not_json": 1,
        "not_object": 1,
        "unknown_type": 1,
        "bad_amount": 1,
    }
    # One new alert per finding of test_contract.EXPECTED.
    assert rec.raised == {
        ("reserve_misuse", "medium"): 1,  # PI's reserves to OPS
        ("reserve_misuse", "high"): 1,  # PI's shortfall of day 0
        ("fund_pool", "medium"): 1,  # the gather and scatter through POOL
        ("fund_pool", "low"): 1,  # the lenders' money idle in POOL
        ("maturity_mismatch", "medium"): 1,  # MM1: 30-day money in LN90
        ("self_financing", "medium"): 1,  # POOLQ to QX's account QXP
        ("guaranteed_return", "medium"): 1,  # RISKQ pays QL2 for QLN
        ("excessive_return", "medium"): 2,  # QP30 above its peers; OWNQ's subsidy
        ("excessive_return", "high"): 1,  # QP30 above QLN's rate
        ("cross_bank_clearing", "medium"): 1,  # PJ1-PJ5, BK1 to BK2
        ("unlicensed_business", "high"): 1,  # SHADOW's payment UL1
        ("down_payment_loan", "medium"): 1,  # LND1's money to HOUSE
        ("private_product_split", "medium"): 1,  # DI2 below DPRIV's ticket
    }
    # Two final revisions as their episodes end: the pool's last payout, and
    # the shortfall's last day (its band stays high).
    assert rec.updated == {("fund_pool", "medium"): 1, ("reserve_misuse", "high"): 1}
    assert {k: v for k, v in rec.open.items() if v} == rec.raised
    # Subject gauges from the evidence of the three signals that carry them.
    # The shortfall's final revision states its last day: 0.9818 covered.
    assert rec.coverage == {"PI": 0.9818}
    assert rec.pooled == {"P": 1200000.0}
    assert rec.exposure == {"P": 600000.0}
    # Subjects with detector state P, PD, Q, PI, PJ (SHADOW's detector keeps
    # none); the 54 accounts; links P-A1, P-A2, PI-HOLD, Q-QX.
    assert rec.state == (5, 54, 4)
    newest = max(r.ts for r in mixed_stream() if hasattr(r, "ts"))
    assert rec.last_record_ts == newest / 1000
    assert rec.event_lag is not None
    assert abs(rec.event_lag - (time.time() - newest / 1000)) < 600
    # Fewer records than a batch: no record timed, everything in one flush.
    assert rec.processing == []
    assert rec.calls["records_in"] == 9
    assert rec.calls["accepted"] == rec.calls["duplicates"] == 1
    assert rec.calls["alert"] == 16  # 14 alerts and two final revisions


def test_hand_made_dump_metrics_equal_the_summary(dump_run) -> None:
    rec, summary = dump_run
    assert summary.read == 134 + 1 + 1 + 4  # the stream, duplicate, late one, bad lines
    _assert_equal_to_summary(rec, summary)


def test_the_replay_alerts_are_the_engines(dump: Path, dump_run) -> None:
    # The same records fed straight to an engine: the alerts the metrics
    # counted are the engine's, revision for revision.
    rec, _ = dump_run
    engine = Engine(CONFIG)
    alerts: list[Alert] = []
    for r in mixed_stream():
        alerts += engine.process(r)
    alerts += engine.finish()
    assert rec.raised == Counter((a.detector, a.severity) for a in alerts if a.revision == 1)
    assert sum(rec.updated.values()) == sum(1 for a in alerts if a.revision > 1)
    assert rec.state == engine.state_size()


def test_metrics_do_not_change_the_replay(dump: Path, dump_run) -> None:
    _, with_metrics = dump_run
    without = replay([str(dump)], config=CONFIG)
    a, b = with_metrics.as_json(), without.as_json()
    for volatile in ("seconds", "records_per_second"):
        a.pop(volatile)
        b.pop(volatile)
    assert a == b


# -- a simulated world ------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    write_world(folder, seed=1)
    return folder / "world.jsonl"


@pytest.fixture(scope="module")
def world_run(world: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("world-out") / "alerts.jsonl"
    rec = RecordingMetrics()
    with open(out, "wb") as alerts_out:
        summary = replay([str(world)], config=CONFIG, metrics=rec, alerts_out=alerts_out)
    alerts = [msgspec.json.decode(line, type=Alert) for line in out.read_bytes().splitlines()]
    return rec, summary, alerts


def test_world_metrics_equal_the_summary(world_run) -> None:
    rec, summary, _ = world_run
    assert summary.read > 10 * METRICS_BATCH
    _assert_equal_to_summary(rec, summary)


def test_world_has_revisions_and_an_escalation(world_run) -> None:
    # What the summary alone cannot show: revisions counted apart from new
    # alerts, and an alert raised below critical that ends critical.
    rec, summary, alerts = world_run
    assert sum(rec.updated.values()) == summary.revisions - sum(rec.raised.values()) > 0
    raised_critical = sum(n for (_, sev), n in rec.raised.items() if sev == "critical")
    assert rec.open.get(("reserve_misuse", "critical"), 0) > raised_critical
    assert rec.raised == Counter((a.detector, a.severity) for a in alerts if a.revision == 1)
    assert rec.updated == Counter((a.detector, a.severity) for a in alerts if a.revision > 1)


def test_world_reports_in_batches_not_per_record(world_run) -> None:
    rec, summary, _ = world_run
    flushes = summary.read // METRICS_BATCH + 1
    kinds = len(rec.records)
    assert rec.calls["accepted"] <= flushes
    assert rec.calls["duplicates"] <= flushes
    assert rec.calls["records_in"] <= flushes * kinds
    assert rec.calls["alert"] == summary.revisions
    # One record timed per batch, except where the batch's last line was a
    # dead letter (it never reaches the engine).
    dead = sum(summary.dead_letters.values())
    assert (
        summary.read // METRICS_BATCH - dead <= len(rec.processing) <= summary.read // METRICS_BATCH
    )
    assert all(0 < s < 5 for s in rec.processing)


def test_world_subject_gauges_follow_the_latest_evidence(world_run) -> None:
    rec, _, alerts = world_run
    latest: dict[tuple[str, str], float] = {}
    fields = {
        ("reserve_misuse", "coverage_shortfall"): "coverage_ratio",
        ("fund_pool", "gather_scatter"): "inflow",
        ("maturity_mismatch", "mismatch_exposure"): "mismatched_exposure",
    }
    for a in alerts:  # in emission order: the last one wins
        signal = a.evidence.get("signal")
        if (a.detector, signal) in fields:
            latest[(signal, a.subject_id)] = float(a.evidence[fields[(a.detector, signal)]])

    def of(signal: str) -> dict[str, float]:
        return {s: v for (sig, s), v in latest.items() if sig == signal}

    assert rec.coverage == of("coverage_shortfall") != {}
    assert rec.pooled == of("gather_scatter") != {}
    assert rec.exposure == of("mismatch_exposure") != {}


def test_world_subject_labels_capped_through_replay(world: Path, world_run) -> None:
    full, _, _ = world_run
    assert len(full.pooled) >= 2  # the cap below has something to fold
    rec = RecordingMetrics()
    replay([str(world)], config=CONFIG, metrics=rec, subject_limit=1)
    for capped, uncapped, fold in (
        (rec.pooled, full.pooled, sum),
        (rec.coverage, full.coverage, min),
        (rec.exposure, full.exposure, sum),
    ):
        assert len(capped) <= 2
        named = [s for s in capped if s != OTHER]
        assert len(named) == min(1, len(uncapped))
        rest = [v for s, v in uncapped.items() if s not in named]
        if rest:
            assert capped[OTHER] == pytest.approx(fold(rest))
        else:
            assert OTHER not in capped


def _assert_equal_to_summary(rec: RecordingMetrics, summary) -> None:
    assert sum(rec.records.values()) == summary.read
    assert rec.records.get(("replay", "invalid"), 0) == sum(
        summary.dead_letters.values()
    ) - summary.dead_letters.get("too_late", 0)
    assert rec.accepted_total == summary.accepted
    assert rec.duplicates_total == summary.duplicates
    assert rec.dead == summary.dead_letters
    raised_by_detector: Counter[str] = Counter()
    for (det, _), n in rec.raised.items():
        raised_by_detector[det] += n
    assert dict(raised_by_detector) == summary.by_detector()
    assert sum(rec.raised.values()) + sum(rec.updated.values()) == summary.revisions
    open_by_severity: dict[str, dict[str, int]] = {}
    for (det, sev), n in sorted(rec.open.items()):
        if n:
            open_by_severity.setdefault(det, {})[sev] = n
    assert open_by_severity == summary.by_severity()


# -- the alert reporter and the cap ------------------------------------------------


def _alert(
    alert_id: str,
    detector: str,
    severity: str,
    subject: str,
    evidence: dict,
    revision: int = 1,
) -> Alert:
    return Alert(
        alert_id=alert_id,
        detector=detector,
        severity=severity,  # type: ignore[arg-type]
        subject_id=subject,
        accounts=(),
        first_ts="2026-03-02T00:00:00+08:00",
        last_ts="2026-03-02T00:00:00+08:00",
        amount="1.00",
        summary="",
        evidence=evidence,
        detector_version="1",
        revision=revision,
    )


def _coverage(i: int, institution: str, ratio: str, severity: str = "high", revision: int = 1):
    return _alert(
        f"c{i}",
        "reserve_misuse",
        severity,
        institution,
        {"signal": "coverage_shortfall", "coverage_ratio": ratio},
        revision,
    )


def test_cap_names_the_first_subjects_and_folds_the_rest() -> None:
    rec = RecordingMetrics()
    rep = AlertReporter(rec, subject_limit=2)
    for i, (inst, ratio) in enumerate(
        [("I1", "0.90"), ("I2", "0.95"), ("I3", "0.50"), ("I4", "0.70"), ("I1", "0.80")]
    ):
        rep.report(_coverage(i, inst, ratio))
    assert rec.coverage == {"I1": 0.8, "I2": 0.95, OTHER: 0.5}
    # A folded subject's new figure replaces its old one in the fold.
    rep.report(_coverage(9, "I3", "0.99"))
    assert rec.coverage[OTHER] == 0.7
    for i, (platform, inflow) in enumerate(
        [("P1", "100.00"), ("P2", "200.00"), ("P3", "300.50"), ("P4", "400.00"), ("P3", "1.50")]
    ):
        rep.report(
            _alert(
                f"p{i}",
                "fund_pool",
                "medium",
                platform,
                {"signal": "gather_scatter", "inflow": inflow},
            )
        )
    assert rec.pooled == {"P1": 100.0, "P2": 200.0, OTHER: 401.5}
    rep.report(
        _alert(
            "m1",
            "maturity_mismatch",
            "medium",
            "P9",
            {"signal": "mismatch_exposure", "mismatched_exposure": "600000.00"},
        )
    )
    assert rec.exposure == {"P9": 600000.0}


def test_cap_bounds_the_label_values_at_any_number_of_subjects() -> None:
    seen: dict[str, float] = {}
    gauge = CappedGauge(seen.__setitem__, limit=500, fold=sum)
    for i in range(5000):
        gauge.set(f"P{i:05d}", 1.0)
    assert len(seen) == 501
    assert seen[OTHER] == 4500.0
    assert len(gauge.named) == 500


def test_cap_keeps_a_subject_named_other_out_of_the_named_labels() -> None:
    seen: dict[str, float] = {}
    gauge = CappedGauge(seen.__setitem__, limit=5, fold=min)
    gauge.set(OTHER, 0.4)
    gauge.set("I1", 0.9)
    assert seen == {OTHER: 0.4, "I1": 0.9}


def test_cap_limit_zero_folds_everything_and_negative_is_refused() -> None:
    seen: dict[str, float] = {}
    CappedGauge(seen.__setitem__, limit=0, fold=sum).set("P1", 3.0)
    assert seen == {OTHER: 3.0}
    with pytest.raises(ValueError, match="subject_limit must be >= 0, got -1"):
        AlertReporter(NullMetrics(), subject_limit=-1)


def test_open_alerts_move_with_an_escalation() -> None:
    rec = RecordingMetrics()
    rep = AlertReporter(rec)
    rep.report(_coverage(1, "I1", "0.85", "high"))
    rep.report(_coverage(2, "I2", "0.90", "high"))
    rep.report(_coverage(1, "I1", "0.70", "critical", revision=2))
    rep.report(_coverage(1, "I1", "0.60", "critical", revision=3))
    assert rec.raised == {("reserve_misuse", "high"): 2}
    assert rec.updated == {("reserve_misuse", "critical"): 2}
    assert rec.open == {("reserve_misuse", "high"): 1, ("reserve_misuse", "critical"): 1}
    assert rec.coverage == {"I1": 0.6, "I2": 0.9}


def test_evidence_without_the_figure_sets_no_gauge() -> None:
    rec = RecordingMetrics()
    rep = AlertReporter(rec)
    rep.report(_alert("x", "reserve_misuse", "low", "I1", {"signal": "coverage_shortfall"}))
    rep.report(
        _alert("y", "fund_pool", "low", "P1", {"signal": "gather_scatter", "inflow": "inf?"})
    )
    rep.report(_alert("z", "fund_pool", "low", "P1", {"signal": "idle_investor_money"}))
    assert (rec.coverage, rec.pooled, rec.exposure) == ({}, {}, {})
    assert rec.raised == {("reserve_misuse", "low"): 1, ("fund_pool", "low"): 2}


def test_a_gauge_is_chosen_by_the_detector_then_the_signal() -> None:
    rec = RecordingMetrics()
    rep = AlertReporter(rec)
    # The typology of fund_pool's signal name: its subject is an account.
    rep.report(
        _alert("t", "gather_scatter", "medium", "GSH",
               {"signal": "gather_scatter", "inflow": "150000.00"})
    )  # fmt: skip
    rep.report(
        _alert("u", "fund_pool", "low", "P1", {"signal": "coverage_shortfall", "coverage_ratio": "0.5"})
    )  # fmt: skip
    assert (rec.coverage, rec.pooled, rec.exposure) == ({}, {}, {})
    assert rec.raised == {("gather_scatter", "medium"): 1, ("fund_pool", "low"): 1}


# -- with the typologies on -------------------------------------------------------

BOTH = ["default", "typologies"]


@pytest.fixture(scope="module")
def typology_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[list, Path]:
    """The mixed stream with typology_ledger's raw transfers merged in: the
    business detectors' findings and one of each typology, the hub GSH's
    gather_scatter among them."""
    records = with_transfers(mixed_stream())
    path = tmp_path_factory.mktemp("typologies") / "dump.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(encode_record(r)) + b"\n" for r in records))
    return records, path


def _account_ids(records: list) -> set[str]:
    """Every account the records name: described ones and transaction parties."""
    ids = {r.account_id for r in records if type(r) is Account}
    for r in records:
        if type(r) is CustodyTxn:
            ids |= {r.debit_account, r.credit_account}
        elif type(r) is ClearingTxn:
            ids |= {r.payer_account, r.payee_account}
    return ids


def test_with_typologies_on_the_gauges_name_only_the_business_subjects(typology_dump) -> None:
    _, path = typology_dump
    out = path.with_name("alerts.jsonl")
    rec = RecordingMetrics()
    with open(out, "wb") as alerts_out:
        replay([str(path)], config=CONFIG, metrics=rec, alerts_out=alerts_out, detectors=BOTH)
    alerts = [msgspec.json.decode(line, type=Alert) for line in out.read_bytes().splitlines()]
    # Both detectors raised a gather_scatter, each stating an inflow.
    pooled = {
        (a.detector, a.subject_id, a.evidence["inflow"])
        for a in alerts
        if a.evidence.get("signal") == "gather_scatter"
    }
    assert pooled == {("fund_pool", "P", "1200000.00"), ("gather_scatter", "GSH", "150000.00")}
    # Only fund_pool's feeds the platform gauge; the typology's hub is an account.
    assert rec.pooled == {"P": 1200000.0}
    assert rec.coverage == {"PI": 0.9818}
    assert rec.exposure == {"P": 600000.0}


def test_with_typologies_on_no_label_value_is_an_account_id(typology_dump) -> None:
    records, path = typology_dump
    prom = PrometheusMetrics(mode="test")
    replay([str(path)], config=CONFIG, metrics=prom, detectors=BOTH)
    families = {
        f.name: f for f in text_string_to_metric_families(prom.exposition().decode("utf-8"))
    }

    def samples(name: str) -> list[tuple[dict[str, str], float]]:
        return [(s.labels, s.value) for s in families[name].samples]

    assert samples("fundflow_pooled_amount_yuan") == [({"platform": "P"}, 1200000.0)]
    assert samples("fundflow_reserve_coverage_ratio") == [({"institution": "PI"}, 0.9818)]
    assert samples("fundflow_mismatch_exposure_yuan") == [({"platform": "P"}, 600000.0)]
    # The typologies count under their own detector label, as bounded as the rest.
    raised = {
        s.labels["detector"]
        for s in families["fundflow_alerts_raised"].samples
        if s.name == "fundflow_alerts_raised_total" and s.value
    }
    assert {"gather_scatter", "fan_in", "fund_pool"} <= raised
    values = {v for f in families.values() for s in f.samples for v in s.labels.values()}
    accounts = _account_ids(records)
    assert {"GSH", "POOL", "R1"} <= accounts  # the check below has ids to find
    assert values & accounts == set()


# -- the protocol and the core's purity ------------------------------------------


@pytest.mark.parametrize("impl", [NullMetrics, RecordingMetrics])
def test_implementations_match_the_protocol(impl: type) -> None:
    for name in _protocol_methods():
        assert inspect.signature(getattr(impl, name)) == inspect.signature(
            getattr(Metrics, name)
        ), name


def test_prometheus_adapter_matches_the_protocol() -> None:
    pytest.importorskip("prometheus_client")
    from fundflow.prom import PrometheusMetrics

    for name in _protocol_methods():
        assert inspect.signature(getattr(PrometheusMetrics, name)) == inspect.signature(
            getattr(Metrics, name)
        ), name


def test_metrics_module_imports_no_metrics_library() -> None:
    result = _run_blocked(
        """
        import fundflow.detectors.metrics as m
        m.AlertReporter(m.NullMetrics())
        loaded = sorted(x for x in sys.modules if x.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("pure")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"


def test_engine_state_size_is_pinned() -> None:
    engine = Engine(CONFIG)
    assert engine.state_size() == (0, 0, 0)
    for r in mixed_stream():
        engine.process(r)
    assert engine.state_size() == (5, 54, 4)


# -- the Prometheus adapter ----------------------------------------------------------


def test_prometheus_exposition_and_serve() -> None:
    pytest.importorskip("prometheus_client")
    import urllib.request

    from fundflow.prom import PrometheusMetrics

    m = PrometheusMetrics(mode="test")
    text = m.exposition().decode()
    # Known label sets start at zero, so increase() sees their first rise.
    assert 'fundflow_alerts_raised_total{detector="reserve_misuse",severity="critical"} 0.0' in text
    assert 'fundflow_dead_letters_total{reason="too_late"} 0.0' in text
    assert 'fundflow_open_alerts{detector="fund_pool",severity="low"} 0.0' in text
    m.records_in("replay", "custody_txn", 4096)
    m.alert("fund_pool", "high", True)
    m.alert("fund_pool", "critical", False)
    m.consumer_lag("fundflow.custody", 3, 120)
    m.state_size(2, 40, 3)
    m.processing_seconds(0.00002)
    server = m.serve(0)
    try:
        assert server.addr == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=10) as response:
            scraped = response.read().decode()
    finally:
        server.close()
    for line in (
        'fundflow_records_in_total{kind="custody_txn",topic="replay"} 4096.0',
        'fundflow_alerts_raised_total{detector="fund_pool",severity="high"} 1.0',
        'fundflow_alerts_updated_total{detector="fund_pool",severity="critical"} 1.0',
        'fundflow_consumer_lag{partition="3",topic="fundflow.custody"} 120.0',
        "fundflow_state_accounts 40.0",
        'fundflow_processing_seconds_bucket{le="2.5e-05"} 1.0',
        'fundflow_processing_seconds_bucket{le="1e-05"} 0.0',
        'fundflow_build_info{mode="test"',
    ):
        assert line in scraped, line


def test_two_adapters_do_not_share_collectors() -> None:
    pytest.importorskip("prometheus_client")
    from fundflow.prom import PrometheusMetrics

    a, b = PrometheusMetrics(), PrometheusMetrics()
    a.accepted(5)
    assert b"fundflow_accepted_total 5.0" in a.exposition()
    assert b"fundflow_accepted_total 0.0" in b.exposition()


def test_summary_json_figures_are_what_the_metrics_check_against(
    dump: Path, tmp_path: Path
) -> None:
    # The integration test compares scraped counters with --summary-json:
    # pin the keys it reads.
    from click.testing import CliRunner

    from fundflow.cli import main

    out = tmp_path / "summary.json"
    result = CliRunner().invoke(
        main,
        [
            "replay",
            str(dump),
            "--no-db",
            "--alerts-out",
            str(tmp_path / "a.jsonl"),
            "--deadletter-out",
            str(tmp_path / "d.jsonl"),
            "--summary-json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert {k: figures[k] for k in ("read", "accepted", "duplicates", "alert_revisions")} == {
        "read": 140,
        "accepted": 134,
        "duplicates": 1,
        "alert_revisions": 16,  # two final revisions (see above)
    }


def test_linger_without_a_port_is_a_one_line_error(dump: Path) -> None:
    from click.testing import CliRunner

    from fundflow.cli import main

    result = CliRunner().invoke(main, ["replay", str(dump), "--no-db", "--metrics-linger", "5"])
    assert result.exit_code == 2
    assert result.output.strip() == "fundflow: --metrics-linger needs --metrics-port"
