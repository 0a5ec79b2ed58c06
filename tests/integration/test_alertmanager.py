"""Integration: the Alertmanager kit (deploy/alertmanager) checked by amtool.

``amtool check-config`` validates the configuration, and ``amtool config
routes test`` shows which receiver each ``severity`` of the Prometheus rules
(deploy/prometheus/rules/) reaches: every severity a rule sets has its own
route, so no alert falls through to the default by a typo.

Needs ``amtool`` (``deploy/alertmanager/ci-install.sh`` installs Debian's
``prometheus-alertmanager``): skipped on a laptop without it, a failure in
CI (``CI`` set).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "deploy" / "alertmanager"
CONFIG = KIT / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules" / "fundflow-alerts.yml"

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")

pytestmark = pytest.mark.integration

# The receiver each monitoring severity must reach.
ROUTES = {"page": "on-call-webhook", "ticket": "ops-email"}


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        message = "amtool is not installed (run deploy/alertmanager/ci-install.sh)"
        if IN_CI:
            pytest.fail(f"CI is set but {message}", pytrace=False)
        pytest.skip(message)
    return path


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, cwd=KIT)


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def rule_severities() -> dict[str, str]:
    """alertname -> severity label of the alerting rules (a plain scan: the
    file is ours and regular)."""
    text = RULES.read_text()
    names = re.findall(r"^\s*- alert: (\w+)", text, re.M)
    severities = re.findall(r"^\s*severity: (\w+)", text, re.M)
    assert len(names) == len(severities) == 6
    return dict(zip(names, severities, strict=True))


def test_amtool_check_config(amtool: str) -> None:
    result = _amtool(amtool, "check-config", CONFIG.name)
    assert result.returncode == 0, _out(result)
    out = _out(result)
    assert "SUCCESS" in out
    assert " - 2 receivers" in out and " - 1 inhibit rules" in out


def test_check_config_rejects_a_broken_file(amtool: str, tmp_path: Path) -> None:
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(CONFIG.read_text().replace("receiver: on-call-webhook", "receiver: nobody"))
    result = _amtool(amtool, "check-config", str(bad))
    assert result.returncode != 0
    assert 'undefined receiver "nobody"' in _out(result)


@pytest.mark.parametrize("severity", sorted(set(rule_severities().values())))
def test_each_rule_severity_reaches_its_receiver(amtool: str, severity: str) -> None:
    assert severity in ROUTES, f"rules use severity {severity!r}, which has no route"
    result = _amtool(
        amtool, "config", "routes", "test", f"--config.file={CONFIG.name}", f"severity={severity}"
    )
    assert result.returncode == 0, _out(result)
    assert result.stdout.strip() == ROUTES[severity]


def test_an_unknown_severity_still_reaches_the_ticket_queue(amtool: str) -> None:
    result = _amtool(
        amtool, "config", "routes", "test", f"--config.file={CONFIG.name}", "severity=typo"
    )
    assert result.returncode == 0, _out(result)
    assert result.stdout.strip() == "ops-email"


def test_inhibit_rules_name_alerts_that_exist() -> None:
    text = CONFIG.read_text()
    named = set()
    for matcher in re.findall(r'alertname=~?\\?"([^"\\]+)', text):
        named.update(matcher.split("|"))
    assert named == {
        "FundflowDown", "FundflowNoRecords", "FundflowConsumerLagGrowing",
        "FundflowDeadLettersHigh",
    }  # fmt: skip
    assert named <= set(rule_severities())
