"""Integration: the Grafana provisioning and dashboards (deploy/grafana/).

There is no Grafana server here, so each part a dashboard depends on is
checked against the real thing it talks to:

* structure: every dashboard parses, has a stable uid and schemaVersion >= 39,
  unique panel ids, grid boxes inside 24 columns that do not overlap, and
  every panel, target and query variable names a provisioned data source by
  uid (and the matching type);
* PromQL: every expression, template variables substituted, is written as a
  recording rule into a generated file and checked by ``promtool check
  rules``; every metric it names is one ``fundflow.prom`` really exports;
* SQL: a real PostgreSQL (conftest.py: ``postgres_server``) gets the alert
  schema from the project's migrations and the alerts of a replayed
  simulated world through its sink, Grafana's read-only role is created by
  the same script deploy/compose.yaml runs, and every panel query and
  variable query (variables substituted, ``$__`` macros expanded) runs as
  that role and returns the expected columns and rows, over the absolute
  time range deploy/README.md tells users to pick (read from it), in the
  browser time zones at both ends of the clock and the world's own;
* drill-down: every data link points at a dashboard and variable that exist.

promtool and the PostgreSQL binaries are skipped when missing on a laptop
but fail the tests when ``CI`` is set.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.simulate import write_world
from fundflow.store import open_store


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _need(module: str, install: str) -> ModuleType:
    """``module``, skipping the tests on a laptop without it; in CI (``CI``
    set) a missing module is a failure."""
    if _ci():
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"pip install {install}")


yaml = _need("yaml", "pyyaml")
PrometheusMetrics = _need("fundflow.prom", "prometheus-client").PrometheusMetrics

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "fundflow.yaml"
COMPOSE = REPO / "deploy" / "compose.yaml"
DEPLOY_README = REPO / "deploy" / "README.md"
GRID_COLUMNS = 24
# The simulated world's zone, and browser zones at the earliest and latest
# UTC offsets: Grafana reads an absolute range in the browser's zone.
WORLD_ZONE = ZoneInfo("Asia/Shanghai")
BROWSER_ZONES = ("Etc/GMT+12", "UTC", "Asia/Shanghai", "Pacific/Kiritimati")

# Series Prometheus makes itself for every target: allowed beside the app's own.
PROMETHEUS_SYNTHETIC = {"up"}

# Columns each SQL query must return, exactly, in order: (dashboard uid,
# panel title or "var:<name>", refId) -> columns. Every SQL query of the
# dashboards must be listed, so a new panel comes with its expectation.
ALERT_LIST = ["alert_id", "severity", "detector", "subject", "amount", "first_ts", "last_ts",
              "status"]  # fmt: skip
EXPECTED_COLUMNS: dict[tuple[str, str, str], list[str]] = {
    ("fundflow-overview", "Open alerts (store)", "A"): ["open_alerts"],
    ("fundflow-overview", "Open critical alerts (store)", "A"): ["open_critical"],
    ("fundflow-alerts", "Open alerts by severity (store)", "A"): [
        "critical", "high", "medium", "low"],
    ("fundflow-alerts", "Alerts", "A"): [*ALERT_LIST, "revision", "summary"],
    ("fundflow-alert-detail", "Alert", "A"): [
        *ALERT_LIST, "revision", "detector_version", "created_at", "updated_at"],
    ("fundflow-alert-detail", "Summary", "A"): ["summary"],
    ("fundflow-alert-detail", "Evidence", "A"): ["field", "value"],
    ("fundflow-alert-detail", "Accounts", "A"): ["account"],
    ("fundflow-alert-detail", "Audit trail", "A"): ["at", "action", "actor", "note"],
    ("fundflow-reserve-coverage", "var:institution", ""): ["subject_id"],
    ("fundflow-reserve-coverage", "Coverage shortfall alerts", "A"): [
        "alert_id", "institution", "severity", "coverage_ratio", "shortfall", "amount",
        "first_ts", "last_ts", "status"],
    ("fundflow-reserve-coverage", "Other reserve alerts", "A"): [
        "alert_id", "institution", "signal", "severity", "amount", "first_ts", "last_ts",
        "status", "summary"],
    ("fundflow-platform", "var:platform", ""): ["subject_id"],
    ("fundflow-platform", "Alerts of the platform", "A"): [
        "alert_id", "platform", "detector", "signal", "severity", "amount", "first_ts",
        "last_ts", "status", "summary"],
}  # fmt: skip


# --- helpers: dashboards --------------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard file, by uid (a duplicate uid is an error)."""
    boards: dict[str, dict[str, Any]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] not in boards, f"{path.name}: uid {board['uid']} used twice"
        boards[board["uid"]] = board
    return boards


def iter_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board.get("templating", {}).get("list", []))


def provisioned_datasources() -> dict[str, str]:
    """uid -> type of the provisioned data sources."""
    doc = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds["type"] for ds in doc["datasources"]}


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """``(where, refId, datasource, query text)`` for every panel target and
    query variable; ``where`` is the panel title or ``var:<name>``."""
    for panel in iter_panels(board):
        for target in panel.get("targets", []):
            ds = target.get("datasource") or panel.get("datasource")
            text = target.get("expr") if "expr" in target else target.get("rawSql", "")
            yield panel["title"], target.get("refId", ""), ds, text
    for var in variables(board):
        if var.get("type") == "query":
            query = var["query"]
            text = query.get("query", "") if isinstance(query, dict) else query
            yield f"var:{var['name']}", "", var["datasource"], text


def promql_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(where, refId, PromQL)`` of the Prometheus targets and variables
    (a variable's ``label_values(selector, label)`` gives its selector)."""
    found = []
    for where, ref, ds, text in queries(board):
        if ds.get("type") != "prometheus":
            continue
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", text, re.S)
        found.append((where, ref, m.group(1) if m else text))
    return found


def sql_queries(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(where, refId, SQL)`` of the PostgreSQL targets and variables."""
    return [
        (where, ref, text)
        for where, ref, ds, text in queries(board)
        if ds.get("type") == "grafana-postgresql-datasource"
    ]


# --- helpers: template variables and macros -------------------------------------------

# Grafana's global variables in PromQL, with values a dashboard could get.
PROM_BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h",
                 "__interval_ms": "30000", "__range_s": "3600"}  # fmt: skip


def substitute(text: str, values: dict[str, list[str]], board: dict[str, Any], dialect: str) -> str:
    """``text`` with ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]``
    replaced as Grafana does for ``dialect`` ("sql" or "promql"): a multi-value
    or include-all variable becomes ``'a','b'`` in SQL and ``(a|b)`` in PromQL
    (regex-escaped); a single value is raw, SQL quotes doubled. Unknown
    variables are an error."""
    multi = {v["name"]: bool(v.get("multi") or v.get("includeAll")) for v in variables(board)}

    def value(name: str) -> str:
        if dialect == "promql" and name in PROM_BUILTINS:
            return PROM_BUILTINS[name]
        if name not in values:
            raise AssertionError(f"{board['uid']}: no value for variable ${name} in {text!r}")
        vals = values[name]
        if dialect == "sql":
            if multi.get(name):
                return ",".join("'" + v.replace("'", "''") + "'" for v in vals)
            return vals[0].replace("'", "''")
        if multi.get(name) and len(vals) > 1:
            return "(" + "|".join(re.escape(v) for v in vals) + ")"
        return re.escape(vals[0]) if multi.get(name) else vals[0]

    pattern = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if dialect == "sql" and name.startswith("__"):
            return m.group(0)  # a macro: expand_sql_macros
        return value(name)

    return pattern.sub(repl, text)


def expand_sql_macros(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros as the data source expands them, for the
    time range ``start``..``end`` (aware datetimes). Any other ``$__``
    macro is an error: add it here when a dashboard starts using it."""
    lo, hi = f"'{start.isoformat()}'", f"'{end.isoformat()}'"
    out = re.sub(r"\$__timeFilter\(\s*([\w.]+)\s*\)", rf"\1 BETWEEN {lo} AND {hi}", sql)
    out = out.replace("$__timeFrom()", lo).replace("$__timeTo()", hi)
    out = re.sub(r"\$__unixEpochFilter\(\s*([\w.]+)\s*\)",
                 rf"\1 >= {int(start.timestamp())} AND \1 <= {int(end.timestamp())}", out)  # fmt: skip
    left = re.findall(r"\$__\w+", out)
    assert not left, f"unexpanded Grafana macros {left} in {sql!r}"
    return out


def readme_range() -> tuple[datetime, datetime]:
    """The absolute time range deploy/README.md tells users to pick for the
    simulated world, as the naive times typed into Grafana's time picker."""
    text = " ".join(DEPLOY_README.read_text(encoding="utf-8").split())
    m = re.search(r"pick the absolute time range `([\d: -]+)` to `([\d: -]+)`", text)
    assert m, "deploy/README.md names no absolute time range for the simulated world"
    return datetime.fromisoformat(m.group(1)), datetime.fromisoformat(m.group(2))


def picked_range(zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The README's range as a browser in ``zone`` sends it."""
    lo, hi = readme_range()
    return lo.replace(tzinfo=zone), hi.replace(tzinfo=zone)


# --- helpers: PromQL metric names -----------------------------------------------------

_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: bare identifiers that are not
    functions, keywords or label names, plus ``__name__`` matchers
    (alternatives of an ``=~`` regex)."""
    names = set()
    for m in re.finditer(r'__name__\s*=~?\s*"([^"]*)"', expr):
        names.update(p for p in m.group(1).split("|") if p)
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def exported_metric_names() -> set[str]:
    """Every series name the app's registry can expose, derived from its
    metric families: counters as ``_total`` (and ``_created``), histograms
    as ``_bucket``/``_sum``/``_count``, info as ``_info``, gauges as named."""
    registry = PrometheusMetrics(mode="test").registry
    names: set[str] = set()
    for family in registry.collect():
        kind, name = family.type, family.name
        names.update(s.name for s in family.samples)
        if kind == "counter":
            names.update({f"{name}_total", f"{name}_created"})
        elif kind in ("histogram", "gaugehistogram"):
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"})
        elif kind == "summary":
            names.update({name, f"{name}_sum", f"{name}_count", f"{name}_created"})
        elif kind == "info":
            names.add(f"{name}_info")
        else:
            names.add(name)
    return names


def promtool_check(rules: list[tuple[str, str]], tmp_path: Path) -> subprocess.CompletedProcess:
    """Writes ``(record name, expr)`` pairs as one recording-rule group and
    runs ``promtool check rules`` on it."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if _ci():
            pytest.fail("promtool not found (CI is set): run deploy/prometheus/ci-install.sh")
        pytest.skip("promtool not found: run deploy/prometheus/ci-install.sh")
    doc = {"groups": [{"name": "grafana-dashboards",
                       "rules": [{"record": r, "expr": e} for r, e in rules]}]}  # fmt: skip
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def record_name(uid: str, where: str, ref: str) -> str:
    return "grafana:" + re.sub(r"[^A-Za-z0-9_]+", "_", f"{uid}:{where}:{ref}").strip("_")


# --- structure ------------------------------------------------------------------------

BOARDS = load_dashboards()


def test_the_expected_dashboards_are_there():
    assert set(BOARDS) == {
        "fundflow-overview", "fundflow-alerts", "fundflow-alert-detail",
        "fundflow-reserve-coverage", "fundflow-platform",
    }  # fmt: skip


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_dashboard_structure(uid):
    board = BOARDS[uid]
    assert board["schemaVersion"] >= 39
    assert board.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert board["title"].startswith("fundflow")
    panels = list(iter_panels(board))
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {uid}: {ids}"
    titles = [p["title"] for p in panels]  # the tests name queries by panel title
    assert len(titles) == len(set(titles)), f"duplicate panel titles in {uid}: {titles}"
    boxes = []
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= GRID_COLUMNS, f"{p['title']} ends past column 24"
        boxes.append((p["title"], g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]))
    for i, (t1, x1, y1, r1, b1) in enumerate(boxes):
        for t2, x2, y2, r2, b2 in boxes[i + 1 :]:
            assert r1 <= x2 or r2 <= x1 or b1 <= y2 or b2 <= y1, f"{t1!r} overlaps {t2!r}"


def test_uids_and_titles_are_unique():
    titles = [b["title"] for b in BOARDS.values()]
    assert len(titles) == len(set(titles))


def test_the_grid_check_catches_an_overlap():
    bad = json.loads(json.dumps(BOARDS["fundflow-overview"]))
    bad["panels"][1]["gridPos"] = dict(bad["panels"][0]["gridPos"])
    original = BOARDS["fundflow-overview"]
    BOARDS["fundflow-overview"] = bad
    try:
        with pytest.raises(AssertionError, match="overlaps"):
            test_dashboard_structure("fundflow-overview")
    finally:
        BOARDS["fundflow-overview"] = original


def test_datasources_are_provisioned_with_the_right_uids_and_no_secret():
    doc = yaml.safe_load(DATASOURCES.read_text())
    by_uid = {ds["uid"]: ds for ds in doc["datasources"]}
    assert by_uid["fundflow-prom"]["type"] == "prometheus"
    assert by_uid["fundflow-prom"]["url"] == "http://prometheus:9090"
    pg = by_uid["fundflow-pg"]
    assert pg["type"] == "grafana-postgresql-datasource"
    for ds in doc["datasources"]:
        for key, value in (ds.get("secureJsonData") or {}).items():
            assert re.fullmatch(r"\$\{?[A-Z][A-Z0-9_]*\}?", str(value)), (
                f"{ds['uid']}: secureJsonData.{key} must come from an environment variable"
            )
        assert "password" not in ds and "password" not in (ds.get("jsonData") or {})


@pytest.mark.parametrize("uid", sorted(BOARDS))
def test_every_query_names_a_provisioned_datasource(uid):
    provisioned = provisioned_datasources()
    board = BOARDS[uid]
    for panel in iter_panels(board):
        ds = panel.get("datasource")
        assert ds and ds.get("uid") in provisioned, f"{panel['title']}: datasource {ds}"
        assert provisioned[ds["uid"]] == ds["type"], panel["title"]
        assert panel.get("targets"), f"{panel['title']} has no target"
    for where, ref, ds, _ in queries(board):
        assert ds and ds.get("uid") in provisioned, f"{where}/{ref}: datasource {ds}"
        assert provisioned[ds["uid"]] == ds.get("type"), f"{where}/{ref}: type {ds}"


def test_every_sql_query_has_an_expectation():
    listed = {(uid, where, ref) for uid, b in BOARDS.items() for where, ref, _ in sql_queries(b)}
    assert listed == set(EXPECTED_COLUMNS)


# A row's page in the triage UI (fundflow serve), through the dashboard
# variable triage_url.
TRIAGE_LINK = "${triage_url}/alerts/${__value.raw}"
TRIAGE_DEFAULT = "http://127.0.0.1:8700"


def test_data_links_point_at_existing_dashboards_and_variables():
    links = triage = 0
    for uid, board in BOARDS.items():
        for panel in iter_panels(board):
            expected = EXPECTED_COLUMNS.get((uid, panel["title"], "A"), [])
            for override in panel["fieldConfig"].get("overrides", []):
                field = override["matcher"]["options"]
                for prop in override["properties"]:
                    if prop["id"] != "links":
                        continue
                    assert field in expected, f"{uid}/{panel['title']}: link on {field}"
                    for link in prop["value"]:
                        if link["url"].startswith("${triage_url}"):
                            assert link["url"] == TRIAGE_LINK, f"{uid}: {link['url']}"
                            assert "triage_url" in {v["name"] for v in variables(board)}, uid
                            triage += 1
                            continue
                        m = re.match(r"/d/([\w-]+)/[\w-]*\?(.*)", link["url"])
                        assert m, link["url"]
                        target = BOARDS.get(m.group(1))
                        assert target is not None, f"{link['url']}: no such dashboard"
                        names = {v["name"] for v in variables(target)}
                        for var in re.findall(r"var-(\w+)=", m.group(2)):
                            assert var in names, f"{link['url']}: no variable {var}"
                        links += 1
    # alerts, shortfall, other reserve alerts, platform alerts: each drills down
    assert links >= 4
    # ...and each of them, and the alert detail's own row, opens the triage page
    assert triage == 5


def alert_tables() -> list[tuple[str, str]]:
    """``(uid, panel title)`` of every panel whose query returns alert ids."""
    return sorted(
        (uid, where)
        for (uid, where, ref), columns in EXPECTED_COLUMNS.items()
        if not where.startswith("var:") and "alert_id" in columns
    )


def test_every_alert_table_links_each_row_to_the_triage_page():
    assert len(alert_tables()) == 5
    for uid, title in alert_tables():
        board = BOARDS[uid]
        panel = next(p for p in iter_panels(board) if p["title"] == title)
        urls = [
            link["url"]
            for o in panel["fieldConfig"].get("overrides", [])
            if o["matcher"] == {"id": "byName", "options": "alert_id"}
            for prop in o["properties"]
            if prop["id"] == "links"
            for link in prop["value"]
        ]
        assert TRIAGE_LINK in urls, f"{uid}/{title}: no link to the triage page"
        (var,) = [v for v in variables(board) if v["name"] == "triage_url"]
        assert var["type"] == "textbox" and var["query"] == TRIAGE_DEFAULT
        assert var["current"]["value"] == TRIAGE_DEFAULT


# --- PromQL ---------------------------------------------------------------------------

# Plausible values for the PromQL of the variables (the SQL tests take theirs
# from the store).
PROM_VALUES = {"institution": ["I002", "_other"], "platform": ["P003"],
               "detector": ["fund_pool"], "severity": ["critical"], "status": ["open"],
               "alert_id": ["x"]}  # fmt: skip


def all_promql() -> list[tuple[str, str, str, str]]:
    return [
        (uid, where, ref, substitute(expr, PROM_VALUES, board, "promql"))
        for uid, board in BOARDS.items()
        for where, ref, expr in promql_queries(board)
    ]


def test_every_dashboard_with_metrics_has_promql():
    uids = {uid for uid, *_ in all_promql()}
    assert {"fundflow-overview", "fundflow-reserve-coverage", "fundflow-platform"} <= uids


def test_promql_passes_promtool(tmp_path):
    rules = [(record_name(uid, where, ref), expr) for uid, where, ref, expr in all_promql()]
    assert len({r for r, _ in rules}) == len(rules)
    result = promtool_check(rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr


def test_promtool_check_rejects_a_broken_expression(tmp_path):
    result = promtool_check([("grafana:broken", "sum(rate(fundflow_records_in_total[5m])")],
                            tmp_path)  # fmt: skip
    assert result.returncode != 0


def test_promql_names_only_metrics_the_app_exports():
    exported = exported_metric_names() | PROMETHEUS_SYNTHETIC
    assert "fundflow_records_in_total" in exported  # the derivation works
    for uid, where, ref, expr in all_promql():
        names = promql_metric_names(expr)
        assert names, f"{uid}/{where}/{ref}: no metric in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{uid}/{where}/{ref}: {sorted(unknown)} not exported"


def test_metric_name_extraction():
    expr = (
        "histogram_quantile(0.99, sum by (le, job) (rate(fundflow_processing_seconds_bucket"
        '{job="fundflow"}[5m] offset 1m))) / on (job) group_left (kind) up'
        ' or {__name__=~"a_b|c"} > bool 2'
    )
    assert promql_metric_names(expr) == {"fundflow_processing_seconds_bucket", "up", "a_b", "c"}


# --- SQL against a real PostgreSQL ----------------------------------------------------


def reader_script() -> str:
    """The SQL that deploy/compose.yaml runs when the database is created,
    giving Grafana's role SELECT on the fundflow role's tables."""
    content = yaml.safe_load(COMPOSE.read_text())["configs"]["grafana-reader"]["content"]
    m = re.search(r"<<'SQL'\n(.*?)\nSQL\b", content, re.S)
    assert m, "the grafana-reader config has no <<'SQL' here-document"
    return m.group(1)


def grafana_role() -> str:
    doc = yaml.safe_load(DATASOURCES.read_text())
    return next(ds["user"] for ds in doc["datasources"] if ds["uid"] == "fundflow-pg")


@pytest.fixture(scope="module")
def store(postgres_server, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A database owned by the role ``fundflow`` (as in compose) holding the
    alerts of the seed-1 world, written by ``fundflow replay --db`` (the
    project's migrations and sink), one alert acknowledged then closed;
    Grafana's role created by compose's script before the tables exist."""
    psycopg = _need("psycopg", "'psycopg[binary]'")
    store_pg = _need("fundflow.store.postgres", "'psycopg[binary]'")
    tmp = tmp_path_factory.mktemp("grafana")
    dbname = f"grafana_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        # The postgres image makes POSTGRES_USER (fundflow) a superuser.
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'fundflow'").fetchone() is None:
            admin.execute("CREATE ROLE fundflow LOGIN SUPERUSER")
        else:
            admin.execute("ALTER ROLE fundflow LOGIN SUPERUSER")
        admin.execute(f"CREATE DATABASE {dbname} OWNER fundflow")
    psql = postgres_server.bindir / "psql"
    run = subprocess.run(
        [str(psql), "-X", "-v", "ON_ERROR_STOP=1", "-v", "reader_password=reader-pw",
         "-h", postgres_server.host, "-p", str(postgres_server.port), "-U", "fundflow",
         "-d", dbname],
        input=reader_script(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    owner_url = postgres_server.url(dbname, user="fundflow")
    write_world(tmp, seed=1)
    result = CliRunner().invoke(
        main,
        ["replay", str(tmp / "world.jsonl"), "--db", owner_url,
         "--alerts-out", str(tmp / "alerts.jsonl"), "--deadletter-out", str(tmp / "dead.jsonl"),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with psycopg.connect(owner_url) as owner:  # the project's migrations made the schema
        assert store_pg.schema_version(owner) == store_pg.SCHEMA_VERSION
    with open_store(owner_url) as s:
        alerts = s.list()
        assert alerts, "the seed-1 world has violators"
        triaged = next(a for a in alerts if a.severity == "critical")
        s.ack(triaged.alert_id, by="supervisor", note="looking")
        s.close_alert(triaged.alert_id, by="supervisor", note="reported to the regulator")
    conn = psycopg.connect(postgres_server.url(dbname, user=grafana_role()), autocommit=True)
    try:
        yield {
            "conn": conn,
            "alerts": alerts,
            "triaged": triaged,
            "range": picked_range(WORLD_ZONE),
        }
    finally:
        conn.close()


def variable_values(board: dict[str, Any], store: dict[str, Any]) -> dict[str, list[str]]:
    """Values for every variable: a custom variable's options, a query
    variable's result (run against the store), the triaged alert's id for
    the alert-detail textbox. All values, as the "All" option sends."""
    out: dict[str, list[str]] = {}
    for var in variables(board):
        name = var["name"]
        if var["type"] == "custom":
            out[name] = [v.strip() for v in var["query"].split(",")]
        elif var["type"] == "textbox":
            out[name] = [store["triaged"].alert_id]
        elif var["type"] == "query":
            rows = store["conn"].execute(var["query"]).fetchall()
            out[name] = [str(r[0]) for r in rows]
        else:  # pragma: no cover - a new kind of variable needs a rule here
            raise AssertionError(f"{board['uid']}: variable {name} of type {var['type']}")
        assert out[name], f"{board['uid']}: variable {name} has no value"
    return out


def run_sql(store: dict[str, Any], board: dict[str, Any], sql: str,
            start: datetime | None = None, end: datetime | None = None):  # fmt: skip
    lo, hi = store["range"]
    text = substitute(sql, variable_values(board, store), board, "sql")
    text = expand_sql_macros(text, start or lo, end or hi)
    cur = store["conn"].execute(text)
    return [c.name for c in cur.description], cur.fetchall()


SQL_CASES = [
    (uid, where, ref) for uid in sorted(BOARDS) for where, ref, _ in sql_queries(BOARDS[uid])
]


@pytest.mark.parametrize(("uid", "where", "ref"), SQL_CASES)
def test_sql_runs_and_returns_the_expected_columns(store, uid, where, ref):
    board = BOARDS[uid]
    sql = next(s for w, r, s in sql_queries(board) if (w, r) == (where, ref))
    columns, rows = run_sql(store, board, sql)
    assert columns == EXPECTED_COLUMNS[(uid, where, ref)]
    assert rows, f"{uid}/{where}: no row from the seed-1 world's alerts"


def _panel_sql(uid: str, title: str) -> str:
    return next(s for w, _, s in sql_queries(BOARDS[uid]) if w == title)


@pytest.mark.parametrize("zone", BROWSER_ZONES)
def test_the_alert_list_over_the_readme_range_shows_every_alert(store, zone):
    board = BOARDS["fundflow-alerts"]
    _, rows = run_sql(store, board, _panel_sql("fundflow-alerts", "Alerts"),
                      *picked_range(ZoneInfo(zone)))  # fmt: skip
    assert sorted(r[0] for r in rows) == sorted(a.alert_id for a in store["alerts"])
    assert rows[0][1] == "critical"  # most severe first
    # The restricted-name alert is dated by its entity's first transaction,
    # inside the world's month (an alert dated 1970 would be missed).
    names = [a for a in store["alerts"] if a.evidence.get("signal") == "restricted_name"]
    assert [(a.subject_id, a.first_ts, a.last_ts) for a in names] == [
        ("I006", "2026-03-01T07:21:45+08:00", "2026-03-01T07:21:45+08:00")
    ]
    assert names[0].alert_id in {r[0] for r in rows}


def test_the_readme_range_is_close_around_the_world(store):
    lo, hi = store["range"]
    firsts = [datetime.fromisoformat(a.first_ts) for a in store["alerts"]]
    lasts = [datetime.fromisoformat(a.last_ts) for a in store["alerts"]]
    assert lo <= min(firsts) and max(lasts) <= hi
    assert min(firsts) - lo < timedelta(days=2) and hi - max(lasts) < timedelta(days=3)


def test_the_alert_list_shows_nothing_before_the_world(store):
    board = BOARDS["fundflow-alerts"]
    lo, _ = store["range"]
    _, before = run_sql(store, board, _panel_sql("fundflow-alerts", "Alerts"),
                        lo - timedelta(days=60), lo - timedelta(days=30))  # fmt: skip
    assert before == []


def test_the_alert_detail_shows_the_evidence_and_the_audit_trail(store):
    board = BOARDS["fundflow-alert-detail"]
    triaged = store["triaged"]
    _, alert = run_sql(store, board, _panel_sql("fundflow-alert-detail", "Alert"))
    assert [(r[0], r[7]) for r in alert] == [(triaged.alert_id, "closed")]
    _, evidence = run_sql(store, board, _panel_sql("fundflow-alert-detail", "Evidence"))
    assert {r[0]: json.loads(r[1]) for r in evidence} == triaged.evidence
    _, accounts = run_sql(store, board, _panel_sql("fundflow-alert-detail", "Accounts"))
    assert [r[0] for r in accounts] == list(triaged.accounts)
    _, trail = run_sql(store, board, _panel_sql("fundflow-alert-detail", "Audit trail"))
    assert [(r[1], r[2], r[3]) for r in trail] == [
        ("acknowledged", "supervisor", "looking"),
        ("closed", "supervisor", "reported to the regulator"),
    ]


def test_the_reserve_board_lists_the_coverage_shortfalls(store):
    board = BOARDS["fundflow-reserve-coverage"]
    sql = _panel_sql("fundflow-reserve-coverage", "Coverage shortfall alerts")
    _, rows = run_sql(store, board, sql)
    expected = {
        a.alert_id for a in store["alerts"]
        if a.detector == "reserve_misuse" and a.evidence.get("signal") == "coverage_shortfall"
    }  # fmt: skip
    assert {r[0] for r in rows} == expected
    assert all(r[3] < 1 for r in rows), "a shortfall is a coverage ratio below 1"


def test_the_reader_role_can_only_read(store):
    psycopg = _need("psycopg", "'psycopg[binary]'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        store["conn"].execute("UPDATE alerts SET status = 'open'")


def _panel_expr(uid: str, title: str) -> str:
    """The PromQL of the one Prometheus target of the panel titled ``title``."""
    board = BOARDS[uid]
    found = [
        substitute(expr, PROM_VALUES, board, "promql")
        for where, _ref, expr in promql_queries(board)
        if where == title
    ]
    assert len(found) == 1, (title, [w for w, _, _ in promql_queries(board)])
    return found[0]


def test_sums_over_workers_leave_the_whole_stream_worker_out(tmp_path):
    """Two partitioned workers and the whole-stream worker, which reads the
    records both read (and refuses the same ones): evaluated by ``promtool
    test rules``, the overview's throughput and dead-letter panels give the
    partitioned workers' sum, and its lag panel the most behind of the
    readers of a partition, never the sum of two consumer groups' lags."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if _ci():
            pytest.fail("promtool not found (CI is set): run deploy/prometheus/ci-install.sh")
        pytest.skip("promtool not found: run deploy/prometheus/ci-install.sh")
    uid = "fundflow-overview"
    workers = {"a": ("worker", 6000), "b": ("worker", 3000), "w": ("whole_stream", 9000)}
    series = []
    for inst, (mode, per_minute) in workers.items():
        at = f'job="fundflow", instance="{inst}"'
        series += [
            {"series": f'fundflow_build_info{{{at}, mode="{mode}", version="1", '
                       'python_version="3.11.7"}', "values": "1x40"},
            {"series": f'fundflow_records_in_total{{{at}, topic="fundflow.custody", '
                       'kind="custody_txn"}', "values": f"0+{per_minute // 2}x40"},
            {"series": f'fundflow_dead_letters_total{{{at}, reason="not_json"}}',
             "values": f"0+{per_minute // 200}x40"},
            {"series": f'fundflow_consumer_lag{{{at}, topic="fundflow.custody", partition="0"}}',
             "values": f"{per_minute // 1000}x40"},
        ]  # fmt: skip
    cases = [
        ("Records in /s", "{}", 150),
        ("Throughput by topic and kind", '{topic="fundflow.custody", kind="custody_txn"}', 150),
        ("Dead letters by reason", '{reason="not_json"}', 1.5),
        ("Consumer lag by partition", '{topic="fundflow.custody", partition="0"}', 9),
    ]
    doc = {
        "rule_files": [],
        "evaluation_interval": "30s",
        "tests": [{
            "interval": "30s",
            "input_series": series,
            "promql_expr_test": [
                {"expr": _panel_expr(uid, title), "eval_time": "15m",
                 "exp_samples": [{"labels": labels, "value": value}]}
                for title, labels, value in cases
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "sums.test.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
