"""`fundflow graph`: the graph around a subject, an account or an alert, on a
hand-built ledger and on the seed-1 simulated world; round trips through
networkx's GraphML and node-link readers; the picture; one-line errors.

The hand-built ledger is platform P of :func:`ledger.p2p_platform` (custody
master POOL, own account OWN, affiliates A1 and A2 with accounts X1 and X2,
OUTSIDER with XO), three lenders and two borrowers, and these flows:

    T1  L01 -> POOL  100.00 invest   day 0     T5  X1 -> B01   250.00 disburse
    T2  L02 -> POOL  200.50 invest   (twice)   T6  B01 -> XO    10.00 transfer
    T3  L01 -> POOL   50.00 invest   day 1     T7  XO -> EXT     5.00 clearing
    T4  POOL -> X1   300.00 transfer           T8  L03 -> B02   80.00 invest
    TU  L02 -> POOL    1.00 USD invest

plus two bad lines. P's accounts (hop 0) are POOL, OWN, X1, X2, Lnn, Bnn;
XO is one hop away, EXT (no account record) two.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import networkx as nx
import pytest
from click.testing import CliRunner
from ledger import at, borrowers, clearing, custody, iso_at, lenders, p2p_platform
from picture_ledger import assert_no_label_overlaps

from fundflow.cli import main
from fundflow.graph import Centre, GraphError, build_graph, write_graph
from fundflow.graph_draw import ALERT_COLOUR, draw
from fundflow.graph_picture import compose, grouped, yuan
from fundflow.schemas.decode import encode_record
from fundflow.schemas.records import Alert
from fundflow.simulate import write_world

# -- the hand-built ledger ------------------------------------------------------


def _ledger_lines() -> list[bytes]:
    recs = [*p2p_platform(), *lenders(3), *borrowers(2)]
    recs += [
        custody("T1", at(0, 9), "L01", "POOL", "100.00", "invest"),
        custody("T2", at(0, 10), "L02", "POOL", "200.50", "invest"),
        custody("T3", at(1, 9), "L01", "POOL", "50.00", "invest"),
        custody("TU", at(1, 9, 30), "L02", "POOL", "1.00", "invest", currency="USD"),
        custody("T4", at(1, 10), "POOL", "X1", "300.00", "transfer"),
        custody("T5", at(2, 9), "X1", "B01", "250.00", "disburse", loan="LN1"),
        custody("T6", at(2, 10), "B01", "XO", "10.00", "transfer"),
        clearing("T7", at(2, 11), "XO", "EXT", "5.00", purpose="payment", system="CNAPS"),
        custody("T8", at(3, 9), "L03", "B02", "80.00", "invest", loan="LN2"),
    ]
    lines = [msgspec.json.encode(encode_record(r)) for r in recs]
    lines.insert(18, lines[16])  # T2 again, after T3: one transaction
    lines.insert(5, b'{"type":"custody_txn","txn_id":"BAD1"')  # not_json
    lines.append(b'{"type":"custody_txn","txn_id":"BAD2","ts":0,"bank_id":"CB",'
                 b'"platform_id":"P","debit_account":"L01","credit_account":"POOL",'
                 b'"amount":"12.345","purpose":"invest"}')  # fmt: skip
    return lines


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"\n".join(_ledger_lines()) + b"\n")
    return path


def _flows(graph) -> dict[tuple[str, str, str], tuple[int, str, str, str, list[str]]]:
    """(source, target, key) -> (count, amount, first_ts, last_ts, samples)."""
    return {
        (u, v, k): (e["count"], e["amount"], e["first_ts"], e["last_ts"],
                    json.loads(e["sample_txn_ids"]))
        for u, v, k, e in graph.edges
        if e["edge_type"] == "flow"
    }  # fmt: skip


def _others(graph) -> set[tuple[str, str, str]]:
    return {(u, v, k) for u, v, k, e in graph.edges if e["edge_type"] != "flow"}


P_ACCOUNTS = ["B01", "B02", "L01", "L02", "L03", "OWN", "POOL", "X1", "X2"]
P_FLOWS = {
    ("account:L01", "account:POOL", "flow:CNY"): (
        2, "150.00", iso_at(at(0, 9)), iso_at(at(1, 9)), ["T1", "T3"]),
    ("account:L02", "account:POOL", "flow:CNY"): (
        1, "200.50", iso_at(at(0, 10)), iso_at(at(0, 10)), ["T2"]),
    ("account:L02", "account:POOL", "flow:USD"): (
        1, "1.00", iso_at(at(1, 9, 30)), iso_at(at(1, 9, 30)), ["TU"]),
    ("account:POOL", "account:X1", "flow:CNY"): (
        1, "300.00", iso_at(at(1, 10)), iso_at(at(1, 10)), ["T4"]),
    ("account:X1", "account:B01", "flow:CNY"): (
        1, "250.00", iso_at(at(2, 9)), iso_at(at(2, 9)), ["T5"]),
    ("account:L03", "account:B02", "flow:CNY"): (
        1, "80.00", iso_at(at(3, 9)), iso_at(at(3, 9)), ["T8"]),
}  # fmt: skip
P_OWNERSHIP = {
    ("entity:A1", "entity:P", "relation"),
    ("entity:A2", "entity:P", "relation"),
    ("entity:P", "account:POOL", "owns"),
    ("entity:P", "account:OWN", "owns"),
    ("entity:A1", "account:X1", "owns"),
    ("entity:A2", "account:X2", "owns"),
    ("entity:U01", "account:L01", "owns"),
    ("entity:U02", "account:L02", "owns"),
    ("entity:U03", "account:L03", "owns"),
    ("entity:W01", "account:B01", "owns"),
    ("entity:W02", "account:B02", "owns"),
}


def test_subject_at_hop_0_is_its_accounts_and_the_flows_between_them(dump: Path) -> None:
    g = build_graph([str(dump)], Centre(subject="P"), hops=0)
    assert [n for n in g.nodes if n.startswith("account:")] == [f"account:{a}" for a in P_ACCOUNTS]
    assert [n for n in g.nodes if n.startswith("entity:")] == [
        f"entity:{e}" for e in ("A1", "A2", "P", "U01", "U02", "U03", "W01", "W02")
    ]
    assert _flows(g) == P_FLOWS
    assert _others(g) == P_OWNERSHIP
    assert g.stats == {
        "records_read": 27,
        "dead_letters": {"bad_amount": 1, "not_json": 1},
        "passes": 2,
        "transactions": 7,
        "duplicates": 1,
        "notes": [],
    }
    assert g.attrs == {"centre": "subject P", "subject": "P", "hops": 0, "zone": "Asia/Shanghai"}
    assert g.nodes["account:X1"] == {
        "node_type": "account",
        "label": "X1",
        "account_id": "X1",
        "role": "corporate",
        "owner_id": "A1",
        "owner_name": "A1",
        "bank_id": "CB",
        "platform_id": "",
        "hop": 0,
        "centre_side": True,
        "in_alert": False,
    }
    assert g.nodes["entity:P"] == {
        "node_type": "entity",
        "label": "P",
        "entity_id": "P",
        "name": "P",
        "kind": "p2p_platform",
        "licenses": '["p2p_registered"]',
        "is_subject": True,
        "is_related": False,
        "in_alert": False,
    }
    assert g.nodes["entity:U01"]["kind"] == "unknown"  # an owner with no entity record
    edge = next(
        e for u, v, k, e in g.edges if (u, v, k) == ("account:X1", "account:B01", "flow:CNY")
    )
    assert edge == {
        "edge_type": "flow",
        "currency": "CNY",
        "count": 1,
        "amount": "250.00",
        "amount_fen": 25000,
        "first_ts": "2026-03-04T09:00:00+08:00",
        "last_ts": "2026-03-04T09:00:00+08:00",
        "sample_txn_ids": '["T5"]',
        "purposes": '["disburse"]',
        "channels": '["custody"]',
        "in_alert": False,
    }
    rel = next(e for u, v, k, e in g.edges if (u, v, k) == ("entity:A1", "entity:P", "relation"))
    assert rel == {"edge_type": "relation", "relation": "affiliate", "share": ""}


def test_subject_hops_reach_outside_parties_one_pass_each(dump: Path) -> None:
    g1 = build_graph([str(dump)], Centre(subject="P"), hops=1)
    assert g1.nodes["account:XO"]["hop"] == 1
    assert "account:EXT" not in g1.nodes
    assert set(_flows(g1)) - set(P_FLOWS) == {("account:B01", "account:XO", "flow:CNY")}
    assert g1.stats["passes"] == 3
    g2 = build_graph([str(dump)], Centre(subject="P"), hops=3)
    ext = g2.nodes["account:EXT"]
    assert (ext["hop"], ext["role"], ext["owner_id"]) == (2, "unknown", "")
    assert _flows(g2)[("account:XO", "account:EXT", "flow:CNY")] == (
        1, "5.00", iso_at(at(2, 11)), iso_at(at(2, 11)), ["T7"])  # fmt: skip
    assert json.loads(next(e for *_, e in g2.edges if e.get("channels") == '["CNAPS"]')[
        "purposes"]) == ["payment"]  # fmt: skip
    # Hop 3 finds no one new: that pass ends the search (reference, 1, 2, 3, flows).
    assert g2.stats["passes"] == 5
    assert len([n for n in g2.nodes if n.startswith("account:")]) == 11


def test_around_an_account(dump: Path) -> None:
    g = build_graph([str(dump)], Centre(account="X1"), hops=1)
    assert list(g.nodes) == [
        "account:B01", "account:POOL", "account:X1", "entity:A1", "entity:P", "entity:W01",
    ]  # fmt: skip
    assert {n: a["hop"] for n, a in g.nodes.items() if "hop" in a} == {
        "account:B01": 1, "account:POOL": 1, "account:X1": 0,
    }  # fmt: skip
    assert set(_flows(g)) == {
        ("account:POOL", "account:X1", "flow:CNY"),
        ("account:X1", "account:B01", "flow:CNY"),
    }
    assert _others(g) == {
        ("entity:A1", "entity:P", "relation"),
        ("entity:A1", "account:X1", "owns"),
        ("entity:P", "account:POOL", "owns"),
        ("entity:W01", "account:B01", "owns"),
    }
    assert g.attrs["subject"] == ""
    # An account known only from a transaction is a valid centre.
    g_ext = build_graph([str(dump)], Centre(account="EXT"), hops=1)
    assert [n for n in g_ext.nodes if n.startswith("account:")] == ["account:EXT", "account:XO"]


def _alert(**evidence) -> Alert:
    return Alert(
        alert_id="a1", detector="fund_pool", severity="low", subject_id="P",
        accounts=("POOL",), first_ts="", last_ts="", amount="350.50", summary="",
        evidence=evidence, detector_version="1.0",
    )  # fmt: skip


def test_alert_centre_is_its_accounts_and_the_ends_of_its_transactions(dump: Path) -> None:
    alert = _alert(pool_accounts=["POOL"], sample_txn_ids=["T2", "T5", "T99"])
    g = build_graph([str(dump)], Centre(alert=alert), hops=0)
    assert [n for n in g.nodes if n.startswith("account:")] == [
        "account:B01", "account:L02", "account:POOL", "account:X1",
    ]  # fmt: skip
    flows = {k: (v[0], v[1]) for k, v in _flows(g).items()}
    assert flows == {
        ("account:L02", "account:POOL", "flow:CNY"): (1, "200.50"),
        ("account:L02", "account:POOL", "flow:USD"): (1, "1.00"),
        ("account:POOL", "account:X1", "flow:CNY"): (1, "300.00"),
        ("account:X1", "account:B01", "flow:CNY"): (1, "250.00"),
    }
    in_alert = {(u, v, k) for u, v, k, e in g.edges if e.get("in_alert")}
    assert in_alert == {
        ("account:L02", "account:POOL", "flow:CNY"),
        ("account:X1", "account:B01", "flow:CNY"),
    }
    assert [n for n, a in g.nodes.items() if a["in_alert"]] == ["account:POOL", "entity:P"]
    assert g.attrs == {
        "centre": "alert a1", "subject": "P", "hops": 0, "zone": "Asia/Shanghai",
        "alert_id": "a1", "detector": "fund_pool", "severity": "low", "alert_subject": "P",
        "alert_amount": "350.50",
    }  # fmt: skip
    assert g.stats["notes"] == ["1 transaction(s) named by the alert are not in the dumps: T99"]


def test_centre_is_exactly_one_thing(dump: Path) -> None:
    with pytest.raises(GraphError, match="the centre is one of a subject, an account or an alert"):
        build_graph([str(dump)], Centre(subject="P", account="X1"))
    with pytest.raises(GraphError, match=r"--hops must be 0..10, got 11"):
        build_graph([str(dump)], Centre(subject="P"), hops=11)
    with pytest.raises(GraphError, match="reaches 9 accounts within 0 hop"):
        build_graph([str(dump)], Centre(subject="P"), hops=0, max_accounts=8)


def test_alert_naming_nothing_falls_back_to_its_subject(dump: Path) -> None:
    alert = msgspec.structs.replace(_alert(signal="term_ratio"), accounts=())
    g = build_graph([str(dump)], Centre(alert=alert), hops=0)
    assert [n for n in g.nodes if n.startswith("account:")] == [f"account:{a}" for a in P_ACCOUNTS]
    assert g.stats["notes"] == [
        "alert a1 names no account or transaction: the graph is centred on its subject P"
    ]


# -- formats --------------------------------------------------------------------


def _same(graph, h) -> None:
    # read_graphml adds the file's (empty) attribute defaults.
    extra = {"node_default": {}, "edge_default": {}}
    assert dict(h.graph) in (graph.attrs, graph.attrs | extra)
    assert dict(h.nodes(data=True)) == graph.nodes
    assert sorted(h.edges(keys=True, data=True)) == sorted(graph.edges)


def test_graphml_and_node_link_round_trips(dump: Path, tmp_path: Path) -> None:
    g = build_graph([str(dump)], Centre(subject="P"), hops=2)
    write_graph(g, str(tmp_path / "g.graphml"))
    write_graph(g, str(tmp_path / "g.json"))
    h = nx.read_graphml(tmp_path / "g.graphml", edge_key_type=str, force_multigraph=True)
    assert isinstance(h, nx.MultiDiGraph)
    _same(g, h)
    data = json.loads((tmp_path / "g.json").read_text(encoding="utf-8"))
    j = nx.node_link_graph(data, edges="edges")
    assert isinstance(j, nx.MultiDiGraph)
    _same(g, j)
    assert j.edges["account:L01", "account:POOL", "flow:CNY"]["amount"] == "150.00"
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def test_png_is_a_real_picture(dump: Path, tmp_path: Path) -> None:
    g = build_graph([str(dump)], Centre(subject="P"), hops=2)
    write_graph(g, str(tmp_path / "g.png"))
    # Six columns (lenders, entities, the centre, borrowers, others, unknown),
    # at most four nodes each: the full width, the least height.
    assert _png_size(tmp_path / "g.png") == (1600, 560)
    assert (tmp_path / "g.png").stat().st_size > 20_000


# -- the command --------------------------------------------------------------


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_writes_the_graph_and_a_summary_line(dump: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    result = _run("graph", str(dump), "--subject", "P", "--hops", "0", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{out}: 9 accounts, 8 entities, 6 flow edges (7 transactions, 1 duplicates dropped) "
        "around subject P; read 27 records in 2 passes, 2 bad lines skipped"
    ]
    j = nx.node_link_graph(json.loads(out.read_text()), edges="edges")
    assert j.number_of_nodes() == 17 and j.number_of_edges() == 17


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--subject", "NOPE"], "unknown subject NOPE: no entity or account in the dumps names it"),
        (["--subject", "OUTSIDER", "--out", "x.gexf"],
         "cannot tell the format of x.gexf: the name must end in .graphml, .json, .png"),
        (["--around", "NOWHERE"], "unknown account NOWHERE: no account record or transaction "
         "names it"),
        (["--subject", "P", "--around", "X1"],
         "say what to centre the graph on: one of --subject, --around, --alert"),
        ([], "say what to centre the graph on: one of --subject, --around, --alert"),
        (["--subject", "CB", "--hops", "0"], "subject CB has no accounts in the dumps"),
    ],
)  # fmt: skip
def test_errors_are_one_line_and_exit_2(
    dump: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = ["--out", str(tmp_path / "g.graphml")] if "--out" not in args else []
    result = _run("graph", str(dump), *args, *out)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"fundflow: {message}"]
    assert not (tmp_path / "g.graphml").exists()


def test_missing_dump_and_stdin_are_one_line(dump: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "g.json")
    result = _run("graph", str(tmp_path / "nope.jsonl"), "--subject", "P", "--out", out)
    assert (result.exit_code, result.stderr.splitlines()) == (
        2, [f"fundflow: no such file: {tmp_path / 'nope.jsonl'}"])  # fmt: skip
    result = _run("graph", "-", "--subject", "P", "--out", out)
    assert (result.exit_code, result.stderr.splitlines()) == (
        2, ["fundflow: graph reads its dumps several times: give files, not '-'"])  # fmt: skip


@pytest.mark.parametrize(("module", "suffix"), [("networkx", ".json"), ("matplotlib", ".png")])
def test_missing_library_names_the_extra(
    dump: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, suffix: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    result = _run("graph", str(dump), "--subject", "P", "--out", str(tmp_path / f"g{suffix}"))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"fundflow: {suffix} output needs {module}: "
        "install the locked environment, which has the graph extra: "
        "pip install --require-hashes -r requirements/runtime.txt"
    ]


def test_unknown_alert_and_missing_store(dump: Path, tmp_path: Path) -> None:
    db = tmp_path / "alerts.db"
    sqlite3.connect(db).close()
    result = _run("graph", str(dump), "--alert", "feed", "--db", str(db), "--hops", "0",
                  "--out", str(tmp_path / "g.json"))  # fmt: skip
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("fundflow: ")
    result = _run("graph", str(dump), "--alert", "feed", "--db", str(tmp_path / "none.db"),
                  "--out", str(tmp_path / "g.json"))  # fmt: skip
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


# -- the simulated world --------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed-1 world, replayed into an alert store beside it."""
    folder = tmp_path_factory.mktemp("world")
    write_world(folder, seed=1)
    result = CliRunner().invoke(main, [
        "replay", str(folder / "world.jsonl"), "--alerts-out", str(folder / "alerts.jsonl"),
        "--deadletter-out", str(folder / "dead.jsonl"), "--db", str(folder / "fundflow.db"),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder


def _oracle_flows(path: Path, accounts: set[str]) -> dict[tuple[str, str, str], tuple[int, str]]:
    """Flows between ``accounts``, aggregated straight from the JSON lines:
    valid transactions only, each txn_id once."""
    out: dict[tuple[str, str, str], list] = {}
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("type") == "custody_txn":
            a, b = rec.get("debit_account"), rec.get("credit_account")
        elif rec.get("type") == "clearing_txn":
            a, b = rec.get("payer_account"), rec.get("payee_account")
        else:
            continue
        if a not in accounts or b not in accounts or "txn_id" not in rec:
            continue
        amount = Decimal(str(rec["amount"]))
        if amount <= 0 or amount != amount.quantize(Decimal("0.01")):
            continue
        if isinstance(rec["ts"], str) and not rec["ts"][5:7] <= "12":
            continue
        if rec["txn_id"] in seen:
            continue
        seen.add(rec["txn_id"])
        agg = out.setdefault((f"account:{a}", f"account:{b}", "flow:CNY"), [0, Decimal(0)])
        agg[0] += 1
        agg[1] += amount
    return {k: (n, f"{amt:.2f}") for k, (n, amt) in out.items()}


def _oracle_reference(path: Path) -> tuple[dict[str, dict], dict[str, dict], dict[str, tuple]]:
    """Accounts and entities by id, and each transaction's two accounts, read
    straight from the JSON lines."""
    accounts: dict[str, dict] = {}
    entities: dict[str, dict] = {}
    ends: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = rec.get("type")
        if kind == "account":
            accounts[rec["account_id"]] = rec
        elif kind == "entity":
            entities[rec["entity_id"]] = rec
        elif kind == "custody_txn" and "txn_id" in rec:
            ends[rec["txn_id"]] = (rec["debit_account"], rec["credit_account"])
        elif kind == "clearing_txn" and "txn_id" in rec:
            ends[rec["txn_id"]] = (rec["payer_account"], rec["payee_account"])
    return accounts, entities, ends


def _via_related(world: Path) -> dict:
    truth = json.loads((world / "truth.json").read_text())
    return next(v for v in truth["violators"] if v["pattern"] == "pool_via_related")


def test_world_subject_graph_matches_the_dump(world: Path) -> None:
    case = _via_related(world)
    subject, (middle, pool) = case["subject_id"], case["accounts"]
    g = build_graph([str(world / "world.jsonl")], Centre(subject=subject), hops=0)
    accounts, entities, _ends = _oracle_reference(world / "world.jsonl")
    owners = {subject} | {r["entity_id"] for r in entities[subject]["related"]}
    owners |= {
        e for e, rec in entities.items() if subject in {r["entity_id"] for r in rec["related"]}
    }
    expected = {
        a for a, rec in accounts.items()
        if rec["owner_id"] in owners or rec.get("platform_id") == subject
    }  # fmt: skip
    got = {a["account_id"] for a in g.nodes.values() if a["node_type"] == "account"}
    assert got == expected
    assert {middle, pool} <= got
    flows = {k: (v[0], v[1]) for k, v in _flows(g).items()}
    assert flows == _oracle_flows(world / "world.jsonl", got)
    assert (f"account:{middle}", f"account:{pool}", "flow:CNY") in flows
    affiliate = accounts[middle]["owner_id"]
    assert g.nodes[f"entity:{affiliate}"]["is_related"] is True
    listed = next(r for r in entities[subject]["related"] if r["entity_id"] == affiliate)
    rel = next(e for u, v, k, e in g.edges if (u, v, k) == (
        f"entity:{affiliate}", f"entity:{subject}", "relation"))  # fmt: skip
    assert rel == {"edge_type": "relation", "relation": listed["relation"],
                   "share": str(Decimal(str(listed["share"])))}  # fmt: skip


def test_world_alert_graph_from_a_replay(world: Path, tmp_path: Path) -> None:
    case = _via_related(world)
    alerts = [
        msgspec.json.decode(line, type=Alert)
        for line in (world / "alerts.jsonl").read_bytes().splitlines()
    ]
    pool = [a for a in alerts if a.subject_id == case["subject_id"]
            and a.detector == "fund_pool" and a.evidence["signal"] == "gather_scatter"][-1]  # fmt: skip
    samples = pool.evidence["sample_txn_ids"]
    assert sorted(pool.accounts) == sorted(case["accounts"]) and len(samples) == 20
    out = tmp_path / "alert.json"
    result = _run("graph", str(world / "world.jsonl"), "--alert", pool.alert_id, "--db",
                  str(world / "fundflow.db"), "--hops", "0", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    j = nx.node_link_graph(json.loads(out.read_text(encoding="utf-8")), edges="edges")
    _accounts, _entities, ends = _oracle_reference(world / "world.jsonl")
    expected = set(pool.accounts) | {a for t in samples for a in ends[t]}
    got = {a["account_id"] for _, a in j.nodes(data=True) if a["node_type"] == "account"}
    assert got == expected
    assert {a for a in got if j.nodes[f"account:{a}"]["in_alert"]} == set(pool.accounts)
    named = [t for *_, e in j.edges(data=True) if e.get("in_alert")
             for t in json.loads(e["sample_txn_ids"])]  # fmt: skip
    assert set(samples) <= set(named)
    flows = {(u, v, k): (e["count"], e["amount"])
             for u, v, k, e in j.edges(keys=True, data=True) if e["edge_type"] == "flow"}  # fmt: skip
    assert flows == _oracle_flows(world / "world.jsonl", got)
    middle, pool_account = case["accounts"]
    # The hop the evidence does not name (affiliate to pool account) is in the graph.
    assert (f"account:{middle}", f"account:{pool_account}", "flow:CNY") in flows
    png = tmp_path / "alert.png"
    result = _run("graph", str(world / "world.jsonl"), "--alert", pool.alert_id, "--db",
                  str(world / "fundflow.db"), "--hops", "0", "--out", str(png))  # fmt: skip
    assert result.exit_code == 0, result.output
    width, height = _png_size(png)
    assert 800 <= width <= 1600 and 560 <= height <= 1000


def test_world_critical_reserve_misuse_picture(world: Path) -> None:
    """The reserve_misuse alert of the world whose misused reserves reach the
    critical line: 300 clients and 30 merchants around three accounts of the
    institution. The picture draws its one flow red with the exact amount,
    aggregates the rest, and no labels collide."""
    alerts = [
        msgspec.json.decode(line, type=Alert)
        for line in (world / "alerts.jsonl").read_bytes().splitlines()
    ]
    critical = [a for a in alerts if a.detector == "reserve_misuse" and a.severity == "critical"]
    final = {a.alert_id: a for a in critical}  # the last revision of each
    assert len(final) == 1
    alert = next(iter(final.values()))
    g = build_graph([str(world / "world.jsonl")], Centre(alert=alert), hops=1)
    assert sum(1 for a in g.nodes.values() if a["node_type"] == "account") == 333
    picture = compose(g)
    red = [e for e in picture.edges if e.in_alert]
    reserve, operating = alert.accounts
    assert [(e.source, e.target, yuan(e.amount_fen), e.count) for e in red] == [
        (f"account:{reserve}", f"account:{operating}", grouped(alert.amount), 3)
    ]
    assert [n.text for _c, nodes in picture.columns for n in nodes if n.kind == "aggregate"] == [
        "289 other personal accounts, 20,009,318.22 yuan",
        "19 other accounts, 10,381,000.14 yuan",
    ]
    fig = draw(picture)
    fig.canvas.draw()
    assert fig.canvas.get_width_height() == (1160, 1000)
    amounts = [t.get_text() for t in fig.axes[0].texts if t.get_color() == ALERT_COLOUR
               and t.get_gid() == "flow-label"]  # fmt: skip
    assert amounts == [f"{grouped(alert.amount)} yuan, 3 txns"]
    assert_no_label_overlaps(fig)
