"""Writes the JSON Schema files of the wire format (``schemas/json/``).

The files are generated from the msgspec wire structs
(:func:`fundflow.schemas.wire.json_schemas`) and the alert record
(:func:`fundflow.schemas.wire.alert_json_schema`): one ``<kind>.schema.json``
per record kind plus ``alert.schema.json``. The output is pretty JSON with
sorted keys and a trailing newline, so the same structs always give the same
bytes and a test can fail when the committed files drift from the code.

Regenerate the committed files after changing a wire struct::

    python -m fundflow.schema_files            # into schemas/json/
    python -m fundflow.schema_files OUT_DIR    # anywhere else
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import fundflow.schemas
from fundflow.schemas.wire import alert_json_schema, json_schemas


def default_dir() -> Path:
    """Where the committed schema files live: ``json/`` beside the schemas package."""
    return Path(fundflow.schemas.__file__).resolve().parent / "json"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name to JSON Schema document, for every file this module writes."""
    docs = {f"{kind}.schema.json": doc for kind, doc in json_schemas().items()}
    docs["alert.schema.json"] = alert_json_schema()
    return docs


def render(doc: dict[str, Any]) -> bytes:
    """The exact bytes written for one schema document."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_schema_files(directory: str | Path) -> list[Path]:
    """Writes every schema file into ``directory`` (created if missing) and
    returns their paths, sorted. Files already there under other names are
    left alone."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in sorted(schema_documents().items()):
        path = out / name
        path.write_bytes(render(doc))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m fundflow.schema_files [DIR]", file=sys.stderr)
        return 2
    directory = Path(args[0]) if args else default_dir()
    try:
        paths = write_schema_files(directory)
    except OSError as e:
        print(
            f"error: cannot write schema files to {directory}: {e.strerror or e}", file=sys.stderr
        )
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
