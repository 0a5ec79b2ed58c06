"""Thresholds relative to the dump (detectors/data_scale.py), currencies,
and the typologies judged against the data's own figures: split_payments
and off_profile, each rule from just under to just over.

:func:`typology_ledger.background` is the dump's baseline: 400 everyday
payments of 20.00 to 5,006.50 yuan on days 0-3; its 5th percentile lies in
the bucket [266.24, 276.48) yuan, its 93rd in [4,587.52, 4,751.36). Each
payment is judged against the payments before it, then joins them.
"""

from __future__ import annotations

import pickle
import random

import pytest
from ledger import MINUTE_MS, at, clearing, run
from typology_ledger import background, fan_in, habit, split, typology_stream

from fundflow.detectors import FanIn, OffProfile, SplitPayments, data_scale, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.detectors.data_scale import AmountScale, bucket, bucket_floor

BASE = background()


def usd(records: list) -> list:
    """The same payments in USD."""
    return [clearing(r.txn_id, r.ts, r.payer_account, r.payee_account, r.amount / 100, currency="USD") for r in records]  # fmt: skip


# -- the dump's scale ----------------------------------------------------------------


def test_the_grid_has_sixteen_buckets_a_doubling_and_covers_every_amount():
    assert [bucket(x) for x in (0, 31, 32, 33, 34, 63, 64, 67, 68)] == [
        0,
        31,
        32,
        32,
        33,
        47,
        48,
        48,
        49,
    ]
    assert [bucket_floor(b) for b in (31, 32, 33, 47, 48, 49)] == [31, 32, 34, 62, 64, 68]
    for x in (1, 999, 10**6 + 7, 2**40 + 3):
        assert bucket_floor(bucket(x)) <= x < bucket_floor(bucket(x) + 1)


def test_percentiles_are_bucket_edges_below_and_above_the_exact_one():
    s = AmountScale()
    for r in BASE:
        s.add("CNY", r.amount)
    assert s.count("CNY") == 400
    assert (s.percentile("CNY", 5), s.percentile("CNY", 5, upper=True)) == (26624, 27648)
    assert (s.percentile("CNY", 93), s.percentile("CNY", 93, upper=True)) == (458752, 475136)
    exact = sorted(r.amount for r in BASE)[400 * 93 // 100]
    assert 458752 <= exact < 475136
    assert s.percentile("USD", 50) is None


def test_counts_are_halved_at_the_bound_so_memory_and_weight_stay_bounded(monkeypatch):
    monkeypatch.setattr(data_scale, "HALVE_AT", 10)
    s = AmountScale()
    for _ in range(9):
        s.add("CNY", 100)
    s.add("CNY", 5000)
    assert s.count("CNY") == 4 and s.hist["CNY"] == {bucket(100): 4}


def _searched(h: dict[int, int], count: int, pct: int, upper: bool) -> int:
    """The percentile as a search over the sorted buckets finds it."""
    rank, seen = count * pct // 100, 0
    found = max(h)
    for b in sorted(h):
        seen += h[b]
        if seen > rank:
            found = b
            break
    return bucket_floor(found + 1) if upper else bucket_floor(found)


@pytest.mark.parametrize("seed", range(6))
def test_the_kept_percentiles_are_the_searched_ones(monkeypatch, seed):
    """After every payment, every percentile asked equals a search over the
    sorted buckets: amounts rising, falling and at random, buckets new and
    old, halvings, and a snapshot restored halfway."""
    monkeypatch.setattr(data_scale, "HALVE_AT", 97)
    rng = random.Random(seed)
    s = AmountScale()
    asked = (0, 5, 50, 90, 93, 99, 100)
    for i in range(600):
        shape = (i // 100) % 3
        if shape == 0:
            amount = rng.randint(1, 10**9)
        elif shape == 1:
            amount = 10**8 - i * 1000 + rng.randint(0, 999)
        else:
            amount = int(rng.lognormvariate(10, 3)) + 1
        s.add("CNY", amount)
        if i == 300:
            s = pickle.loads(pickle.dumps(s))
        for pct in rng.sample(asked, 3):
            upper = rng.random() < 0.5
            want = _searched(s.hist["CNY"], s.count("CNY"), pct, upper)
            assert s.percentile("CNY", pct, upper=upper) == want, (i, pct, upper)
    assert s.count("CNY") < 97


def test_take_adds_a_payment_once_and_answers_from_before_it():
    s = AmountScale()
    s.ask(93, True)
    s.ask(5, False)
    s.ask(93, True)  # asked twice, answered once
    for r in BASE:
        s.add("CNY", r.amount)
    flow, other = object(), object()
    before = {(93, True): 475136, (5, False): 26624}
    assert s.take(flow, "CNY", 10**9, 200) == (400, before)
    assert s.count("CNY") == 401
    # the same payment handed in again (the next typology): not added again,
    # the answers from before it
    assert s.take(flow, "CNY", 10**9, 200) == (400, before)
    assert s.count("CNY") == 401
    # a scale that only adds, beside it: the answers are its own before each payment
    ref = AmountScale()
    for r in BASE:
        ref.add("CNY", r.amount)
    ref.add("CNY", 10**9)
    for amount in (10**9, 10**9, 1, 10**9):
        want = {
            (93, True): ref.percentile("CNY", 93, upper=True),
            (5, False): ref.percentile("CNY", 5),
        }
        assert s.take(other, "CNY", amount, 200) == (ref.count("CNY"), want)
        ref.add("CNY", amount)
        other = object()
    assert s.count("CNY") == ref.count("CNY") == 405
    assert s.take(other, "CNY", 1, 200)[1] != before  # four payments of 10 million yuan later
    # under min_samples: the count only
    assert s.take(object(), "USD", 500, 200) == (0, {})
    assert s.take(object(), "USD", 500, 1) == (1, {(93, True): 512, (5, False): 496})


def test_an_engines_typologies_share_one_scale_and_find_what_each_finds_alone():
    from fundflow.detectors import Engine
    from fundflow.detectors.engine import TYPOLOGIES

    recs = typology_stream()
    eng = Engine(detectors=["typologies"])
    alerts = [a for r in recs for a in eng.submit(r)] + eng.finish()
    [scale] = {id(d.scale) for d in eng.detectors}
    # every payment counted once, not once a typology
    assert eng.detectors[0].scale.count("CNY") == len(recs) == 466
    alone = [a for cls in TYPOLOGIES.values() for a in run(cls(), recs, finish=True)]
    key = lambda a: (a.detector, a.alert_id, a.revision)  # noqa: E731
    assert sorted(alerts, key=key) == sorted(alone, key=key)
    assert {a.detector for a in alerts} == set(TYPOLOGIES)


def test_a_restored_engines_typologies_share_one_scale_again():
    from fundflow.detectors import Engine

    recs = typology_stream()
    half = len(recs) // 2
    whole = Engine(detectors=["typologies"])
    want = [a for r in recs for a in whole.submit(r)] + whole.finish()
    first = Engine(detectors=["typologies"])
    got = [a for r in recs[:half] for a in first.submit(r)]
    eng = Engine(detectors=["typologies"]).restore(first.snapshot())
    [scale] = {id(d.scale) for d in eng.detectors}
    got += [a for r in recs[half:] for a in eng.submit(r)] + eng.finish()
    assert got == want
    assert eng.detectors[-1].scale.count("CNY") == len(recs)


# -- relative floors and currencies ---------------------------------------------------


def test_a_fan_in_counts_payments_from_the_dumps_93rd_percentile():
    [a] = run(FanIn(), [*BASE, *fan_in("H", 10, "20000", start=at(4, 9))], finish=True)
    assert (a.alert_id, a.subject_id, a.amount) == (
        make_alert_id("fan_in", "H", at(4, 9, 9)),
        "H",
        "200000.00",
    )
    assert a.evidence["baseline"] == {
        "currency": "CNY",
        "counted_from": "4915.20",
        "percentile": 93,
        "payments_seen": 409,
    }
    assert "in 10 transfers of at least 4915.20 yuan from 10 distinct payers" in a.summary


@pytest.mark.parametrize(
    ("prefix", "each", "alerts"),
    [
        ([], "20000", 0),  # no baseline yet: 10 payments are fewer than min_samples (200)
        (BASE, "4500", 0),  # under the 93rd percentile
        (BASE, "4915.20", 1),  # the upper edge of the bucket of the 93rd percentile
        (BASE, "4915.19", 0),  # the fan's own payments lift it there from 4,751.36
    ],
    ids=["no-baseline", "under", "at-edge", "under-edge"],
)
def test_fan_in_each_side_of_the_relative_floor(prefix, each, alerts):
    recs = [*prefix, *fan_in("H", 10, each, start=at(4, 9))]
    assert len(run(FanIn(), recs, finish=True)) == alerts


def test_an_absolute_floor_still_applies_to_cny_on_top_of_the_relative_one():
    cfg = load_config(overrides={"fan_in": {"min_payment": "20000.01"}})
    assert run(FanIn(cfg), [*BASE, *fan_in("H", 10, "20000", start=at(4, 9))], finish=True) == []


def test_another_currency_is_judged_against_its_own_payments_with_no_yuan_figure():
    recs = usd([*BASE, *fan_in("H", 10, "20000", start=at(4, 9))])
    [a] = run(FanIn(), recs, finish=True)
    assert (a.subject_id, a.amount, a.severity) == ("H", "200000.00", "low")
    assert a.evidence["baseline"]["currency"] == "USD"
    assert a.summary.startswith(
        "Account H received 200000.00 USD in 10 transfers of at least 4915.20 USD"
    )
    # USD payments are not mixed with a CNY baseline: none of their own yet.
    assert run(FanIn(), [*BASE, *usd(fan_in("H", 10, "20000", start=at(4, 9)))], finish=True) == []


def test_a_rate_table_converts_a_currency_into_the_cny_graph():
    cfg = load_config(overrides={"typologies": {"rates": {"USD": "7.10"}}})
    recs = [*BASE, *usd(fan_in("H", 10, "3000", start=at(4, 9)))]  # 21,300 yuan each
    [a] = run(FanIn(cfg), recs, finish=True)
    assert (a.amount, a.evidence["baseline"]["currency"]) == ("213000.00", "CNY")
    assert a.summary.startswith("Account H received 213000.00 yuan")
    with pytest.raises(ValueError, match="typologies.rates: 'usd' is not a three-letter code"):
        load_config(overrides={"typologies": {"rates": {"usd": "7"}}})
    with pytest.raises(ValueError, match=r"typologies.rates.USD must be in"):
        load_config(overrides={"typologies": {"rates": {"USD": "0"}}})


# -- split_payments ----------------------------------------------------------------


def test_two_tiny_payments_booked_at_once_are_split_payments_with_their_baseline():
    [a] = run(SplitPayments(), [*BASE, *split("SPP", "SPQ", ["5", "7.50"], at_ts=at(5, 9))])
    assert (a.alert_id, a.subject_id, a.accounts, a.amount, a.severity) == (
        make_alert_id("split_payments", "SPP", "SPQ", at(5, 9)),
        "SPP",
        ("SPP", "SPQ"),
        "12.50",
        "low",
    )
    assert a.evidence["baseline"] == {
        "currency": "CNY",
        "each_below": "245.76",
        "percentile": 5,
        "payments_seen": 401,
    }
    assert [t["txn_id"] for t in a.evidence["transfers"]] == ["SP1", "SP2"]
    assert a.summary == (
        "Account SPP paid account SPQ 12.50 yuan in 2 payments at one booked time, each below "
        "245.76 yuan (the 5th percentile of the 401 yuan payments seen)."
    )


def test_a_third_payment_at_the_same_time_grows_the_finding_under_its_id():
    alerts = run(SplitPayments(), [*BASE, *split("SPP", "SPQ", ["5", "5", "5"], at_ts=at(5, 9))])
    assert [(a.amount, a.revision) for a in alerts] == [("10.00", 1), ("15.00", 2)]
    assert len({a.alert_id for a in alerts}) == 1


@pytest.mark.parametrize(
    ("recs", "config", "alerts"),
    [
        (split("SPP", "SPQ", ["5", "5"], at_ts=at(5, 9)), {}, 0),  # no baseline yet
        ([*BASE, *split("SPP", "SPQ", ["5"], at_ts=at(5, 9))], {}, 0),  # one payment
        # The first payment is judged against the 400 before it (edge 266.24),
        # the second against 401 (edge 245.76).
        ([*BASE, *split("SPP", "SPQ", ["266.23", "5"], at_ts=at(5, 9))], {}, 1),
        ([*BASE, *split("SPP", "SPQ", ["266.24", "5"], at_ts=at(5, 9))], {}, 0),
        ([*BASE, *split("SPP", "SPQ", ["5", "245.75"], at_ts=at(5, 9))], {}, 1),
        ([*BASE, *split("SPP", "SPQ", ["5", "245.76"], at_ts=at(5, 9))], {}, 0),
        (
            [*BASE, clearing("S1", at(5, 9), "SPP", "SPQ", "5"),
             clearing("S2", at(5, 9) + MINUTE_MS, "SPP", "SPQ", "5")],
            {}, 0,
        ),  # a minute apart: two booked times
        (
            [*BASE, clearing("S1", at(5, 9), "SPP", "SPQ", "5"),
             clearing("S2", at(5, 9) + MINUTE_MS, "SPP", "SPQ", "5")],
            {"window_minutes": 1}, 1,
        ),
        ([*BASE, *split("SPP", "SPQ", ["5", "5"], at_ts=at(5, 9))], {"min_payments": 3}, 0),
        (split("SPP", "SPQ", ["900", "900"], at_ts=at(5, 9)), {"max_payment": "1000"}, 1),
        (split("SPP", "SPQ", ["1000", "900"], at_ts=at(5, 9)), {"max_payment": "1000"}, 0),
    ],
    ids=[
        "no-baseline", "one", "under-edge", "at-edge", "second-under", "second-at",
        "minute-apart", "window-1-minute",
        "min-3", "under-ceiling", "at-ceiling",
    ],
)  # fmt: skip
def test_split_payments_each_side_of_each_threshold(recs, config, alerts):
    cfg = load_config(overrides={"split_payments": config})
    assert len(run(SplitPayments(cfg), recs, finish=True)) == alerts


def test_everyday_payments_to_one_payee_at_once_are_not_split():
    assert run(SplitPayments(), [*BASE, *split("B", "SHOP", ["300", "450"], at_ts=at(5, 9))]) == []


# -- off_profile ------------------------------------------------------------------


def test_a_payment_far_below_a_steady_habit_is_off_profile_with_the_habit_in_evidence():
    [a] = run(OffProfile(), habit("OPP", ["1000", "1000", "1000"], "250", start=at(1)))
    assert (a.alert_id, a.subject_id, a.accounts, a.amount) == (
        make_alert_id("off_profile", "OPP", "OPR4", at(1, 18)),
        "OPP",
        ("OPP", "OPR4"),
        "250.00",
    )
    ev = a.evidence
    assert ev["payments"] == [{"txn_id": "OP4", "amount": "250.00", "times_off": "4.00"}]
    assert ev["habit"] == {
        "payments": 3,
        "since": "2026-03-03T00:00:00+08:00",
        "median": "1000.00",
        "lower_quartile": "1000.00",
        "upper_quartile": "1000.00",
    }
    assert a.summary == (
        "Account OPP paid account OPR4 250.00 yuan, 4.00 times below its habit: its last 3 "
        "payments had a median of 1000.00 yuan, quartiles 1000.00-1000.00."
    )


@pytest.mark.parametrize(
    ("steady", "odd", "alerts"),
    [
        (["1000", "1000", "1000"], "333.34", 0),  # 2.9999 times below
        (["1000", "1000", "1000"], "333.33", 1),  # 3.0000 times below (factor 3)
        (["1000", "1000", "1000"], "3000", 1),  # 3 times above
        (["1000", "1000", "1000"], "2999.99", 0),
        (["1000", "1000"], "100", 0),  # two payments are no habit yet (min_history 3)
        (["990", "1000", "1000", "1000"], "100", 1),  # quartiles the same amount (spread 0)
        (["1000", "1000", "1000.01"], "100", 0),  # a fen off the median: not steady, never judged
        (["100", "5000", "20000", "700"], "1", 0),  # a varied payer has no habit
    ],
    ids=[
        "under-below", "below", "above", "under-above", "short", "steady", "unsteady", "varied",
    ],
)  # fmt: skip
def test_off_profile_each_side_of_each_threshold(steady, odd, alerts):
    assert len(run(OffProfile(), habit("OPP", steady, odd, start=at(1)), finish=True)) == alerts


@pytest.mark.parametrize(
    ("steady", "alerts"),
    [
        (["1000", "1000", "1020"], 1),  # quartiles within 2 % of the median
        (["1000", "1000", "1020.01"], 0),
        (["979.99", "1000", "1000"], 0),
    ],
    ids=["within", "over", "under"],
)
def test_a_habit_band_when_configured(steady, alerts):
    cfg = load_config(overrides={"off_profile": {"habit_spread_pct": 2}})
    recs = habit("OPP", steady, "100", start=at(1))
    assert len(run(OffProfile(cfg), recs, finish=True)) == alerts


def test_payments_booked_together_to_one_payee_are_one_payment_of_the_habit():
    # Three standing payments, then a split of 4 x 250 to one payee at one
    # time: one finding growing with each; the habit after them holds the 3
    # payments of 1,000 and one of 1,000 (the split, merged).
    recs = habit("OPP", ["1000", "1000", "1000"], "2000", start=at(1))[:3]
    recs += split("OPP", "Q", ["250"] * 4, at_ts=at(3))
    recs += [clearing("LATER", at(4), "OPP", "R", "250")]
    alerts = run(OffProfile(), recs, finish=True)
    assert [(a.amount, a.revision) for a in alerts] == [
        ("250.00", 1), ("500.00", 2), ("750.00", 3), ("1000.00", 4), ("250.00", 1),
    ]  # fmt: skip
    assert len({a.alert_id for a in alerts}) == 2
    assert [p["txn_id"] for p in alerts[3].evidence["payments"]] == ["SP1", "SP2", "SP3", "SP4"]
    assert alerts[3].summary.startswith(
        "Account OPP paid account Q 1000.00 yuan in 4 payments at one booked time, the first "
        "4.00 times below its habit"
    )
    assert alerts[-1].evidence["habit"]["payments"] == 4


def test_two_currencies_in_one_stream_keep_their_own_graphs_and_severity():
    cny = [*BASE, *fan_in("H", 10, "200000", start=at(4, 9))]
    foreign = usd(
        [*background(prefix="BU"), *fan_in("U", 10, "200000", start=at(4, 10), prefix="FU")]
    )
    recs = sorted([*cny, *foreign], key=lambda r: (r.ts, r.txn_id))
    alerts = run(FanIn(), recs, finish=True)
    assert [
        (a.subject_id, a.amount, a.severity, a.evidence["baseline"]["currency"]) for a in alerts
    ] == [
        ("H", "2000000.00", "medium", "CNY"),
        ("U", "2000000.00", "low", "USD"),
    ]
    assert [a.evidence["baseline"]["payments_seen"] for a in alerts] == [409, 409]
