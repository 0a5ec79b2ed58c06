"""The declared settings (detectors/settings.py): every section of
``defaults.toml`` is declared beside its detector, once, with exactly the
file's keys; every bounded whole number is refused one step outside its
range and taken at its ends, through ``load_config`` as a user would write
it; the other kinds refuse what they do not read."""

from __future__ import annotations

import dataclasses
import tomllib
from fractions import Fraction

import pytest

from fundflow.detectors import load_config
from fundflow.detectors.config import CONFIG_SECTIONS_ORDER, declared, default_toml
from fundflow.detectors.settings import (
    SECTIONS,
    BasisPoints,
    Dec,
    Fen,
    Int,
    Names,
    Percent,
    keys,
)

DEFAULTS = tomllib.loads(default_toml())
SHELL = {"kafka", "logging", "webhooks"}


def test_every_section_of_the_file_is_declared_with_the_files_keys() -> None:
    sections = declared()
    assert list(sections) == list(CONFIG_SECTIONS_ORDER)
    assert set(sections) == set(DEFAULTS) - SHELL
    for name, cls in sections.items():
        assert sorted(keys(cls)) == sorted(DEFAULTS[name]), name
    # Each declaration lives in the module of the detector (or the shared
    # part) that reads it, not in config.py.
    modules = {name: cls.__module__.rsplit(".", 1)[1] for name, cls in sections.items()}
    assert "config" not in modules.values()
    assert modules["fund_pool"] == "fund_pool" and modules["peel_chain"] == "peel_chain"
    assert modules["fan_in"] == modules["fan_out"] == modules["cycle"] == "typologies"
    assert (modules["engine"], modules["alerts"]) == ("engine", "alerting")


def _bounded() -> list[tuple[str, str, Int]]:
    out = []
    for name, cls in declared().items():
        for f in dataclasses.fields(cls):
            kind = f.metadata["setting"]
            if type(kind) is Int:
                out.append((name, f.metadata["key"] or f.name, kind))
    return out


BOUNDED = _bounded()


def test_the_bounded_numbers_are_many() -> None:
    assert len(BOUNDED) == 77


@pytest.mark.parametrize(
    ("section", "key", "kind"), BOUNDED, ids=[f"{s}.{k}" for s, k, _ in BOUNDED]
)
def test_a_whole_number_is_refused_one_step_outside_its_range(
    section: str, key: str, kind: Int
) -> None:
    with pytest.raises(ValueError, match=rf"^{section}\.{key} must be >= {kind.lo}, got "):
        load_config(overrides={section: {key: kind.lo - 1}})
    if kind.hi < 10**12:
        with pytest.raises(ValueError, match=rf"^{section}\.{key} must be <= {kind.hi}, got "):
            load_config(overrides={section: {key: kind.hi + 1}})
    for bad in (True, 1.5, "3"):
        with pytest.raises(ValueError, match=rf"^{section}\.{key} must be a whole number"):
            load_config(overrides={section: {key: bad}})
    # Its ends are read (scaled to ms where the key is in days, hours or minutes).
    for end in (kind.lo, kind.hi):
        assert kind.parse(section, key, end) == end * kind.scale


def test_amounts_percents_and_lists() -> None:
    assert Fen().parse("s", "k", "1234.50") == 123450
    for bad in ("1.005", "-1", "NaN", "yuan", "1e400"):
        with pytest.raises(ValueError, match=r"^s\.k must be "):
            Fen().parse("s", "k", bad)
    assert Percent().parse("s", "k", "12.5") == Fraction(1, 8)
    with pytest.raises(ValueError, match=r"^s\.k must be below 100, got 100"):
        Percent(below_100=True).parse("s", "k", 100)
    assert BasisPoints().parse("s", "k", "0.25") == 25
    with pytest.raises(ValueError, match=r"more precision than a basis point: '0.125'"):
        BasisPoints().parse("s", "k", "0.125")
    with pytest.raises(ValueError, match=r"^s\.k must be in 1\.\.1000, got '0.5'"):
        Dec(1, 1000).parse("s", "k", "0.5")
    assert Names(sort=True).parse("s", "k", ["b", "a", "b"]) == ("a", "b")
    with pytest.raises(ValueError, match=r"^s\.k must name at least one kind"):
        Names(required="must name at least one kind").parse("s", "k", [])
    with pytest.raises(ValueError, match=r"^s\.k must be a list of non-empty strings"):
        Names().parse("s", "k", ["a", ""])


def test_checks_between_values_run_after_every_value_is_read() -> None:
    with pytest.raises(ValueError, match=r"^peel_chain\.min_hops must be <= peel_chain\.max_hops"):
        load_config(overrides={"peel_chain": {"min_hops": 9, "max_hops": 8}})
    with pytest.raises(ValueError, match="fund_pool severity bands must rise"):
        load_config(overrides={"fund_pool": {"severity_high": "1"}})
    with pytest.raises(ValueError, match="cross_bank_clearing severity bands must rise: high"):
        load_config(overrides={"cross_bank_clearing": {"severity_critical": "1"}})


def test_a_section_is_declared_once() -> None:
    from fundflow.detectors.settings import section

    with pytest.raises(ValueError, match=r"section \[fund_pool\] is declared twice"):
        section("fund_pool")(type("Other", (), {}))
    assert SECTIONS["fund_pool"].__name__ == "FundPoolConfig"
