"""The one plain-text table of the command line (``alerts list``, ``demo``,
``bench --typologies``, ``topics create``), aligned by terminal columns.

Chinese text takes two terminal columns a character, so padding by
``len`` misaligns every column after it. Widths here follow Unicode's East
Asian Width: wide (W) and fullwidth (F) characters take two columns,
combining marks none, everything else one.

>>> for line in format_table(
...     ["subject", "amount", "summary"],
...     [["资金池", "1.00", "pooled"], ["P2", "100.50", "a summary  cut\\nshort"]],
...     right={1},
...     last_width=10,
... ):
...     print(line)
subject  amount  summary
资金池     1.00  pooled
P2       100.50  a summary…
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable, Sequence

ELLIPSIS = "…"


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes (East Asian wide and fullwidth
    characters two, combining marks none, others one)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


def cut(text: str, width: int) -> str:
    """``text`` if it fits in ``width`` columns, else its longest head that
    fits with a trailing ``…`` (a wide character is never split)."""
    if display_width(text) <= width:
        return text
    out: list[str] = []
    used = display_width(ELLIPSIS)
    for ch in text:
        w = display_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def one_line(text: str) -> str:
    """``text`` as one line: every run of whitespace (newlines, tabs) one space."""
    return " ".join(text.split())


def format_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Collection[int] = (),
    last_width: int | None = None,
    gap: int = 2,
) -> list[str]:
    """The lines of a table: ``header``, then one line per row.

    Each cell is made one line (:func:`one_line`). Columns are ``gap``
    spaces apart, each as wide in terminal columns (:func:`display_width`)
    as its widest cell, the header's included. Columns whose index is in
    ``right`` are right-aligned, their header too; the last column is
    padded only then and, with ``last_width``, is cut to that many columns
    (:func:`cut`) first. No line ends in spaces.
    """
    if not header:
        raise ValueError("a table needs at least one column")
    table = [[one_line(str(c)) for c in header]]
    table += [[one_line(str(c)) for c in row] for row in rows]
    n = len(header)
    if any(len(row) != n for row in table):
        raise ValueError(f"every row of the table needs {n} cells")
    if last_width is not None:
        for row in table[1:]:
            row[-1] = cut(row[-1], last_width)
    widths = [max(display_width(row[i]) for row in table) for i in range(n)]
    sep = " " * gap
    lines = []
    for row in table:
        cells = []
        for i, width in enumerate(widths):
            fill = " " * (width - display_width(row[i]))
            if i in right:
                cells.append(fill + row[i])
            else:
                cells.append(row[i] + fill if i < n - 1 else row[i])
        lines.append(sep.join(cells).rstrip())
    return lines
