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

from .replay import AtomicFile, replay
from .simulate import write_world
from .store import SQLiteSink, SQLiteStore
from .text_table import format_table
from .truth import score

#: Terminal columns of the alert table's summary, the ``…`` included.
SUMMARY_WIDTH = 110


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
    rows = [
        (a.severity, a.detector, a.subject_id, a.amount, a.summary)
        for a in sorted(stored, key=lambda a: (a.detector, a.subject_id, a.first_ts))
    ]
    for line in format_table(
        ("severity", "detector", "subject", "amount (yuan)", "summary"),
        rows,
        right={3},
        last_width=SUMMARY_WIDTH,
    ):
        click.echo(line)
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
