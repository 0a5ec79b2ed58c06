"""Typed settings, declared: what a section of the configuration file holds,
the kind and range of each value, and the checks between values. One reader
(:func:`build`) turns a section's TOML table into its frozen dataclass and
refuses a bad value with a ``ValueError`` naming it (``section.key``), so no
section writes its own parsing.

A section is a frozen dataclass registered with :func:`section`; each of its
fields declares its kind with :func:`setting` (and the key it is read from,
when the file's name differs: ``window_days`` read into ``window_ms``).
Defaults live in ``defaults.toml``, with their comments; the declarations
say what is allowed. Each detector declares its own section beside its code.

>>> from dataclasses import dataclass
>>> @section("demo", checks=(rising("demo bands must rise: low <= high", "low", "high"),))
... @dataclass(frozen=True, slots=True)
... class Demo:
...     window_ms: int = setting(Days(1, 366), key="window_days")
...     low: int = setting(Fen())
...     high: int = setting(Fen())
>>> build("demo", {"window_days": 2, "low": "1.50", "high": "3"})
Demo(window_ms=172800000, low=150, high=300)
>>> build("demo", {"window_days": 0, "low": "1", "high": "3"})
Traceback (most recent call last):
...
ValueError: demo.window_days must be >= 1, got 0
>>> build("demo", {"window_days": 1, "low": "4", "high": "3"})
Traceback (most recent call last):
...
ValueError: demo bands must rise: low <= high
>>> SECTIONS.pop("demo").__name__
'Demo'
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000

#: Section name -> its dataclass, in the order they were declared.
SECTIONS: dict[str, type] = {}
#: Section name -> the checks between its values.
CHECKS: dict[str, tuple[Callable[[str, Any], None], ...]] = {}


def section(name: str, checks: Iterable[Callable[[str, Any], None]] = ()) -> Callable[[type], type]:
    """Registers a dataclass as the declaration of section ``[name]``."""

    def register(cls: type) -> type:
        if name in SECTIONS and SECTIONS[name] is not cls:
            raise ValueError(f"section [{name}] is declared twice")
        SECTIONS[name] = cls
        CHECKS[name] = tuple(checks)
        return cls

    return register


_NO_DEFAULT = object()


def setting(kind: Kind, key: str | None = None, default: Any = _NO_DEFAULT) -> Any:
    """A field read from ``key`` (default: the field's name) as ``kind``.
    ``default``: the value as the file would write it, for a section that
    ``defaults.toml`` does not hold (a rule of the operator's own)."""
    return dataclasses.field(metadata={"setting": kind, "key": key, "default": default})


def file_defaults(cls: type) -> dict[str, Any]:
    """A section's defaults as its file table would write them, from its
    declaration; every field must give one."""
    out = {}
    for f in dataclasses.fields(cls):
        key = f.metadata["key"] or f.name
        if f.metadata["default"] is _NO_DEFAULT:
            raise ValueError(f"setting {key} of {cls.__name__} declares no default")
        out[key] = f.metadata["default"]
    return out


def build(name: str, raw: dict[str, Any], cls: type | None = None) -> Any:
    """Section ``[name]``'s dataclass from its TOML table ``raw``: every
    field parsed by its kind, in declaration order, then the checks."""
    cls = cls or SECTIONS[name]
    values = {}
    for f in dataclasses.fields(cls):
        kind: Kind = f.metadata["setting"]
        key = f.metadata["key"] or f.name
        values[f.name] = kind.parse(name, key, raw[key])
    cfg = cls(**values)
    for check in CHECKS.get(name, ()):
        check(name, cfg)
    return cfg


def keys(cls: type) -> list[str]:
    """The keys a section's file table holds."""
    return [f.metadata["key"] or f.name for f in dataclasses.fields(cls)]


# -- kinds of value ---------------------------------------------------------------


class Kind(ABC):
    """How one value is read; :meth:`parse` raises ``ValueError`` naming it."""

    @abstractmethod
    def parse(self, section: str, key: str, value: Any) -> Any:
        """The value as the section holds it."""


class Int(Kind):
    """A whole number in ``lo..hi``, times ``scale`` (a unit in ms)."""

    def __init__(self, lo: int, hi: int = 10**12, scale: int = 1) -> None:
        self.lo, self.hi, self.scale = lo, hi, scale

    def parse(self, section: str, key: str, value: Any) -> int:
        return whole(section, key, value, self.lo, self.hi) * self.scale


def Days(lo: int, hi: int) -> Int:  # noqa: N802 - reads as a unit
    """Whole days in ``lo..hi``, held in ms."""
    return Int(lo, hi, DAY_MS)


def Hours(lo: int, hi: int) -> Int:  # noqa: N802
    """Whole hours in ``lo..hi``, held in ms."""
    return Int(lo, hi, HOUR_MS)


def Minutes(lo: int, hi: int) -> Int:  # noqa: N802
    """Whole minutes in ``lo..hi``, held in ms."""
    return Int(lo, hi, MINUTE_MS)


class Fen(Kind):
    """An amount in yuan (a string, at most 2 decimals), held in fen."""

    def parse(self, section: str, key: str, value: Any) -> int:
        return fen(section, key, value)


class Dec(Kind):
    """A decimal number in ``lo..hi``."""

    def __init__(self, lo: Decimal | int, hi: Decimal | int) -> None:
        self.lo, self.hi = Decimal(lo), Decimal(hi)

    def parse(self, section: str, key: str, value: Any) -> Decimal:
        return dec(section, key, value, self.lo, self.hi)


class Ratio(Dec):
    """A decimal number in ``lo..hi``, held as an exact fraction."""

    def parse(self, section: str, key: str, value: Any) -> Fraction:
        return Fraction(super().parse(section, key, value))


class Percent(Kind):
    """A percent in 0..100 (whole or decimal), held as an exact fraction of
    one; ``below_100``: 100 itself refused."""

    def __init__(self, below_100: bool = False) -> None:
        self.below_100 = below_100

    def parse(self, section: str, key: str, value: Any) -> Fraction:
        share = Fraction(dec(section, key, value, Decimal(0), Decimal(100))) / 100
        if self.below_100 and share >= 1:
            raise ValueError(f"{section}.{key} must be below 100, got {value!r}")
        return share


class BasisPoints(Kind):
    """A percent in 0..100 with at most two decimals, held in basis points."""

    def parse(self, section: str, key: str, value: Any) -> int:
        d = dec(section, key, value, Decimal(0), Decimal(100))
        if d * 100 != int(d * 100):
            raise ValueError(f"{section}.{key} has more precision than a basis point: {value!r}")
        return int(d * 100)


class Names(Kind):
    """A list of non-empty strings, held as a frozenset (``sort``: as a
    sorted tuple); ``required``: the message when it is empty."""

    def __init__(self, required: str | None = None, sort: bool = False) -> None:
        self.required, self.sort = required, sort

    def parse(self, section: str, key: str, value: Any) -> frozenset[str] | tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"{section}.{key} must be a list of non-empty strings, got {value!r}")
        if self.required is not None and not value:
            raise ValueError(f"{section}.{key} {self.required}")
        return tuple(sorted(set(value))) if self.sort else frozenset(value)


class Strings(Kind):
    """A list of strings (empty ones allowed), held as a frozenset."""

    def parse(self, section: str, key: str, value: Any) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise ValueError(f"{section}.{key} must be a list of strings, got {value!r}")
        return frozenset(value)


class Name(Kind):
    """A non-empty string."""

    def parse(self, section: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{section}.{key} must be a non-empty string, got {value!r}")
        return value


class Custom(Kind):
    """A value read by ``read(section, key, value)``: for the few whose
    shape no kind above says (a rate table, the detectors to run)."""

    def __init__(self, read: Callable[[str, str, Any], Any]) -> None:
        self.read = read

    def parse(self, section: str, key: str, value: Any) -> Any:
        return self.read(section, key, value)


# -- checks between values --------------------------------------------------------


def rising(message: str, *names: str) -> Callable[[str, Any], None]:
    """The fields ``names`` must not fall, in that order."""

    def check(section: str, cfg: Any) -> None:
        values = [getattr(cfg, n) for n in names]
        if any(a > b for a, b in zip(values, values[1:], strict=False)):
            raise ValueError(message)

    return check


def at_most(low: str, high: str) -> Callable[[str, Any], None]:
    """Field ``low`` must be <= field ``high`` (keys named as in the file)."""

    def check(section: str, cfg: Any) -> None:
        a, b = getattr(cfg, low), getattr(cfg, high)
        if a > b:
            raise ValueError(f"{section}.{low} must be <= {section}.{high}, got {a} > {b}")

    return check


def severity_rising(section: str, cfg: Any) -> None:
    """``severity_high`` <= ``severity_critical``."""
    if cfg.severity_high > cfg.severity_critical:
        raise ValueError(f"{section} severity bands must rise: high <= critical")


# -- the readers the kinds share ----------------------------------------------------


def fen(section: str, name: str, value: Any) -> int:
    """An amount in yuan as integer fen."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{section}.{name} must be an amount in yuan, got {value!r}") from None
    try:
        exact = d.is_finite() and d >= 0 and d == d.quantize(Decimal("0.01"))
    except InvalidOperation:  # too many digits to hold in fen ("1e400")
        exact = False
    if not exact:
        raise ValueError(
            f"{section}.{name} must be a non-negative amount with at most 2 decimals, got {value!r}"
        )
    return int(d * 100)


def dec(section: str, name: str, value: Any, lo: Decimal, hi: Decimal) -> Decimal:
    """A decimal number in ``lo..hi``."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{section}.{name} must be a number, got {value!r}") from None
    if not d.is_finite() or not (lo <= d <= hi):
        raise ValueError(f"{section}.{name} must be in {lo}..{hi}, got {value!r}")
    return d


def whole(section: str, name: str, value: Any, lo: int, hi: int = 10**12) -> int:
    """A whole number in ``lo..hi`` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{section}.{name} must be a whole number, got {value!r}")
    if value < lo:
        raise ValueError(f"{section}.{name} must be >= {lo}, got {value}")
    if value > hi:
        raise ValueError(f"{section}.{name} must be <= {hi}, got {value}")
    return value
