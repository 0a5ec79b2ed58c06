"""``fundflow alerts``: read and triage the alert store from the command line.

The group is attached to the main CLI with ``main.add_command(alerts)``.
Every subcommand takes ``--db`` (default ``fundflow.db``): a SQLite file, or
a ``postgresql://`` / ``postgres://`` URL (libpq's: ``sslmode=...``,
``PGPASSWORD``, ``PGPASSFILE`` work; see deploy/postgres/README.md). None of
them creates a store. A missing or unreadable store, an unknown alert id, a
``--detector``, ``--severity`` or ``--status`` naming none the engine knows
(the line lists those it knows), a move the lifecycle forbids or an
unwritable ``--out`` is one line on stderr and exit code 2 (STYLE.md,
rule 6); a password never appears in it.

* ``list``   -- a table: alert_id, status, severity, detector, subject,
  amount, first_ts and the summary cut to fit, ordered by
  (first_ts, alert_id); ``--status`` keeps one status.
* ``show``   -- one alert, evidence included, as indented JSON, followed by
  its ``status`` and its audit trail ``events`` (it still decodes as an
  :class:`Alert`: the two extra keys are ignored).
* ``export`` -- ``jsonl``: one ``msgspec.json.encode(alert)`` per line, which
  decodes back to equal :class:`Alert` objects (evidence keys come out
  sorted, as the store keeps them); ``csv``: a header of the
  Alert field names and ``status``, ``accounts`` and ``evidence`` as JSON
  text.
* ``ack ID --by NAME [--note TEXT]``   -- open → acknowledged.
* ``close ID --by NAME [--note TEXT]`` -- open or acknowledged → closed.
  Both write the audit trail and print one line; they are the only
  subcommands that write (an older SQLite file is migrated first).

The store keeps audit times in UTC; ``show``, ``ack`` and ``close`` print
them in the zone alert times are written in, ``engine.zone`` of
``--config`` (Asia/Shanghai by default).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO
from zoneinfo import ZoneInfo

import click
import msgspec

from fundflow.detectors import load_config
from fundflow.detectors.engine import DETECTORS, TYPOLOGIES
from fundflow.schemas.records import SEVERITIES, Alert
from fundflow.store import STATUSES, AlertEvent, AlertStore, StoreError, open_store
from fundflow.text_table import format_table

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
    metavar="PATH|URL",
    help="Alert store: a SQLite file, or a postgresql:// URL.",
)
#: Every detector the engine can run, in its registry's order.
KNOWN_DETECTORS: tuple[str, ...] = (*DETECTORS, *TYPOLOGIES)


def _one_of(what: str, known: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """A click callback refusing a value outside ``known`` in one line (a
    filter that can match nothing is a typo, not an empty result)."""

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None or value in known:
            return value
        raise AlertsCliError(f"--{param.name}: unknown {what} {value!r}; known: {', '.join(known)}")

    return check


_detector_option = click.option(
    "--detector",
    metavar="NAME",
    callback=_one_of("detector", KNOWN_DETECTORS),
    help="Only alerts from this detector.",
)
_severity_option = click.option(
    "--severity",
    metavar="[" + "|".join(SEVERITIES) + "]",
    callback=_one_of("severity", SEVERITIES),
    help="Only alerts of this severity.",
)
_subject_option = click.option("--subject", help="Only alerts about this subject_id.")
_status_option = click.option(
    "--status",
    metavar="[" + "|".join(STATUSES) + "]",
    callback=_one_of("status", STATUSES),
    help="Only alerts with this status.",
)


def _actor(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must name who acts")
    return value.strip()


_config_option = click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="Configuration (TOML) whose engine.zone the audit times are printed in "
    "(default: Asia/Shanghai, as alert times).",
)


def _zone(config_path: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(load_config(config_path).engine.zone)
    except ValueError as exc:
        raise AlertsCliError(str(exc)) from None


_by_option = click.option(
    "--by", "by", required=True, callback=_actor, metavar="NAME", help="Who acts (audit trail)."
)
_note_option = click.option("--note", metavar="TEXT", help="Why (audit trail).")


@contextmanager
def _store(db: str) -> Iterator[AlertStore]:
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
    """Inspect, triage and export alerts in the alert store."""


@alerts.command("list")
@_db_option
@_detector_option
@_severity_option
@_subject_option
@_status_option
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N alerts.")
def list_alerts(
    db: str,
    detector: str | None,
    severity: str | None,
    subject: str | None,
    status: str | None,
    limit: int | None,
) -> None:
    """List alerts as a table, oldest first."""
    with _store(db) as store:
        found = [
            *store.iter_with_status(
                detector=detector, severity=severity, subject=subject, status=status, limit=limit
            )
        ]
    for line in render_table(found):
        click.echo(line)


@alerts.command("show")
@click.argument("alert_id")
@_db_option
@_config_option
def show_alert(alert_id: str, db: str, config_path: str | None) -> None:
    """Print one alert, evidence included, with its status and audit trail, as JSON."""
    zone = _zone(config_path)
    with _store(db) as store:
        alert = store.get(alert_id)
        if alert is None:
            raise AlertsCliError(f"no alert {alert_id!r} in {store.name}")
        shown = msgspec.to_builtins(alert)
        shown["status"] = store.status(alert_id)
        shown["events"] = [_event_json(e, zone) for e in store.events(alert_id)]
    click.echo(msgspec.json.format(msgspec.json.encode(shown), indent=2).decode())


def _event_json(event: AlertEvent, zone: ZoneInfo) -> dict[str, object]:
    return {
        "at": _local_time(event, zone),
        "action": event.action,
        "actor": event.actor,
        "note": event.note,
    }


@alerts.command("ack")
@click.argument("alert_id")
@_by_option
@_note_option
@_db_option
@_config_option
def ack_alert(alert_id: str, by: str, note: str | None, db: str, config_path: str | None) -> None:
    """Acknowledge an open alert: someone is looking into it."""
    zone = _zone(config_path)
    with _store(db) as store:
        event = store.ack(alert_id, by=by, note=note)
    click.echo(_event_line(event, zone))


@alerts.command("close")
@click.argument("alert_id")
@_by_option
@_note_option
@_db_option
@_config_option
def close_alert(alert_id: str, by: str, note: str | None, db: str, config_path: str | None) -> None:
    """Close an open or acknowledged alert. It reopens by itself if it grows."""
    zone = _zone(config_path)
    with _store(db) as store:
        event = store.close_alert(alert_id, by=by, note=note)
    click.echo(_event_line(event, zone))


def _event_line(event: AlertEvent, zone: ZoneInfo) -> str:
    return f"{event.alert_id} {event.action} by {event.actor} at {_local_time(event, zone)}"


def _local_time(event: AlertEvent, zone: ZoneInfo) -> str:
    """When an audit event happened, in the configured zone (alert times
    are written in it), to the microsecond."""
    return event.at.astimezone(zone).isoformat(timespec="microseconds")


@alerts.command("export")
@_db_option
@_detector_option
@_severity_option
@_subject_option
@_status_option
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
    db: str,
    detector: str | None,
    severity: str | None,
    subject: str | None,
    status: str | None,
    fmt: str,
    out: str,
) -> None:
    """Write alerts as JSON lines or CSV, oldest first."""
    with _store(db) as store:
        found = store.iter_with_status(
            detector=detector, severity=severity, subject=subject, status=status
        )
        try:
            stream = click.open_file(out, "wb")
        except OSError as exc:
            raise AlertsCliError(f"cannot write {out}: {exc.strerror or exc}") from None
        with stream:
            if fmt == "jsonl":
                write_jsonl((alert for alert, _ in found), stream)
            else:
                write_csv(found, stream)


def write_jsonl(found: Iterable[Alert], stream: IO[bytes]) -> None:
    """One ``msgspec.json.encode(alert)`` per line."""
    for alert in found:
        stream.write(msgspec.json.encode(alert) + b"\n")


def write_csv(found: Iterable[tuple[Alert, str]], stream: IO[bytes]) -> None:
    """Header of the Alert field names and ``status``, then one row per
    ``(alert, status)`` (UTF-8, ``\\n``)."""
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for alert, status in found:
        writer.writerow(csv_row(alert, status))
    text.detach()  # leave `stream` open for its owner to close


#: The header row of a CSV export.
CSV_HEADER = (*Alert.__struct_fields__, "status")


def csv_row(alert: Alert, status: str) -> list[object]:
    """One CSV export row: the Alert fields (``accounts`` and ``evidence``
    as JSON text) and ``status``."""
    row = msgspec.structs.asdict(alert)
    for name in ("accounts", "evidence"):
        row[name] = msgspec.json.encode(row[name], order="deterministic").decode()
    return [*row.values(), status]


_COLUMNS = (
    "alert_id", "status", "severity", "detector", "subject", "amount", "first_ts", "summary",
)  # fmt: skip


def render_table(found: list[tuple[Alert, str]]) -> list[str]:
    """The ``list`` table as lines: a header, then one line per
    ``(alert, status)``, laid out by :func:`~fundflow.text_table.format_table`
    (Chinese characters take two terminal columns); the amount is
    right-aligned; the summary is cut to :data:`SUMMARY_WIDTH` columns with
    a trailing ``…``.
    """
    rows = [
        (a.alert_id, status, a.severity, a.detector, a.subject_id, a.amount, a.first_ts, a.summary)
        for a, status in found
    ]
    return format_table(_COLUMNS, rows, right={_COLUMNS.index("amount")}, last_width=SUMMARY_WIDTH)
