"""The pure detector core: the engine, the shared reference data, and one
module per detector. Imports no broker, database or metrics library."""

from .base import Detector
from .config import Config, default_toml, load_config
from .engine import DETECTORS, Deduplicator, Engine
from .fund_pool import FundPool
from .maturity_mismatch import MaturityMismatch
from .reserve_misuse import ReserveMisuse

__all__ = [
    "Detector",
    "Config",
    "default_toml",
    "load_config",
    "DETECTORS",
    "Deduplicator",
    "Engine",
    "FundPool",
    "MaturityMismatch",
    "ReserveMisuse",
]
