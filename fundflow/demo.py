"""``fundflow demo``: the embedded default, end to end, with no broker.

Simulates a world, replays it through every detector into a SQLite store
and JSONL files in one folder, prints the summary and the alerts, and scores
them against the world's truth file.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fundflow.detectors import load_config
from fundflow.detectors.engine import DETECTORS, TYPOLOGIES

from .replay import AtomicFile, replay
from .simulate import write_world
from .store import SQLiteSink, SQLiteStore
from .truth import score


def run_demo(folder: Path, *, seed: int = 1, scale: int = 1) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    click.echo(f"simulating a world (seed {seed}, scale {scale}) in {folder}/ ...", err=True)
    truth = write_world(folder, seed=seed, scale=scale)
    db = folder / "fundflow.db"
    if db.exists():
        db.unlink()
    alerts_file = AtomicFile(str(folder / "alerts.jsonl"))
    dead_file = AtomicFile(str(folder / "deadletter.jsonl"))
    with SQLiteSink(str(db)) as sink:
        summary = replay(
            [str(folder / "world.jsonl")],
            config=load_config(),
            sink=sink,
            alerts_out=alerts_file,
            deadletter_out=dead_file,
            progress=False,
        )
    alerts_file.commit()
    dead_file.commit()
    (folder / "summary.json").write_text(json.dumps(summary.as_json(), indent=2) + "\n")
    click.echo(summary.render())
    stored = SQLiteStore(str(db)).list()
    click.echo("")
    # The detector column fits the longest detector name, run or stored.
    width = max(len(name) for name in (*DETECTORS, *TYPOLOGIES, *(a.detector for a in stored)))
    click.echo(
        f"{'severity':<9} {'detector':<{width}} {'subject':<10} {'amount (yuan)':>16}  summary"
    )
    for a in sorted(stored, key=lambda a: (a.detector, a.subject_id, a.first_ts)):
        text = a.summary if len(a.summary) <= 110 else a.summary[:107] + "..."
        click.echo(
            f"{a.severity:<9} {a.detector:<{width}} {a.subject_id:<10} {a.amount:>16}  {text}"
        )
    result = score(truth, stored)
    click.echo("")
    click.echo(
        f"truth: {len(result.found)}/{len(result.found) + len(result.missed)} labelled violations found, "
        f"{len(result.false_alarms)} false alarms on {len(truth['honest'])} honest subjects, "
        f"{len(result.unexpected)} other alerts"
    )
    for label, pairs in (
        ("missed", result.missed),
        ("false alarm", result.false_alarms),
        ("unexpected", result.unexpected),
    ):
        for det, subject in pairs:
            click.echo(f"  {label}: {det} on {subject}")
    click.echo(f"alerts: {db} (fundflow alerts list --db {db}), {folder / 'alerts.jsonl'}")
    return result.perfect
