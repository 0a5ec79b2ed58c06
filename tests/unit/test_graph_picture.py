"""What the picture of the account graph shows (`fundflow.graph_picture`), on
the hand-made ledger of :mod:`picture_ledger`: columns, the top accounts of
each column and the aggregate of the rest, merged edges, the title; the data
exports keep what the picture leaves out."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import networkx as nx
import pytest
from picture_ledger import alert, write_ledger

from fundflow import graph_picture
from fundflow.graph import Centre, build_graph, write_graph
from fundflow.graph_picture import Edge, compose, grouped, yuan


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    return write_ledger(tmp_path / "ledger.jsonl")


def _columns(picture) -> dict[int, list[tuple[str, str, bool]]]:
    return {c: [(n.key, n.text, n.in_alert) for n in nodes] for c, nodes in picture.columns}


def _lender(i: int) -> tuple[str, str, bool]:
    return (f"account:L{i:02d}", f"L{i:02d}\nout {i},000,000.00 yuan", False)


def test_subject_columns_top_lenders_and_one_aggregate(dump: Path) -> None:
    picture = compose(build_graph([str(dump)], Centre(subject="P"), hops=0))
    assert _columns(picture) == {
        1: [_lender(i) for i in range(15, 4, -1)]
        + [("others:1", "4 other lenders, 10,000,000.00 yuan", False)],
        2: [
            ("entity:P", "P\np2p platform, subject", False),
            ("entity:A1", "A1\ncompany, related", False),
            ("entity:A2", "A2\ncompany, related", False),
        ],
        3: [
            ("account:POOL", "POOL\nin 120,000,000.00 yuan\nout 25,000,000.00 yuan", False),
            ("account:X1", "X1\nin 5,000,000.00 yuan", False),
            ("account:OWN", "OWN", False),
            ("account:X2", "X2", False),
        ],
        4: [("account:B01", "B01\nin 20,000,000.00 yuan", False), ("account:B02", "B02", False)],
    }
    aggregate = picture.columns[0][1][-1]
    assert (aggregate.kind, aggregate.members, aggregate.volume_fen) == ("aggregate", 4, 10**9)
    assert picture.title == "subject P (p2p platform)"
    assert picture.subtitle == "0 hop(s) · 21 accounts, 17 drawn · 17 flows · 17 transactions"
    # The four smallest lenders' flows are one edge of their aggregate.
    assert Edge("others:1", "account:POOL", "flow", False, "CNY", 10**9, 4) in picture.edges
    assert not any(e.source in {f"account:L0{i}" for i in range(1, 5)} for e in picture.edges)


def test_alert_accounts_come_first_and_its_flows_last(dump: Path) -> None:
    picture = compose(build_graph([str(dump)], Centre(alert=alert()), hops=1))
    cols = _columns(picture)
    # L02 sent money the alert names: drawn first, though among the smallest.
    assert cols[1][0] == ("account:L02", "L02\nout 2,000,000.00 yuan", True)
    assert cols[1][-1] == ("others:1", "4 other lenders, 13,000,000.00 yuan", False)
    assert cols[3] == [
        ("account:POOL", "POOL\nin 120,000,000.00 yuan\nout 25,000,000.00 yuan", True),
        ("account:X1", "X1\nin 5,000,000.00 yuan\nout 4,999,999.99 yuan", True),
    ]
    assert cols[5] == [("account:XO", "XO\nin 4,999,999.99 yuan", False)]
    assert picture.edges[-2:] == (
        Edge("account:L02", "account:POOL", "flow", True, "CNY", 200_000_000, 1),
        Edge("account:POOL", "account:X1", "flow", True, "CNY", 500_000_000, 1),
    )
    assert [e.edge_type for e in picture.edges[:4]] == ["owns", "owns", "relation", "relation"]
    ordinary = [e.amount_fen for e in picture.edges if e.edge_type == "flow" and not e.in_alert]
    assert ordinary == sorted(ordinary)
    assert picture.title == "self_financing alert, high: subject P, 5,000,000.00 yuan"
    assert picture.subtitle == (
        "alert a7 · 1 hop(s) · 19 accounts, 15 drawn · 18 flows · 18 transactions"
    )


def test_an_aggregate_keeps_the_alert_flows_of_its_members_apart(dump: Path) -> None:
    g = build_graph([str(dump)], Centre(alert=alert("T01", "T02", "T03", "T04")), hops=1)
    picture = compose(g, rows=4)
    assert _columns(picture)[1] == [
        ("account:L04", "L04\nout 4,000,000.00 yuan", True),
        ("account:L03", "L03\nout 3,000,000.00 yuan", True),
        ("account:L02", "L02\nout 2,000,000.00 yuan", True),
        ("others:1", "12 other lenders, 111,000,000.00 yuan\n1 of them in the alert", True),
    ]
    into_pool = [e for e in picture.edges if e.source == "others:1"]
    assert into_pool == [
        Edge("others:1", "account:POOL", "flow", False, "CNY", 11_000_000_000, 11),
        Edge("others:1", "account:POOL", "flow", True, "CNY", 100_000_000, 1),
    ]


def test_the_data_formats_keep_every_account_the_picture_aggregates(
    dump: Path, tmp_path: Path
) -> None:
    g = build_graph([str(dump)], Centre(subject="P"), hops=0)
    write_graph(g, str(tmp_path / "g.json"))
    j = nx.node_link_graph(json.loads((tmp_path / "g.json").read_text()), edges="edges")
    assert {f"account:L{i:02d}" for i in range(1, 16)} <= set(j.nodes)
    assert j.edges["account:L01", "account:POOL", "flow:CNY"]["amount"] == "1000000.00"


def test_rows_below_two_is_refused(dump: Path) -> None:
    g = build_graph([str(dump)], Centre(subject="P"), hops=0)
    with pytest.raises(ValueError, match="rows must be at least 2 .*, got 1"):
        compose(g, rows=1)


def test_money_is_printed_exactly_with_separators() -> None:
    assert [yuan(f) for f in (0, 1, 99, 100, 123_456_789_012, -5)] == [
        "0.00", "0.01", "0.99", "1.00", "1,234,567,890.12", "-0.05",
    ]  # fmt: skip
    assert [grouped(a) for a in ("11143302.66", "999.5", "1000", "-1234.00")] == [
        "11,143,302.66", "999.5", "1,000", "-1,234.00",
    ]  # fmt: skip
    assert doctest.testmod(graph_picture) == (0, 2)  # (failed, attempted)
