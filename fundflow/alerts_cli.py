"""``fundflow alerts``: read the alert store from the command line.

The group is attached to the main CLI with ``main.add_command(alerts)``.
Every subcommand takes ``--db PATH`` (default ``fundflow.db``) and only reads
it. A missing or unreadable store, an unknown alert id or an unwritable
``--out`` is one line on stderr and exit code 2 (STYLE.md, rule 6).

* ``list``   -- a table: alert_id, severity, detector, subject, amount,
  first_ts and the summary cut to fit, ordered by (first_ts, alert_id).
* ``show``   -- one alert, evidence included, as indented JSON.
* ``export`` -- ``jsonl``: one ``msgspec.json.encode(alert)`` per line, which
  decodes back to equal :class:`Alert` objects (evidence keys come out
  sorted, as the store keeps them); ``csv``: a header of the
  Alert field names, ``accounts`` and ``evidence`` as JSON text.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import click
import msgspec

from fundflow.schemas.records import SEVERITIES, Alert
from fundflow.store import SQLiteStore, StoreError, open_store

DEFAULT_DB = "fundflow.db"
SUMMARY_WIDTH = 60  # terminal columns left for the summary in `list`


class AlertsCliError(click.ClickException):
    """A one-line error that exits 2, not click's usual 1."""

    exit_code = 2


_db_option = click.option(
    "--db",
    "db",
    default=DEFAULT_DB,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Alert store (SQLite file) to read.",
)
_detector_option = click.option("--detector", help="Only alerts from this detector.")
_severity_option = click.option(
    "--severity", type=click.Choice(SEVERITIES), help="Only alerts of this severity."
)
_subject_option = click.option("--subject", help="Only alerts about this subject_id.")


@contextmanager
def _store(db: str) -> Iterator[SQLiteStore]:
    try:
        store = open_store(db)
    except StoreError as exc:
        raise AlertsCliError(str(exc)) from None
    try:
        yield store
    except StoreError as exc:
        raise AlertsCliError(str(exc)) from None
    finally:
        store.close()


@click.group("alerts")
def alerts() -> None:
    """Inspect and export alerts in the alert store."""


@alerts.command("list")
@_db_option
@_detector_option
@_severity_option
@_subject_option
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N alerts.")
def list_alerts(
    db: str, detector: str | None, severity: str | None, subject: str | None, limit: int | None
) -> None:
    """List alerts as a table, oldest first."""
    with _store(db) as store:
        found = store.list(detector=detector, severity=severity, subject=subject, limit=limit)
    for line in render_table(found):
        click.echo(line)


@alerts.command("show")
@click.argument("alert_id")
@_db_option
def show_alert(alert_id: str, db: str) -> None:
    """Print one alert, evidence included, as JSON."""
    with _store(db) as store:
        alert = store.get(alert_id)
    if alert is None:
        raise AlertsCliError(f"no alert {alert_id!r} in {db}")
    click.echo(msgspec.json.format(msgspec.json.encode(alert), indent=2).decode())


@alerts.command("export")
@_db_option
@_detector_option
@_severity_option
@_subject_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="File to write; '-' (default) is stdout.",
)
def export_alerts(
    db: str, detector: str | None, severity: str | None, subject: str | None, fmt: str, out: str
) -> None:
    """Write alerts as JSON lines or CSV, oldest first."""
    with _store(db) as store:
        found = store.iter(detector=detector, severity=severity, subject=subject)
        try:
            stream = click.open_file(out, "wb")
        except OSError as exc:
            raise AlertsCliError(f"cannot write {out}: {exc.strerror or exc}") from None
        with stream:
            if fmt == "jsonl":
                write_jsonl(found, stream)
            else:
                write_csv(found, stream)


def write_jsonl(found: Iterator[Alert] | list[Alert], stream: IO[bytes]) -> None:
    """One ``msgspec.json.encode(alert)`` per line."""
    for alert in found:
        stream.write(msgspec.json.encode(alert) + b"\n")


def write_csv(found: Iterator[Alert] | list[Alert], stream: IO[bytes]) -> None:
    """Header of the Alert field names, then one row per alert (UTF-8, ``\\n``)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(Alert.__struct_fields__)
    for alert in found:
        row = msgspec.structs.asdict(alert)
        for name in ("accounts", "evidence"):
            row[name] = msgspec.json.encode(row[name], order="deterministic").decode()
        writer.writerow(row.values())
    text.detach()  # leave `stream` open for its owner to close


_COLUMNS = ("alert_id", "severity", "detector", "subject", "amount", "first_ts", "summary")


def render_table(found: list[Alert]) -> list[str]:
    """The ``list`` table as lines: a header, then one line per alert.

    Columns are padded by display width (Chinese characters take two
    terminal columns); the amount is right-aligned; the summary is cut to
    :data:`SUMMARY_WIDTH` columns with a trailing ``…``.
    """
    rows = [
        (a.alert_id, a.severity, a.detector, a.subject_id, a.amount, a.first_ts,
         _truncate(a.summary, SUMMARY_WIDTH))
        for a in found
    ]  # fmt: skip
    # The summary is last and unpadded, so only the other columns need widths.
    widths = [max(_width(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS) - 1)]
    lines = []
    for i, row in enumerate([_COLUMNS, *rows]):
        cells = [_pad(row[col], w, right=(col == 4 and i > 0)) for col, w in enumerate(widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)


def _pad(s: str, width: int, right: bool = False) -> str:
    fill = " " * (width - _width(s))
    return fill + s if right else s + fill


def _truncate(s: str, width: int) -> str:
    s = " ".join(s.split())  # a summary is one line in a table
    if _width(s) <= width:
        return s
    out, used = [], 0
    for ch in s:
        used += _width(ch)
        if used > width - 1:
            break
        out.append(ch)
    return "".join(out) + "…"
