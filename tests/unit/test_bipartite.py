"""The bipartite typology (detectors/bipartite.py) on hand-made raw
transfers: a group of payers each paying several of one group of payees,
every threshold from just under to just over.

With absolute floors (:data:`ABSOLUTE`: payments from 10,000 yuan, the
relative floor off) at the defaults otherwise: 3 payers, each paying 3 of
the payees, each payee paid by 2 of them, 60 % of the pairs paid, 72 hours.
"""

from __future__ import annotations

import pytest
from ledger import HOUR_MS, MINUTE_MS, at, clearing, iso_at, run
from typology_ledger import background, complete, many_to_many

from fundflow.detectors import Bipartite, load_config
from fundflow.detectors.alerting import make_alert_id

FLOORS = {"bipartite": {"min_payment": "10000", "min_payment_pct": 0}}
ABSOLUTE = load_config(overrides=FLOORS)
A, B = ["A1", "A2", "A3"], ["B1", "B2", "B3"]
# 4 payers each paying 3 of 5 payees, each payee paid by 2 or 3: 12 of 20 pairs.
SPARSE = [
    *[("P1", q) for q in ("Q1", "Q2", "Q3")],
    *[("P2", q) for q in ("Q3", "Q4", "Q5")],
    *[("P3", q) for q in ("Q1", "Q4", "Q5")],
    *[("P4", q) for q in ("Q2", "Q3", "Q4")],
]


def cfg(**bipartite) -> object:
    return load_config(overrides={"bipartite": {**FLOORS["bipartite"], **bipartite}})


def alerts(recs, config=ABSOLUTE):
    return run(Bipartite(config), recs, finish=True)


def test_three_payers_each_paying_three_payees_alert_with_checkable_evidence():
    recs = many_to_many(complete(A, B), "30000", start=at(0, 9))
    [a] = alerts(recs)
    assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
        make_alert_id("bipartite", "A1", at(0, 9, 8)),
        "A1",
        "low",
        "270000.00",
        1,
    )
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 9)), iso_at(at(0, 9, 8)))
    assert a.accounts == ("A1", "A2", "A3", "B1", "B2", "B3")
    ev = a.evidence
    assert (ev["payer_count"], ev["payee_count"], ev["pairs_paid"], ev["pairs_possible"]) == (
        3,
        3,
        9,
        9,
    )
    assert (ev["density"], ev["transfers"], ev["total"]) == ("1.0000", 9, "270000.00")
    assert ev["payers"][0] == {"account": "A1", "payees": ["B1", "B2", "B3"], "amount": "90000.00"}
    assert ev["sample_txn_ids"] == [f"BP{i:02d}" for i in range(1, 10)]
    assert ev["thresholds"]["min_payers"] == 3
    assert ev["baseline"] == {
        "currency": "CNY",
        "counted_from": "10000.00",
        "absolute_floor": "10000.00",
    }
    assert a.summary == (
        "3 payers paid 3 payees 270000.00 yuan in 9 transfers of at least 10000.00 yuan within "
        "72 hours: 9 of the 9 payer-payee pairs (density 1.0000)."
    )


@pytest.mark.parametrize(
    ("pairs", "config", "n"),
    [
        (complete(A[:2], B), ABSOLUTE, 0),  # 2 payers
        (complete(A, B[:2]), ABSOLUTE, 0),  # 3 payees, but each payer pays 2
        (complete(A, B)[:-1], ABSOLUTE, 0),  # A3 pays 2
        (SPARSE, ABSOLUTE, 1),  # 12 of 20 pairs: 60 %
        (SPARSE, cfg(min_density_pct=61), 0),
        (complete(A, B), cfg(min_payers=4), 0),
        (complete(A, B), cfg(min_payees=4), 0),
        (complete(A, B), cfg(min_total="270000"), 1),
        (complete(A, B), cfg(min_total="270000.01"), 0),
    ],
    ids=[
        "2-payers", "2-payees", "one-pays-2", "density-at", "density-under",
        "min-payers", "min-payees", "total-at", "total-under",
    ],
)  # fmt: skip
def test_each_side_of_each_threshold(pairs, config, n):
    assert len(alerts(many_to_many(pairs, "30000", start=at(0, 9)), config)) == n


def test_a_payee_paid_by_one_payer_is_no_part_of_the_group():
    # A1 also pays X, paid by no other: the group is A x B all the same, and
    # a payer whose third payee is X pays only two of the group.
    recs = many_to_many([*complete(A, B), ("A1", "X")], "30000", start=at(0, 9))
    [a] = alerts(recs)
    assert a.evidence["payees"] == B and a.amount == "270000.00"
    lone = many_to_many([*complete(A, B[:2]), ("A1", "X")], "30000", start=at(0, 9))
    assert alerts(lone) == []


def test_the_payment_floor_and_the_window():
    under = many_to_many(complete(A, B), "30000", start=at(0, 9))
    under[-1] = clearing("LAST", at(0, 10), "A3", "B3", "9999.99")
    assert alerts(under) == []
    first = many_to_many(complete(A, B)[:-1], "30000", start=at(0, 9))
    late = clearing("LAST", at(0, 9) + 72 * HOUR_MS + 1, "A3", "B3", "30000")
    assert alerts([*first, late]) == []
    just_in = clearing("LAST", at(0, 9) + 72 * HOUR_MS, "A3", "B3", "30000")  # a window apart: in
    [a] = alerts([*first, just_in])
    assert a.amount == "270000.00"


def test_a_growing_group_is_one_episode_and_the_search_budget_bounds_it():
    recs = many_to_many(complete([*A, "A4"], B), "30000", start=at(0, 9))
    got = alerts(recs)
    # 270,000 at A3's third payment, 360,000 (+33 %) at A4's third.
    assert [(a.alert_id, a.amount, a.revision) for a in got] == [
        (make_alert_id("bipartite", "A1", at(0, 9, 8)), "270000.00", 1),
        (make_alert_id("bipartite", "A1", at(0, 9, 8)), "360000.00", 2),
    ]
    # 9 transfers to look at: a budget of 8 runs out and finds nothing.
    assert (
        alerts(many_to_many(complete(A, B), "30000", start=at(0, 9)), cfg(max_search_steps=8)) == []
    )


def test_against_the_dump_a_payment_counts_from_its_80th_percentile():
    bg = background()
    group = many_to_many(complete(A, B), "4500", start=at(4, 9))
    [a] = run(Bipartite(), [*bg, *group], finish=True)
    assert a.evidence["baseline"] == {
        "currency": "CNY",
        "counted_from": "4096.00",
        "percentile": 80,
        "payments_seen": 408,
    }
    small = many_to_many(complete(A, B), "3000", start=at(4, 9))
    assert run(Bipartite(), [*bg, *small], finish=True) == []
    # Before 200 payments are seen nothing counts.
    assert run(Bipartite(), [*bg[:150], *group], finish=True) == []


def test_shops_ordering_from_the_same_wholesalers_a_week_apart_do_not_alert():
    recs = [
        clearing(f"W{week}{i}", at(7 * week, 10) + i * MINUTE_MS, shop, B[(i + week) % 3], "30000")
        for week in range(4)
        for i, shop in enumerate(A)
    ]
    assert alerts(recs) == []


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="bipartite.min_payers must be >= 2, got 1"):
        load_config(overrides={"bipartite": {"min_payers": 1}})
    with pytest.raises(ValueError, match="bipartite.min_density_pct must be <= 100, got 101"):
        load_config(overrides={"bipartite": {"min_density_pct": 101}})
