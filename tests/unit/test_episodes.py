"""The one episode module (detectors/episodes.py): an episode starts, is
extended at exactly the gap and not a millisecond past it, never moves its
last time back, ends (by the gap or by the detector), is forgotten once no
record could extend it, and survives a snapshot round trip."""

from __future__ import annotations

import doctest

import pytest

from fundflow.detectors import episodes, snapshots
from fundflow.detectors.alerting import NO_END
from fundflow.detectors.episodes import NONE, Episode, Episodes

DAY = 86_400_000


def test_a_new_episode_starts_where_the_rule_first_holds():
    rule = Episodes(gap_ms=DAY)
    ep = Episode()
    assert (ep.start, ep.last) == (NONE, NONE)
    assert not rule.is_open(ep, 0)
    assert rule.hold(ep, 1_000) is True
    assert (ep.start, ep.last) == (1_000, 1_000)
    assert rule.ends(ep) == 1_000 + DAY


def test_a_named_start_is_kept_and_the_clock_is_the_last_time():
    rule = Episodes(gap_ms=DAY)
    ep = Episode()
    assert rule.hold(ep, 5_000, start=2_000) is True
    assert (ep.start, ep.last) == (2_000, 5_000)


def test_exactly_the_gap_extends_one_millisecond_more_starts_anew():
    rule = Episodes(gap_ms=10)
    ep = Episode()
    rule.hold(ep, 100)
    assert rule.is_open(ep, 110)
    assert rule.hold(ep, 110) is False
    assert (ep.start, ep.last, rule.ends(ep)) == (100, 110, 120)
    assert not rule.is_open(ep, 121)
    assert rule.hold(ep, 121) is True
    assert (ep.start, ep.last, rule.ends(ep)) == (121, 121, 131)


def test_a_late_holding_does_not_move_the_last_time_back():
    rule = Episodes(gap_ms=10)
    ep = Episode(100, 108)
    assert rule.hold(ep, 104) is False
    assert (ep.start, ep.last) == (100, 108)


def test_without_a_gap_an_episode_lasts_until_the_detector_ends_it():
    rule = Episodes(gap_ms=None)
    ep = Episode()
    assert rule.hold(ep, 5) is True
    assert rule.hold(ep, 10 * DAY) is False
    assert (ep.start, ep.last, rule.ends(ep)) == (5, 10 * DAY, NO_END)
    assert rule.end(ep) == 5
    assert (ep.start, ep.last) == (NONE, NONE)
    assert rule.end(ep) == NONE
    assert rule.hold(ep, 11 * DAY) is True
    assert ep.start == 11 * DAY


def test_a_day_can_name_an_episode():
    rule = Episodes(gap_ms=None)
    ep = Episode()
    rule.hold(ep, 1_000, start="2026-03-01")
    rule.hold(ep, 2_000, start="2026-03-02")
    assert (ep.start, ep.last) == ("2026-03-01", 2_000)


def test_keyed_episodes_start_and_extend_per_key():
    rule = Episodes(gap_ms=10)
    table: dict = {}
    ep, started = rule.hold_key(table, ("A",), 5)
    assert started is True
    assert rule.hold_key(table, ("A",), 15) == (ep, False)
    assert rule.hold_key(table, ("B",), 15)[0].start == 15
    ep2, started = rule.hold_key(table, ("A",), 26)
    assert (ep2 is ep, started, ep2.start) == (True, True, 26)


def test_episodes_are_forgotten_only_past_the_gap_and_the_lateness():
    rule = Episodes(gap_ms=10, lateness_ms=3)
    table = {"A": Episode(0, 5), "B": Episode(0, 9)}
    assert rule.forget(table, clock=18) == 2  # 5 + 10 + 3: a record dated 15 could extend A
    assert rule.forget(table, clock=19) == 1
    assert list(table) == ["B"]
    assert rule.forget(table, clock=23) == 0
    assert table == {}


def test_episodes_without_a_gap_are_never_forgotten_by_the_clock():
    rule = Episodes(gap_ms=None, lateness_ms=3)
    table = {"A": Episode(0, 5)}
    assert rule.forget(table, clock=10**12) == 1


def test_a_snapshot_round_trip_keeps_every_episode():
    rule = Episodes(gap_ms=10)
    table: dict = {}
    rule.hold_key(table, ("A", "B"), 7)
    rule.hold_key(table, ("A", "B"), 12)
    blob = snapshots.dumps({"episodes": table, "one": Episode("2026-03-01", 40)})
    back = snapshots.loads(blob)
    assert {k: (v.start, v.last) for k, v in back["episodes"].items()} == {("A", "B"): (7, 12)}
    assert (back["one"].start, back["one"].last) == ("2026-03-01", 40)
    assert rule.hold(back["episodes"][("A", "B")], 22) is False


def test_bad_gaps_are_refused_by_name():
    with pytest.raises(ValueError, match="gap_ms must be >= 0 or None, got -1"):
        Episodes(gap_ms=-1)
    with pytest.raises(ValueError, match="lateness_ms must be >= 0, got -2"):
        Episodes(gap_ms=1, lateness_ms=-2)


def test_the_module_example_runs():
    assert doctest.testmod(episodes) == (0, 8)  # (failed, attempted)


def test_a_keyed_episode_ends_and_leaves_its_table():
    rule = Episodes(gap_ms=None)
    table: dict = {}
    rule.hold_key(table, "acc", 50, start=20)
    rule.hold_key(table, "acc", 60, start=55)
    assert (table["acc"].start, table["acc"].last) == (20, 60)
    assert rule.end_key(table, "acc") == 20
    assert table == {}
    assert rule.end_key(table, "acc") == NONE


def _old(cls, **fields):
    """A state object of ``cls`` as a checkpoint of 1.0 holds it: its slots
    of now, with ``fields`` in place of the episode's (set through
    ``__setstate__``, as unpickling does)."""
    state = cls().__getstate__()
    for name in fields.get("drop", ()):
        del state[name]
    state.update({k: v for k, v in fields.items() if k != "drop"})
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def test_checkpoints_of_1_0_read_their_episodes_as_numbers():
    from fundflow.detectors import (  # noqa: PLC0415
        cross_bank_clearing,
        excessive_return,
        fund_pool,
        guaranteed_return,
        maturity_mismatch,
        reserve_misuse,
    )

    def pair(ep):
        return (ep.start, ep.last)

    st = _old(fund_pool._Platform, episode=10, last_true=40, idle_episode={"C": 5})
    assert (pair(st.gathering), {a: pair(e) for a, e in st.idle_episode.items()}) == (
        (10, 40),
        {"C": (5, 5)},
    )
    st = _old(cross_bank_clearing._Institution, episode=7, last_true=9)
    assert pair(st.episode) == (7, 9)
    st = _old(excessive_return._Platform, episode=3, sub=[500, 8, {"P"}, {"L"}, ["T1"]])
    assert (pair(st.episode), st.sub) == ((3, 8), [500, {"P"}, {"L"}, ["T1"]])
    st = _old(guaranteed_return._Platform, episode=2, last_uncovered=6)
    assert pair(st.episode) == (2, 6)
    st = _old(maturity_mismatch._Platform, exposure_episode=4, exposure_first=4, ratio_episode=-1)
    assert (pair(st.exposure_episode), pair(st.ratio_episode)) == ((4, 4), (NONE, NONE))
    st = _old(
        reserve_misuse._Institution,
        drop=("misuse_figures",),
        shortfall_episode="2026-03-01",
        misuse={("reserve_outflow", "OPS"): [1, 9, 300, ["T1"]]},
    )
    assert pair(st.shortfall_episode) == ("2026-03-01", -1)
    assert {k: pair(e) for k, e in st.misuse.items()} == {("reserve_outflow", "OPS"): (1, 9)}
    assert st.misuse_figures == {("reserve_outflow", "OPS"): [300, ["T1"]]}


def test_typology_checkpoints_of_1_0_read_their_episodes() -> None:
    """A typology's episodes were ``[start, last]`` lists in 1.0; restored,
    each is an :class:`Episode` and extends as one."""
    from fundflow.detectors import load_config  # noqa: PLC0415
    from fundflow.detectors.reference import Reference  # noqa: PLC0415
    from fundflow.detectors.typologies import FanIn  # noqa: PLC0415

    old = FanIn(load_config(), Reference())
    old.episodes = {("A1",): [5, 9], ("A2",): [1, 2]}
    new = FanIn(load_config(), Reference()).restore(old.snapshot())
    assert {k: (e.start, e.last) for k, e in new.episodes.items()} == {
        ("A1",): (5, 9),
        ("A2",): (1, 2),
    }
    assert all(type(e) is Episode for e in new.episodes.values())
    # Within the window of its last holding, the episode goes on.
    assert new._episode(("A1",), 10) == 5
    assert new.episodes[("A1",)].last == 10
