"""The typology detectors on hand-made raw transfers: each rule of
detectors/typologies.py, every threshold from just under to just over, and
the life of an alert (episodes, re-emission, the end of a stream).

The rules run here with absolute floors in yuan (:data:`ABSOLUTE`: a
supervisor's legal thresholds, the relative floors off) so each floor can
be pinned from just under to just over: fan_in/fan_out 10 counterparties,
200,000 yuan, payments from 10,000 yuan, 72 hours; cycle 3-6 hops from
10,000 yuan, each passing on 90-100 % of the hop before, 168 hours;
gather_scatter 5 sources, 5 sinks, 100,000 yuan, 70 %, 48 hours, from 5,000
yuan; scatter_gather 3 intermediaries, 100,000 yuan, 10 %, 72 hours, from
10,000 yuan. The floors relative to the dump are pinned in
test_typology_baselines.py.
"""

from __future__ import annotations

import pytest
from ledger import DAY_MS, HOUR_MS, SECOND_MS, at, clearing, custody, iso_at, run
from typology_ledger import fan_in, fan_out, gather_scatter, loop, scatter_gather

from fundflow.detectors import (
    Cycle,
    Engine,
    FanIn,
    FanOut,
    GatherScatter,
    ScatterGather,
    load_config,
)
from fundflow.detectors.alerting import make_alert_id
from fundflow.detectors.transfer_graph import TransferGraph

#: Absolute floors in yuan, the relative ones off.
FLOORS = {
    "fan_in": {"min_payment": "10000", "min_total": "200000", "min_payment_pct": 0},
    "fan_out": {"min_payment": "10000", "min_total": "200000", "min_payment_pct": 0},
    "cycle": {"min_payment": "10000", "min_payment_pct": 0, "window_hours": 168, "max_hops": 6},
    "gather_scatter": {"min_payment": "5000", "min_inflow": "100000", "min_payment_pct": 0},
    "scatter_gather": {"min_payment": "10000", "min_total": "100000", "min_payment_pct": 0},
}
ABSOLUTE = load_config(overrides=FLOORS)


def floors(**more: dict) -> object:
    """:data:`ABSOLUTE` with ``more`` sections' settings on top."""
    layers = {k: dict(v) for k, v in FLOORS.items()}
    for section, values in more.items():
        layers.setdefault(section, {}).update(values)
    return load_config(overrides=layers)


def pinned(a) -> tuple:
    return (a.alert_id, a.detector, a.subject_id, a.severity, a.amount, a.revision)


# -- fan_in ------------------------------------------------------------------------


def test_fan_in_at_the_thresholds_alerts_with_checkable_evidence():
    recs = fan_in("H", 10, "20000", start=at(0, 9))
    [a] = run(FanIn(ABSOLUTE), recs, finish=True)
    assert pinned(a) == (
        make_alert_id("fan_in", "H", at(0, 9, 9)),
        "fan_in",
        "H",
        "low",
        "200000.00",
        1,
    )
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 9)), iso_at(at(0, 9, 9)))
    assert a.accounts[0] == "H" and len(a.accounts) == 11
    ev = a.evidence
    assert (ev["counterparties"], ev["transfers"], ev["total"]) == (10, 10, "200000.00")
    assert ev["payers"][0] == {"account": "FIP01", "amount": "20000.00", "transfers": 1}
    assert ev["sample_txn_ids"] == [f"FI{i:02d}" for i in range(1, 11)]
    assert ev["thresholds"]["min_counterparties"] == 10
    assert ev["thresholds"]["max_edges_per_account"] == 500
    assert a.summary == (
        "Account H received 200000.00 yuan in 10 transfers of at least 10000.00 yuan "
        "from 10 distinct payers within 72 hours."
    )


@pytest.mark.parametrize(
    ("recs", "alerts"),
    [
        (fan_in("H", 9, "30000", start=at(0, 9)), 0),  # 9 payers, 270,000
        (fan_in("H", 10, "19999.99", start=at(0, 9)), 0),  # 199,999.90 in all
        (
            fan_in("H", 9, "30000", start=at(0, 9))
            + [clearing("X", at(0, 11), "Y", "H", "9999.99")],
            0,
        ),
        (
            fan_in("H", 9, "30000", start=at(0, 9)) + [clearing("X", at(0, 11), "Y", "H", "10000")],
            1,
        ),
        # the same payer twice is one payer
        (
            fan_in("H", 9, "30000", start=at(0, 9))
            + [clearing("X", at(0, 11), "FIP01", "H", "30000")],
            0,
        ),
        # another currency never counts
        (
            fan_in("H", 9, "30000", start=at(0, 9))
            + [clearing("X", at(0, 11), "Y", "H", "30000", currency="USD")],
            0,
        ),
    ],
    ids=["9-payers", "total-under", "floor-under", "floor-at", "repeat-payer", "usd"],
)
def test_fan_in_each_side_of_each_threshold(recs, alerts):
    assert len(run(FanIn(ABSOLUTE), recs, finish=True)) == alerts


def test_fan_in_window_is_72_hours_closed_at_its_start():
    # Booked times a whole window apart are within it (a dump booking one
    # time a day books 72 real hours on four days, the first and last 72 h apart).
    first = fan_in("H", 9, "30000", start=at(0, 9), prefix="A")
    late = clearing("Z", at(0, 9) + 72 * HOUR_MS + 1, "ZP", "H", "30000")
    assert run(FanIn(ABSOLUTE), [*first, late], finish=True) == []
    just_in = clearing("Z", at(0, 9) + 72 * HOUR_MS, "ZP", "H", "30000")
    [a] = run(FanIn(ABSOLUTE), [*first, just_in], finish=True)
    assert a.amount == "300000.00"


def test_fan_in_grows_under_one_id_and_a_later_episode_is_another():
    recs = fan_in("H", 12, "20000", start=at(0, 9))
    alerts = run(FanIn(ABSOLUTE), recs, finish=True)
    episode = make_alert_id("fan_in", "H", at(0, 9, 9))
    # 200,000 at the 10th payer, 240,000 (+20 %) at the 12th; the 11th (+10 %) too.
    assert [pinned(a)[4:] for a in alerts] == [("200000.00", 1), ("220000.00", 2), ("240000.00", 3)]
    assert {a.alert_id for a in alerts} == {episode}
    again = fan_in("H", 10, "20000", start=at(10, 9), prefix="LATER")
    later = run(FanIn(ABSOLUTE), [*recs, *again], finish=True)
    assert [a.alert_id for a in later if a.revision == 1] == [
        episode,
        make_alert_id("fan_in", "H", at(10, 9, 9)),
    ]


def test_fan_in_end_of_stream_states_figures_that_moved():
    # 10 payers, then 1 more of 10,000: +5 %, under the re-emission step.
    recs = fan_in("H", 10, "20000", start=at(0, 9)) + [clearing("X", at(0, 12), "Y", "H", "10000")]
    det = FanIn(ABSOLUTE)
    assert [a.amount for a in run(det, recs)] == ["200000.00"]
    [final] = det.finish().drain()
    assert (final.amount, final.revision, final.last_ts) == ("210000.00", 2, iso_at(at(0, 12)))


# -- fan_out -----------------------------------------------------------------------


def test_fan_out_alerts_at_ten_payees_not_nine():
    [a] = run(FanOut(ABSOLUTE), fan_out("H", 10, "20000", start=at(0, 9)), finish=True)
    assert pinned(a) == (
        make_alert_id("fan_out", "H", at(0, 9, 9)),
        "fan_out",
        "H",
        "low",
        "200000.00",
        1,
    )
    assert a.evidence["payees"][-1] == {"account": "FOR10", "amount": "20000.00", "transfers": 1}
    assert run(FanOut(ABSOLUTE), fan_out("H", 9, "30000", start=at(0, 9)), finish=True) == []
    # Payroll: 60 salaries under the floor.
    assert run(FanOut(ABSOLUTE), fan_out("H", 60, "9999.99", start=at(0, 9)), finish=True) == []


# -- cycle -------------------------------------------------------------------------


def test_a_three_hop_loop_is_a_cycle_with_its_hops_in_evidence():
    recs = loop(["A", "B", "C"], ["100000", "98000", "95000"], start=at(0, 9))
    [a] = run(Cycle(ABSOLUTE), recs, finish=True)
    assert pinned(a) == (make_alert_id("cycle", "A", "CY1"), "cycle", "A", "low", "100000.00", 1)
    assert a.accounts == ("A", "B", "C")
    assert [(h["txn_id"], h["from"], h["to"], h["amount"]) for h in a.evidence["hops"]] == [
        ("CY1", "A", "B", "100000.00"),
        ("CY2", "B", "C", "98000.00"),
        ("CY3", "C", "A", "95000.00"),
    ]
    assert (a.evidence["sent"], a.evidence["returned"], a.evidence["span_hours"]) == (
        "100000.00",
        "95000.00",
        "2.00",
    )


@pytest.mark.parametrize(
    ("accounts", "amounts", "step", "alerts"),
    [
        # each hop passes on 90-100 % of what the hop before brought
        (["A", "B", "C"], ["100000", "90000", "81000"], HOUR_MS, 1),
        (["A", "B", "C"], ["100000", "89999.99", "89999.99"], HOUR_MS, 0),
        (["A", "B", "C"], ["100000", "100000", "100000"], HOUR_MS, 1),
        (["A", "B", "C"], ["100000", "100000.01", "100000.01"], HOUR_MS, 0),
        # 3 % kept at each of 6 hops: 14 % less comes back, every hop within 10 %
        (
            list("ABCDEF"),
            ["50000", "48500", "47045", "45633.65", "44264.64", "42936.70"],
            HOUR_MS,
            1,
        ),  # fmt: skip
        (["A", "B"], ["100000", "100000"], HOUR_MS, 0),  # 2 hops: a payment and its refund
        (list("ABCDEF"), ["50000"] * 6, HOUR_MS, 1),  # 6 hops
        (list("ABCDEFG"), ["50000"] * 7, HOUR_MS, 0),  # 7 hops
        (["A", "B", "C"], ["9999.99"] * 3, HOUR_MS, 0),  # under the floor
        (["A", "B", "C"], ["50000"] * 3, 84 * HOUR_MS + SECOND_MS, 0),  # 168 h and 2 s
        (["A", "B", "C"], ["50000"] * 3, 84 * HOUR_MS, 1),  # first to last: 168 h, within
    ],
    ids=[
        "tol-at",
        "tol-over",
        "kept-all",
        "grows",
        "cuts-add-up",
        "2-hops",
        "6-hops",
        "7-hops",
        "floor",
        "168h+2s",
        "168h",
    ],
)
def test_cycle_each_side_of_each_threshold(accounts, amounts, step, alerts):
    recs = loop(accounts, amounts, start=at(0, 9), step=step)
    assert len(run(Cycle(ABSOLUTE), recs, finish=True)) == alerts


def test_a_loop_whose_hops_run_backwards_in_time_is_not_a_cycle():
    recs = [
        clearing("T2", at(0, 9), "B", "C", "50000"),
        clearing("T1", at(0, 10), "A", "B", "50000"),
        clearing("T3", at(0, 11), "C", "A", "50000"),
    ]
    assert run(Cycle(ABSOLUTE), recs, finish=True) == []


def test_the_search_budget_bounds_the_work_and_a_spent_budget_finds_nothing():
    # 40 decoys paid C before the loop's own hop: examined first would be the
    # newest, so the real hop (oldest) lies beyond a budget of 10.
    recs = [
        clearing("AB", at(0, 9), "A", "B", "50000"),
        clearing("BC", at(0, 9, 1), "B", "C", "50000"),
    ]
    recs += [clearing(f"D{i:02d}", at(0, 10, i), f"X{i:02d}", "C", "50000") for i in range(40)]
    recs.append(clearing("CA", at(0, 12), "C", "A", "50000"))
    cfg = floors(cycle={"max_search_steps": 10})
    assert run(Cycle(cfg), recs, finish=True) == []
    assert [a.subject_id for a in run(Cycle(ABSOLUTE), recs, finish=True)] == ["A"]


# -- gather_scatter ----------------------------------------------------------------


def test_gather_scatter_at_the_thresholds():
    recs = gather_scatter("HUB", ["30000"] * 5, ["21000"] * 5, start=at(0, 9))
    [a] = run(GatherScatter(ABSOLUTE), recs, finish=True)
    assert pinned(a) == (
        make_alert_id("gather_scatter", "HUB", at(0, 11, 4)),
        "gather_scatter",
        "HUB",
        "low",
        "105000.00",
        1,
    )
    ev = a.evidence
    assert (ev["distinct_sources"], ev["distinct_sinks"], ev["inflow"], ev["outflow"]) == (
        5,
        5,
        "150000.00",
        "105000.00",
    )
    assert ev["pass_through_ratio"] == "0.7000"
    assert ev["sample_txn_ids"] == [
        *(f"GSI{i}" for i in range(1, 6)),
        *(f"GSO{i}" for i in range(1, 6)),
    ]


@pytest.mark.parametrize(
    ("ins", "outs", "alerts"),
    [
        (["30000"] * 5, ["21000"] * 4 + ["20999.99"], 0),  # 69.99 % passed on
        (["30000"] * 5, ["21000"] * 5, 1),  # 70 %
        (["37500"] * 4, ["30000"] * 5, 0),  # 4 sources
        (["30000"] * 5, ["30000"] * 4, 0),  # 4 sinks
        (["19999.99"] * 5, ["19999.99"] * 5, 0),  # 99,999.95 gathered
        (["20000"] * 5, ["20000"] * 5, 1),
        (["30000"] * 5 + ["4999.99"], ["24000"] * 5, 1),  # the small one is not counted
    ],
    ids=["ratio", "ratio-at", "sources", "sinks", "inflow", "inflow-at", "floor"],
)
def test_gather_scatter_each_side_of_each_threshold(ins, outs, alerts):
    recs = gather_scatter("HUB", ins, outs, start=at(0, 9))
    assert len(run(GatherScatter(ABSOLUTE), recs, finish=True)) == alerts


def test_payouts_before_the_first_receipt_are_not_pass_through():
    paid_first = [clearing(f"E{i}", at(0, 8, i), "HUB", f"K{i}", "24000") for i in range(5)]
    gathered = gather_scatter("HUB", ["30000"] * 5, [], start=at(0, 9))
    assert run(GatherScatter(ABSOLUTE), [*paid_first, *gathered], finish=True) == []


# -- scatter_gather ----------------------------------------------------------------


def test_scatter_gather_at_the_thresholds():
    recs = scatter_gather("S", "T", ["40000"] * 3, ["36000"] * 3, start=at(0, 9))
    [a] = run(ScatterGather(ABSOLUTE), recs, finish=True)
    assert pinned(a) == (
        make_alert_id("scatter_gather", "S", "T", at(0, 12, 2)),
        "scatter_gather",
        "S",
        "low",
        "108000.00",
        1,
    )
    assert a.accounts == ("S", "T", "SGM1", "SGM2", "SGM3")
    assert a.evidence["legs"][0] == {
        "via": "SGM1",
        "in_txn": "SGA1",
        "in_amount": "40000.00",
        "out_txn": "SGB1",
        "out_amount": "36000.00",
    }
    assert (a.evidence["sent"], a.evidence["gathered"]) == ("120000.00", "108000.00")


@pytest.mark.parametrize(
    ("sent", "passed", "alerts"),
    [
        (["40000"] * 3, ["36000"] * 2 + ["35999.99"], 0),  # one leg keeps over 10 %
        (["40000"] * 3, ["36000"] * 2 + ["44000"], 1),  # 10 % more is still conserved
        (["60000"] * 2, ["60000"] * 2, 0),  # 2 intermediaries
        (["33400"] * 3, ["33333.33"] * 3, 0),  # 99,999.99 re-converged
        (["33400"] * 3, ["33333.34"] * 3, 1),  # 100,000.02
    ],
    ids=["tol-over", "tol-up", "2-mids", "total-under", "total-at"],
)
def test_scatter_gather_each_side_of_each_threshold(sent, passed, alerts):
    recs = scatter_gather("S", "T", sent, passed, start=at(0, 9))
    assert len(run(ScatterGather(ABSOLUTE), recs, finish=True)) == alerts


def test_an_intermediary_paying_before_it_was_paid_is_not_a_leg():
    recs = scatter_gather("S", "T", ["40000"] * 3, ["40000"] * 3, start=at(0, 9))
    assert len(run(ScatterGather(ABSOLUTE), recs, finish=True)) == 1
    early = [r for r in recs if r.txn_id != "SGA3"] + [
        clearing("SGA3", at(0, 13), "S", "SGM3", "40000")
    ]
    assert run(ScatterGather(ABSOLUTE), sorted(early, key=lambda r: r.ts), finish=True) == []


# -- the graph, the group, the configuration ----------------------------------------


def test_the_graph_keeps_the_newest_edges_up_to_its_cap_and_forgets_by_time():
    g = TransferGraph(retention_ms=DAY_MS, max_edges=3)
    for i in range(5):
        g.add(at(0, 9, i), f"P{i}", "H", 100, f"T{i}")
    assert [e[3] for e in g.incoming["H"]] == ["T2", "T3", "T4"]
    assert g.capped == 2
    g.add(at(0, 8), "LATE", "H", 100, "TL")  # late: into its place, then the cap
    assert [e[3] for e in g.incoming["H"]] == ["T2", "T3", "T4"]
    g.add(at(2, 9), "Q", "R", 100, "TQ")  # a day and more later: the sweep forgets H
    assert "H" not in g.incoming and set(g.outgoing) == {"Q"}
    assert g.size() == 2


def test_a_transfer_already_past_the_retention_leaves_no_empty_account_for_the_sweep():
    g = TransferGraph(retention_ms=DAY_MS, max_edges=3)
    g.add(at(2, 9), "A", "B", 100, "T1")
    g.add(at(0, 9), "E", "F", 100, "OLD")  # two days late, to new accounts
    assert ("E" in g.outgoing, "F" in g.incoming) == (False, False)
    g.add(at(4, 9), "G", "H", 100, "T2")  # sweeps (it read an empty account's newest edge)
    assert (set(g.incoming), set(g.outgoing)) == ({"H"}, {"G"})


def test_typologies_are_an_opt_in_group_of_the_engine():
    assert [d.name for d in Engine().detectors] == [
        d.name for d in Engine(detectors=["default"]).detectors
    ]
    assert "fan_in" not in [d.name for d in Engine().detectors]
    eng = Engine(ABSOLUTE, detectors=["typologies"])
    assert [d.name for d in eng.detectors] == [
        "fan_in",
        "fan_out",
        "cycle",
        "gather_scatter",
        "scatter_gather",
        "split_payments",
        "off_profile",
        "bipartite",
        "stack",
        "peel_chain",
    ]
    cfg = load_config(overrides={"engine": {"detectors": ["cycle", "fund_pool"]}})
    assert [d.name for d in Engine(cfg).detectors] == ["cycle", "fund_pool"]
    recs = loop(["A", "B", "C"], ["100000", "98000", "95000"], start=at(0, 9))
    out = [a for r in recs for a in eng.process(r)] + eng.finish()
    assert [(a.detector, a.subject_id) for a in out] == [("cycle", "A")]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("cycle", "max_hops", 1, "cycle.max_hops must be >= 2, got 1"),
        ("cycle", "min_hops", 9, "cycle.min_hops must be <= cycle.max_hops, got 9 > 8"),
        ("fan_in", "min_payment", "-1", "fan_in.min_payment must be a non-negative amount"),
        ("fan_out", "window_hours", 0, "fan_out.window_hours must be >= 1, got 0"),
        ("gather_scatter", "min_pass_through_pct", 101, "must be <= 100, got 101"),
        ("scatter_gather", "tolerance_pct", 100, "scatter_gather.tolerance_pct must be <= 99"),
        ("typologies", "severity_high", "1", "typologies severity bands must rise"),
        ("engine", "detectors", ["typo"], "engine.detectors: unknown detector\\(s\\): typo"),
        ("engine", "detectors", [], "engine.detectors must be a non-empty list"),
    ],
)
def test_bad_thresholds_are_refused_by_name(section, key, value, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides={section: {key: value}})


def test_a_hub_busier_than_the_cap_still_alerts_on_what_it_keeps():
    cfg = floors(typologies={"max_edges_per_account": 12})
    recs = fan_in("H", 30, "20000", start=at(0, 9))
    alerts = run(FanIn(cfg), recs, finish=True)
    # Never more than the 12 newest payments: 240,000 at most.
    assert alerts[-1].amount == "240000.00"
    assert alerts[-1].evidence["counterparties"] == 12


def test_custody_bookings_are_left_to_the_business_detectors():
    recs = [
        custody(f"C{i:02d}", at(0, 9, i), f"L{i:02d}", "POOL", "50000", "invest") for i in range(12)
    ]
    assert run(FanIn(ABSOLUTE), recs, finish=True) == []
    as_payments = [
        clearing(f"C{i:02d}", at(0, 9, i), f"L{i:02d}", "POOL", "50000") for i in range(12)
    ]
    # 500,000 at the 10th, +10 % at the 11th, and the 12th stated at the end.
    assert [
        (a.subject_id, a.amount, a.revision) for a in run(FanIn(ABSOLUTE), as_payments, finish=True)
    ] == [
        ("POOL", "500000.00", 1),
        ("POOL", "550000.00", 2),
        ("POOL", "600000.00", 3),
    ]


def test_a_transfer_older_than_the_graphs_retention_leaves_no_empty_account():
    g = TransferGraph(retention_ms=1000, max_edges=3)
    g.add(5000, "A", "B", 100, "T1")
    g.add(10, "C", "D", 100, "T0")  # far behind the newest: dropped at once
    assert "D" not in g.incoming and "C" not in g.outgoing
    g.add(7000, "A", "B", 100, "T2")  # a sweep over what is held does not fail
    assert list(g.incoming) == ["B"] and g.size() == 2
