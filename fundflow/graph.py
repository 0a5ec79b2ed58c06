"""``fundflow graph``: the money-flow and ownership graph around a subject,
an account or an alert, for investigators (Gephi, networkx, a picture).

:func:`build_graph` reads dumps with the replay's decoder
(:class:`~fundflow.schemas.decode.RecordDecoder` through
:func:`~fundflow.replay.iter_records`): a bad line is counted by its reason and
skipped, never fatal. It holds the reference records and the flows of the
neighbourhood only, never the whole dump's graph, by reading the dumps in
passes:

1. reference: entities, accounts, products and loans (and, for an alert, the
   two accounts of each transaction its evidence names). The centre is then
   known: the subject's accounts (owned by it or an entity related to it, or
   in its custody system), one account, or an alert's accounts.
2. one pass per hop (``--hops N``): every account that exchanged money with
   the set so far joins it. A pass that finds no one new ends the search.
3. flows: each transaction between two accounts of the set is added, once per
   ``txn_id``, to the edge of its payer, payee and currency.

The result is a :class:`FlowGraph`: nodes are accounts (``account:ID``: role,
owner, bank, platform, hop) and entities (``entity:ID``: kind, name,
licenses); edges are aggregated money flows (``flow:CURRENCY``: count, amount
in yuan as an exact string and in integer fen, first and last time, sample
txn ids, purposes, channels), ownership (``owns``, entity to account) and
relations (``relation``, from the related entity to the entity listing it:
``shareholder`` of it, with ``share``). The graph's own attributes name the
centre, subject, hops and zone, and for an alert its id, detector, severity,
subject and amount. List values are JSON text, so each attribute is a plain
GraphML type. :func:`write_graph` writes ``.graphml``, ``.json`` (networkx
node-link) or ``.png`` (:mod:`fundflow.graph_picture` chooses what the
picture shows, :mod:`fundflow.graph_draw` draws it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from fundflow.detectors import Config, load_config
from fundflow.detectors.alerting import iso
from fundflow.detectors.reference import PLATFORM_ROLES, Reference
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.decode import fen_to_yuan
from fundflow.schemas.records import (
    KINDS,
    Account,
    Alert,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
)

FORMATS = (".graphml", ".json", ".png")
MAX_HOPS = 10
DEFAULT_MAX_ACCOUNTS = 20_000
# fundflow is installed from a checkout (it is on no package index); the
# locked runtime environment carries the graph extra's libraries.
EXTRA_HINT = (
    "install the locked environment, which has the graph extra: "
    "pip install --require-hashes -r requirements/runtime.txt"
)

# Evidence keys that name accounts, transactions or loans (detectors' alerts).
_ACCOUNT_KEYS = ("pool_accounts", "reserve_accounts", "counterparty_account", "reserve_account")
_TXN_KEYS = ("sample_txn_ids", "offending_txn_ids")
# Roles that sit in the middle of a picture: accounts a platform or a payment
# institution runs itself.
_CENTRE_ROLES = PLATFORM_ROLES | {"risk_reserve", "client_reserve"}


class GraphError(Exception):
    """A problem with the request (unknown subject, account or alert; too
    large a neighbourhood): one line for the user."""


@dataclass(frozen=True)
class Centre:
    """What the graph is drawn around: exactly one of a subject (entity id),
    an account, or an alert."""

    subject: str | None = None
    account: str | None = None
    alert: Alert | None = None

    def describe(self) -> str:
        if self.alert is not None:
            return f"alert {self.alert.alert_id}"
        if self.account is not None:
            return f"account {self.account}"
        return f"subject {self.subject}"


@dataclass
class _Flow:
    """Money from one account to another in one currency, aggregated."""

    count: int = 0
    amount: int = 0
    first: int = -1
    last: int = -1
    samples: list[str] = field(default_factory=list)
    alert_samples: list[str] = field(default_factory=list)
    purposes: set[str] = field(default_factory=set)
    channels: set[str] = field(default_factory=set)


@dataclass
class FlowGraph:
    """The exported graph as plain data: ``nodes`` maps a node id to its
    attributes, ``edges`` holds ``(source, target, key, attributes)``, both in
    a deterministic order; ``stats`` says what the passes read."""

    attrs: dict[str, Any]
    nodes: dict[str, dict[str, Any]]
    edges: list[tuple[str, str, str, dict[str, Any]]]
    stats: dict[str, Any]

    def to_networkx(self) -> Any:
        """A ``networkx.MultiDiGraph`` with the same nodes, edges, keys and
        attributes."""
        import networkx as nx

        g = nx.MultiDiGraph(**self.attrs)
        g.add_nodes_from(self.nodes.items())
        for u, v, key, data in self.edges:
            g.add_edge(u, v, key=key, **data)
        return g


def account_node(account_id: str) -> str:
    return f"account:{account_id}"


def entity_node(entity_id: str) -> str:
    return f"entity:{entity_id}"


# -- reading ------------------------------------------------------------------


class _Reader:
    """Reads the dumps again and again, counting what the first pass saw."""

    def __init__(self, paths: list[str], config: Config, kind: str | None) -> None:
        self.paths = paths
        self.kind = kind
        self.decoder = RecordDecoder(zone=config.engine.zone)
        self.passes = 0
        self.read = 0
        self.dead: dict[str, int] = {}

    def records(self) -> Iterator[Any]:
        from .replay import iter_records

        first = self.passes == 0
        self.passes += 1
        for rec, _raw in iter_records(self.paths, self.decoder, self.kind):
            if first:
                self.read += 1
            if type(rec) is DeadLetter:
                if first:
                    self.dead[rec.reason] = self.dead.get(rec.reason, 0) + 1
                continue
            yield rec

    def flows(self) -> Iterator[CustodyTxn | ClearingTxn]:
        for rec in self.records():
            if type(rec) is CustodyTxn or type(rec) is ClearingTxn:
                yield rec


def _ends(txn: CustodyTxn | ClearingTxn) -> tuple[str, str]:
    if type(txn) is CustodyTxn:
        return txn.debit_account, txn.credit_account
    return txn.payer_account, txn.payee_account  # type: ignore[union-attr]


def _evidence_ids(alert: Alert, keys: Iterable[str]) -> list[str]:
    out: list[str] = []
    for key in keys:
        value = alert.evidence.get(key)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, str))
    return out


def _evidence_loans(alert: Alert) -> list[str]:
    ev = alert.evidence
    loans = [ev["loan_id"]] if isinstance(ev.get("loan_id"), str) else []
    for row in ev.get("loans") or ():
        if isinstance(row, dict) and isinstance(row.get("loan_id"), str):
            loans.append(row["loan_id"])
    return loans


def subject_accounts(ref: Reference, subject: str) -> set[str]:
    """The accounts of a subject: owned by it or by an entity related to it,
    or belonging to its custody system (``platform_id``)."""
    owners = {subject, *ref.related(subject)}
    return {
        a.account_id
        for a in ref.accounts.values()
        if a.owner_id in owners or a.platform_id == subject
    }


def build_graph(
    paths: list[str],
    centre: Centre,
    *,
    hops: int = 1,
    config: Config | None = None,
    kind: str | None = None,
    max_accounts: int = DEFAULT_MAX_ACCOUNTS,
) -> FlowGraph:
    """The graph around ``centre`` within ``hops`` money hops, read from
    ``paths`` in the passes of the module docstring. Raises
    :class:`GraphError` for an unknown subject, account or alert content, or
    a neighbourhood of more than ``max_accounts`` accounts; lets
    :class:`~fundflow.replay.ReplayError` through for an unreadable dump."""
    config = config or load_config()
    if sum(x is not None for x in (centre.subject, centre.account, centre.alert)) != 1:
        raise GraphError("the centre is one of a subject, an account or an alert")
    if not 0 <= hops <= MAX_HOPS:
        raise GraphError(f"--hops must be 0..{MAX_HOPS}, got {hops}")
    reader = _Reader(paths, config, kind)
    alert = centre.alert
    wanted_txns = set(_evidence_ids(alert, _TXN_KEYS)) if alert is not None else set()
    ref = Reference()
    txn_ends: dict[str, tuple[str, str]] = {}
    account_seen = False
    # Pass 1: reference (and the transactions the alert names).
    for rec in reader.records():
        t = type(rec)
        if t is Entity or t is Account or t is Product or t is Loan:
            ref.add(rec)
        elif t is CustodyTxn or t is ClearingTxn:
            ends = _ends(rec)
            if rec.txn_id in wanted_txns:
                txn_ends.setdefault(rec.txn_id, ends)
            if centre.account is not None and centre.account in ends:
                account_seen = True
    seeds, subject, notes = _seeds(ref, centre, txn_ends, account_seen)
    hop: dict[str, int] = dict.fromkeys(sorted(seeds), 0)
    _check_size(hop, max_accounts, centre, 0)
    # Passes 2..: one per hop.
    for h in range(1, hops + 1):
        found: set[str] = set()
        for txn in reader.flows():
            a, b = _ends(txn)
            if a in hop:
                if b not in hop:
                    found.add(b)
            elif b in hop:
                found.add(a)
        if not found:
            break
        for acc in sorted(found):
            hop[acc] = h
        _check_size(hop, max_accounts, centre, h)
    # Last pass: the flows between accounts of the neighbourhood.
    flows, duplicates, txns = _aggregate(reader, hop, wanted_txns, config.alerts.sample_txns)
    stats = {
        "records_read": reader.read,
        "dead_letters": dict(sorted(reader.dead.items())),
        "passes": reader.passes,
        "transactions": txns,
        "duplicates": duplicates,
        "notes": notes,
    }
    return _assemble(ref, centre, subject, hop, flows, hops, config, stats)


def alert_graph(alert: Alert, config: Config | None = None) -> FlowGraph:
    """The graph of what ``alert`` names by itself, for when no dumps are at
    hand: its accounts (and those its evidence names) as account nodes of
    unknown role, its subject as an entity node, no flows. The graph's
    ``source`` attribute is ``alert`` (``dumps`` for :func:`build_graph`'s),
    ``note`` says what is missing, and ``evidence_txn_ids`` lists the
    transactions the evidence names (JSON text, like every list attribute)."""
    config = config or load_config()
    centre = Centre(alert=alert)
    seeds = set(alert.accounts) | set(_evidence_ids(alert, _ACCOUNT_KEYS))
    txns = _evidence_ids(alert, _TXN_KEYS)
    stats = {"records_read": 0, "dead_letters": {}, "passes": 0, "transactions": 0,
             "duplicates": 0, "notes": []}  # fmt: skip
    graph = _assemble(
        Reference(), centre, alert.subject_id, dict.fromkeys(sorted(seeds), 0), {}, 0, config, stats
    )
    graph.attrs |= {
        "source": "alert",
        "note": "built from the alert alone (no dumps given): the accounts it names, "
        "without their flows, owners or roles",
        "evidence_txn_ids": _jlist(txns),
    }
    return graph


def node_link(graph: FlowGraph) -> dict[str, Any]:
    """``graph`` as networkx node-link data: what ``--out FILE.json`` writes."""
    import networkx as nx

    return nx.node_link_data(graph.to_networkx(), edges="edges")  # type: ignore[no-any-return]


def _seeds(
    ref: Reference, centre: Centre, txn_ends: dict[str, tuple[str, str]], account_seen: bool
) -> tuple[set[str], str | None, list[str]]:
    notes: list[str] = []
    if centre.account is not None:
        acc = centre.account
        if acc not in ref.accounts and not account_seen:
            raise GraphError(f"unknown account {acc}: no account record or transaction names it")
        return {acc}, None, notes
    if centre.alert is not None:
        alert = centre.alert
        seeds = set(alert.accounts) | set(_evidence_ids(alert, _ACCOUNT_KEYS))
        for loan_id in _evidence_loans(alert):
            loan = ref.loans.get(loan_id)
            if loan is not None:
                seeds.add(loan.borrower_account)
        for ends in txn_ends.values():
            seeds.update(ends)
        missing = sorted(set(_evidence_ids(alert, _TXN_KEYS)) - txn_ends.keys())
        if missing:
            notes.append(
                f"{len(missing)} transaction(s) named by the alert are not in the dumps: "
                + ", ".join(missing[:5])
            )
        if seeds:
            return seeds, alert.subject_id, notes
        notes.append(
            f"alert {alert.alert_id} names no account or transaction: "
            f"the graph is centred on its subject {alert.subject_id}"
        )
        subject = alert.subject_id
    else:
        subject = centre.subject  # type: ignore[assignment]
    seeds = subject_accounts(ref, subject)
    if not seeds:
        if subject in ref.entities:
            raise GraphError(f"subject {subject} has no accounts in the dumps")
        raise GraphError(f"unknown subject {subject}: no entity or account in the dumps names it")
    return seeds, subject, notes


def _check_size(hop: dict[str, int], limit: int, centre: Centre, h: int) -> None:
    if len(hop) > limit:
        raise GraphError(
            f"the graph around {centre.describe()} reaches {len(hop):,} accounts within "
            f"{h} hop(s), over --max-accounts {limit:,}: ask for fewer hops"
        )


def _aggregate(
    reader: _Reader, hop: dict[str, int], alert_txns: set[str], samples: int
) -> tuple[dict[tuple[str, str, str], _Flow], int, int]:
    flows: dict[tuple[str, str, str], _Flow] = {}
    seen: set[str] = set()
    duplicates = 0
    for txn in reader.flows():
        a, b = _ends(txn)
        if a not in hop or b not in hop:
            continue
        if txn.txn_id in seen:
            duplicates += 1
            continue
        seen.add(txn.txn_id)
        key = (a, b, txn.currency)
        f = flows.get(key)
        if f is None:
            f = flows[key] = _Flow(first=txn.ts, last=txn.ts)
        f.count += 1
        f.amount += txn.amount
        f.first = min(f.first, txn.ts)
        f.last = max(f.last, txn.ts)
        if txn.txn_id in alert_txns:
            f.alert_samples.append(txn.txn_id)
        elif len(f.samples) < samples:
            f.samples.append(txn.txn_id)
        if txn.purpose is not None:
            f.purposes.add(txn.purpose)
        f.channels.add("custody" if type(txn) is CustodyTxn else txn.system)  # type: ignore[union-attr]
    return flows, duplicates, len(seen)


# -- assembling -------------------------------------------------------------


def _jlist(values: Iterable[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _assemble(
    ref: Reference,
    centre: Centre,
    subject: str | None,
    hop: dict[str, int],
    flows: dict[tuple[str, str, str], _Flow],
    hops: int,
    config: Config,
    stats: dict[str, Any],
) -> FlowGraph:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(config.engine.zone)
    alert_accounts = set(centre.alert.accounts) if centre.alert is not None else set()
    related = ref.related(subject) if subject is not None else set()
    entities: set[str] = set()
    if subject is not None:
        entities.add(subject)
        entities.update(related)
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str, str, dict[str, Any]]] = []
    for acc_id in sorted(hop):
        acc = ref.accounts.get(acc_id)
        owner = acc.owner_id if acc is not None else ""
        if owner:
            entities.add(owner)
            edges.append((entity_node(owner), account_node(acc_id), "owns", {"edge_type": "owns"}))
        owner_rec = ref.entities.get(owner)
        centre_side = acc is not None and (
            acc.owner_id == subject
            or acc.owner_id in related
            or (acc.role in _CENTRE_ROLES and (subject is None or acc.platform_id == subject))
        )
        nodes[account_node(acc_id)] = {
            "node_type": "account",
            "label": acc_id,
            "account_id": acc_id,
            "role": acc.role if acc is not None else "unknown",
            "owner_id": owner,
            "owner_name": owner_rec.name if owner_rec is not None else "",
            "bank_id": acc.bank_id if acc is not None else "",
            "platform_id": (acc.platform_id or "") if acc is not None else "",
            "hop": hop[acc_id],
            "centre_side": centre_side or (subject is None and hop[acc_id] == 0),
            "in_alert": acc_id in alert_accounts,
        }
    for ent_id in sorted(entities):
        ent = ref.entities.get(ent_id)
        nodes[entity_node(ent_id)] = {
            "node_type": "entity",
            "label": ent.name if ent is not None else ent_id,
            "entity_id": ent_id,
            "name": ent.name if ent is not None else "",
            "kind": ent.kind if ent is not None else "unknown",
            "licenses": _jlist(ent.licenses if ent is not None else ()),
            "is_subject": ent_id == subject,
            "is_related": ent_id in related,
            "in_alert": ent_id == subject and centre.alert is not None,
        }
        if ent is None:
            continue
        for r in ent.related:
            if r.entity_id in entities and r.entity_id != ent_id:
                edges.append(
                    (
                        entity_node(r.entity_id),
                        entity_node(ent_id),
                        "relation",
                        {
                            "edge_type": "relation",
                            "relation": r.relation,
                            "share": "" if r.share is None else str(r.share),
                        },
                    )
                )
    for (a, b, currency), f in flows.items():
        edges.append(
            (
                account_node(a),
                account_node(b),
                f"flow:{currency}",
                {
                    "edge_type": "flow",
                    "currency": currency,
                    "count": f.count,
                    "amount": fen_to_yuan(f.amount),
                    "amount_fen": f.amount,
                    "first_ts": iso(f.first, zone),
                    "last_ts": iso(f.last, zone),
                    # The alert's own transactions on this edge first, then the
                    # edge's first others (alerts.sample_txns of them).
                    "sample_txn_ids": _jlist(f.alert_samples + f.samples),
                    "purposes": _jlist(sorted(f.purposes)),
                    "channels": _jlist(sorted(f.channels)),
                    "in_alert": bool(f.alert_samples),
                },
            )
        )
    edges.sort(key=lambda e: (e[0], e[1], e[2]))
    ordered = dict(sorted(nodes.items()))
    attrs = {
        "centre": centre.describe(),
        "subject": subject or "",
        "hops": hops,
        "zone": config.engine.zone,
    }
    if centre.alert is not None:
        # What the picture's title names; plain strings, like every attribute.
        alert = centre.alert
        attrs |= {
            "alert_id": alert.alert_id,
            "detector": alert.detector,
            "severity": alert.severity,
            "alert_subject": alert.subject_id,
            "alert_amount": alert.amount,
        }
    return FlowGraph(attrs=attrs, nodes=ordered, edges=edges, stats=stats)


# -- writing ----------------------------------------------------------------


def output_format(path: str) -> str:
    """The format named by ``path``'s extension, or :class:`GraphError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise GraphError(
            f"cannot tell the format of {path}: the name must end in " + ", ".join(FORMATS)
        )
    return suffix


def check_extras(fmt: str) -> None:
    """:class:`GraphError` naming the extra to install when a library the
    format needs is missing."""
    needed = ["networkx"] + (["matplotlib"] if fmt == ".png" else [])
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            raise GraphError(f"{fmt} output needs {module}: {EXTRA_HINT}") from None


def write_graph(graph: FlowGraph, path: str) -> None:
    """Writes ``graph`` to ``path`` in the format of its extension, complete
    or not at all (written beside it, then moved into place). Raises
    :class:`GraphError` for an unknown extension and ``OSError`` or
    :class:`~fundflow.replay.ReplayError` when it cannot be written."""
    from .replay import AtomicFile

    fmt = output_format(path)
    out = AtomicFile(path)
    try:
        if fmt == ".graphml":
            import networkx as nx

            nx.write_graphml(graph.to_networkx(), out.file)
        elif fmt == ".json":
            data = node_link(graph)
            out.write(json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8") + b"\n")
        else:
            from .graph_draw import render_png

            render_png(graph, out.file)
        out.commit()
    except BaseException:
        out.discard()
        raise


# -- the command ------------------------------------------------------------


class GraphCliError(click.ClickException):
    """One line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"fundflow: {self.format_message()}", err=True)


class GraphOutputError(GraphCliError):
    """The output could not be written: exit code 1."""

    exit_code = 1


def _find_alert(db: str, alert_id: str) -> Alert:
    from .store import StoreError, open_store

    try:
        store = open_store(db)
    except StoreError as e:
        raise GraphCliError(str(e)) from None
    try:
        alert = store.get(alert_id)
    except StoreError as e:
        raise GraphCliError(str(e)) from None
    finally:
        store.close()
    if alert is None:
        raise GraphCliError(f"no alert {alert_id} in {db}")
    return alert


@click.command("graph")
@click.argument("paths", nargs=-1, required=True, metavar="DUMP...")
@click.option(
    "--out", required=True, metavar="FILE", help="Output: .graphml (Gephi), .json "
    "(networkx node-link) or .png (a picture)."
)  # fmt: skip
@click.option("--subject", metavar="ID", help="Centre: a platform, institution or entity.")
@click.option("--around", metavar="ACCOUNT", help="Centre: one account.")
@click.option("--alert", "alert_id", metavar="ALERT_ID", help="Centre: an alert's accounts "
              "and transactions (read from --db).")  # fmt: skip
@click.option(
    "--db", default="fundflow.db", show_default=True, metavar="PATH|URL",
    help="Alert store for --alert.",
)  # fmt: skip
@click.option(
    "--hops", type=click.IntRange(0, MAX_HOPS), default=1, show_default=True,
    help="Money hops from the centre (one pass over the dumps each).",
)  # fmt: skip
@click.option(
    "--max-accounts", type=click.IntRange(1), default=DEFAULT_MAX_ACCOUNTS, show_default=True,
    help="Refuse a neighbourhood larger than this.",
)  # fmt: skip
@click.option("--config", "config_path", metavar="FILE", help="Configuration (zone, samples).")
@click.option("--kind", type=click.Choice(KINDS), help="Record kind of every CSV row.")
def graph_cmd(
    paths: tuple[str, ...],
    out: str,
    subject: str | None,
    around: str | None,
    alert_id: str | None,
    db: str,
    hops: int,
    max_accounts: int,
    config_path: str | None,
    kind: str | None,
) -> None:
    """Export the money-flow and ownership graph around a subject, an
    account or an alert, read from DUMP... (JSONL, JSONL.gz, CSV; files,
    read once per pass: reference, one per hop, then the flows).

    Nodes are accounts (role, owner, bank, platform, hop) and entities (kind,
    name, licenses); edges are money flows aggregated per payer, payee and
    currency (count, amount in yuan, first/last time, sample txn ids,
    purposes), ownership and relations (with share). Bad lines are counted
    and skipped. Exit 2 (one line) for an unknown subject, account or alert,
    a bad extension or a missing library; 1 when the output cannot be written.
    """
    from .replay import ReplayError, check_inputs

    chosen = [n for n, v in (("--subject", subject), ("--around", around),
                             ("--alert", alert_id)) if v is not None]  # fmt: skip
    if len(chosen) != 1:
        raise GraphCliError("say what to centre the graph on: one of --subject, --around, --alert")
    try:
        fmt = output_format(out)
        check_extras(fmt)
    except GraphError as e:
        raise GraphCliError(str(e)) from None
    if "-" in paths:
        raise GraphCliError("graph reads its dumps several times: give files, not '-'")
    try:
        check_inputs(list(paths))
        config = load_config(config_path)
    except (ReplayError, ValueError) as e:
        raise GraphCliError(str(e)) from None
    alert = _find_alert(db, alert_id) if alert_id is not None else None
    centre = Centre(subject=subject, account=around, alert=alert)
    try:
        graph = build_graph(
            list(paths), centre, hops=hops, config=config, kind=kind, max_accounts=max_accounts
        )
    except (GraphError, ReplayError) as e:
        raise GraphCliError(str(e)) from None
    try:
        write_graph(graph, out)
    except (OSError, ReplayError) as e:
        raise GraphOutputError(f"cannot write {out}: {getattr(e, 'strerror', None) or e}") from None
    st = graph.stats
    for note in st["notes"]:
        click.echo(f"fundflow: {note}", err=True)
    accounts = sum(1 for a in graph.nodes.values() if a["node_type"] == "account")
    dead = sum(st["dead_letters"].values())
    click.echo(
        f"{out}: {accounts:,} accounts, {len(graph.nodes) - accounts:,} entities, "
        f"{sum(1 for e in graph.edges if e[3]['edge_type'] == 'flow'):,} flow edges "
        f"({st['transactions']:,} transactions, {st['duplicates']:,} duplicates dropped) "
        f"around {centre.describe()}; read {st['records_read']:,} records in "
        f"{st['passes']} passes, {dead:,} bad lines skipped",
        err=True,
    )
