"""``fundflow notify``: the webhook deliverer (:mod:`fundflow.notify`) alone.

``fundflow serve`` runs the same loop as a background task; this command is
for a store with no triage service in front of it, or a deliverer of its
own beside one. Several deliverers on one store may send a notice twice
(receivers deduplicate on ``X-Fundflow-Delivery``), never lose one.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from fundflow.notify import POLL_SECONDS, load_hooks, run

DEFAULT_DB = "fundflow.db"


class NotifyError(click.ClickException):
    """One line on stderr, exit code 2 (a bad flag, config or store)."""

    exit_code = 2

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"fundflow: {self.format_message()}", err=True)


@click.command("notify")
@click.option(
    "--db",
    default=DEFAULT_DB,
    show_default=True,
    metavar="PATH|URL",
    help="Alert store: a SQLite file, or a postgresql:// URL.",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    metavar="FILE",
    help="The TOML configuration whose [[webhooks]] tables name the hooks.",
)
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option(
    "--poll-seconds",
    default=POLL_SECONDS,
    show_default=True,
    type=click.FloatRange(0.05, 3600),
    help="How often to look for due deliveries when there are none.",
)
def notify_cmd(db: str, config_path: str, once: bool, poll_seconds: float) -> None:
    """Deliver the alert store's webhook notices (new alerts, severity
    rises), signed, at least once, until SIGTERM or SIGINT. Failed
    deliveries are retried with backoff and end dead after max_attempts;
    one line per failure on stderr. With --once, prints
    `delivered N, failed N, dead N, skipped N` and exits 0."""
    from fundflow.store import StoreError, open_store

    try:
        hooks = load_hooks(config_path)
    except ValueError as e:
        raise NotifyError(str(e)) from None
    logging.basicConfig(level=logging.INFO, format="fundflow notify: %(message)s")
    try:
        store = open_store(db)
    except StoreError as e:
        raise NotifyError(str(e)) from None
    try:
        total = asyncio.run(_main(store, hooks, once, poll_seconds))
    except StoreError as e:
        raise NotifyError(str(e)) from None
    finally:
        store.close()
    if once:
        click.echo(
            f"delivered {total.delivered}, failed {total.failed}, dead {total.dead}, "
            f"skipped {total.skipped}",
            err=True,
        )


async def _main(store, hooks, once: bool, poll_seconds: float):  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await run(store, hooks, stop, poll_seconds=poll_seconds, once=once)
