"""The detector configuration: one TOML file, every threshold, typed.

:func:`load_config` reads the defaults shipped beside this module
(``defaults.toml``, printed by ``fundflow config --defaults``) and overlays a
user file. Each section is declared beside the detector that reads it (a
frozen dataclass whose fields say their kind and range,
:mod:`~fundflow.detectors.settings`), and one reader builds them all: money
thresholds are yuan strings in the file and integer fen here, and a bad
value raises ``ValueError`` naming it.

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
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import DAY_MS, HOUR_MS, SECTIONS, build, file_defaults

if TYPE_CHECKING:
    from .alerting import AlertConfig
    from .bipartite import BipartiteConfig
    from .cross_bank_clearing import CrossBankConfig
    from .down_payment_loan import DownPaymentConfig
    from .engine import EngineConfig
    from .excessive_return import ExcessiveReturnConfig
    from .fund_pool import FundPoolConfig
    from .guaranteed_return import GuaranteedReturnConfig
    from .maturity_mismatch import MaturityConfig
    from .off_profile import OffProfileConfig
    from .peel_chain import PeelChainConfig
    from .private_product_split import PrivateProductConfig
    from .reserve_misuse import ReserveConfig
    from .self_financing import SelfFinancingConfig
    from .split_payments import SplitPaymentsConfig
    from .stack import StackConfig
    from .typologies import (
        CycleConfig,
        FanConfig,
        GatherScatterConfig,
        ScatterGatherConfig,
        TypologyGraphConfig,
    )
    from .unlicensed_business import UnlicensedConfig


def default_toml() -> str:
    """The default configuration file, with its comments."""
    return resources.files(__package__).joinpath("defaults.toml").read_text(encoding="utf-8")


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
    #: The sections of the operator's own rules (docs/rules.md), by rule name.
    rules: dict[str, Any] = field(default_factory=dict, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def thresholds(self, section: str) -> dict[str, Any]:
        """The section as written in TOML, for echoing in alert evidence."""
        return dict(self.raw.get(section, {}))


#: The sections a :class:`Config` holds, in its order.
CONFIG_SECTIONS_ORDER = tuple(f.name for f in fields(Config) if f.name not in ("raw", "rules"))
CONFIG_SECTIONS = frozenset(CONFIG_SECTIONS_ORDER)

# Sections of the same file that a shell reads (the worker's broker
# settings, how logs show account ids, the webhooks): the detector loader
# leaves them to those readers, which refuse what they do not know. Any
# other section is unknown here.
SHELL_SECTIONS = frozenset({"kafka", "logging", "webhooks"})


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
    sections = declared()
    for origin, layer in layers:
        # The rules a layer names are imported first: they declare their
        # sections, whose defaults come from their declarations.
        for rule in _rules_named(origin, layer.get("engine")):
            if rule in SECTIONS and rule not in sections:
                merged.setdefault(rule, file_defaults(SECTIONS[rule]))
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
    built = {name: build(name, merged[name]) for name in sections}
    own = {
        rule: build(rule, merged[rule])
        for rule in _rules_named("engine", merged["engine"])
        if rule in merged and rule not in sections
    }
    return Config(**built, rules=own, raw=merged)


def _rules_named(origin: str, engine: Any) -> list[str]:
    """The rules (``module:Class``) an ``[engine]`` table names, loaded."""
    names = engine.get("detectors") if isinstance(engine, dict) else None
    out = []
    for entry in names if isinstance(names, list) else ():
        if isinstance(entry, str) and ":" in entry:
            try:
                out.append(load_rule(entry))
            except ValueError as e:
                raise ValueError(f"{origin}: engine.detectors: {e}") from None
    return out


def load_rule(path: str) -> str:
    """:func:`fundflow.detectors.engine.load_rule` (the engine imports this module)."""
    from .engine import load_rule as load  # noqa: PLC0415

    return load(path)


def declared() -> dict[str, type]:
    """Every section's declaration (``[name]`` -> its dataclass), from the
    detectors' modules, which declare their own."""
    from . import engine  # noqa: F401, PLC0415 - imports every detector, which declare theirs

    missing = CONFIG_SECTIONS - SECTIONS.keys()
    if missing:
        raise RuntimeError(f"sections declared nowhere: {sorted(missing)}")
    return {name: SECTIONS[name] for name in CONFIG_SECTIONS_ORDER}


__all__ = [
    "Config",
    "load_config",
    "declared",
    "default_toml",
    "DAY_MS",
    "HOUR_MS",
]
