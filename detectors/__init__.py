"""The pure detector core: the engine, the shared reference data, and one
module per detector. Imports no broker, database or metrics library."""

from .base import Detector
from .bipartite import Bipartite
from .config import Config, default_toml, load_config
from .cross_bank_clearing import CrossBankClearing
from .down_payment_loan import DownPaymentLoan
from .engine import DETECTORS, Deduplicator, Engine
from .excessive_return import ExcessiveReturn
from .fund_pool import FundPool
from .guaranteed_return import GuaranteedReturn
from .maturity_mismatch import MaturityMismatch
from .off_profile import OffProfile
from .ownership import Ownership
from .peel_chain import PeelChain
from .private_product_split import PrivateProductSplit
from .reserve_misuse import ReserveMisuse
from .self_financing import SelfFinancing
from .split_payments import SplitPayments
from .stack import Stack
from .typologies import Cycle, FanIn, FanOut, GatherScatter, ScatterGather
from .unlicensed_business import UnlicensedBusiness

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
    "SelfFinancing",
    "GuaranteedReturn",
    "ExcessiveReturn",
    "CrossBankClearing",
    "UnlicensedBusiness",
    "DownPaymentLoan",
    "PrivateProductSplit",
    "Ownership",
    "FanIn",
    "FanOut",
    "Cycle",
    "GatherScatter",
    "ScatterGather",
    "SplitPayments",
    "OffProfile",
    "Bipartite",
    "Stack",
    "PeelChain",
]
