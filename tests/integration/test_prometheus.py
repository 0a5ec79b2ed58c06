"""Integration: the Prometheus kit (deploy/prometheus) and a real scrape.

``promtool`` checks the scrape configuration and the rules and runs the
rules' unit tests; then a real ``fundflow replay --metrics-port`` subprocess
on a simulated world is scraped over HTTP while it lingers, the scrape passes
``promtool check metrics``, and its counters equal the replay's
``--summary-json`` figures.

Lint warnings from ``promtool check metrics`` fail the test like errors do:
the exposition lints clean, and a warning (a counter without ``_total``, a
missing HELP, a unit outside the name) is a naming mistake to fix, not to
allow-list.

Needs ``promtool`` (``deploy/prometheus/ci-install.sh`` installs Debian's
``prometheus`` package) and the ``prometheus-client`` package. Without them
the tests are skipped on a laptop and fail in CI (``CI`` set), so a CI that
forgot the install step cannot pass by skipping.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from fundflow.simulate import write_world

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "prometheus"
RULES = sorted((KIT / "rules").glob("fundflow-*.yml"))
RULE_FILES = [p for p in RULES if not p.name.endswith(".test.yml")]
RULE_TESTS = [p for p in RULES if p.name.endswith(".test.yml")]

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

pytestmark = pytest.mark.integration


def _missing(what: str) -> None:
    message = f"{what} (run deploy/prometheus/ci-install.sh / pip install prometheus-client)"
    if IN_CI:
        pytest.fail(f"CI is set but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        _missing("promtool is not installed")
    return path


@pytest.fixture(scope="module")
def prometheus_client() -> None:
    if importlib.util.find_spec("prometheus_client") is None:
        _missing("the prometheus-client package is not installed")


def _promtool(promtool: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], input=stdin, capture_output=True, timeout=120, cwd=KIT)


def _out(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr).decode(errors="replace")


# -- the kit ----------------------------------------------------------------------


def test_the_kit_has_rules_and_their_tests() -> None:
    names = {p.name for p in RULES}
    assert {"fundflow-alerts.yml", "fundflow-recording.yml", "fundflow-alerts.test.yml"} <= names


def test_promtool_check_config(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, _out(result)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in _out(result)


def test_promtool_check_rules(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, _out(result)
    assert "FAILED" not in _out(result)


def test_promtool_test_rules(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, _out(result)
    assert "SUCCESS" in _out(result)


def test_every_rule_is_tested_firing_and_quiet() -> None:
    # promtool passes a rule nobody tested: check that each alerting rule has
    # a case where it fires and one where it does not, and each recording
    # rule an expression test. (A plain scan: the files are ours and regular.)
    rules = "\n".join(p.read_text() for p in RULE_FILES)
    tests = "\n".join(p.read_text() for p in RULE_TESTS)
    alerts = set(re.findall(r"^\s*- alert: (\w+)", rules, re.M))
    records = set(re.findall(r"^\s*- record: (\S+)", rules, re.M))
    cases = re.findall(r"alertname: (\w+)\s*\n\s*exp_alerts:[ \t]*(\[\])?", tests)
    firing = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    assert len(alerts) == 6 and len(records) == 4
    assert alerts - firing == set(), "rules never tested firing"
    assert alerts - quiet == set(), "rules never tested quiet"
    assert (firing | quiet) - alerts == set(), "tests of rules that do not exist"
    tested = set(re.findall(r"^\s*- expr: (\S+)\s*$", tests, re.M))
    assert records - tested == set(), "recording rules without an expression test"


# -- a real replay, scraped ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


@pytest.fixture(scope="module")
def scraped(prometheus_client: None, tmp_path_factory: pytest.TempPathFactory):
    """Replays a simulated world with --metrics-port and --metrics-linger,
    scrapes /metrics once the summary is written, then ends the linger with
    SIGTERM. Yields (exposition text, summary figures, stderr, exit code)."""
    work = tmp_path_factory.mktemp("scrape")
    write_world(work, seed=1)
    port = _free_port()
    summary_path = work / "summary.json"
    stderr_path = work / "stderr.txt"
    cmd = [
        sys.executable,
        "-m",
        "fundflow.cli",
        "replay",
        str(work / "world.jsonl"),
        "--no-db",
        "--alerts-out",
        str(work / "alerts.jsonl"),
        "--deadletter-out",
        str(work / "dead.jsonl"),
        "--summary-json",
        str(summary_path),
        "--no-progress",
        "--metrics-port",
        str(port),
        "--metrics-linger",
        "120",
    ]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=work)
    try:
        deadline = time.monotonic() + 180
        while not summary_path.exists():
            if proc.poll() is not None:
                pytest.fail(f"replay ended early ({proc.returncode}): {stderr_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("replay did not finish in 180 s")
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
            text = response.read().decode()
        assert proc.poll() is None, "the endpoint must stay up during --metrics-linger"
        proc.terminate()
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    yield text, json.loads(summary_path.read_text()), stderr_path.read_text(), code


def test_replay_serves_on_loopback_and_sigterm_ends_the_linger(scraped) -> None:
    _, _, stderr, code = scraped
    assert code == 0, stderr
    assert stderr.splitlines()[0].startswith("fundflow: metrics on http://127.0.0.1:")


def test_scrape_passes_promtool_check_metrics(promtool: str, scraped) -> None:
    text = scraped[0]
    result = _promtool(promtool, "check", "metrics", stdin=text.encode())
    # Lint problems exit non-zero and print the metric: both fail the test.
    assert result.returncode == 0, _out(result)
    assert _out(result).strip() == "", _out(result)


def test_scraped_counters_equal_the_summary(scraped) -> None:
    text, summary, _, _ = scraped
    samples = _samples(text)

    def total(name: str, **match: str) -> float:
        return sum(
            v
            for n, labels, v in samples
            if n == name and all(labels.get(k) == x for k, x in match.items())
        )

    def by(name: str, *keys: str) -> dict[tuple[str, ...], int]:
        out: Counter[tuple[str, ...]] = Counter()
        for n, labels, v in samples:
            if n == name and v:
                out[tuple(labels[k] for k in keys)] += int(v)
        return dict(out)

    assert total("fundflow_records_in_total") == summary["read"] > 50_000
    assert total("fundflow_records_in_total", kind="invalid") == sum(
        summary["dead_letters"].values()
    ) - summary["dead_letters"].get("too_late", 0)
    assert total("fundflow_accepted_total") == summary["accepted"]
    assert total("fundflow_duplicates_total") == summary["duplicates"]
    assert by("fundflow_dead_letters_total", "reason") == {
        (r,): n for r, n in summary["dead_letters"].items()
    }
    raised = by("fundflow_alerts_raised_total", "detector")
    assert raised == {(d,): n for d, n in summary["alerts"].items()}
    updated = total("fundflow_alerts_updated_total")
    assert sum(raised.values()) + updated == summary["alert_revisions"]
    assert by("fundflow_open_alerts", "detector", "severity") == {
        (d, s): n for d, sevs in summary["alerts_by_severity"].items() for s, n in sevs.items()
    }


def test_scrape_carries_the_gauges_and_the_histogram(scraped) -> None:
    text, summary, _, _ = scraped
    samples = _samples(text)
    names = {n for n, _, _ in samples}
    for name in (
        "fundflow_build_info",
        "fundflow_processing_seconds_bucket",
        "fundflow_event_time_lag_seconds",
        "fundflow_last_record_timestamp_seconds",
        "fundflow_state_subjects",
        "fundflow_state_accounts",
        "fundflow_state_edges",
        "fundflow_reserve_coverage_ratio",
        "fundflow_pooled_amount_yuan",
        "fundflow_mismatch_exposure_yuan",
        "process_start_time_seconds",
    ):
        assert name in names, name
    (count,) = [v for n, _, v in samples if n == "fundflow_processing_seconds_count"]
    assert 0 < count <= summary["read"] // 4096
    (info,) = [labels for n, labels, _ in samples if n == "fundflow_build_info"]
    assert info["mode"] == "replay"


def test_a_busy_port_is_a_one_line_error(prometheus_client: None, tmp_path: Path) -> None:
    dump = tmp_path / "empty.jsonl"
    dump.write_bytes(b"")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "fundflow.cli",
                "replay",
                str(dump),
                "--no-db",
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"fundflow: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    ]
