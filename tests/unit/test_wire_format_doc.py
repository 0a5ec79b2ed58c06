"""docs/wire-format.md, run: its examples give what it says they give, and
the list fields of a CSV row (``licenses``, ``related``) are read from one
cell exactly as its "List fields in one cell" describes.

The examples are the fenced blocks that follow an ``<!-- example: NAME -->``
line in the document, so the document and these tests cannot drift apart.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import load_config
from fundflow.replay import iter_records, replay
from fundflow.schemas import DeadLetter, Entity, RecordDecoder, Related

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"
DEC = RecordDecoder()


def example(name: str) -> str:
    """The fenced block after ``<!-- example: name -->`` in the document."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(
        rf"^<!-- example: {re.escape(name)} -->\n```[a-z]*\n(.*?)^```$", text, re.S | re.M
    )
    assert m, f"no example {name} in {DOC.name}"
    return m.group(1)


def entity_row(**cells: str) -> dict[str, str]:
    return {"type": "entity", "entity_id": "E1", "name": "某某有限公司", "kind": "company"} | cells


def decoded(row: dict[str, str]) -> tuple[object, ...] | str:
    rec = DEC.from_row(row)
    if isinstance(rec, DeadLetter):
        return rec.reason
    assert isinstance(rec, Entity)
    return rec.licenses, rec.related


# -- licenses: a JSON array, or names separated by ";" ------------------------------------

LICENSES = [
    ("p2p_registered; custody;", ("p2p_registered", "custody")),
    (" payment ", ("payment",)),
    ("a;;b", ("a", "b")),
    (";", ()),
    ("  ", ()),
    ("", ()),
    ("payment,custody", ("payment,custody",)),  # a comma does not separate
    ('["p2p_registered", "custody"]', ("p2p_registered", "custody")),
    ('  ["payment"]  ', ("payment",)),
    ("[]", ()),
    ('["payment"', "bad_field"),  # JSON that does not parse
    ('["payment", 5]', "bad_field"),  # elements checked as in a JSON record
    ('[""]', "bad_field"),
]


@pytest.mark.parametrize(("cell", "expect"), LICENSES, ids=[c for c, _ in LICENSES])
def test_licenses_cell(cell: str, expect: object) -> None:
    got = decoded(entity_row(licenses=cell))
    assert got == expect if isinstance(expect, str) else got == (expect, ())


# -- related: a JSON array of objects only -------------------------------------------------

SHAREHOLDER = Related(entity_id="H1", relation="shareholder", share=Decimal("0.6"))
RELATED = [
    ('[{"entity_id":"H1","relation":"shareholder","share":0.6}]', (SHAREHOLDER,)),
    (' [{"entity_id":"H1","relation":"shareholder","share":"0.6"}] ', (SHAREHOLDER,)),
    (
        '[{"entity_id":"H1","relation":"executive","share":null}]',
        (Related(entity_id="H1", relation="executive"),),
    ),
    ("", ()),
    ("[]", ()),
    ("H1", "bad_field"),  # the ";" form gives strings, not objects
    ("H1;H2", "bad_field"),
    ('{"entity_id":"H1","relation":"shareholder"}', "bad_field"),  # not in an array
    ('[{"entity_id":"H1","relation":"boss"}]', "bad_enum"),
    ('[{"entity_id":"","relation":"shareholder"}]', "bad_id"),
    ('[{"entity_id":"H1"', "bad_field"),
    ("[" * 5000 + "]" * 5000, "too_large"),  # nested too deep to decode
]


@pytest.mark.parametrize(("cell", "expect"), RELATED, ids=[c[:40] for c, _ in RELATED])
def test_related_cell(cell: str, expect: object) -> None:
    got = decoded(entity_row(related=cell))
    assert got == expect if isinstance(expect, str) else got == ((), expect)


# -- the examples ---------------------------------------------------------------------------


def test_the_csv_example_reads_as_described(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("entities.csv").write_text(example("entities.csv"), encoding="utf-8")
    got = [rec for rec, _raw in iter_records(["entities.csv"], RecordDecoder())]
    assert [type(r).__name__ for r in got] == ["Entity", "Entity", "Entity", "DeadLetter"]
    p1, h1, h2, dead = got
    assert (p1.entity_id, p1.licenses, p1.related) == (
        "P1",
        ("p2p_registered", "custody"),
        (SHAREHOLDER,),
    )
    assert (h1.entity_id, h1.licenses, h1.related) == ("H1", (), ())
    assert (h2.entity_id, h2.licenses, h2.related) == ("H2", ("asset_management",), ())
    assert (dead.reason, dead.source) == ("bad_field", "entities.csv:5")
    summary = replay(["entities.csv"], config=load_config())
    assert (summary.read, summary.accepted, summary.dead_letters) == (4, 3, {"bad_field": 1})
    # A name is judged when its entity first acts on its own feed: none does here.
    assert summary.by_severity() == {}


def test_the_jsonl_example_gives_the_alerts_and_dead_letter_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dump.jsonl").write_text(example("dump.jsonl"), encoding="utf-8")
    alerts, dead = _Collect(), _Collect()
    summary = replay(["dump.jsonl"], config=load_config(), alerts_out=alerts, deadletter_out=dead)
    assert (summary.read, summary.accepted, summary.duplicates, summary.dead_letters) == (
        8,
        6,
        1,
        {"bad_amount": 1},
    )
    first, second = alerts.objects()
    assert first == json.loads(example("alert.json"))
    assert (second["evidence"]["signal"], second["severity"], second["amount"]) == (
        "coverage_shortfall",
        "high",
        "98765.44",
    )
    assert (second["evidence"]["coverage_ratio"], second["first_ts"]) == (
        "0.9102",
        "2026-03-02T00:00:00+08:00",
    )
    (letter,) = dead.objects()
    assert (letter["reason"], letter["source"]) == ("bad_amount", "dump.jsonl:7")
    assert json.loads(letter["raw"])["txn_id"] == "C2"


class _Collect:
    """A binary stream that keeps the JSON lines written to it."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def objects(self) -> list[dict[str, object]]:
        return [msgspec.json.decode(line) for line in self.data.splitlines()]
