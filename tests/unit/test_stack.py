"""The stack typology (detectors/stack.py) on hand-made raw transfers:
money passed on through layers of accounts, every threshold from just
under to just over.

With absolute floors (:data:`ABSOLUTE`: payments from 10,000 yuan, the
relative floor off) at the defaults otherwise: 2 layers of 2 accounts or
more, each passing on 90-100 % of what it received, 72 hours.
"""

from __future__ import annotations

import msgspec
import pytest
from ledger import DAY_MS, HOUR_MS, SECOND_MS, at, clearing, iso_at, run
from typology_ledger import STACK, background, layered

from fundflow.detectors import Stack, load_config
from fundflow.detectors.alerting import make_alert_id

FLOORS = {"stack": {"min_payment": "10000", "min_payment_pct": 0}}
ABSOLUTE = load_config(overrides=FLOORS)


def cfg(**stack) -> object:
    return load_config(overrides={"stack": {**FLOORS["stack"], **stack}})


def alerts(recs, config=ABSOLUTE):
    return run(Stack(config), recs, finish=True)


def stages(sent: str = "50000", passed: str = "24000", sunk: str = "47000"):
    """:data:`STACK` with its amounts: STS pays ``sent`` to STA1 and STA2,
    each pays ``passed`` to STB1 and STB2, each pays ``sunk`` to STK."""
    return [
        [(p, q, sent) for p, q, _ in STACK[0]],
        [(p, q, passed) for p, q, _ in STACK[1]],
        [(p, q, sunk) for p, q, _ in STACK[2]],
    ]


def test_money_through_two_layers_is_a_stack_with_checkable_evidence():
    recs = layered(STACK, start=at(0, 9))
    [a] = alerts(recs)
    assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
        make_alert_id("stack", "STS", at(0, 11, 1)),
        "STS",
        "low",
        "100000.00",
        1,
    )
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 9)), iso_at(at(0, 11, 1)))
    assert a.accounts == ("STS", "STA1", "STA2", "STB1", "STB2", "STK")
    ev = a.evidence
    assert (ev["layer_count"], ev["layer_widths"], ev["sink"]) == (2, [2, 2], "STK")
    assert (ev["entered"], ev["reached_sink"]) == ("100000.00", "94000.00")
    assert ev["sources"] == [{"account": "STS", "paid": "100000.00"}]
    assert ev["layers"][0][0] == {
        "account": "STA1",
        "received": "50000.00",
        "passed_on": "48000.00",
        "share": "0.9600",
        "payees": ["STB1", "STB2"],
    }
    assert ev["layers"][1][1]["share"] == "0.9792"
    assert (ev["lowest_share"], ev["lowest_share_account"]) == ("0.9600", "STA1")
    assert ev["sample_txn_ids"] == ["ST101", "ST102", "ST301", "ST302"]
    assert (ev["thresholds"]["min_layers"], ev["thresholds"]["min_passed_pct"]) == (2, 90)
    assert ev["baseline"] == {
        "currency": "CNY",
        "counted_from": "10000.00",
        "absolute_floor": "10000.00",
    }
    assert a.summary == (
        "100000.00 yuan from 1 source account(s) passed through 2 layers of accounts (2, 2) to "
        "account STK (94000.00 yuan) within 72 hours, each account passing on 90-100 % of what "
        "it received (lowest 0.9600, account STA1), in transfers of at least 10000.00 yuan."
    )


def test_clean_everyday_payments_do_not_alert():
    assert run(Stack(), background(), finish=True) == []
    assert alerts(background()) == []


@pytest.mark.parametrize(
    ("amounts", "config", "n"),
    [
        (("50000", "22500", "45000"), ABSOLUTE, 1),  # 90 % at the first layer
        (("50000", "22499", "44998"), ABSOLUTE, 0),  # 89.996 %
        (("50000", "25000", "50000"), ABSOLUTE, 1),  # 100 %
        (("50000", "25001", "50002"), ABSOLUTE, 0),  # the first layer adds money
        (("50000", "24000", "43199"), ABSOLUTE, 0),  # the second passes on 89.998 %
        (("50000", "24000", "47000"), cfg(min_passed_pct=97), 0),  # 96 % at the first
        (("50000", "24000", "47000"), cfg(max_passed_pct=97), 0),  # 97.9 % at the second
        (("50000", "24000", "47000"), cfg(min_layers=3), 0),
        (("50000", "24000", "47000"), cfg(min_width=3), 0),
        (("50000", "24000", "47000"), cfg(min_total="100000"), 1),
        (("50000", "24000", "47000"), cfg(min_total="100000.01"), 0),
    ],
    ids=[
        "band-low-at", "band-low-under", "band-high-at", "band-high-over", "second-under",
        "min-passed", "max-passed", "min-layers", "min-width", "total-at", "total-under",
    ],
)  # fmt: skip
def test_each_side_of_each_threshold(amounts, config, n):
    assert len(alerts(layered(stages(*amounts), start=at(0, 9)), config)) == n


def test_a_layer_of_one_account_is_a_chain_not_a_stack():
    one = [
        [("STS", "STA1", "50000")],
        [("STA1", "STB1", "24000"), ("STA1", "STB2", "24000")],
        [("STB1", "STK", "23000"), ("STB2", "STK", "23000")],
    ]
    assert alerts(layered(one, start=at(0, 9))) == []
    # one layer of two, the accounts before it keeping what they got
    assert alerts(layered(STACK[1:], start=at(0, 9))) == []


def test_three_layers_grow_one_alert_of_the_source():
    deeper = [
        *STACK[:2],
        [(p, q, "23000") for p in ("STB1", "STB2") for q in ("STC1", "STC2")],
        [("STC1", "STK", "45000"), ("STC2", "STK", "45000")],
    ]
    got = alerts(layered(deeper, start=at(0, 9)))
    # found first at STC2 (two layers before it, once STB2 has paid on
    # both parts), then at STK; the amount, the money that entered, stays:
    # the last revision, as the episode ends, states the three layers
    assert [(a.alert_id, a.amount, a.revision) for a in got] == [
        (make_alert_id("stack", "STS", at(0, 11, 3)), "100000.00", 1),
        (make_alert_id("stack", "STS", at(0, 11, 3)), "100000.00", 2),
    ]
    assert (got[0].evidence["sink"], got[0].evidence["layer_count"]) == ("STC2", 2)
    assert (got[1].evidence["sink"], got[1].evidence["layer_count"]) == ("STK", 3)


def test_the_payment_floor_the_window_and_the_order_of_the_hops():
    small = stages("50000", "24000", "9999.99")
    assert alerts(layered(small, start=at(0, 9))) == []
    # The whole within 72 hours: STB2 pays STK 72 h and 1 ms after STA1's
    # receipt, which is out (STA1 passes on what it never received); 1 ms
    # later, exactly 72 h, in (the window is closed at its start).
    spread = layered(STACK, start=at(0, 9), step=36 * HOUR_MS - 30 * SECOND_MS)
    assert spread[-1].ts - spread[0].ts == 72 * HOUR_MS
    assert [a.amount for a in alerts(spread)] == ["100000.00"]
    just_out = [clearing("ST101", at(0, 9) - 1, "STS", "STA1", "50000"), *spread[1:]]
    assert alerts(just_out) == []
    # Paid on before it was received is not passed on.
    backwards = layered(list(reversed(STACK)), start=at(0, 9))
    assert alerts(backwards) == []


def test_a_dump_booking_one_time_a_day_is_judged_once_the_day_is_past():
    # Every hop booked at midnight, the sink's first in the stream.
    recs = sorted(layered(STACK, start=at(2)), key=lambda r: r.txn_id, reverse=True)
    day = [msgspec.structs.replace(r, ts=at(2)) for r in recs]
    [a] = alerts(day)
    assert (a.subject_id, a.amount, a.evidence["layer_count"]) == ("STS", "100000.00", 2)
    assert alerts([*day, clearing("NEXT", at(2) + DAY_MS, "X", "Y", "1")]) == alerts(day)


def test_the_search_budget_bounds_it():
    # From STK: its 2 receipts, its payers' 6 transfers; their 4 receipts,
    # their payers' 6 transfers; their 2 receipts: 20 transfers examined.
    recs = layered(STACK, start=at(0, 9))
    [a] = alerts(recs, cfg(max_search_steps=20))
    assert (a.alert_id, a.amount) == (alerts(recs)[0].alert_id, "100000.00")
    assert alerts(recs, cfg(max_search_steps=19)) == []


def test_against_the_dump_a_payment_counts_from_its_90th_percentile():
    bg = background()
    [a] = run(Stack(), [*bg, *layered(STACK, start=at(4, 9))], finish=True)
    assert a.evidence["baseline"]["percentile"] == 90
    # the 400 of the background and the stack's 7 before the last
    assert a.evidence["baseline"]["payments_seen"] == 407
    # Before 200 payments are seen nothing counts.
    assert run(Stack(), [*bg[:150], *layered(STACK, start=at(4, 9))], finish=True) == []


def test_a_budget_spent_by_departments_or_passed_down_over_days_does_not_alert():
    spent = stages("50000", "24000", "30000")  # departments pass on 62.5 %
    assert alerts(layered(spent, start=at(0, 9))) == []
    slow = layered(STACK, start=at(0, 9), step=5 * DAY_MS)
    assert alerts(slow) == []


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="stack.min_passed_pct must be <= stack.max_passed_pct"):
        load_config(overrides={"stack": {"min_passed_pct": 95, "max_passed_pct": 90}})
    with pytest.raises(ValueError, match="stack.max_passed_pct must be <= 100, got 101"):
        load_config(overrides={"stack": {"max_passed_pct": 101}})
    with pytest.raises(ValueError, match="stack.min_width must be >= 1, got 0"):
        load_config(overrides={"stack": {"min_width": 0}})
