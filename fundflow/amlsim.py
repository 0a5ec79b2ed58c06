"""IBM AMLSim's transfer lists as a transfer world (``simulate --amlsim``).

AMLSim (https://github.com/IBM/AMLSim, Apache License 2.0) writes
``nodes.csv`` (``nodeid,isFraud,init_balance,fraudStep``) and
``transactions.csv`` (``sourceNodeId,targetNodeId,value,time``): ``time`` is
a simulation step (a day), ``value`` a decimal amount with no currency.
:func:`convert_amlsim` writes them as :mod:`fundflow.transfers` writes its
own worlds: ``transfers.csv`` in the same foreign layout (so the same
``fundflow replay`` arguments read it) and ``truth.json``.

Step ``s`` is the local midnight ``s`` days after 2026-03-02 (the data has no
time of day: every transfer of a step has the same time, in file order by
id). Amounts keep their two decimals, in the currency the caller names.

AMLSim labels accounts, not patterns: its patterns share accounts, and the
sample's fraud accounts form one connected graph. So the truth holds
``fraud_accounts`` for node-level scoring
(:func:`fundflow.transfers.score_nodes`) and no
planted patterns; pattern-level scores are for the worlds of
:mod:`fundflow.transfers`, whose patterns are known.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .transfers import DAY, HEADER, REPLAY_ARGS, ZONE, _local

NODE_COLUMNS = ("nodeid", "isFraud")
TXN_COLUMNS = ("sourceNodeId", "targetNodeId", "value", "time")
BANK = "AML"


class AMLSimError(ValueError):
    """The input is not an AMLSim sample: the message says what is wrong."""


def _members(src: Path) -> tuple[str, str]:
    """The text of ``nodes.csv`` and ``transactions.csv`` in folder or
    ``.tgz`` ``src`` (at its top or one folder down)."""
    if src.is_dir():
        for base in (src, *sorted(p for p in src.iterdir() if p.is_dir())):
            if (base / "nodes.csv").is_file() and (base / "transactions.csv").is_file():
                return (
                    (base / "nodes.csv").read_text(encoding="utf-8"),
                    (base / "transactions.csv").read_text(encoding="utf-8"),
                )
        raise AMLSimError(f"{src}: no nodes.csv and transactions.csv in it")
    try:
        with tarfile.open(src, "r:*") as tar:
            found: dict[str, str] = {}
            for m in tar.getmembers():
                name = m.name.rsplit("/", 1)[-1]
                if m.isfile() and name in ("nodes.csv", "transactions.csv"):
                    data = tar.extractfile(m)
                    if data is not None:
                        found[name] = data.read().decode("utf-8")
    except (tarfile.TarError, OSError) as e:
        raise AMLSimError(f"{src}: not a folder or a readable tar archive ({e})") from None
    if len(found) < 2:
        raise AMLSimError(f"{src}: no nodes.csv and transactions.csv in the archive")
    return found["nodes.csv"], found["transactions.csv"]


def _rows(text: str, name: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise AMLSimError(f"{name}: no column {', '.join(missing)} in its header")
    yield from enumerate(reader, start=2)


def _fen(value: str, where: str) -> int:
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise AMLSimError(f"{where}: value {value!r} is not a number") from None
    if not d.is_finite() or d < 0 or d != d.quantize(Decimal("0.01")):
        raise AMLSimError(f"{where}: value {value!r} is not an amount with at most two decimals")
    return int(d * 100)


def convert_amlsim(src: Path, out: Path, *, currency: str = "USD") -> dict[str, Any]:
    """Writes ``transfers.csv`` and ``truth.json`` into folder ``out`` from
    the AMLSim sample ``src`` (a folder or a ``.tgz``); returns the truth.
    Raises :class:`AMLSimError` on input that is not an AMLSim sample."""
    nodes_text, txn_text = _members(src)
    fraud: list[str] = []
    accounts = 0
    for n, row in _rows(nodes_text, "nodes.csv", NODE_COLUMNS):
        accounts += 1
        if row["isFraud"] not in ("0", "1"):
            raise AMLSimError(f"nodes.csv line {n}: isFraud {row['isFraud']!r} is not 0 or 1")
        if row["isFraud"] == "1":
            fraud.append(row["nodeid"])
    start = int(datetime(2026, 3, 2, tzinfo=ZONE).timestamp() * 1000)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    rows = 0
    for n, row in _rows(txn_text, "transactions.csv", TXN_COLUMNS):
        where = f"transactions.csv line {n}"
        if not row["time"].isdigit():
            raise AMLSimError(f"{where}: time {row['time']!r} is not a step number")
        q, r = divmod(_fen(row["value"], where), 100)
        rows += 1
        writer.writerow(
            (
                f"TX{rows:09d}",
                _local(start + int(row["time"]) * DAY),
                BANK,
                row["sourceNodeId"],
                BANK,
                row["targetNodeId"],
                f"{q}.{r:02d}",
                currency,
                "",
            )
        )
    name = "transfers.csv"
    (out / name).write_bytes(text.getvalue().encode("utf-8"))
    truth = {
        "source": "IBM AMLSim",
        "file": name,
        "rows": rows,
        "accounts": accounts,
        "currency": currency,
        "step_ms": DAY,
        "replay_args": list(REPLAY_ARGS),
        "fraud_accounts": sorted(fraud, key=lambda a: (len(a), a)),
        "patterns": [],
        "honest": [],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


__all__ = ["AMLSimError", "convert_amlsim"]
