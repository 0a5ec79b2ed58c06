"""The operator deploy kit (deploy/compose.yaml, deploy/systemd/, deploy/README.md)
checked without a container engine or systemd: the files parse, every host
path they use exists in the repository, ports are published on the loopback
interface only, no secret is written inline, and every fundflow command they
run is one the CLI accepts (parsed by click, not run). The image the compose
file builds is checked in test_image.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
from pip_commands import LOCK, locked, pip_install_calls

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    yaml = pytest.importorskip("yaml", reason="pip install pyyaml (the test extras)")
else:
    import yaml  # in CI a missing PyYAML is a failure, not a skip

from fundflow.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
UNIT_FILE = DEPLOY / "systemd" / "fundflow-worker.service"
UNIT_ENV = DEPLOY / "systemd" / "fundflow-worker.env.example"
README = DEPLOY / "README.md"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|_KEY$", re.I)


# --- helpers --------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def parse_cli(argv: list[str]) -> click.Context:
    """Parse ``fundflow SUBCOMMAND ...`` with click as the CLI would, without
    running it; a bad flag or value raises ``click.UsageError``/``BadParameter``."""
    assert argv and Path(argv[0]).name == "fundflow", f"not a fundflow command: {argv}"
    ctx = main.make_context("fundflow", list(argv[1:]), resilient_parsing=False)
    name, cmd, rest = main.resolve_command(ctx, _unparsed(ctx))
    assert cmd is not None, f"unknown subcommand in {argv}"
    while isinstance(cmd, click.Group):
        sub = cmd.make_context(name, rest, parent=ctx, resilient_parsing=False)
        ctx, (name, cmd, rest) = sub, cmd.resolve_command(sub, _unparsed(sub))
        assert cmd is not None, f"unknown subcommand in {argv}"
    return cmd.make_context(name, rest, parent=ctx, resilient_parsing=False)


def _unparsed(ctx: click.Context) -> list[str]:
    # A group's subcommand and its arguments: click < 9 keeps the first in
    # protected_args (deprecated since 8.2), click 9 keeps all in args.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *ctx.args]


def host_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """``(host path, container path)`` of a service's bind mounts."""
    out = []
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
        else:
            source, target = vol.get("source", ""), vol["target"]
        if source.startswith((".", "/", "~")):
            out.append((source, target))
    return out


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """``(host ip, rest)`` of each published port (``None`` when unset)."""
    out: list[tuple[str | None, str]] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip"), f"{port.get('published')}:{port['target']}"))
            continue
        parts = str(port).split(":")
        out.append((parts[0], ":".join(parts[1:])) if len(parts) == 3 else (None, str(port)))
    return out


def unit_directives(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of a systemd unit, in order (keys repeat)."""
    section, out = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """systemd's ``${VAR}`` / ``$VAR`` expansion in ExecStart."""
    return [re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env[m.group(1) or m.group(2)], a)
            for a in argv]  # fmt: skip


def readme_env_vars(filename: str) -> set[str]:
    """Variables that deploy/README.md writes into ``deploy/env/<filename>``."""
    names: set[str] = set()
    for line in README.read_text().splitlines():
        if line.rstrip().endswith(f"deploy/env/{filename}"):
            names.update(re.findall(r"([A-Z][A-Z0-9_]+)=%s", line))
    return names


def metrics_target_port() -> int:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "fundflow")
    return int(job["static_configs"][0]["targets"][0].rsplit(":", 1)[1])


def worker_options() -> set[str]:
    cmd = main.commands["worker"]
    return {o for p in cmd.params for o in p.opts}


# --- compose --------------------------------------------------------------------------

SERVICES = compose()["services"]


def test_compose_has_the_pipeline():
    assert {"kafka", "postgres", "worker", "prometheus", "alertmanager", "grafana"} <= set(SERVICES)
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft
    assert not [k for k in env if "ZOOKEEPER" in k]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_host_path_exists(name):
    for source, _ in host_mounts(SERVICES[name]):
        assert (DEPLOY / source).resolve().exists(), f"{name} mounts missing {source}"
    declared = set(compose().get("volumes") or {})
    for vol in SERVICES[name].get("volumes", []):
        source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
        if not source.startswith((".", "/", "~")):
            assert source in declared, f"{name}: volume {source} is not declared"


def test_the_expected_directories_are_mounted():
    def targets(name: str) -> dict[str, str]:
        return {str((DEPLOY / s).resolve().relative_to(REPO)): t for s, t in host_mounts(SERVICES[name])}  # fmt: skip

    assert "deploy/prometheus" in targets("prometheus")
    grafana = targets("grafana")
    assert grafana["deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "fundflow.yaml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == grafana["deploy/grafana/dashboards"]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(grafana["deploy/grafana/dashboards"] + "/")
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).exists()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_published_on_loopback_only(name):
    for host_ip, rest in published_ports(SERVICES[name]):
        assert host_ip == "127.0.0.1", f"{name} publishes {rest} on {host_ip or 'every interface'}"


def test_the_loopback_check_catches_an_open_port():
    assert published_ports({"ports": ["3000:3000", "0.0.0.0:1:1"]}) == [
        (None, "3000:3000"), ("0.0.0.0", "1:1")]  # fmt: skip


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_secret_is_written_inline(name):
    service = SERVICES[name]
    env = service.get("environment") or {}
    items = env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env)
    for key, _ in items:
        assert not SECRET_NAME.search(key), f"{name}: {key} belongs in an env file"
    for arg in service.get("command") or []:
        if "://" in str(arg):
            assert urlsplit(str(arg)).password is None, f"{name}: password in {arg}"


def test_env_files_are_the_ones_the_readme_creates():
    for name, service in SERVICES.items():
        for path in service.get("env_file", []):
            path = path if isinstance(path, str) else path["path"]
            assert path.startswith("./env/"), f"{name}: env file {path} outside deploy/env/"
            assert readme_env_vars(Path(path).name), f"README does not create {path}"


def test_secrets_reach_the_services_that_read_them():
    def given(name: str) -> set[str]:
        return {v for p in SERVICES[name]["env_file"] for v in readme_env_vars(Path(p).name)}

    datasources = (
        DEPLOY / "grafana" / "provisioning" / "datasources" / "fundflow.yaml"
    ).read_text()
    referenced = set(re.findall(r"\$\{(\w+)\}", json.dumps(yaml.safe_load(datasources))))
    assert referenced and referenced <= given("grafana")
    init = compose()["configs"]["grafana-reader"]["content"]
    assert set(re.findall(r"\$\$(\w+)", init)) - {"POSTGRES_USER", "POSTGRES_DB"} <= given(
        "postgres"
    )
    assert "POSTGRES_PASSWORD" in given("postgres")
    assert "PGPASSWORD" in given("worker")
    assert "FUNDFLOW_CHECKPOINT_KEY" in given("worker")  # no worker starts without it
    # Grafana logs in as the read-only role the init script creates.
    role = yaml.safe_load(datasources)["datasources"][1]["user"]
    assert f"CREATE ROLE {role} LOGIN" in init
    assert f"FOR ROLE {SERVICES['postgres']['environment']['POSTGRES_USER']} " in init


def test_the_worker_command_is_one_the_cli_accepts():
    argv = [str(a) for a in SERVICES["worker"]["command"]]
    ctx = parse_cli(argv)
    assert ctx.command.name == "worker"
    assert ctx.params["broker"] == "kafka:9092"
    url = urlsplit(ctx.params["db"])
    assert url.scheme == "postgresql" and url.hostname == "postgres" and url.password is None
    health = ctx.params["health_port"]
    assert f"127.0.0.1:{health}/health" in " ".join(SERVICES["worker"]["healthcheck"]["test"])


def test_the_topics_command_is_one_the_cli_accepts():
    ctx = parse_cli([str(a) for a in SERVICES["topics"]["command"]])
    assert ctx.command.name == "create" and ctx.params["broker"] == "kafka:9092"
    assert (
        SERVICES["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    )


def test_the_cli_check_rejects_a_bad_command():
    with pytest.raises(click.UsageError):
        parse_cli(["fundflow", "worker", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        parse_cli(["fundflow", "worker", "--health-port", "99999"])


def test_prometheus_can_scrape_the_worker_on_loopback():
    # The worker serves on its own 127.0.0.1; Prometheus shares its network.
    assert SERVICES["worker"]["network_mode"] == "service:prometheus"


def test_prometheus_sends_alerts_to_the_alertmanager():
    # Prometheus names 127.0.0.1:9093; Alertmanager shares its network, which
    # publishes that port on the host's loopback; and it reads the kit's file.
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (target,) = [t for am in prom["alerting"]["alertmanagers"]
                 for sc in am["static_configs"] for t in sc["targets"]]  # fmt: skip
    assert target == "127.0.0.1:9093"
    am = SERVICES["alertmanager"]
    assert am["network_mode"] == "service:prometheus"
    assert ("127.0.0.1", "9093:9093") in published_ports(SERVICES["prometheus"])
    mounts = {str((DEPLOY / s).resolve().relative_to(REPO)): t for s, t in host_mounts(am)}
    assert mounts["deploy/alertmanager"] == "/etc/alertmanager"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]


def test_the_smtp_password_comes_from_a_secret_file():
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert not any("password" in k and not k.endswith("_file") for k in config["global"])
    (mounted,) = SERVICES["alertmanager"]["secrets"]
    assert mounted["target"] == config["global"]["smtp_auth_password_file"]
    source = compose()["secrets"][mounted["source"]]["file"]
    assert source.startswith("./env/")
    assert any(line.rstrip().endswith(f"deploy/env/{Path(source).name}")
               for line in readme_shell_lines()), f"README does not create {source}"  # fmt: skip


def test_ci_runs_every_install_script():
    run = (REPO / ".ci" / "run").read_text()
    scripts = sorted(p.relative_to(REPO) for p in DEPLOY.glob("*/ci-install.sh"))
    assert [str(s) for s in scripts] == [
        "deploy/alertmanager/ci-install.sh", "deploy/chromium/ci-install.sh",
        "deploy/postgres/ci-install.sh", "deploy/prometheus/ci-install.sh",
    ]  # fmt: skip
    calls = re.findall(r"^(?:sh|bash) (deploy/\S+/ci-install\.sh)$", run, re.M)
    assert sorted(calls) == [str(s) for s in scripts]
    for script in scripts:
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"


def test_the_worker_serves_metrics_where_prometheus_scrapes():
    port = metrics_target_port()
    assert parse_cli([str(a) for a in SERVICES["worker"]["command"]]).params["metrics_port"] == port
    exec_start = dict((k, v) for _, k, v in unit_directives(UNIT_FILE.read_text()))["ExecStart"]
    argv = expand(shlex.split(exec_start), env_file(UNIT_ENV))
    assert parse_cli(argv).params["metrics_port"] == port


def readme_shell_lines() -> list[str]:
    """The lines of deploy/README.md's code blocks."""
    lines, inside = [], False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def test_the_readme_installs_from_the_lock():
    calls = [c for line in readme_shell_lines() for c in pip_install_calls(line)]
    venvs = {pip for pip, _ in calls}
    systemd_pip = "/opt/fundflow/bin/pip"
    assert venvs == {".venv/bin/pip", systemd_pip}  # the host's tools, the systemd unit's
    for pip, args in calls:
        assert locked(args), f"{pip} install {' '.join(args)}: not the lock, not --no-deps"
    for venv in venvs:
        # The whole tree from the lock, then the package without resolving more.
        kinds = ["lock" if LOCK in " ".join(a) else "package" for p, a in calls if p == venv]
        assert kinds == ["lock", "package"], f"{venv}: {kinds}"
    exec_start = dict((k, v) for _, k, v in unit_directives(UNIT_FILE.read_text()))["ExecStart"]
    # The unit runs the console script of the venv the README installs into.
    assert shlex.split(exec_start)[0] == str(Path(systemd_pip).with_name("fundflow"))


# --- systemd --------------------------------------------------------------------------

UNIT = unit_directives(UNIT_FILE.read_text())


def unit_value(key: str) -> list[str]:
    return [v for _, k, v in UNIT if k == key]


def test_the_unit_is_hardened():
    assert unit_value("DynamicUser") == ["yes"] or unit_value("User") not in ([], ["root"])
    assert unit_value("ProtectSystem") == ["strict"]
    assert unit_value("NoNewPrivileges") == ["yes"]
    assert unit_value("ReadWritePaths"), "ProtectSystem=strict needs ReadWritePaths for state"
    for path in unit_value("ReadWritePaths")[0].split():
        state = unit_value("StateDirectory")[0]
        assert path.lstrip("-") == f"/var/lib/{state}"
    assert unit_value("Restart") == ["on-failure"]
    assert unit_value("EnvironmentFile") == ["/etc/fundflow/worker.env"]
    assert unit_value("CapabilityBoundingSet") == [""]
    sections = {s for s, _, _ in UNIT}
    assert sections == {"Unit", "Service", "Install"}


def test_the_unit_runs_a_worker_command_the_cli_accepts():
    (exec_start,) = unit_value("ExecStart")
    argv = expand(shlex.split(exec_start), env_file(UNIT_ENV))
    assert argv[0].startswith("/"), "ExecStart needs an absolute path"
    ctx = parse_cli(argv)
    assert ctx.command.name == "worker"
    assert urlsplit(ctx.params["db"]).password is None


def test_the_env_example_holds_placeholders_not_secrets():
    env = env_file(UNIT_ENV)
    assert "FUNDFLOW_KAFKA_BOOTSTRAP" in env and "PGPASSWORD" in env
    assert "FUNDFLOW_CHECKPOINT_KEY" in env
    for key, value in env.items():
        if SECRET_NAME.search(key):
            assert value == "CHANGE-ME", f"{key}: an example holds a placeholder"


def _cannot_verify(reason: str) -> None:
    """A skip on a developer's machine; in CI (``CI`` set) a failure, since
    its machines have systemd-analyze and the installed console script."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason} (CI is set: the unit file must be verified there)", pytrace=False)
    pytest.skip(reason)


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        _cannot_verify("systemd-analyze not installed")
    fundflow = Path(sys.executable).with_name("fundflow")
    if not fundflow.exists():
        _cannot_verify("the fundflow console script is not installed beside this Python")
    unit = tmp_path / UNIT_FILE.name
    unit.write_text(UNIT_FILE.read_text().replace("/opt/fundflow/bin/fundflow", str(fundflow)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    if "Failed to" in result.stderr and "bus" in result.stderr.lower():
        _cannot_verify(f"systemd-analyze cannot run here: {result.stderr.strip()}")
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if UNIT_FILE.name in ln]
    assert result.returncode == 0 and not lines, result.stdout + result.stderr


def test_alerts_dashboard_offers_every_detector() -> None:
    """The alerts dashboard's detector filter lists every registered
    detector and typology, so no alert is hidden by the "All" choice."""
    from fundflow.detectors.engine import DETECTORS, TYPOLOGIES

    board = json.loads((DEPLOY / "grafana/dashboards/alerts.json").read_text())
    var = next(v for v in board["templating"]["list"] if v["name"] == "detector")
    assert var["query"].split(",") == [*DETECTORS, *TYPOLOGIES]


def test_the_readme_names_the_triage_link_variable_and_its_default() -> None:
    """deploy/README.md tells operators where the dashboards' triage links
    go; every dashboard with the variable has the default it names."""
    text = " ".join(README.read_text().split())
    m = re.search(r"`triage_url` is a hidden variable .*? by default `(http[^`]+)`", text)
    assert m, "deploy/README.md does not describe the triage_url variable"
    boards = {}
    for path in sorted((DEPLOY / "grafana/dashboards").glob("*.json")):
        for var in json.loads(path.read_text())["templating"].get("list", []):
            if var["name"] == "triage_url":
                boards[path.stem] = (var["type"], var["hide"], var["query"])
    assert boards == {
        name: ("textbox", 2, m.group(1))
        for name in ("alert-detail", "alerts", "platform", "reserve-coverage")
    }
