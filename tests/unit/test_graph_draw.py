"""The drawing of the account graph (`fundflow.graph_draw`), on the hand-made
ledger of :mod:`picture_ledger` and on a large neighbourhood: a bounded
canvas, the alert's flows red, thick and on top with their amounts, a legend
of exactly the styles drawn, labels whose rendered boxes never intersect."""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec
import pytest
from ledger import at, borrowers, custody, lenders, p2p_platform
from matplotlib.colors import to_rgba
from picture_ledger import alert, assert_no_label_overlaps, text_boxes, write_ledger

from fundflow.graph import Centre, build_graph, write_graph
from fundflow.graph_draw import (
    ALERT_COLOUR,
    MAX_HEIGHT,
    MAX_WIDTH,
    canvas_size,
    curve,
    draw,
)
from fundflow.graph_picture import Node, Picture, compose
from fundflow.schemas.decode import encode_record


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    return write_ledger(tmp_path / "ledger.jsonl")


def _alert_figure(dump: Path):
    fig = draw(compose(build_graph([str(dump)], Centre(alert=alert()), hops=1)))
    fig.canvas.draw()
    return fig


def _png_size(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def test_canvas_is_bounded_for_a_large_neighbourhood(tmp_path: Path) -> None:
    recs = [*p2p_platform(), *lenders(401), *borrowers(300)]
    recs += [custody(f"T{i}", at(0, 9, 0, i), acc.account_id, "POOL", "1.00", "invest")
             for i, acc in enumerate(lenders(401))]  # fmt: skip
    recs += [custody(f"D{i}", at(1, 9, 0, i), "POOL", acc.account_id, "1.00", "disburse")
             for i, acc in enumerate(borrowers(300))]  # fmt: skip
    dump = tmp_path / "many.jsonl"
    dump.write_bytes(b"\n".join(msgspec.json.encode(encode_record(r)) for r in recs))
    g = build_graph([str(dump)], Centre(subject="P"), hops=0)
    assert sum(1 for a in g.nodes.values() if a["node_type"] == "account") == 705
    write_graph(g, str(tmp_path / "many.png"))
    # Four columns (lenders, entities, the centre, borrowers), twelve rows.
    assert _png_size(tmp_path / "many.png") == (1160, 1000)
    texts = {t for t, _box in text_boxes(draw(compose(g)))}
    assert {"390 other lenders, 390.00 yuan", "289 other borrowers, 289.00 yuan"} <= texts
    assert (tmp_path / "many.png").stat().st_size < 300_000


def test_canvas_never_grows_past_its_bounds() -> None:
    columns = tuple(
        (c, tuple(Node(f"n{c}-{j}", c, "account", "x", "personal", False, 0) for j in range(12)))
        for c in range(7)
    )
    assert canvas_size(Picture("t", "s", columns, ())) == (MAX_WIDTH, MAX_HEIGHT) == (1600, 1000)
    one = ((3, (Node("n", 3, "account", "x", "operating", False, 0),)),)
    assert canvas_size(Picture("t", "s", one, ())) == (800, 560)


def test_alert_flows_are_red_thick_and_drawn_last(dump: Path) -> None:
    fig = _alert_figure(dump)
    ax = fig.axes[0]
    alert_lines = [p for p in ax.patches if p.get_gid() == "alert-flow"]
    others = [p for p in ax.patches if p.get_gid() != "alert-flow"]
    assert len(alert_lines) == 2 and len(others) == 17
    assert {to_rgba(p.get_edgecolor(), 1.0) for p in alert_lines} == {to_rgba(ALERT_COLOUR)}
    assert min(p.get_linewidth() for p in alert_lines) > max(p.get_linewidth() for p in others)
    markers = [c for c in ax.collections if c.get_gid() == "nodes"]
    assert markers
    bottom = min(p.get_zorder() for p in alert_lines)
    # Above every other line and every marker; only labels above them.
    assert all(a.get_zorder() < bottom for a in [*others, *markers])
    assert all(t.get_zorder() > bottom for t in ax.texts)
    drawn = sorted(ax.get_children(), key=lambda a: a.get_zorder())  # matplotlib's order
    last_lines = [a for a in drawn if a in ax.patches or a in ax.collections][-2:]
    assert set(map(id, last_lines)) == set(map(id, alert_lines))


def test_amounts_of_the_alert_flows_are_on_them_exactly(dump: Path) -> None:
    fig = _alert_figure(dump)
    labels = [t for t in fig.axes[0].texts if t.get_gid() == "flow-label"]
    red = sorted(t.get_text() for t in labels if t.get_color() == ALERT_COLOUR)
    assert red == ["2,000,000.00 yuan, 1 txn", "5,000,000.00 yuan, 1 txn"]
    flows = {
        "20,000,000.00 yuan", "4,999,999.99 yuan", "13,000,000.00 yuan",
        *(f"{i},000,000.00 yuan" for i in range(6, 16)),
    }  # fmt: skip
    others = [t.get_text() for t in labels if t.get_color() != ALERT_COLOUR]
    assert 1 <= len(others) <= 8 and set(others) <= flows
    # The biggest ordinary flow is labelled first.
    assert "20,000,000.00 yuan" in others


def test_legend_lists_every_style_drawn_and_nothing_else(dump: Path) -> None:
    fig = _alert_figure(dump)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "lender account",
        "borrower account",
        "platform custody account",
        "corporate account",
        "entity (owner, subject, related)",
        "other accounts, aggregated",
        "in the alert (red rim)",
        "the alert's flows: yuan, transactions",
        "money flow (width: log of yuan)",
        "owns (entity to account)",
        "related party (to the entity listing it)",
    ]
    gids = {p.get_gid() for p in fig.axes[0].patches}
    assert gids == {"alert-flow", "flow", "owns", "relation"}
    # Around XO: XO and X1 (corporate), XO's owner, one flow; no alert, no relation.
    around = draw(compose(build_graph([str(dump)], Centre(account="XO"), hops=1)))
    assert [t.get_text() for t in around.legends[0].get_texts()] == [
        "corporate account",
        "entity (owner, subject, related)",
        "money flow (width: log of yuan)",
        "owns (entity to account)",
    ]


@pytest.mark.parametrize(
    "centre",
    [Centre(alert=alert()), Centre(alert=alert("T01", "T02", "T03", "T04", "TX", "TO")),
     Centre(subject="P"), Centre(account="X1")],
    ids=["alert", "alert-many", "subject", "account"],
)  # fmt: skip
def test_labels_never_overlap(dump: Path, centre: Centre) -> None:
    fig = draw(compose(build_graph([str(dump)], centre, hops=1)))
    fig.canvas.draw()
    assert_no_label_overlaps(fig)


def test_title_names_the_alert(dump: Path) -> None:
    fig = _alert_figure(dump)
    assert fig.get_suptitle() == "self_financing alert, high: subject P, 5,000,000.00 yuan"


def test_curves_start_and_end_at_their_nodes() -> None:
    down = curve((100.0, 500.0), (100.0, 100.0), side=60.0)
    assert (down[0], down[-1]) == ((100.0, 500.0), (100.0, 100.0))
    # Within a column: sideways, to the right going down, by at most `side`.
    assert max(x for x, _ in down) == pytest.approx(160.0)
    up = curve((100.0, 100.0), (100.0, 140.0), side=60.0)
    assert min(x for x, _ in up) == pytest.approx(100.0 - (0.3 * 40 + 10))
    # Between columns: bends to the right of its direction, no higher than `top`.
    right = curve((0.0, 0.0), (400.0, 0.0), side=60.0)
    assert right[12] == pytest.approx((200.0, -30.0))
    left = curve((400.0, 0.0), (0.0, 0.0), side=60.0, top=10.0)
    assert left[12] == pytest.approx((200.0, 7.5))
