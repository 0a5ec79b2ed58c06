"""Draws a :class:`~fundflow.graph_picture.Picture` with matplotlib (Agg),
on a canvas of at most :data:`MAX_WIDTH` × :data:`MAX_HEIGHT` pixels.

1. Nodes are spread down their column (the aggregate last), off the
   column's middle so that their labels have room on the outer side.
2. Bottom to top: ownership (dotted) and relations (dashed), the ordinary
   flows (grey, wider with the log of their yuan), the nodes, and the
   alert's flows last, red and thick, under nothing but the labels.
3. Labels go where their rendered box overlaps nothing placed before it:
   column titles, node markers, node labels (on the outer side, else above
   or below, avoiding the alert's lines), then the amounts of the alert's
   flows, then those of the biggest other flows (at most
   :data:`OTHER_AMOUNTS`). An amount that finds no room anywhere along its
   line is left out; the footer counts the alert's left out.
4. The legend lists every marker and line style drawn, and only those.

Floats are the layout's geometry only; every figure printed comes from
integer fen through :func:`~fundflow.graph_picture.yuan`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from fundflow.graph import FlowGraph
from fundflow.graph_picture import (
    CENTRE_COLUMN,
    COLUMN_TITLES,
    Edge,
    Node,
    Picture,
    compose,
    yuan,
)

MAX_WIDTH, MAX_HEIGHT, DPI = 1600, 1000, 100
COLUMN_PX = 250  # a column's width, up to MAX_WIDTH
OTHER_AMOUNTS = 8  # amounts on the biggest flows outside the alert, room permitting

ROLE_COLOURS = {
    "personal": "#8dd3c7",
    "lender_sub": "#1f78b4",
    "borrower_sub": "#33a02c",
    "platform_custody": "#6a3d9a",
    "platform_own": "#cab2d6",
    "operating": "#ff7f00",
    "risk_reserve": "#fdbf6f",
    "client_reserve": "#ffd92f",
    "settlement": "#80b1d3",
    "corporate": "#b15928",
    "unknown": "#d9d9d9",
}
ROLE_NAMES = {
    "personal": "personal",
    "lender_sub": "lender",
    "borrower_sub": "borrower",
    "platform_custody": "platform custody",
    "platform_own": "platform's own",
    "operating": "operating",
    "risk_reserve": "risk reserve",
    "client_reserve": "client reserve",
    "settlement": "settlement",
    "corporate": "corporate",
    "unknown": "no account record",
}
# Red is the alert's alone: no role colour is red.
ALERT_COLOUR = "#d7301f"
FLOW_COLOUR = "#6e6e6e"
ENTITY_COLOUR = "#404040"
OWNS_COLOUR = "#8c8c8c"
RELATION_COLOUR = "#7b3294"
# Legend entries of the lines, in order: gid, text, colour, style, width.
LINE_ENTRIES = (
    ("alert-flow", "the alert's flows: yuan, transactions", ALERT_COLOUR, "-", 4.0),
    ("flow", "money flow (width: log of yuan)", FLOW_COLOUR, "-", 1.8),
    ("owns", "owns (entity to account)", OWNS_COLOUR, ":", 1.2),
    ("relation", "related party (to the entity listing it)", RELATION_COLOUR, "--", 1.4),
)

Point = tuple[float, float]
_TOP_BAND, _BOTTOM_BAND, _SIDE = 62, 92, 16  # pixels: titles, legend, margins
_HEADER, _FLOOR = 30.0, 34.0  # column titles; room under the bottom node's label


def render_png(graph: FlowGraph, file: Any) -> None:
    """Draws ``graph`` (:func:`~fundflow.graph_picture.compose`, then
    :func:`draw`) as a PNG into the binary ``file``."""
    from PIL import Image

    fig = draw(compose(graph))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a glyph missing from the font
        fig.canvas.draw()
    # 256 colours (no dithering) keep the file a few times smaller than RGBA,
    # with no visible loss on lines, text and flat fills.
    image = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba())
    image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        file, format="PNG", optimize=True
    )


def canvas_size(picture: Picture) -> tuple[int, int]:
    """Width and height in pixels: a column's width each, a row's height for
    the tallest column, within :data:`MAX_WIDTH` × :data:`MAX_HEIGHT`."""
    tallest = max((len(nodes) for _c, nodes in picture.columns), default=1)
    width = min(MAX_WIDTH, max(800, 160 + COLUMN_PX * len(picture.columns)))
    height = min(MAX_HEIGHT, max(560, 340 + 55 * tallest))
    return width, height


def curve(p: Point, q: Point, side: float, top: float = math.inf, n: int = 24) -> list[Point]:
    """Points of a curve from ``p`` to ``q`` (pixels). Between columns, it
    bends to the right of its direction by 3/40 of its length, so flows both
    ways stay apart, and no higher than ``top``. Within a column, it leaves
    and arrives sideways (to the right going down, to the left going up),
    clear of the labels above the nodes, bulging by at most ``side``."""
    (x1, y1), (x2, y2) = p, q
    if x1 == x2:
        # Both control points offset by d: the curve bulges by 3d/4.
        bulge = min(side, 0.3 * abs(y2 - y1) + 10.0)
        d = (bulge if y2 < y1 else -bulge) / 0.75
        c1, c2 = (x1 + d, y1), (x2 + d, y2)
    else:
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        c1 = c2 = (mx + 0.1 * (y2 - y1), min(my - 0.1 * (x2 - x1), top))
    out = []
    for i in range(n + 1):
        t = i / n
        a, b, c, d3 = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t**3
        out.append((
            a * x1 + b * c1[0] + c * c2[0] + d3 * x2,
            a * y1 + b * c1[1] + c * c2[1] + d3 * y2,
        ))  # fmt: skip
    return out


def draw(picture: Picture) -> Any:
    """A matplotlib ``Figure`` of ``picture`` (steps of the module
    docstring). Artists carry a ``gid``: ``flow``, ``alert-flow``, ``owns``,
    ``relation`` (lines), ``nodes`` (markers), ``column-title``,
    ``node-label``, ``flow-label``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = canvas_size(picture)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    axw, axh = width - 2 * _SIDE, height - _TOP_BAND - _BOTTOM_BAND
    ax = fig.add_axes((_SIDE / width, _BOTTOM_BAND / height, axw / width, axh / height))
    ax.set_axis_off()
    # Data units are the axes' pixels, so curves bend alike in x and y.
    ax.set_xlim(0, axw)
    ax.set_ylim(0, axh)
    room = _Room(ax.get_window_extent(renderer))
    col_w = axw / max(len(picture.columns), 1)
    nodes = {n.key: n for _c, members in picture.columns for n in members}
    pos = _positions(picture, col_w, axh)
    for i, (c, _members) in enumerate(picture.columns):
        title = ax.text((i + 0.5) * col_w, axh - 4, COLUMN_TITLES[c], ha="center", va="top",
                        fontsize=8.5, fontweight="bold", color="#333333", zorder=9,
                        gid="column-title")  # fmt: skip
        room.take(_extent(title, renderer))
    used: set[str] = set()
    paths = _draw_edges(ax, picture.edges, pos, col_w, axh - _HEADER, used)
    roles = _draw_nodes(ax, nodes, pos, room, used)
    alert_lines = [ax.transData.transform(_dense(paths[k]))
                   for k, e in enumerate(picture.edges) if e.in_alert]  # fmt: skip
    for key, node in nodes.items():
        _label_node(ax, renderer, room, node, pos[key], col_w, alert_lines)
    missing = _label_flows(ax, renderer, room, picture.edges, paths, alert_lines)
    fig.suptitle(picture.title, y=1 - 10 / height, fontsize=11, fontweight="bold")
    fig.text(0.5, 1 - 34 / height, picture.subtitle, ha="center", va="top", fontsize=8,
             color="#444444")  # fmt: skip
    handles = _legend_handles(roles, used)
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=7.5,
               frameon=False, bbox_to_anchor=(0.5, 26 / height))  # fmt: skip
    note = "amounts: yuan of the flows drawn, exact; in/out: an account's flows in the graph"
    if missing:
        note += f"; {missing} amount(s) of the alert's flows found no room (see the .json export)"
    fig.text(0.5, 8 / height, note, ha="center", va="bottom", fontsize=6.5, color="#666666")
    return fig


def _positions(picture: Picture, col_w: float, axh: float) -> dict[str, Point]:
    """Each node's centre: spread down its column, off the column's middle
    away from the side its label takes (outer side; centre labels above)."""
    pos: dict[str, Point] = {}
    span = axh - _HEADER - _FLOOR
    for i, (c, members) in enumerate(picture.columns):
        shift = 0.0 if c == CENTRE_COLUMN else (0.12 if c < CENTRE_COLUMN else -0.12)
        x = (i + 0.5 + shift) * col_w
        for j, node in enumerate(members):
            pos[node.key] = (x, _FLOOR + span * (1 - (j + 0.5) / len(members)))
    return pos


def _draw_edges(
    ax: Any, edges: tuple[Edge, ...], pos: dict[str, Point], col_w: float, top: float,
    used: set[str],
) -> dict[int, list[Point]]:  # fmt: skip
    """Draws every edge in order; returns each edge's curve by its index."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path as CurvePath

    flows = [e.amount_fen for e in edges if e.edge_type == "flow"]
    low = math.log(max(min(flows, default=1), 1))
    span = math.log(max(max(flows, default=1), 1)) - low

    def scale(e: Edge) -> float:  # 0 for the smallest flow, 1 for the biggest
        return (math.log(max(e.amount_fen, 1)) - low) / span if span else 0.5

    faint = 0.5 if len(flows) <= 60 else 0.3
    paths: dict[int, list[Point]] = {}
    for k, e in enumerate(edges):
        points = paths[k] = curve(pos[e.source], pos[e.target], col_w / 3, top)
        if e.edge_type == "flow" and e.in_alert:
            style = dict(linewidth=3.6 + 3.4 * scale(e), color=ALERT_COLOUR, alpha=0.95,
                         zorder=8.5, mutation_scale=18, gid="alert-flow")  # fmt: skip
        elif e.edge_type == "flow":
            style = dict(linewidth=0.6 + 2.4 * scale(e), color=FLOW_COLOUR, alpha=faint,
                         zorder=2, mutation_scale=10, gid="flow")  # fmt: skip
        elif e.edge_type == "relation":
            style = dict(linewidth=1.4, color=RELATION_COLOUR, alpha=0.9, linestyle="--",
                         zorder=1, mutation_scale=10, gid="relation")  # fmt: skip
        else:
            style = dict(linewidth=1.0, color=OWNS_COLOUR, alpha=0.9, linestyle=":",
                         zorder=1, mutation_scale=8, gid="owns")  # fmt: skip
        used.add(str(style["gid"]))
        # The alert's thick lines stop further out, so that where many meet
        # (a pool) the node still shows through the ring of arrow heads.
        shrink = 11 if e.in_alert else 6
        ax.add_patch(FancyArrowPatch(path=CurvePath(points), arrowstyle="-|>", shrinkA=shrink,
                                     shrinkB=shrink + 1, **style))  # type: ignore[arg-type]  # fmt: skip
    return paths


def _draw_nodes(
    ax: Any, nodes: dict[str, Node], pos: dict[str, Point], room: _Room, used: set[str]
) -> set[str]:
    """One scatter per marker shape and size; each marker's box taken, so no
    label covers a node. Returns the account roles drawn."""
    shapes: dict[tuple[str, float], list[list[Any]]] = {}
    roles: set[str] = set()
    for key, node in nodes.items():
        size = _marker_size(node)
        if node.kind == "entity":
            marker, fill = "s", ENTITY_COLOUR
            used.add("entity")
        elif node.kind == "aggregate":
            marker, fill = "h", "white"
            used.add("aggregate")
        else:
            role = node.role if node.role in ROLE_COLOURS else "unknown"
            marker, fill = "o", ROLE_COLOURS[role]
            roles.add(role)
        if node.in_alert:
            used.add("alert-node")
        xs, ys, fills, rims, widths = shapes.setdefault((marker, size), [[], [], [], [], []])
        xs.append(pos[key][0])
        ys.append(pos[key][1])
        fills.append(fill)
        rims.append(ALERT_COLOUR if node.in_alert else "#303030")
        widths.append(2.0 if node.in_alert else 0.8)
        r = _radius(node)
        x, y = ax.transData.transform(pos[key])
        room.take(_bbox(x - r, y - r, x + r, y + r))
    for (marker, size), (xs, ys, fills, rims, widths) in shapes.items():
        ax.scatter(xs, ys, s=size, c=fills, marker=marker, edgecolors=rims, linewidths=widths,
                   zorder=4, gid="nodes")  # fmt: skip
    return roles


def _marker_size(node: Node) -> float:
    """Marker area in points²: the alert's nodes bigger."""
    size = {"entity": 90.0, "aggregate": 180.0}.get(node.kind, 75.0)
    return size * 1.6 if node.in_alert else size


def _radius(node: Node) -> float:
    """Half the marker's width in pixels, its rim included."""
    return math.sqrt(_marker_size(node)) * DPI / 72 / 2 + 1.5


def _label_node(
    ax: Any, renderer: Any, room: _Room, node: Node, at: Point, col_w: float,
    alert_lines: list[Any],
) -> None:  # fmt: skip
    """The node's label at the first spot with room that no alert line
    crosses, else the spot with room crossed by the fewest, else its
    preferred spot."""
    x, y = at
    gap = _radius(node) + 5.0
    left = dict(x=x - gap, y=y, ha="right", va="center")
    right = dict(x=x + gap, y=y, ha="left", va="center")
    above = dict(x=x, y=y + gap, ha="center", va="bottom")
    below = dict(x=x, y=y - gap, ha="center", va="top")
    if node.kind == "aggregate":
        spots = [below, above]
    elif node.column == CENTRE_COLUMN:
        spots = [above, below, right, left]
    else:
        spots = [left, above, below] if node.column < CENTRE_COLUMN else [right, above, below]
    text = ax.text(
        x, y, node.text, fontsize=7, linespacing=1.15, zorder=9, gid="node-label",
        color=ALERT_COLOUR if node.in_alert and node.kind != "entity" else "#202020",
        fontweight="bold" if node.in_alert else "normal",
        bbox=dict(boxstyle="square,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8),
    )  # fmt: skip
    if node.kind == "aggregate" and _extent(text, renderer).width > 0.95 * col_w:
        text.set_text(node.text.replace(", ", ",\n", 1))  # the figure under the count
    best: tuple[int, dict[str, Any], Any] | None = None
    for spot in spots:
        text.set(**spot)
        box = _extent(text, renderer)
        if not room.fits(box):
            continue
        hits = sum(1 for line in alert_lines if _crosses(box, line))
        if best is None or hits < best[0]:
            best = (hits, spot, box)
        if hits == 0:
            break
    spot, box = (best[1], best[2]) if best is not None else (spots[0], None)
    text.set(**spot)
    room.take(box if box is not None else _extent(text, renderer))


def _label_flows(
    ax: Any, renderer: Any, room: _Room, edges: tuple[Edge, ...], paths: dict[int, list[Point]],
    alert_lines: list[Any],
) -> int:  # fmt: skip
    """Amounts on the alert's flows, then on the biggest others (off the
    alert's lines); returns how many of the alert's found no room."""
    order = sorted(
        (k for k, e in enumerate(edges) if e.edge_type == "flow"),
        key=lambda k: (not edges[k].in_alert, -edges[k].amount_fen, k),
    )
    others = missing = 0
    for k in order:
        e = edges[k]
        if not e.in_alert and others >= OTHER_AMOUNTS:
            break
        avoid = [] if e.in_alert else alert_lines
        if _place_amount(ax, renderer, room, paths[k], _flow_text(e), e.in_alert, avoid):
            others += not e.in_alert
        elif e.in_alert:
            missing += 1
    return missing


def _flow_text(e: Edge) -> str:
    unit = "yuan" if e.currency == "CNY" else e.currency
    text = f"{yuan(e.amount_fen)} {unit}"
    if e.in_alert:
        text += f", {e.count:,} txn" + ("s" if e.count != 1 else "")
    return text


def _place_amount(
    ax: Any, renderer: Any, room: _Room, points: list[Point], label: str, alert: bool,
    avoid: list[Any],
) -> bool:  # fmt: skip
    """Puts ``label`` on its curve at the first point, from the middle
    outwards, where its box overlaps nothing taken and no line of ``avoid``;
    False (and no text) when none has room. An ordinary amount runs along its line, so that it
    reads as that line's; the alert's stand upright in a red frame."""
    n = len(points) - 1
    text = ax.text(
        0, 0, label, ha="center", va="center", zorder=10, gid="flow-label",
        rotation_mode="anchor", fontsize=7.5 if alert else 6.5,
        fontweight="bold" if alert else "normal", color=ALERT_COLOUR if alert else "#404040",
        bbox=dict(boxstyle="round,pad=0.2", facecolor="white",
                  edgecolor=ALERT_COLOUR if alert else "none", linewidth=0.8, alpha=0.92),
    )  # fmt: skip
    # From the middle outwards, leaving the ends (under the nodes' labels).
    for i in sorted(range(2, n - 1), key=lambda i: (abs(2 * i - n), i)):
        (ax_, ay), (bx, by) = points[max(i - 1, 0)], points[min(i + 1, n)]
        angle = 0.0 if alert else math.degrees(math.atan2(by - ay, bx - ax_))
        angle = angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle
        text.set(x=points[i][0], y=points[i][1], rotation=angle)
        box = _extent(text, renderer)
        if room.fits(box) and not any(_crosses(box, line) for line in avoid):
            room.take(box)
            return True
    text.remove()
    return False


def _legend_handles(roles: set[str], used: set[str]) -> list[Any]:
    """One entry per marker and line style drawn, in a fixed order."""
    from matplotlib.lines import Line2D

    def mark(marker: str, label: str, fill: str, rim: str = "#303030", size: float = 7) -> Any:
        return Line2D([], [], marker=marker, linestyle="", markerfacecolor=fill,
                      markeredgecolor=rim, markersize=size, label=label)  # fmt: skip

    handles = [mark("o", f"{ROLE_NAMES[r]} account", ROLE_COLOURS[r])
               for r in ROLE_COLOURS if r in roles]  # fmt: skip
    if "entity" in used:
        handles.append(mark("s", "entity (owner, subject, related)", ENTITY_COLOUR))
    if "aggregate" in used:
        handles.append(mark("h", "other accounts, aggregated", "white", size=9))
    if "alert-node" in used:
        handles.append(mark("o", "in the alert (red rim)", "white", ALERT_COLOUR))
    for gid, label, colour, style, width in LINE_ENTRIES:
        if gid in used:
            handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=width,
                                  label=label))  # fmt: skip
    return handles


# -- geometry -----------------------------------------------------------------


class _Room:
    """Boxes (display pixels) already taken by labels and markers, inside
    the axes."""

    def __init__(self, limits: Any) -> None:
        self.limits = limits
        self.taken: list[Any] = []

    def fits(self, box: Any) -> bool:
        lim = self.limits
        inside = lim.x0 <= box.x0 and box.x1 <= lim.x1 and lim.y0 <= box.y0 and box.y1 <= lim.y1
        return inside and not any(box.overlaps(t) for t in self.taken)

    def take(self, box: Any) -> None:
        self.taken.append(box)


def _bbox(x0: float, y0: float, x1: float, y1: float) -> Any:
    from matplotlib.transforms import Bbox

    return Bbox([[x0, y0], [x1, y1]])


def _extent(text: Any, renderer: Any, pad: float = 1.5) -> Any:
    """The rendered box of ``text`` (its frame when it has one), ``pad``
    pixels wider each way."""
    if text.get_bbox_patch() is not None:
        text.update_bbox_position_size(renderer)  # the frame follows its text
        box = text.get_bbox_patch().get_window_extent(renderer)
    else:
        box = text.get_window_extent(renderer)
    return _bbox(box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad)


def _dense(points: list[Point], step: float = 3.0) -> list[Point]:
    """``points`` with points added every ``step`` pixels between them."""
    out = [points[0]]
    for (x1, y1), (x2, y2) in zip(points, points[1:], strict=False):
        k = max(1, math.ceil(math.hypot(x2 - x1, y2 - y1) / step))
        out.extend((x1 + (x2 - x1) * i / k, y1 + (y2 - y1) * i / k) for i in range(1, k + 1))
    return out


def _crosses(box: Any, line: Any) -> bool:
    """Whether any point of ``line`` (display pixels, an N×2 array) lies in
    ``box``."""
    xs, ys = line[:, 0], line[:, 1]
    return bool(((xs >= box.x0) & (xs <= box.x1) & (ys >= box.y0) & (ys <= box.y1)).any())
