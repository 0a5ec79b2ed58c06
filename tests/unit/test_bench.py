"""What ``fundflow bench`` prints, from figures given (no worlds are run)."""

from __future__ import annotations

from fundflow.bench import typology_table


def test_the_typology_table_right_aligns_its_figures() -> None:
    def row(planted, found, alerted, on_patterns):  # type: ignore[no-untyped-def]
        return {
            "planted": planted,
            "found": found,
            "alerted": alerted,
            "on_patterns": on_patterns,
            "recall": round(found / planted, 3) if planted else None,
            "precision": round(on_patterns / alerted, 3) if alerted else None,
        }

    lines = typology_table(
        {
            "fan_in": row(20, 16, 27, 27),
            "cycle": row(20, 14, 15, 14),
            "scatter_gather": row(120, 119, 0, 0),
            "gather_scatter": row(0, 0, 3, 3),
        }
    )
    assert lines == [
        "typology        planted  found  recall  alerted  correct  precision",
        "fan_in               20     16   0.800       27       27      1.000",
        "cycle                20     14   0.700       15       14      0.933",
        "scatter_gather      120    119   0.992        0        0          -",
        "gather_scatter        0      0       -        3        3      1.000",
    ]
