"""The Kafka commands' shell (fundflow.kafka_cli) without a broker: their
help, and ``topics create`` against local servers that are not Kafka."""

from __future__ import annotations

from click.testing import CliRunner

from fundflow.cli import main


def _help_line(command: str, option: str) -> str:
    result = CliRunner().invoke(
        main, [command, "--help"], terminal_width=200, max_content_width=200
    )
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.lstrip().startswith(option + " ")]
    return " ".join(line.split())


def test_worker_help_says_the_store_may_be_a_url() -> None:
    assert _help_line("worker", "--db") == (
        "--db PATH|URL Alert store: a SQLite file, or a postgresql:// URL. [default: fundflow.db]"
    )
