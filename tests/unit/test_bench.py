"""What ``fundflow bench`` prints, from figures given (no worlds are run)."""

from __future__ import annotations

from fundflow.bench import _pooled, amlsim_table, typology_table


def _counts(planted, found, alerted, on, nodes, nodes_found, named, named_dirty):  # type: ignore[no-untyped-def]
    return {
        "planted": planted, "found": found, "alerted": alerted, "on_patterns": on,
        "nodes": nodes, "nodes_found": nodes_found, "named": named, "named_dirty": named_dirty,
    }  # fmt: skip


def test_pooled_counts_give_pattern_and_node_precision_recall_and_f1() -> None:
    got = _pooled({"fan_in": _counts(20, 16, 27, 27, 100, 80, 120, 90)})["fan_in"]
    assert (got["recall"], got["precision"], got["f1"]) == (0.8, 1.0, 0.889)
    assert (got["node_recall"], got["node_precision"], got["node_f1"]) == (0.8, 0.75, 0.774)
    none = _pooled({"cycle": _counts(0, 0, 0, 0, 0, 0, 0, 0)})["cycle"]
    assert (none["recall"], none["precision"], none["f1"], none["node_f1"]) == (None,) * 4


def test_the_typology_table_right_aligns_its_figures() -> None:
    lines = typology_table(
        _pooled(
            {
                "fan_in": _counts(20, 16, 27, 27, 100, 80, 120, 90),
                "cycle": _counts(20, 14, 15, 14, 60, 42, 45, 42),
                "scatter_gather": _counts(120, 119, 0, 0, 10, 0, 0, 0),
            }
        )
    )
    assert lines == [
        "typology        planted  found  recall  alerted  correct  precision     F1  node P  node R  node F1",
        "fan_in               20     16   0.800       27       27      1.000  0.889   0.750   0.800    0.774",
        "cycle                20     14   0.700       15       14      0.933  0.800   0.933   0.700    0.800",
        "scatter_gather      120    119   0.992        0        0          -      -       -   0.000        -",
    ]


def test_the_amlsim_table_names_accounts_and_their_scores() -> None:
    aml = {
        "typologies": {
            "fan_in": {"named": 10, "correct": 9, "precision": 0.9, "recall": 0.005, "f1": 0.01},
            "all": {"named": 0, "correct": 0, "precision": None, "recall": 0.0, "f1": None},
        }
    }
    assert amlsim_table(aml) == [
        "typology  named  fraud  node P  node R  node F1",
        "fan_in       10      9   0.900   0.005    0.010",
        "all           0      0       -   0.000        -",
    ]
