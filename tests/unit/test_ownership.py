"""The ownership graph: look-through chains, control by the product of shares
or a controller edge, updates that remove edges, cycles and the depth bound."""

from __future__ import annotations

import pickle
from fractions import Fraction

import pytest
from ledger import entity

from fundflow.detectors.ownership import Ownership


def graph(*entities, **kwargs) -> Ownership:
    g = Ownership(**kwargs)
    for e in entities:
        g.update(e)
    return g


def test_direct_relations_either_side_listed():
    g = graph(
        entity("P", "p2p_platform", related=[("H", "shareholder", "0.3"), ("X", "executive")]),
        entity("A", related=[("P", "affiliate")]),
        entity("S", related=[("P", "shareholder", "0.9")]),
    )
    assert g.related_parties("P") == {
        # A lists P as its affiliate; P holds 0.9 of S, and so controls it.
        "A": ("P is affiliate of A",),
        "H": ("H is shareholder of P (0.3000)",),
        "S": ("P is shareholder of S (0.9000)",),
        "X": ("X is executive of P",),
    }


def test_control_by_the_product_of_shares_along_a_chain():
    # H holds 0.8 of M, M holds 0.7 of C: 0.56 > 0.5, H controls C through M.
    # M holds 0.6 of D, but H's 0.8 x 0.6 = 0.48 of D is not control.
    g = graph(
        entity("P", "p2p_platform", related=[("H", "shareholder", "0.4")]),
        entity("M", related=[("H", "shareholder", "0.8")]),
        entity("C", related=[("M", "shareholder", "0.7")]),
        entity("D", related=[("M", "shareholder", "0.6")]),
    )
    assert g.effective_share("H", "C") == Fraction(56, 100)
    assert g.effective_share("H", "D") == Fraction(48, 100)
    related = g.related_parties("P")
    assert sorted(related) == ["C", "H", "M"]
    assert related["C"] == (
        "H is shareholder of P (0.4000)",
        "H holds 0.8000 of M",
        "M holds 0.7000 of C",
        "H controls C: effective share 0.5600",
    )


def test_shares_add_up_over_chains():
    # H holds 0.3 of T directly and 0.5 x 0.5 = 0.25 through M: 0.55 in all.
    g = graph(
        entity("P", "p2p_platform", related=[("H", "controller")]),
        entity("M", related=[("H", "shareholder", "0.5")]),
        entity("T", related=[("H", "shareholder", "0.3"), ("M", "shareholder", "0.5")]),
    )
    assert g.effective_share("H", "T") == Fraction(55, 100)
    # The evidence shows the chain of greatest share and the summed share.
    assert g.related_parties("P")["T"] == (
        "H is controller of P",
        "H holds 0.3000 of T",
        "H controls T: effective share 0.5500",
    )


def test_exactly_half_is_not_control_and_the_threshold_is_configurable():
    es = (
        entity("P", "p2p_platform", related=[("H", "shareholder", "0.1")]),
        entity("T", related=[("H", "shareholder", "0.5")]),
    )
    assert "T" not in graph(*es).related_parties("P")
    lower = graph(*es, control_share=Fraction(49, 100))
    assert lower.related_parties("P")["T"][-2:] == (
        "H holds 0.5000 of T",
        "H controls T: effective share 0.5000",
    )


def test_controller_edge_and_who_controls_a_shareholder():
    # Z controls holding company K (controller edge), K holds 0.2 of P: Z is
    # P's ultimate controller behind K; Z also controls Y through a subsidiary
    # listing with no share.
    g = graph(
        entity("P", "p2p_platform", related=[("K", "shareholder", "0.2")]),
        entity("K", related=[("Z", "controller")]),
        entity("Z", "person", related=[("Y", "subsidiary")]),
    )
    related = g.related_parties("P")
    assert related["Z"] == ("K is shareholder of P (0.2000)", "Z controls K")
    assert related["Y"] == ("K is shareholder of P (0.2000)", "Z controls K", "Z controls Y")


def test_an_update_replaces_the_list_and_removes_edges():
    g = graph(
        entity("P", "p2p_platform", related=[("H", "shareholder", "0.6")]),
        entity("C", related=[("H", "shareholder", "0.9")]),
    )
    assert sorted(g.related_parties("P")) == ["C", "H"]
    # C's new owners no longer include H: C is no longer related.
    g.update(entity("C", related=[("Q", "shareholder", "0.9")]))
    assert sorted(g.related_parties("P")) == ["H"]
    assert g.effective_share("H", "C") == 0
    # P drops H: nothing left.
    g.update(entity("P", "p2p_platform"))
    assert g.related_parties("P") == {}


def test_both_sides_stating_an_edge_keep_it_until_both_drop_it():
    g = graph(
        entity("P", "p2p_platform", related=[("S", "subsidiary", "0.7")]),
        entity("S", related=[("P", "shareholder", "0.7")]),
    )
    assert g.effective_share("P", "S") == Fraction(7, 10)
    g.update(entity("P", "p2p_platform"))
    assert g.effective_share("P", "S") == Fraction(7, 10)
    assert g.related_parties("P") == {"S": ("P is shareholder of S (0.7000)",)}
    g.update(entity("S"))
    assert g.effective_share("P", "S") == 0
    assert g.related_parties("P") == {}


def test_cycles_of_ownership_end():
    # A holds 0.6 of B, B holds 0.6 of A and 0.9 of C: every chain visits an entity once.
    g = graph(
        entity("P", "p2p_platform", related=[("A", "controller")]),
        entity("B", related=[("A", "shareholder", "0.6")]),
        entity("A", related=[("B", "shareholder", "0.6")]),
        entity("C", related=[("B", "shareholder", "0.9")]),
    )
    assert g.effective_share("A", "C") == Fraction(54, 100)
    assert sorted(g.related_parties("P")) == ["A", "B", "C"]


def test_the_depth_bound_stops_long_chains():
    # A chain of wholly owned companies H -> N1 -> N2 -> N3 -> N4 -> N5.
    chain = [entity(f"N{i}", related=[(f"N{i - 1}" if i > 1 else "H", "shareholder", "1")])
             for i in range(1, 6)]  # fmt: skip
    es = (entity("P", "p2p_platform", related=[("H", "executive")]), *chain)
    assert sorted(graph(*es).related_parties("P")) == ["H", "N1", "N2", "N3", "N4"]
    assert sorted(graph(*es, depth=2).related_parties("P")) == ["H", "N1", "N2"]


def test_answers_are_memoised_and_forgotten_on_change():
    g = graph(entity("P", "p2p_platform", related=[("H", "executive")]))
    first = g.related_parties("P")
    assert g.related_parties("P") is first
    g.update(entity("P", "p2p_platform", related=[("H", "executive")]))  # the same list
    assert g.related_parties("P") is first
    g.update(entity("H", "person", related=[("W", "subsidiary")]))
    assert g.related_parties("P") is not first
    assert sorted(g.related_parties("P")) == ["H", "W"]


def test_a_pickled_graph_answers_the_same():
    g = graph(
        entity("P", "p2p_platform", related=[("H", "shareholder", "0.4")]),
        entity("M", related=[("H", "shareholder", "0.8")]),
    )
    answer = g.related_parties("P")
    assert pickle.loads(pickle.dumps(g)).related_parties("P") == answer


def test_odd_lists_never_raise():
    g = graph(
        entity("P", "p2p_platform", related=[("P", "shareholder", "1"), ("H", "shareholder")]),
        entity("H", related=[("H", "controller")]),
    )
    # A shareholder with no share is related but holds no counted share.
    assert g.related_parties("P") == {"H": ("H is shareholder of P",)}
    assert g.effective_share("H", "P") == 0
    assert g.related_parties("NOBODY") == {}


@pytest.mark.parametrize("kwargs", [{"control_share": Fraction(1)}, {"depth": 0}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Ownership(**kwargs)
