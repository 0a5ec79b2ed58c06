"""The detector configuration: one TOML file, every threshold, typed.

:func:`load_config` reads the defaults shipped beside this module
(``defaults.toml``, printed by ``fundflow config --defaults``) and overlays a
user file. Money thresholds are yuan strings in the file and integer fen here;
each section is checked when it is built and a bad value raises
``ValueError`` naming it.

>>> cfg = load_config()
>>> cfg.fund_pool.min_sources, cfg.fund_pool.min_inflow
(20, 100000000)
>>> load_config(overrides={"fund_pool": {"min_sources": 0}})
Traceback (most recent call last):
...
ValueError: fund_pool.min_sources must be >= 1, got 0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def default_toml() -> str:
    """The default configuration file, with its comments."""
    return resources.files(__package__).joinpath("defaults.toml").read_text(encoding="utf-8")


def _fen(section: str, name: str, value: Any) -> int:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{section}.{name} must be an amount in yuan, got {value!r}") from None
    if not d.is_finite() or d < 0 or d != d.quantize(Decimal("0.01")):
        raise ValueError(
            f"{section}.{name} must be a non-negative amount with at most 2 decimals, got {value!r}"
        )
    return int(d * 100)


def _dec(section: str, name: str, value: Any, lo: Decimal, hi: Decimal) -> Decimal:
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{section}.{name} must be a number, got {value!r}") from None
    if not d.is_finite() or not (lo <= d <= hi):
        raise ValueError(f"{section}.{name} must be in {lo}..{hi}, got {value!r}")
    return d


def _int(section: str, name: str, value: Any, lo: int, hi: int = 10**12) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{section}.{name} must be a whole number, got {value!r}")
    if value < lo:
        raise ValueError(f"{section}.{name} must be >= {lo}, got {value}")
    if value > hi:
        raise ValueError(f"{section}.{name} must be <= {hi}, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class EngineConfig:
    zone: str = "Asia/Shanghai"
    dedup_window_ms: int = 72 * HOUR_MS
    tick_ms: int = HOUR_MS
    detectors: tuple[str, ...] = ("default",)
    loan_retention_ms: int = 90 * DAY_MS

    @classmethod
    def build(cls, raw: dict[str, Any]) -> EngineConfig:
        s = "engine"
        zone = raw["zone"]
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"engine.zone is not a known time zone: {zone!r}") from None
        tick = _int(s, "tick_minutes", raw["tick_minutes"], 1, 1440)
        if 1440 % tick:
            raise ValueError(f"engine.tick_minutes must divide a day, got {tick}")
        return cls(
            zone=zone,
            dedup_window_ms=_int(s, "dedup_window_hours", raw["dedup_window_hours"], 1, 24 * 365)
            * HOUR_MS,
            tick_ms=tick * 60_000,
            detectors=_detector_names(raw.get("detectors", ["default"])),
            loan_retention_ms=_int(
                s, "loan_retention_days", raw.get("loan_retention_days", 90), 1, 3660
            )
            * DAY_MS,
        )


def _detector_names(value: Any) -> tuple[str, ...]:
    """``engine.detectors``: detector names and group names (``default``,
    ``typologies``), checked against the engine's registry."""
    from .engine import detector_names  # the engine imports this module

    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"engine.detectors must be a non-empty list of names, got {value!r}")
    try:
        detector_names(value)
    except ValueError as e:
        raise ValueError(f"engine.detectors: {e}") from None
    return tuple(value)


@dataclass(frozen=True, slots=True)
class AlertConfig:
    reemit_growth_pct: int = 10
    sample_txns: int = 20

    @classmethod
    def build(cls, raw: dict[str, Any]) -> AlertConfig:
        return cls(
            reemit_growth_pct=_int(
                "alerts", "reemit_growth_pct", raw["reemit_growth_pct"], 0, 1000
            ),
            sample_txns=_int("alerts", "sample_txns", raw["sample_txns"], 0, 1000),
        )


@dataclass(frozen=True, slots=True)
class FundPoolConfig:
    window_ms: int
    min_sources: int
    min_inflow: int
    min_pass_through_pct: int
    fee_allowance_pct: int
    idle_min_amount: int
    severity_medium: int
    severity_high: int
    severity_critical: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> FundPoolConfig:
        s = "fund_pool"
        cfg = cls(
            window_ms=_int(s, "window_days", raw["window_days"], 1, 366) * DAY_MS,
            min_sources=_int(s, "min_sources", raw["min_sources"], 1),
            min_inflow=_fen(s, "min_inflow", raw["min_inflow"]),
            min_pass_through_pct=_int(
                s, "min_pass_through_pct", raw["min_pass_through_pct"], 0, 100
            ),
            fee_allowance_pct=_int(s, "fee_allowance_pct", raw["fee_allowance_pct"], 0, 100),
            idle_min_amount=_fen(s, "idle_min_amount", raw["idle_min_amount"]),
            severity_medium=_fen(s, "severity_medium", raw["severity_medium"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        if not cfg.severity_medium <= cfg.severity_high <= cfg.severity_critical:
            raise ValueError("fund_pool severity bands must rise: medium <= high <= critical")
        return cfg


@dataclass(frozen=True, slots=True)
class ReserveConfig:
    tolerance_bp: int
    shortfall_low_max_bp: int
    shortfall_medium_max_bp: int
    shortfall_high_max_bp: int
    misuse_severity_medium: int
    misuse_severity_high: int
    misuse_severity_critical: int
    outside_purposes: frozenset[str]
    episode_gap_ms: int
    report_lateness_days: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> ReserveConfig:
        s = "reserve_misuse"

        def bp(name: str) -> int:
            d = _dec(s, name, raw[name], Decimal(0), Decimal(100))
            if d * 100 != int(d * 100):
                raise ValueError(f"{s}.{name} has more precision than a basis point: {raw[name]!r}")
            return int(d * 100)

        purposes = raw["outside_purposes"]
        if not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes):
            raise ValueError(f"{s}.outside_purposes must be a list of strings, got {purposes!r}")
        cfg = cls(
            tolerance_bp=bp("tolerance_pct"),
            shortfall_low_max_bp=bp("shortfall_low_max_pct"),
            shortfall_medium_max_bp=bp("shortfall_medium_max_pct"),
            shortfall_high_max_bp=bp("shortfall_high_max_pct"),
            misuse_severity_medium=_fen(s, "misuse_severity_medium", raw["misuse_severity_medium"]),
            misuse_severity_high=_fen(s, "misuse_severity_high", raw["misuse_severity_high"]),
            misuse_severity_critical=_fen(
                s, "misuse_severity_critical", raw["misuse_severity_critical"]
            ),
            outside_purposes=frozenset(purposes),
            episode_gap_ms=_int(s, "episode_gap_days", raw["episode_gap_days"], 1, 366) * DAY_MS,
            report_lateness_days=_int(
                s, "report_lateness_days", raw["report_lateness_days"], 0, 366
            ),
        )
        if not cfg.shortfall_low_max_bp <= cfg.shortfall_medium_max_bp <= cfg.shortfall_high_max_bp:
            raise ValueError("reserve_misuse shortfall bands must rise: low <= medium <= high")
        return cfg


@dataclass(frozen=True, slots=True)
class MaturityConfig:
    max_exposure: int
    max_exposure_pct: int
    min_book: int
    max_term_ratio: Decimal
    severity_high: int
    severity_critical: int
    ratio_high: Decimal
    ratio_critical: Decimal

    @classmethod
    def build(cls, raw: dict[str, Any]) -> MaturityConfig:
        s = "maturity_mismatch"
        one, big = Decimal(1), Decimal(1000)
        cfg = cls(
            max_exposure=_fen(s, "max_exposure", raw["max_exposure"]),
            max_exposure_pct=_int(s, "max_exposure_pct", raw["max_exposure_pct"], 0, 100),
            min_book=_fen(s, "min_book", raw["min_book"]),
            max_term_ratio=_dec(s, "max_term_ratio", raw["max_term_ratio"], one, big),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
            ratio_high=_dec(s, "ratio_high", raw["ratio_high"], one, big),
            ratio_critical=_dec(s, "ratio_critical", raw["ratio_critical"], one, big),
        )
        if not cfg.max_term_ratio <= cfg.ratio_high <= cfg.ratio_critical:
            raise ValueError(
                "maturity_mismatch ratios must rise: max_term_ratio <= ratio_high <= ratio_critical"
            )
        return cfg


def _window(section: str, raw: dict[str, Any]) -> int:
    return _int(section, "window_hours", raw["window_hours"], 1, 24 * 366) * HOUR_MS


def _rates(section: str, value: Any) -> tuple[tuple[str, int, int], ...]:
    if not isinstance(value, dict):
        raise ValueError(f'{section}.rates must be a table of currency = "yuan per unit"')
    out = []
    for cur, rate in sorted(value.items()):
        if not (len(cur) == 3 and cur.isalpha() and cur.isupper()) or cur == "CNY":
            raise ValueError(f"{section}.rates: {cur!r} is not a three-letter code other than CNY")
        d = _dec(section, f"rates.{cur}", rate, Decimal("0.000001"), Decimal("1000000"))
        num, den = d.as_integer_ratio()
        out.append((cur, num, den))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class TypologyGraphConfig:
    """``[typologies]``: bounds and severity shared by the typology detectors."""

    max_edges_per_account: int
    severity_medium: int
    severity_high: int
    severity_critical: int
    min_samples: int
    #: ``(currency, numerator, denominator)``: one unit of it is worth
    #: numerator/denominator yuan.
    rates: tuple[tuple[str, int, int], ...]

    def rate(self, currency: str) -> tuple[int, int] | None:
        """The rate table's ``(numerator, denominator)`` for ``currency``."""
        for cur, num, den in self.rates:
            if cur == currency:
                return num, den
        return None

    @classmethod
    def build(cls, raw: dict[str, Any]) -> TypologyGraphConfig:
        s = "typologies"
        cfg = cls(
            min_samples=_int(s, "min_samples", raw["min_samples"], 1),
            rates=_rates(s, raw["rates"]),
            max_edges_per_account=_int(
                s, "max_edges_per_account", raw["max_edges_per_account"], 2, 100_000
            ),
            severity_medium=_fen(s, "severity_medium", raw["severity_medium"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        if not cfg.severity_medium <= cfg.severity_high <= cfg.severity_critical:
            raise ValueError("typologies severity bands must rise: medium <= high <= critical")
        return cfg


@dataclass(frozen=True, slots=True)
class FanConfig:
    """``[fan_in]`` and ``[fan_out]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_counterparties: int
    min_total: int

    @classmethod
    def build_section(cls, s: str, raw: dict[str, Any]) -> FanConfig:
        return cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_counterparties=_int(s, "min_counterparties", raw["min_counterparties"], 2),
            min_total=_fen(s, "min_total", raw["min_total"]),
        )


@dataclass(frozen=True, slots=True)
class CycleConfig:
    """``[cycle]``."""

    window_ms: int
    min_hops: int
    max_hops: int
    min_payment: int
    min_payment_pct: int
    tolerance_pct: int
    max_search_steps: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> CycleConfig:
        s = "cycle"
        cfg = cls(
            window_ms=_window(s, raw),
            min_hops=_int(s, "min_hops", raw["min_hops"], 2, 12),
            max_hops=_int(s, "max_hops", raw["max_hops"], 2, 12),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            tolerance_pct=_int(s, "tolerance_pct", raw["tolerance_pct"], 0, 99),
            max_search_steps=_int(s, "max_search_steps", raw["max_search_steps"], 1, 10**7),
        )
        if cfg.min_hops > cfg.max_hops:
            raise ValueError(
                f"cycle.min_hops must be <= cycle.max_hops, got {cfg.min_hops} > {cfg.max_hops}"
            )
        return cfg


@dataclass(frozen=True, slots=True)
class GatherScatterConfig:
    """``[gather_scatter]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_sources: int
    min_sinks: int
    min_inflow: int
    min_pass_through_pct: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> GatherScatterConfig:
        s = "gather_scatter"
        return cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_sources=_int(s, "min_sources", raw["min_sources"], 1),
            min_sinks=_int(s, "min_sinks", raw["min_sinks"], 1),
            min_inflow=_fen(s, "min_inflow", raw["min_inflow"]),
            min_pass_through_pct=_int(
                s, "min_pass_through_pct", raw["min_pass_through_pct"], 1, 100
            ),
        )


@dataclass(frozen=True, slots=True)
class ScatterGatherConfig:
    """``[scatter_gather]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_intermediaries: int
    min_total: int
    tolerance_pct: int
    max_search_steps: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> ScatterGatherConfig:
        s = "scatter_gather"
        return cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_intermediaries=_int(s, "min_intermediaries", raw["min_intermediaries"], 2),
            min_total=_fen(s, "min_total", raw["min_total"]),
            tolerance_pct=_int(s, "tolerance_pct", raw["tolerance_pct"], 0, 99),
            max_search_steps=_int(s, "max_search_steps", raw["max_search_steps"], 1, 10**7),
        )


@dataclass(frozen=True, slots=True)
class BipartiteConfig:
    """``[bipartite]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_payers: int
    min_payees: int
    min_density_pct: int
    min_total: int
    max_search_steps: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> BipartiteConfig:
        s = "bipartite"
        return cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_payers=_int(s, "min_payers", raw["min_payers"], 2, 1000),
            min_payees=_int(s, "min_payees", raw["min_payees"], 2, 1000),
            min_density_pct=_int(s, "min_density_pct", raw["min_density_pct"], 1, 100),
            min_total=_fen(s, "min_total", raw["min_total"]),
            max_search_steps=_int(s, "max_search_steps", raw["max_search_steps"], 1, 10**7),
        )


def _band(section: str, raw: dict[str, Any], hi: int) -> tuple[int, int]:
    """``min_passed_pct`` and ``max_passed_pct``: a share of what was
    received, in whole percent, the first no more than the second."""
    lo_pct = _int(section, "min_passed_pct", raw["min_passed_pct"], 1, hi)
    hi_pct = _int(section, "max_passed_pct", raw["max_passed_pct"], 1, hi)
    if lo_pct > hi_pct:
        raise ValueError(
            f"{section}.min_passed_pct must be <= {section}.max_passed_pct, got {lo_pct} > {hi_pct}"
        )
    return lo_pct, hi_pct


@dataclass(frozen=True, slots=True)
class StackConfig:
    """``[stack]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_layers: int
    min_width: int
    min_passed_pct: int
    max_passed_pct: int
    min_total: int
    max_search_steps: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> StackConfig:
        s = "stack"
        lo_pct, hi_pct = _band(s, raw, 100)
        return cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_layers=_int(s, "min_layers", raw["min_layers"], 1, 100),
            min_width=_int(s, "min_width", raw["min_width"], 1, 1000),
            min_passed_pct=lo_pct,
            max_passed_pct=hi_pct,
            min_total=_fen(s, "min_total", raw["min_total"]),
            max_search_steps=_int(s, "max_search_steps", raw["max_search_steps"], 1, 10**7),
        )


@dataclass(frozen=True, slots=True)
class PeelChainConfig:
    """``[peel_chain]``."""

    window_ms: int
    min_payment: int
    min_payment_pct: int
    min_hops: int
    max_hops: int
    min_passed_pct: int
    max_passed_pct: int
    max_search_steps: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> PeelChainConfig:
        s = "peel_chain"
        lo_pct, hi_pct = _band(s, raw, 100)
        cfg = cls(
            window_ms=_window(s, raw),
            min_payment=_fen(s, "min_payment", raw["min_payment"]),
            min_payment_pct=_int(s, "min_payment_pct", raw["min_payment_pct"], 0, 99),
            min_hops=_int(s, "min_hops", raw["min_hops"], 2, 24),
            max_hops=_int(s, "max_hops", raw["max_hops"], 2, 24),
            min_passed_pct=lo_pct,
            max_passed_pct=hi_pct,
            max_search_steps=_int(s, "max_search_steps", raw["max_search_steps"], 1, 10**7),
        )
        if cfg.min_hops > cfg.max_hops:
            raise ValueError(
                f"{s}.min_hops must be <= {s}.max_hops, got {cfg.min_hops} > {cfg.max_hops}"
            )
        return cfg


def _pct_fraction(section: str, name: str, value: Any) -> Fraction:
    """A percent 0..100 (whole or decimal) as an exact fraction of one."""
    return Fraction(_dec(section, name, value, Decimal(0), Decimal(100))) / 100


def _rising(section: str, cfg: Any) -> None:
    if cfg.severity_high > cfg.severity_critical:
        raise ValueError(f"{section} severity bands must rise: high <= critical")


@dataclass(frozen=True, slots=True)
class SelfFinancingConfig:
    control_share: Fraction
    look_through_depth: int
    max_hops: int
    window_ms: int
    min_amount: int
    severity_high: int
    severity_critical: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> SelfFinancingConfig:
        s = "self_financing"
        share = _pct_fraction(s, "control_share_pct", raw["control_share_pct"])
        if share >= 1:
            raise ValueError(
                f"{s}.control_share_pct must be below 100, got {raw['control_share_pct']!r}"
            )
        cfg = cls(
            control_share=share,
            look_through_depth=_int(s, "look_through_depth", raw["look_through_depth"], 1, 10),
            max_hops=_int(s, "max_hops", raw["max_hops"], 1, 10),
            window_ms=_int(s, "window_days", raw["window_days"], 1, 366) * DAY_MS,
            min_amount=_fen(s, "min_amount", raw["min_amount"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        _rising(s, cfg)
        return cfg


@dataclass(frozen=True, slots=True)
class GuaranteedReturnConfig:
    min_amount: int
    loan_grace_ms: int
    episode_gap_ms: int
    severity_high: int
    severity_critical: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> GuaranteedReturnConfig:
        s = "guaranteed_return"
        cfg = cls(
            min_amount=_fen(s, "min_amount", raw["min_amount"]),
            loan_grace_ms=_int(s, "loan_grace_days", raw["loan_grace_days"], 0, 3660) * DAY_MS,
            episode_gap_ms=_int(s, "episode_gap_days", raw["episode_gap_days"], 1, 366) * DAY_MS,
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        _rising(s, cfg)
        return cfg


@dataclass(frozen=True, slots=True)
class ExcessiveReturnConfig:
    term_buckets_days: tuple[int, ...]
    min_peers: int
    mad_multiplier: Fraction
    min_margin: Fraction
    subsidy_window_ms: int
    subsidy_min_amount: int
    severity_high: int
    severity_critical: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> ExcessiveReturnConfig:
        s = "excessive_return"
        buckets = raw["term_buckets_days"]
        if (
            not isinstance(buckets, list)
            or not buckets
            or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in buckets)
            or buckets != sorted(set(buckets))
        ):
            raise ValueError(
                f"{s}.term_buckets_days must be a rising list of whole days > 0, got {buckets!r}"
            )
        cfg = cls(
            term_buckets_days=tuple(buckets),
            min_peers=_int(s, "min_peers", raw["min_peers"], 1),
            mad_multiplier=Fraction(
                _dec(s, "mad_multiplier", raw["mad_multiplier"], Decimal(0), Decimal(100))
            ),
            min_margin=_pct_fraction(s, "min_margin_pct", raw["min_margin_pct"]),
            subsidy_window_ms=_int(s, "subsidy_window_days", raw["subsidy_window_days"], 1, 366)
            * DAY_MS,
            subsidy_min_amount=_fen(s, "subsidy_min_amount", raw["subsidy_min_amount"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        _rising(s, cfg)
        return cfg


def _names(section: str, name: str, value: Any) -> frozenset[str]:
    """A list of non-empty strings (systems, kinds, licences, phrases)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{section}.{name} must be a list of non-empty strings, got {value!r}")
    return frozenset(value)


def _name(section: str, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{section}.{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class CrossBankConfig:
    systems: frozenset[str]
    window_ms: int
    min_transfers: int
    min_amount: int
    severity_high: int
    severity_critical: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> CrossBankConfig:
        s = "cross_bank_clearing"
        systems = _names(s, "systems", raw["systems"])
        known = {"CNAPS", "NUCC", "CUP", "direct", "internal"}
        if not systems or not systems <= known:
            raise ValueError(
                f"{s}.systems must name clearing systems of {sorted(known)}, got {raw['systems']!r}"
            )
        cfg = cls(
            systems=systems,
            window_ms=_int(s, "window_days", raw["window_days"], 1, 366) * DAY_MS,
            min_transfers=_int(s, "min_transfers", raw["min_transfers"], 1),
            min_amount=_fen(s, "min_amount", raw["min_amount"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
            severity_critical=_fen(s, "severity_critical", raw["severity_critical"]),
        )
        if cfg.severity_high > cfg.severity_critical:
            raise ValueError(f"{s} severity bands must rise: high <= critical")
        return cfg


@dataclass(frozen=True, slots=True)
class UnlicensedConfig:
    restricted_words: tuple[tuple[str, frozenset[str]], ...]  # longest word first
    harmless_phrases: tuple[str, ...]
    unnamed_kinds: frozenset[str]
    licensed_kinds: frozenset[str]
    payment_licence: str
    lending_licence: str
    custody_licence: str

    @classmethod
    def build(cls, raw: dict[str, Any]) -> UnlicensedConfig:
        s = "unlicensed_business"
        table = raw["restricted_words"]
        if not isinstance(table, dict) or not table:
            raise ValueError(
                f"{s}.restricted_words must be a table of word = [licences], got {table!r}"
            )
        words = []
        for word, licences in table.items():
            if not word.strip():
                raise ValueError(f"{s}.restricted_words has an empty word")
            allowed = _names(s, f"restricted_words.{word}", licences)
            if not allowed:
                raise ValueError(f"{s}.restricted_words.{word} must name at least one licence")
            words.append((word, allowed))
        words.sort(key=lambda w: (-len(w[0]), w[0]))
        return cls(
            restricted_words=tuple(words),
            harmless_phrases=tuple(sorted(_names(s, "harmless_phrases", raw["harmless_phrases"]))),
            unnamed_kinds=_names(s, "unnamed_kinds", raw["unnamed_kinds"]),
            licensed_kinds=_names(s, "licensed_kinds", raw["licensed_kinds"]),
            payment_licence=_name(s, "payment_licence", raw["payment_licence"]),
            lending_licence=_name(s, "lending_licence", raw["lending_licence"]),
            custody_licence=_name(s, "custody_licence", raw["custody_licence"]),
        )


@dataclass(frozen=True, slots=True)
class DownPaymentConfig:
    window_ms: int
    max_hops: int
    min_amount: int
    real_estate_kinds: frozenset[str]
    declared_purposes: frozenset[str]
    severity_high: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> DownPaymentConfig:
        s = "down_payment_loan"
        kinds = _names(s, "real_estate_kinds", raw["real_estate_kinds"])
        if not kinds:
            raise ValueError(f"{s}.real_estate_kinds must name at least one entity kind")
        return cls(
            window_ms=_int(s, "window_days", raw["window_days"], 1, 366) * DAY_MS,
            max_hops=_int(s, "max_hops", raw["max_hops"], 1, 10),
            min_amount=_fen(s, "min_amount", raw["min_amount"]),
            real_estate_kinds=kinds,
            declared_purposes=_names(s, "declared_purposes", raw["declared_purposes"]),
            severity_high=_fen(s, "severity_high", raw["severity_high"]),
        )


@dataclass(frozen=True, slots=True)
class PrivateProductConfig:
    max_investors: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> PrivateProductConfig:
        s = "private_product_split"
        return cls(max_investors=_int(s, "max_investors", raw["max_investors"], 1))


@dataclass(frozen=True, slots=True)
class SplitPaymentsConfig:
    """``[split_payments]``."""

    window_ms: int
    min_payments: int
    below_pct: int
    max_payment: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> SplitPaymentsConfig:
        s = "split_payments"
        return cls(
            window_ms=_int(s, "window_minutes", raw["window_minutes"], 0, 24 * 60) * 60_000,
            min_payments=_int(s, "min_payments", raw["min_payments"], 2, 1000),
            below_pct=_int(s, "below_pct", raw["below_pct"], 0, 50),
            max_payment=_fen(s, "max_payment", raw["max_payment"]),
        )


@dataclass(frozen=True, slots=True)
class OffProfileConfig:
    """``[off_profile]``."""

    history_ms: int
    history_payments: int
    min_history: int
    habit_spread_pct: int
    factor: int

    @classmethod
    def build(cls, raw: dict[str, Any]) -> OffProfileConfig:
        s = "off_profile"
        cfg = cls(
            history_ms=_int(s, "history_days", raw["history_days"], 1, 3660) * DAY_MS,
            history_payments=_int(s, "history_payments", raw["history_payments"], 2, 10_000),
            min_history=_int(s, "min_history", raw["min_history"], 1, 10_000),
            habit_spread_pct=_int(s, "habit_spread_pct", raw["habit_spread_pct"], 0, 99),
            factor=_int(s, "factor", raw["factor"], 2, 10**6),
        )
        if cfg.min_history > cfg.history_payments:
            raise ValueError(
                f"off_profile.min_history must be <= off_profile.history_payments, "
                f"got {cfg.min_history} > {cfg.history_payments}"
            )
        return cfg


@dataclass(frozen=True, slots=True)
class Config:
    engine: EngineConfig
    alerts: AlertConfig
    fund_pool: FundPoolConfig
    reserve_misuse: ReserveConfig
    maturity_mismatch: MaturityConfig
    self_financing: SelfFinancingConfig
    guaranteed_return: GuaranteedReturnConfig
    excessive_return: ExcessiveReturnConfig
    typologies: TypologyGraphConfig
    fan_in: FanConfig
    fan_out: FanConfig
    cycle: CycleConfig
    gather_scatter: GatherScatterConfig
    scatter_gather: ScatterGatherConfig
    bipartite: BipartiteConfig
    stack: StackConfig
    peel_chain: PeelChainConfig
    split_payments: SplitPaymentsConfig
    off_profile: OffProfileConfig
    cross_bank_clearing: CrossBankConfig
    unlicensed_business: UnlicensedConfig
    down_payment_loan: DownPaymentConfig
    private_product_split: PrivateProductConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def thresholds(self, section: str) -> dict[str, Any]:
        """The section as written in TOML, for echoing in alert evidence."""
        return dict(self.raw.get(section, {}))


# Sections of the same file that a shell reads (the worker's broker
# settings, how logs show account ids, the webhooks): the detector loader
# leaves them to those readers, which refuse what they do not know. Any
# other section is unknown here.
SHELL_SECTIONS = frozenset({"kafka", "logging", "webhooks"})

_BUILDERS = {
    "engine": EngineConfig.build,
    "alerts": AlertConfig.build,
    "fund_pool": FundPoolConfig.build,
    "reserve_misuse": ReserveConfig.build,
    "maturity_mismatch": MaturityConfig.build,
    "cross_bank_clearing": CrossBankConfig.build,
    "unlicensed_business": UnlicensedConfig.build,
    "down_payment_loan": DownPaymentConfig.build,
    "private_product_split": PrivateProductConfig.build,
    "self_financing": SelfFinancingConfig.build,
    "guaranteed_return": GuaranteedReturnConfig.build,
    "excessive_return": ExcessiveReturnConfig.build,
    "typologies": TypologyGraphConfig.build,
    "fan_in": lambda raw: FanConfig.build_section("fan_in", raw),
    "fan_out": lambda raw: FanConfig.build_section("fan_out", raw),
    "cycle": CycleConfig.build,
    "gather_scatter": GatherScatterConfig.build,
    "scatter_gather": ScatterGatherConfig.build,
    "bipartite": BipartiteConfig.build,
    "stack": StackConfig.build,
    "peel_chain": PeelChainConfig.build,
    "split_payments": SplitPaymentsConfig.build,
    "off_profile": OffProfileConfig.build,
}


def load_config(
    path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None
) -> Config:
    """Defaults, then the TOML file at ``path``, then ``overrides``.

    Unknown sections or keys are an error (a misspelt threshold must not be
    silently ignored)."""
    merged: dict[str, dict[str, Any]] = {
        k: dict(v) for k, v in tomllib.loads(default_toml()).items()
    }
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot read config {path}: {e.strerror}") from None
        try:
            layers.append((str(path), tomllib.loads(text)))
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config {path} is not valid TOML: {e}") from None
    if overrides:
        layers.append(("overrides", overrides))
    for origin, layer in layers:
        for section, values in layer.items():
            if section in SHELL_SECTIONS:
                continue
            if section not in merged or not isinstance(values, dict):
                raise ValueError(f"{origin}: unknown section [{section}]")
            for key, value in values.items():
                if key not in merged[section]:
                    raise ValueError(f"{origin}: unknown setting {section}.{key}")
                merged[section][key] = value
    built = {name: build(merged[name]) for name, build in _BUILDERS.items()}
    return Config(**built, raw=merged)


__all__ = [
    "Config",
    "EngineConfig",
    "AlertConfig",
    "FundPoolConfig",
    "ReserveConfig",
    "MaturityConfig",
    "CrossBankConfig",
    "UnlicensedConfig",
    "DownPaymentConfig",
    "PrivateProductConfig",
    "SelfFinancingConfig",
    "GuaranteedReturnConfig",
    "ExcessiveReturnConfig",
    "load_config",
    "default_toml",
    "DAY_MS",
    "HOUR_MS",
    "fields",
]
