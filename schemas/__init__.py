"""Records, their wire shapes and JSON Schemas, and the decoder that turns raw
input into records or dead letters. Pure: no I/O beyond what a caller hands in."""

from .decode import REASONS, DeadLetter, RecordDecoder, fen_to_yuan
from .records import (
    Account,
    Alert,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
    Related,
    ReserveReport,
)

__all__ = [
    "REASONS",
    "DeadLetter",
    "RecordDecoder",
    "fen_to_yuan",
    "Account",
    "Alert",
    "Balance",
    "ClearingTxn",
    "CustodyTxn",
    "Entity",
    "Loan",
    "Product",
    "Record",
    "Related",
    "ReserveReport",
]
