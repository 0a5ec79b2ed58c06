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
        )


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


@dataclass(frozen=True, slots=True)
class Config:
    engine: EngineConfig
    alerts: AlertConfig
    fund_pool: FundPoolConfig
    reserve_misuse: ReserveConfig
    maturity_mismatch: MaturityConfig
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def thresholds(self, section: str) -> dict[str, Any]:
        """The section as written in TOML, for echoing in alert evidence."""
        return dict(self.raw.get(section, {}))


# Sections of the same file that belong to the shells (broker, store,
# metrics settings): the detector loader leaves them to their own readers.
SHELL_SECTIONS = frozenset({"kafka", "store", "metrics", "worker"})

_BUILDERS = {
    "engine": EngineConfig.build,
    "alerts": AlertConfig.build,
    "fund_pool": FundPoolConfig.build,
    "reserve_misuse": ReserveConfig.build,
    "maturity_mismatch": MaturityConfig.build,
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
    "load_config",
    "default_toml",
    "DAY_MS",
    "HOUR_MS",
    "fields",
]
