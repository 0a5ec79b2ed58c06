"""What the picture of a :class:`~fundflow.graph.FlowGraph` shows
(``fundflow graph --out FILE.png``), as plain data: :func:`compose` takes
the graph and returns a :class:`Picture` that :mod:`fundflow.graph_draw`
draws. The picture answers where the alert's money went on a bounded
canvas whatever the size of the neighbourhood, so it leaves things out; the
``.graphml`` and ``.json`` exports keep every node and edge.

1. Columns by role, left to right: personal accounts, lenders, the owners
   and related parties behind the centre, the centre's accounts, borrowers,
   other accounts, accounts with no record. Owners of accounts away from
   the centre are left out.
2. In each column the alert's accounts (its own and the ends of its flows)
   come first, the biggest alert amount first, then the others by the yuan
   of their flows. With more than ``rows`` in a column, the first
   ``rows - 1`` are drawn and the rest become one aggregate node ("312
   other lenders, 4,100,000.00 yuan": the CNY flows touching them, each
   once).
3. Edges between the drawn nodes are merged per source, target, kind,
   currency and alert: the flows of an aggregate's members become one edge
   each way, the alert's flows kept apart from the others. Flows between two
   members of one aggregate have no edge (their yuan is in its figure).

Money is integer fen and printed exactly (:func:`yuan`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fundflow.graph import FlowGraph, entity_node

ROWS = 12  # nodes a column at most, an aggregate included

# Columns, left to right: where money comes from, the owners behind the
# centre, the accounts at the centre, where money goes.
_COLUMN_OF_ROLE = {"personal": 0, "lender_sub": 1, "borrower_sub": 4, "unknown": 6}
ENTITY_COLUMN, CENTRE_COLUMN, _OTHER_COLUMN = 2, 3, 5
COLUMN_TITLES = {
    0: "personal accounts",
    1: "lenders",
    2: "owners and related parties",
    3: "centre",
    4: "borrowers",
    5: "other accounts",
    6: "no account record",
}
# What an aggregate node of each column stands for: "312 other lenders".
_AGGREGATE_NOUNS = {
    0: "personal accounts",
    1: "lenders",
    2: "entities",
    3: "centre accounts",
    4: "borrowers",
    5: "accounts",
    6: "accounts with no record",
}


def yuan(fen: int) -> str:
    """Integer fen as yuan with thousands separators, exact.

    >>> yuan(410000000), yuan(5), yuan(-123456)
    ('4,100,000.00', '0.05', '-1,234.56')
    """
    sign = "-" if fen < 0 else ""
    q, r = divmod(abs(fen), 100)
    return f"{sign}{q:,}.{r:02d}"


def grouped(amount: str) -> str:
    """A decimal yuan string (an alert's ``amount``) with thousands
    separators, digits untouched.

    >>> grouped("11143302.66"), grouped("0.00"), grouped("1200")
    ('11,143,302.66', '0.00', '1,200')
    """
    whole, point, frac = amount.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-') or '0'):,}{point}{frac}"


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the picture: an account, an entity, or the aggregate of a
    column's accounts (``key`` ``others:COLUMN``) standing for ``members``
    graph nodes. ``volume_fen`` is the yuan (in fen) of the CNY flows that
    touch it, each flow once."""

    key: str
    column: int
    kind: str  # "account", "entity" or "aggregate"
    text: str
    role: str  # an account's role, an entity's kind; "" for an aggregate
    in_alert: bool
    volume_fen: int
    members: int = 1


@dataclass(frozen=True, slots=True)
class Edge:
    """A line of the picture: ``flow`` (money, merged per currency and
    alert), ``owns`` or ``relation``."""

    source: str
    target: str
    edge_type: str
    in_alert: bool = False
    currency: str = ""
    amount_fen: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class Picture:
    """What :func:`draw` draws: columns left to right (column id, nodes top
    to bottom) and edges in drawing order (ownership and relations, the
    ordinary flows from the smallest, the alert's flows last)."""

    title: str
    subtitle: str
    columns: tuple[tuple[int, tuple[Node, ...]], ...]
    edges: tuple[Edge, ...]


# -- what is drawn ------------------------------------------------------------


def columns_of(graph: FlowGraph) -> dict[str, int]:
    """Graph node -> column: every account; the entities that are the
    subject, related to it, or own an account at the centre."""
    cols: dict[str, int] = {}
    owners_at_centre: set[str] = set()
    for nid, a in graph.nodes.items():
        if a["node_type"] != "account":
            continue
        if a["centre_side"]:
            cols[nid] = CENTRE_COLUMN
            if a["owner_id"]:
                owners_at_centre.add(entity_node(a["owner_id"]))
        else:
            cols[nid] = _COLUMN_OF_ROLE.get(a["role"], _OTHER_COLUMN)
    for nid, a in graph.nodes.items():
        if a["node_type"] == "entity" and (
            a["is_subject"] or a["is_related"] or nid in owners_at_centre
        ):
            cols[nid] = ENTITY_COLUMN
    return cols


def _flows(graph: FlowGraph) -> list[tuple[str, str, dict[str, Any]]]:
    return [(u, v, e) for u, v, _k, e in graph.edges if e["edge_type"] == "flow"]


def _volume(flows: Iterable[tuple[str, str, dict[str, Any]]], members: set[str]) -> int:
    return sum(
        e["amount_fen"]
        for u, v, e in flows
        if e["currency"] == "CNY" and (u in members or v in members)
    )


def _entity_text(a: dict[str, Any]) -> str:
    kind = a["kind"].replace("_", " ") if a["kind"] != "unknown" else "owner"
    if a["is_subject"]:
        kind += ", subject"
    elif a["is_related"]:
        kind += ", related"
    return f"{a['entity_id']}\n{kind}"


def _account_text(account_id: str, money_in: int, money_out: int) -> str:
    lines = [account_id]
    if money_in:
        lines.append(f"in {yuan(money_in)} yuan")
    if money_out:
        lines.append(f"out {yuan(money_out)} yuan")
    return "\n".join(lines)


def _aggregate_text(column: int, members: list[str], volume: int, in_alert: int) -> str:
    noun = _AGGREGATE_NOUNS[column]
    text = f"{len(members):,} other {noun}"
    if column != ENTITY_COLUMN:
        text += f", {yuan(volume)} yuan"
    if in_alert:
        text += f"\n{in_alert:,} of them in the alert"
    return text


def _title(graph: FlowGraph, drawn: int) -> tuple[str, str]:
    at = graph.attrs
    accounts = sum(1 for a in graph.nodes.values() if a["node_type"] == "account")
    flows = len(_flows(graph))
    if "detector" in at:
        title = (
            f"{at['detector']} alert, {at['severity']}: subject {at['alert_subject']}, "
            f"{grouped(at['alert_amount'])} yuan"
        )
        where = f"alert {at['alert_id']}"
    else:
        title = at["centre"]
        subject = graph.nodes.get(entity_node(at["subject"])) if at["subject"] else None
        if subject is not None and subject["kind"] != "unknown":
            title += f" ({subject['kind'].replace('_', ' ')})"
        where = ""
    parts = [where] if where else []
    parts += [
        f"{at['hops']} hop(s)",
        f"{accounts:,} accounts, {drawn:,} drawn",
        f"{flows:,} flows",
        f"{graph.stats['transactions']:,} transactions",
    ]
    return title, " · ".join(parts)


def compose(graph: FlowGraph, rows: int = ROWS) -> Picture:
    """The picture of ``graph`` with at most ``rows`` nodes a column (the
    steps of the module docstring). Pure: reads ``graph``, returns data."""
    if rows < 2:
        raise ValueError(f"rows must be at least 2 (one node and an aggregate), got {rows}")
    cols = columns_of(graph)
    flows = _flows(graph)
    volume: dict[str, int] = {}
    money_in: dict[str, int] = {}
    money_out: dict[str, int] = {}
    alert_amount: dict[str, int] = {}
    in_alert_flow: set[str] = set()
    for u, v, e in flows:
        fen = e["amount_fen"]
        if e["currency"] == "CNY":
            money_out[u] = money_out.get(u, 0) + fen
            money_in[v] = money_in.get(v, 0) + fen
        for n in (u, v):
            if e["currency"] == "CNY":
                volume[n] = volume.get(n, 0) + fen
            if e["in_alert"]:
                alert_amount[n] = alert_amount.get(n, 0) + fen
                in_alert_flow.add(n)

    def alert_side(n: str) -> bool:
        return bool(graph.nodes[n]["in_alert"]) or n in in_alert_flow

    def rank(n: str) -> tuple[Any, ...]:
        a = graph.nodes[n]
        if a["node_type"] == "entity":
            return (not a["is_subject"], not a["in_alert"], not a["is_related"], n)
        return (not alert_side(n), -alert_amount.get(n, 0), -volume.get(n, 0), n)

    key_of: dict[str, str] = {}
    columns: list[tuple[int, tuple[Node, ...]]] = []
    drawn = 0
    for c in sorted(set(cols.values())):
        members = sorted((n for n, col in cols.items() if col == c), key=rank)
        shown, rest = (members, []) if len(members) <= rows else (
            members[: rows - 1], members[rows - 1 :])  # fmt: skip
        nodes: list[Node] = []
        for n in shown:
            a = graph.nodes[n]
            key_of[n] = n
            if a["node_type"] == "entity":
                nodes.append(Node(n, c, "entity", _entity_text(a), a["kind"], a["in_alert"], 0))
            else:
                text = _account_text(a["account_id"], money_in.get(n, 0), money_out.get(n, 0))
                nodes.append(Node(
                    n, c, "account", text, a["role"], alert_side(n), volume.get(n, 0)
                ))  # fmt: skip
        drawn += sum(1 for n in shown if graph.nodes[n]["node_type"] == "account")
        if rest:
            key = f"others:{c}"
            for n in rest:
                key_of[n] = key
            agg_volume = _volume(flows, set(rest))
            alert_members = sum(1 for n in rest if alert_side(n))
            nodes.append(Node(
                key, c, "aggregate", _aggregate_text(c, rest, agg_volume, alert_members), "",
                alert_members > 0, agg_volume, len(rest),
            ))  # fmt: skip
        columns.append((c, tuple(nodes)))
    title, subtitle = _title(graph, drawn)
    return Picture(title, subtitle, tuple(columns), _merge_edges(graph, key_of))


def _merge_edges(graph: FlowGraph, key_of: dict[str, str]) -> tuple[Edge, ...]:
    links: dict[tuple[str, str, str], Edge] = {}
    money: dict[tuple[str, str, str, bool], list[int]] = {}
    for u, v, _k, e in graph.edges:
        pu, pv = key_of.get(u), key_of.get(v)
        if pu is None or pv is None or pu == pv:
            continue
        if e["edge_type"] == "flow":
            agg = money.setdefault((pu, pv, e["currency"], e["in_alert"]), [0, 0])
            agg[0] += e["amount_fen"]
            agg[1] += e["count"]
        else:
            links.setdefault((pu, pv, e["edge_type"]), Edge(pu, pv, e["edge_type"]))
    merged = [
        Edge(pu, pv, "flow", in_alert, currency, amount, count)
        for (pu, pv, currency, in_alert), (amount, count) in money.items()
    ]
    merged.sort(key=lambda e: (e.in_alert, e.amount_fen, e.source, e.target, e.currency))
    return tuple(sorted(links.values(), key=lambda e: (e.edge_type, e.source, e.target))) + tuple(
        merged
    )
