"""Scoring alerts against a simulated world's truth file.

A world's ``truth.json`` names every (detector, subject) that must alert
and every honest subject that must not alert at all. :func:`score` compares
a set of alerts with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fundflow.schemas.records import Alert


@dataclass(frozen=True)
class Score:
    found: list[tuple[str, str]]
    missed: list[tuple[str, str]]
    false_alarms: list[tuple[str, str]]
    unexpected: list[tuple[str, str]]

    @property
    def perfect(self) -> bool:
        return not (self.missed or self.false_alarms or self.unexpected)


def score(truth: dict[str, Any], alerts: Iterable[Alert]) -> Score:
    """``found``/``missed``: labelled (detector, subject) pairs with and
    without an alert; ``false_alarms``: alerts on honest subjects;
    ``unexpected``: alerts on other pairs the truth does not name."""
    expected = {(v["detector"], v["subject_id"]) for v in truth["violators"]}
    honest = {h["subject_id"] for h in truth["honest"]}
    raised = {(a.detector, a.subject_id) for a in alerts}
    return Score(
        found=sorted(expected & raised),
        missed=sorted(expected - raised),
        false_alarms=sorted(p for p in raised if p[1] in honest),
        unexpected=sorted(p for p in raised - expected if p[1] not in honest),
    )
