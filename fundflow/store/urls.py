"""Store URLs: which backend a ``db`` names, and passwords kept out of
messages and logs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

from .base import StoreError

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | os.PathLike[str]) -> bool:
    """Whether ``db`` names a PostgreSQL store (``postgresql://``, ``postgres://``)."""
    return isinstance(db, str) and db.startswith(_PG_SCHEMES)


def check_not_other_url(db: str | os.PathLike[str]) -> None:
    """:class:`StoreError` when ``db`` is a URL of some other scheme."""
    text = os.fspath(db)
    if isinstance(text, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"unsupported alert store URL scheme {scheme!r}: "
            "use a SQLite file path or a postgresql:// URL"
        )


# libpq's URI: scheme://[userinfo@]hosts[/dbname][?params]. The userinfo ends
# at the last '@' before the first '/' or '?' after the scheme.
_URL_AUTHORITY = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<authority>[^/?]*)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs).

    >>> mask_url("postgresql://alice:s3cret@db.example:5432/fundflow?sslmode=verify-full")
    'postgresql://alice:***@db.example:5432/fundflow?sslmode=verify-full'
    >>> mask_url("postgres://db/fundflow?user=alice&password=s3cret")
    'postgres://db/fundflow?user=alice&password=***'
    """
    m = _URL_AUTHORITY.match(url)
    if m and "@" in m["authority"]:
        userinfo, _, hosts = m["authority"].rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        url = m["scheme"] + userinfo + "@" + hosts + url[m.end() :]
    return _QUERY_PASSWORD.sub(r"\1***", url)


def url_secrets(url: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The password strings ``url`` (raw and percent-decoded) and ``PGPASSWORD``
    carry, longest first: what :func:`scrub` removes from a message."""
    found: list[str] = []
    m = _URL_AUTHORITY.match(url)
    if m and "@" in m["authority"]:
        userinfo = m["authority"].rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [q.group(2) for q in _QUERY_PASSWORD.finditer(url)]
    env_password = (os.environ if env is None else env).get("PGPASSWORD")
    if env_password:
        found.append(env_password)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(message: str, secrets: Iterable[str]) -> str:
    """``message`` on one line, with every secret replaced by ``***``."""
    text = " ".join(message.split())
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
