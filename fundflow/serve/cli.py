"""``fundflow serve`` and ``fundflow users``.

``serve`` runs the triage API and web page on uvicorn over the alert store
(``--db``, the same default as ``fundflow alerts``) and logs one line with
its URL when it listens. ``users`` manages who may sign in: ``add``,
``list``, ``passwd``, ``role``, ``disable``, ``token`` (prints an API token
once; the store keeps its SHA-256). A password is read from the terminal
(twice), from ``--password-file`` (its first line) or from stdin with
``--password-stdin``; it never appears on the command line. Every user
error is one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from fundflow.alerts_cli import DEFAULT_DB
from fundflow.store import StoreError, open_store
from fundflow.text_table import format_table

from .auth import (
    ROLES,
    check_password_rules,
    check_user_name,
    hash_password,
    new_api_token,
    token_hash,
)


class ServeCliError(click.ClickException):
    """One line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"fundflow: {self.format_message()}", err=True)


_db_option = click.option(
    "--db", default=DEFAULT_DB, show_default=True, metavar="PATH|URL",
    help="Alert store: a SQLite file, or a postgresql:// URL.",
)  # fmt: skip


@contextmanager
def _store(db: str) -> Iterator[Any]:
    try:
        store = open_store(db)
    except StoreError as e:
        raise ServeCliError(str(e)) from None
    try:
        yield store
    except (StoreError, ValueError) as e:
        raise ServeCliError(str(e)) from None
    finally:
        store.close()


@click.command("serve")
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8700, show_default=True,
              help="Port (0: any free one; the ready line names it).")  # fmt: skip
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option("--config", "config_path", metavar="FILE", help="Configuration (TOML).")
@click.option("--data", multiple=True, metavar="DUMP",
              help="Dump the alert graphs are built from (repeatable); without, a graph "
              "shows what the alert names.")  # fmt: skip
@click.option("--anonymous-loopback-viewer", is_flag=True,
              help="Let requests from this machine (loopback) read without signing in, "
              "as a viewer. Off by default: nothing is served without sign-in.")  # fmt: skip
@click.option("--session-hours", type=click.FloatRange(0.01, 720), default=12.0,
              show_default=True, help="How long a sign-in lasts.")  # fmt: skip
@click.option("--pool", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Store connections, opened before listening and shared by the requests.")  # fmt: skip
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option("--deliver/--no-deliver", default=True, show_default=True,
              help="Deliver the [[webhooks]] of --config from this process (run one "
              "deliverer per store: --no-deliver when `fundflow notify` does it).")  # fmt: skip
def serve_cmd(
    db: str, host: str, port: int, cert: str | None, key: str | None, config_path: str | None,
    data: tuple[str, ...], anonymous_loopback_viewer: bool, session_hours: float,
    pool: int, access_log: bool, deliver: bool,
) -> None:  # fmt: skip
    """Serve the triage API (/api/v1, described in docs/openapi.json) and
    the web page over the alert store, until interrupted; with --config
    naming [[webhooks]], deliver their notices too."""
    import uvicorn

    from fundflow.detectors import load_config
    from fundflow.notify import load_hooks
    from fundflow.replay import ReplayError, check_inputs

    from .app import create_app
    from .state import ServeSettings, ServeState

    if (cert is None) != (key is None):
        raise ServeCliError("TLS needs both --cert and --key")
    try:
        config = load_config(config_path)
        hooks = load_hooks(config_path, required=False) if config_path else ()
        if data:
            check_inputs(list(data))
    except (ValueError, ReplayError) as e:
        raise ServeCliError(str(e)) from None
    settings = ServeSettings(
        db=db, host=host, port=port, config_path=config_path, data=data,
        anonymous_loopback_viewer=anonymous_loopback_viewer, secure_cookie=cert is not None,
        session_hours=session_hours, hooks=tuple(h.name for h in hooks), pool=pool,
    )  # fmt: skip
    state = ServeState(settings, config)
    try:
        state.open()  # a missing or unreadable store is refused before listening
    except StoreError as e:
        raise ServeCliError(str(e)) from None
    app = create_app(settings, state)
    uv_config = uvicorn.Config(
        app, host=host, port=port, ssl_certfile=cert, ssl_keyfile=key,
        log_level="warning", access_log=access_log, server_header=False,
        proxy_headers=False, lifespan="on",
    )  # fmt: skip
    server = uvicorn.Server(uv_config)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        delivering = None
        stop = asyncio.Event()
        if server.started:
            if hooks and deliver:
                delivering = asyncio.create_task(_deliver(db, hooks, stop))
            sock = server.servers[0].sockets[0].getsockname()
            scheme = "https" if cert else "http"
            shown = f"[{sock[0]}]" if ":" in sock[0] else sock[0]
            extra = [f"store {_shown_db(db)}, {pool} connection{'s' if pool > 1 else ''}"]
            if anonymous_loopback_viewer:
                extra.append("anonymous loopback viewer")
            if delivering is not None:
                extra.append(f"delivering to {', '.join(settings.hooks)}")
            click.echo(f"fundflow serve ready: {scheme}://{shown}:{sock[1]}/ ({'; '.join(extra)})",
                       err=True)  # fmt: skip
        try:
            await task
        finally:
            stop.set()
            if delivering is not None:
                await delivering

    # The loop uvicorn would choose (uvloop when installed), as Server.run does.
    with asyncio.Runner(loop_factory=uv_config.get_loop_factory()) as runner:
        runner.run(main())
    if not server.started:
        raise ServeCliError(f"cannot listen on {host}:{port}")


async def _deliver(db: str, hooks: Any, stop: asyncio.Event) -> None:
    """The webhook deliverer (:func:`fundflow.notify.run`) on a store of its
    own, opened and used in this (the event loop's) thread, until ``stop``."""
    from fundflow.notify import run

    store = open_store(db)
    try:
        await run(store, hooks, stop)
    finally:
        store.close()


def _shown_db(db: str) -> str:
    from fundflow.store import is_postgres_url, mask_url

    return mask_url(db) if is_postgres_url(db) else db


# -- users ------------------------------------------------------------------------


@click.group("users")
def users() -> None:
    """Who may sign in to `fundflow serve`, with which role (viewer reads;
    analyst also acts on alerts and cases; admin also manages users and
    webhooks)."""


def _read_password(password_file: str | None, password_stdin: bool) -> str:
    if password_file is not None and password_stdin:
        raise ServeCliError("give one of --password-file and --password-stdin")
    if password_file is not None:
        try:
            text = Path(password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ServeCliError(
                f"cannot read {password_file}: {getattr(e, 'strerror', e)}"
            ) from None
        password = text.splitlines()[0] if text else ""
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        raise ServeCliError(
            "no terminal to ask the password on: use --password-file or --password-stdin"
        )
    try:
        check_password_rules(password)
    except ValueError as e:
        raise ServeCliError(str(e)) from None
    return password


_password_options = [
    click.option("--password-file", metavar="FILE", help="Read the password from FILE's first line."),
    click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line."),
]  # fmt: skip


def _with_password(f: Any) -> Any:
    for option in reversed(_password_options):
        f = option(f)
    return f


def _user_or_fail(store: Any, name: str) -> Any:
    user = store.get_user(name)
    if user is None:
        raise ServeCliError(f"no user {name}")
    return user


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@_with_password
@_db_option
def add_user(
    name: str, role: str, password_file: str | None, password_stdin: bool, db: str
) -> None:
    """Add a user."""
    try:
        check_user_name(name)
    except ValueError as e:
        raise ServeCliError(str(e)) from None
    with _store(db) as store:
        if store.get_user(name) is not None:
            raise ServeCliError(f"user {name} exists (users passwd / users role change it)")
        password = _read_password(password_file, password_stdin)
        store.add_user(name, role, hash_password(password))
    click.echo(f"user {name} added ({role})", err=True)


@users.command("list")
@_db_option
def list_users(db: str) -> None:
    """The users, their roles and whether they are disabled."""
    with _store(db) as store:
        found = store.list_users()
    rows = [
        (u.name, u.role, "disabled" if u.disabled else "enabled", u.created_at.isoformat()
         if isinstance(u.created_at, datetime) else str(u.created_at))
        for u in found
    ]  # fmt: skip
    for line in format_table(("name", "role", "state", "created_at"), rows):
        click.echo(line)


@users.command("passwd")
@click.argument("name")
@_with_password
@_db_option
def passwd(name: str, password_file: str | None, password_stdin: bool, db: str) -> None:
    """Set a user's password (their sessions and tokens are revoked)."""
    with _store(db) as store:
        _user_or_fail(store, name)
        password = _read_password(password_file, password_stdin)
        store.set_password(name, hash_password(password))
        store.revoke_tokens(name)
    click.echo(f"password of {name} changed; their sessions and tokens are revoked", err=True)


@users.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@_db_option
def set_role(name: str, role: str, db: str) -> None:
    """Change a user's role."""
    with _store(db) as store:
        _user_or_fail(store, name)
        store.set_role(name, role)
    click.echo(f"user {name} is now {role}", err=True)


@users.command("disable")
@click.argument("name")
@_db_option
def disable(name: str, db: str) -> None:
    """Disable a user: no sign-in, and their sessions and tokens are revoked."""
    with _store(db) as store:
        _user_or_fail(store, name)
        store.disable_user(name)
        store.revoke_tokens(name)
    click.echo(f"user {name} disabled", err=True)


@users.command("token")
@click.argument("name")
@click.option(
    "--expires-days", type=click.IntRange(1, 3650), help="Days until it expires (default: never)."
)
@_db_option
def token(name: str, expires_days: int | None, db: str) -> None:
    """Print a new API bearer token for NAME, once (the store keeps only its
    SHA-256): send it as `Authorization: Bearer <token>`."""
    with _store(db) as store:
        user = _user_or_fail(store, name)
        if user.disabled:
            raise ServeCliError(f"user {name} is disabled")
        secret = new_api_token()
        expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
        store.add_token(token_hash(secret), name, "api", expires)
    click.echo(secret)
    when = f"expires {expires.isoformat(timespec='seconds')}" if expires else "does not expire"
    click.echo(f"API token for {name} ({user.role}); it {when}; it is not shown again", err=True)
