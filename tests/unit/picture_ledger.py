"""A hand-made ledger for the tests of the account graph's picture.

Platform P of :func:`ledger.p2p_platform` (custody master POOL, own account
OWN, affiliates A1 and A2 with accounts X1 and X2, OUTSIDER with XO), fifteen
lenders and two borrowers:

    T01..T15  Lnn -> POOL   nn,000,000.00 invest     day 0
    TX        POOL -> X1     5,000,000.00 transfer   day 1
    TB        POOL -> B01   20,000,000.00 disburse   day 1
    TO        X1 -> XO       4,999,999.99 transfer   day 2

:func:`alert` is a self-financing alert on POOL and X1 naming TX and T02.
:func:`assert_no_label_overlaps` checks a drawn figure's text boxes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
from ledger import at, borrowers, custody, lenders, p2p_platform
from matplotlib.text import Text

from fundflow.schemas.decode import encode_record
from fundflow.schemas.records import Alert


def write_ledger(path: Path) -> Path:
    recs = [*p2p_platform(), *lenders(15), *borrowers(2)]
    recs += [
        custody(f"T{i:02d}", at(0, 9, i), f"L{i:02d}", "POOL", f"{i}000000.00", "invest")
        for i in range(1, 16)
    ]
    recs += [
        custody("TX", at(1, 10), "POOL", "X1", "5000000.00", "transfer"),
        custody("TB", at(1, 11), "POOL", "B01", "20000000.00", "disburse", loan="LN1"),
        custody("TO", at(2, 10), "X1", "XO", "4999999.99", "transfer"),
    ]
    path.write_bytes(b"\n".join(msgspec.json.encode(encode_record(r)) for r in recs) + b"\n")
    return path


def alert(*txns: str) -> Alert:
    return Alert(
        alert_id="a7", detector="self_financing", severity="high", subject_id="P",
        accounts=("POOL", "X1"), first_ts="", last_ts="", amount="5000000.00",
        summary="", evidence={"sample_txn_ids": list(txns or ("TX", "T02"))},
        detector_version="1.0",
    )  # fmt: skip


def text_boxes(fig) -> list[tuple[str, object]]:
    """Every non-empty text of the figure with its rendered box (its frame
    when it has one)."""
    renderer = fig.canvas.get_renderer()
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text():
            continue
        if t.get_bbox_patch() is not None:
            t.update_bbox_position_size(renderer)
            box = t.get_bbox_patch().get_window_extent(renderer)
        else:
            box = t.get_window_extent(renderer)
        out.append((t.get_text(), box))
    return out


def assert_no_label_overlaps(fig) -> None:
    boxes = text_boxes(fig)
    assert len(boxes) > 10
    clashes = [
        (a, b)
        for (a, p), (b, q) in itertools.combinations(boxes, 2)
        if min(p.x1, q.x1) > max(p.x0, q.x0) and min(p.y1, q.y1) > max(p.y0, q.y0)
    ]
    assert clashes == []
