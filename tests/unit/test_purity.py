"""The core stays pure: detectors/ and schemas/ import no broker, database
or metrics library (house style, point 1). Checked by importing them in a
fresh interpreter where those packages cannot be imported at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = [
    "faust",
    "kafka",
    "aiokafka",
    "prometheus_client",
    "psycopg",
    "psycopg2",
    "sqlite3",
    "click",
]

_HARNESS = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Block())
for name in BLOCKED:
    sys.modules.pop(name, None)
"""


def _run_blocked(body: str) -> subprocess.CompletedProcess[str]:
    code = _HARNESS + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_core_imports_with_io_packages_blocked() -> None:
    result = _run_blocked(
        """
        import fundflow.detectors, fundflow.schemas
        from fundflow.detectors import Engine
        Engine()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("pure")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"


def test_a_blocked_import_would_be_caught() -> None:
    # The shell's store does import sqlite3: the harness must refuse it, so
    # the test above cannot pass vacuously.
    result = _run_blocked("import fundflow.store\n")
    assert result.returncode != 0
    assert "blocked: sqlite3" in result.stderr
