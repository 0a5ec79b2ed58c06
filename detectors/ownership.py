"""The ownership and control graph, with look-through (穿透).

Built from the ``related`` lists of ``entity`` records. An entity E listing
``{"entity_id": R, "relation": rel, "share": s}`` says that R is E's ``rel``:

* ``shareholder`` with share s: R holds s of E (an ownership edge R -> E);
* ``controller``: R controls E (a control edge R -> E);
* ``subsidiary`` with share s: E holds s of R; with no share, E controls R;
* ``executive``, ``affiliate``: R is related to E, with no ownership.

Effective share of A in X is the product of the shares along a chain of
ownership edges, summed over the chains (simple paths of at most ``depth``
edges), in exact fractions. A control edge counts as a whole share along a
chain. A controls X when its effective share exceeds ``control_share`` or
through a chain of control edges.

:meth:`Ownership.related_parties` answers who is related to a platform:
its shareholders, controllers, executives, affiliates and subsidiaries
(either side may list the relation), the entities that control it or any of
those parties, and every entity controlled by the platform or by any of
them. Each comes with the chain of links that explains it, for evidence.
An entity record replaces that entity's earlier list; answers are memoised
and forgotten whenever a list changes.

>>> from decimal import Decimal
>>> from fundflow.schemas.records import Entity, Related
>>> g = Ownership()
>>> g.update(Entity(entity_id="P", name="P", kind="p2p_platform",
...                 related=(Related(entity_id="H", relation="shareholder",
...                                  share=Decimal("0.8")),)))
>>> g.update(Entity(entity_id="S", name="S", kind="company",
...                 related=(Related(entity_id="H", relation="shareholder",
...                                  share=Decimal("0.6")),)))
>>> g.related_parties("P")["S"]
('H is shareholder of P (0.8000)', 'H holds 0.6000 of S', 'H controls S: effective share 0.6000')
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from fundflow.schemas.records import Entity

from .alerting import ratio_text

Chain = tuple[str, ...]
_ONE = Fraction(1)


def share_text(share: Fraction) -> str:
    """A share as a decimal with four places, rounded half-even.

    >>> share_text(Fraction(1, 3))
    '0.3333'
    """
    return ratio_text(share.numerator, share.denominator)


def _share(value: Any) -> Fraction | None:
    """An exact share in 0..1, or ``None`` when missing or out of range."""
    if value is None:
        return None
    try:
        f = Fraction(value)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return f if 0 <= f <= 1 else None


class Ownership:
    """The graph of ownership, control and other relations between entities.

    ``control_share`` is the effective share above which an owner controls
    (default one half); ``depth`` bounds the chains followed (default 4).
    """

    def __init__(self, control_share: Fraction = Fraction(1, 2), depth: int = 4) -> None:
        if not 0 <= control_share < 1:
            raise ValueError(f"control_share must be in 0..1 (exclusive), got {control_share}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.control_share = control_share
        self.depth = depth
        # entity id -> its latest related list: ((other id, relation, share or None), ...)
        self._lists: dict[str, tuple[tuple[str, str, Fraction | None], ...]] = {}
        # (owner, owned) -> {listing entity and relation: weight}; 1 for a control edge
        self._edges: dict[tuple[str, str], dict[str, Fraction]] = {}
        self._down: dict[str, set[str]] = {}
        self._up: dict[str, set[str]] = {}
        # entity -> {other: link text}, relations either side listed
        self._links: dict[str, dict[str, str]] = {}
        self._memo: dict[str, dict[str, Chain]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "_memo"}
        state["_memo"] = {}
        return state

    # -- updates ------------------------------------------------------------

    def update(self, entity: Entity) -> None:
        """Replace ``entity``'s relations with those of this record."""
        eid = entity.entity_id
        new = tuple(
            (r.entity_id, r.relation, _share(r.share)) for r in entity.related if r.entity_id != eid
        )
        old = self._lists.get(eid, ())
        if new == old:
            return
        for other, rel, share in old:
            self._contribute(eid, other, rel, share, remove=True)
        for other, rel, share in new:
            self._contribute(eid, other, rel, share, remove=False)
        if new:
            self._lists[eid] = new
        else:
            self._lists.pop(eid, None)
        for other in dict.fromkeys(o for o, _, _ in (*old, *new)):
            self._relink(eid, other)
        self._memo.clear()

    def _contribute(
        self, lister: str, other: str, rel: str, share: Fraction | None, *, remove: bool
    ) -> None:
        if rel == "shareholder":
            edge = (other, lister, share)
        elif rel == "controller":
            edge = (other, lister, _ONE)
        elif rel == "subsidiary":
            edge = (lister, other, _ONE if share is None else share)
        else:
            edge = None
        if edge is not None and edge[2] is not None:
            self._edge(edge[0], edge[1], f"{lister}\x1f{rel}", edge[2], remove)

    def _relink(self, a: str, b: str) -> None:
        """The link text between ``a`` and ``b`` from what either lists now."""
        text = None
        for lister, other in ((a, b), (b, a)):
            for o, rel, share in self._lists.get(lister, ()):
                if o == other and text is None:
                    text = f"{o} is {rel} of {lister}"
                    text += "" if share is None else f" ({share_text(share)})"
        for x, y in ((a, b), (b, a)):
            if text is None:
                links = self._links.get(x)
                if links is not None:
                    links.pop(y, None)
                    if not links:
                        del self._links[x]
            else:
                self._links.setdefault(x, {})[y] = text

    def _edge(self, owner: str, owned: str, lister: str, weight: Fraction, remove: bool) -> None:
        key = (owner, owned)
        by = self._edges.get(key)
        if remove:
            if by is None:
                return
            by.pop(lister, None)
            if by:
                return
            del self._edges[key]
            self._down[owner].discard(owned)
            self._up[owned].discard(owner)
            return
        if by is None:
            by = self._edges[key] = {}
            self._down.setdefault(owner, set()).add(owned)
            self._up.setdefault(owned, set()).add(owner)
        by[lister] = weight

    # -- questions ----------------------------------------------------------

    def weight(self, owner: str, owned: str) -> Fraction:
        """The direct share ``owner`` holds of ``owned`` (1 for control); 0 when none.
        Both sides may state it: the larger statement counts."""
        by = self._edges.get((owner, owned))
        return max(by.values()) if by else Fraction(0)

    def _text(self, owner: str, owned: str) -> str:
        w = self.weight(owner, owned)
        return (
            f"{owner} controls {owned}" if w == 1 else f"{owner} holds {share_text(w)} of {owned}"
        )

    def _walk(self, start: str, downward: bool) -> dict[str, tuple[Fraction, Chain]]:
        """Every entity reachable from ``start`` by at most ``depth`` ownership
        edges (down: what it holds; up: who holds it), with the effective share
        summed over simple chains (at most 1) and the chain of greatest share,
        written from the holder down."""
        adj = self._down if downward else self._up
        total: dict[str, Fraction] = {}
        best: dict[str, tuple[Fraction, tuple[str, ...]]] = {}
        stack: list[tuple[str, Fraction, tuple[str, ...]]] = [(start, _ONE, (start,))]
        while stack:
            node, product, path = stack.pop()
            if len(path) > self.depth:
                continue
            for nxt in sorted(adj.get(node, ()), reverse=True):
                if nxt in path:
                    continue  # a cycle: each chain visits an entity once
                w = self.weight(node, nxt) if downward else self.weight(nxt, node)
                p = product * w
                if p == 0:
                    continue
                new_path = (*path, nxt)
                total[nxt] = total.get(nxt, Fraction(0)) + p
                held = best.get(nxt)
                if held is None or p > held[0] or (p == held[0] and new_path < held[1]):
                    best[nxt] = (p, new_path)
                stack.append((nxt, p, new_path))
        out: dict[str, tuple[Fraction, Chain]] = {}
        for x, (_, path) in best.items():
            holders = path if downward else path[::-1]
            links = tuple(self._text(a, b) for a, b in zip(holders, holders[1:], strict=False))
            out[x] = (min(total[x], _ONE), links)
        return out

    def controlled_by(self, owner: str) -> dict[str, Chain]:
        """Entities ``owner`` controls (look-through), each with its chain."""
        out: dict[str, Chain] = {}
        for x, (share, chain) in self._walk(owner, True).items():
            if share > self.control_share:
                out[x] = self._control_chain(owner, x, share, chain)
        return out

    def controllers_of(self, owned: str) -> dict[str, Chain]:
        """Entities that control ``owned`` (look-through), each with its chain."""
        out: dict[str, Chain] = {}
        for a, (share, chain) in self._walk(owned, False).items():
            if share > self.control_share:
                out[a] = self._control_chain(a, owned, share, chain)
        return out

    def _control_chain(self, a: str, x: str, share: Fraction, chain: Chain) -> Chain:
        if len(chain) == 1 and self.weight(a, x) == 1:
            return chain
        return (*chain, f"{a} controls {x}: effective share {share_text(share)}")

    def effective_share(self, owner: str, owned: str) -> Fraction:
        """``owner``'s effective share of ``owned``, summed over chains."""
        return self._walk(owner, True).get(owned, (Fraction(0), ()))[0]

    def related_parties(self, platform_id: str) -> dict[str, Chain]:
        """Entity id -> the chain of links that makes it a related party of
        ``platform_id`` (the platform itself is not among them). Memoised."""
        memo = self._memo.get(platform_id)
        if memo is not None:
            return memo
        out: dict[str, Chain] = {}

        def add(eid: str, chain: Chain) -> None:
            if eid != platform_id and eid not in out:
                out[eid] = chain

        direct = self._links.get(platform_id, {})
        for other in sorted(direct):
            add(other, (direct[other],))
        for a, chain in sorted(self.controllers_of(platform_id).items()):
            add(a, chain)
        roots = [platform_id, *sorted(out)]
        for root in roots:
            base = out.get(root, ())
            for a, chain in sorted(self.controllers_of(root).items()):
                add(a, (*base, *chain))
        for root in [platform_id, *sorted(out)]:
            base = out.get(root, ())
            for x, chain in sorted(self.controlled_by(root).items()):
                add(x, (*base, *chain))
        self._memo[platform_id] = out
        return out
