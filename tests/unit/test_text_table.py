"""The command line's one table (fundflow.text_table): widths in terminal
columns, Chinese text two columns a character, cuts that never split one."""

from __future__ import annotations

import pytest

from fundflow.text_table import cut, display_width, format_table


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("", 0),
        ("P002", 4),
        ("资金池", 6),  # wide: two columns each
        ("ＡＢ", 4),  # fullwidth Latin
        ("盛泰支付有限公司 P2P", 20),
        ("é", 1),  # e + combining acute: one column
        ("…", 1),
    ],
)
def test_display_width(text: str, width: int) -> None:
    assert display_width(text) == width


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch…"),
        (
            "备付金被挪用于关联公司",
            10,
            "备付金被…",
        ),  # 8 columns + the ellipsis: a fifth would not fit
        ("备付金被挪用于关联公司", 11, "备付金被挪…"),
        ("ab资金", 4, "ab…"),
    ],
)
def test_cut_never_splits_a_wide_character(text: str, width: int, expected: str) -> None:
    assert cut(text, width) == expected
    assert display_width(cut(text, width)) <= width


def test_chinese_cells_keep_the_columns_aligned() -> None:
    lines = format_table(
        ["name", "amount", "kind", "note"],
        [
            ["盛泰支付有限公司", "4815816.10", "支付", "unlicensed"],
            ["P004", "0.50", "P2P", "idle money"],
            ["ＡＢ", "12.00", "x", ""],
        ],
        right={1},
    )
    assert lines == [
        "name                  amount  kind  note",
        "盛泰支付有限公司  4815816.10  支付  unlicensed",
        "P004                    0.50  P2P   idle money",
        "ＡＢ                   12.00  x",
    ]
    # The amount column ends at terminal column 28 on every line.
    amounts = ["amount", "4815816.10", "0.50", "12.00"]
    ends = {
        display_width(line[: line.index(a) + len(a)])
        for line, a in zip(lines, amounts, strict=True)
    }
    assert ends == {28}


def test_cells_are_one_line_and_the_last_column_is_cut() -> None:
    lines = format_table(
        ["id", "summary"],
        [["a\nb", "first line\nsecond\tline, and more words than fit"]],
        last_width=20,
    )
    assert lines == ["id   summary", "a b  first line second l…"]


def test_rows_must_have_every_column() -> None:
    with pytest.raises(ValueError, match="every row of the table needs 2 cells"):
        format_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError, match="a table needs at least one column"):
        format_table([], [])
