"""The API contract suite (tests/serve/api_suite.py) over PostgreSQL: a
fresh database of the test server per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from serve.api_suite import *  # noqa: F403 - the suite's tests run here

pytestmark = pytest.mark.integration


@pytest.fixture
def db(postgres_server) -> Iterator[str]:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
