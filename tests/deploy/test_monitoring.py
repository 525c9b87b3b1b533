"""Prometheus scrapes every service at the app's own /metrics route, and the alert rules are
valid (promtool check rules), behave as intended (promtool test rules with
deploy/k8s/alerts.test.yaml) and use only metrics and label values the code produces — or
that planned work will, listed below and checked to be still missing."""

import importlib
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from services.dispatch.delivery_state import DeliveryStatus
from tests.deploy import manifests as m

SERVICES = m.services()
# Metrics the rules use before the code has them: name -> the work that adds it.
PLANNED: dict[str, str] = {}
# Computed outside the services, from Kafka's own offsets (kafka_exporter's names, which the
# ops issue's lag exporter keeps).
EXTERNAL = {"kafka_consumergroup_lag_sum", "kafka_consumergroup_lag", "up"}
# Computed at scrape time by intake's lag monitor (services/common/lag/prometheus.py: a collector
# whose series exist only once sampled, so not in the registry).
LAG_MONITOR = {"panui_consumergroup_status", "panui_consumergroup_uncommitted_partitions",
               "panui_consumergroup_lag_sampled_timestamp_seconds"}


def _rules(objects) -> list[dict]:
    return [r for rule in objects.of("PrometheusRule") for g in rule["spec"]["groups"] for r in g["rules"]]


def _registered() -> set[str]:
    importlib.import_module("services.common.metrics")
    for service in SERVICES:
        try:
            importlib.import_module(f"services.{service}.metrics")
        except ModuleNotFoundError:
            pass
    return set(REGISTRY._names_to_collectors)


def _metric_names(expr: str) -> set[str]:
    # Metric names are the identifiers right before a selector, a range or a closing bracket /
    # comparison; label names sit inside {} and are removed first, functions are followed by (.
    stripped = re.sub(r"\{[^}]*\}", "{}", re.sub(r'"[^"]*"', '""', expr))
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", stripped)
    tokens = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", stripped)
    keywords = {"and", "or", "unless", "bool", "offset"}
    return {t for t in tokens if t not in keywords and not re.fullmatch(r"\d+[smhdwy]?", t)}


def test_every_service_is_scraped_at_its_metrics_route(objects, service_facts):
    monitors = objects.of("ServiceMonitor")
    for service in SERVICES:
        svc = next(s for s in objects.of("Service")
                   if s["spec"]["selector"] == objects.deployment(service)["spec"]["selector"]["matchLabels"])
        labels = svc["metadata"]["labels"]
        scraping = [mon for mon in monitors
                    if all(labels.get(e["key"]) in e["values"] for e in mon["spec"]["selector"].get("matchExpressions", []))
                    and mon["spec"]["selector"].get("matchLabels", {}).items() <= labels.items()]
        assert len(scraping) == 1, f"{service}: scraped by one ServiceMonitor"
        metrics_routes = {r.path for r in service_facts(objects, service).routes if "GET" in r.methods and "ops" in r.tags}
        for endpoint in scraping[0]["spec"]["endpoints"]:
            assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
            assert endpoint["path"] in metrics_routes and endpoint["path"].endswith("metrics")


@pytest.mark.timeout(1800)  # the first run builds promtool (minutes) unless `make` did
def test_rules_pass_promtool(tmp_path):
    promtool = m.tool("promtool")
    for overlay in m.OVERLAYS:
        objects = m.Objects(overlay)
        groups = [g for rule in objects.of("PrometheusRule") for g in rule["spec"]["groups"]]
        work = tmp_path / overlay
        work.mkdir()
        (work / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        shutil.copy(m.K8S / "alerts.test.yaml", work / "alerts.test.yaml")
        for args in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts.test.yaml"]):
            done = subprocess.run([str(promtool), *args], cwd=work, capture_output=True, text=True, check=False)
            assert done.returncode == 0, f"{overlay}: promtool {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


def test_every_alert_is_tested():
    tested = {t["alertname"] for case in yaml.safe_load((m.K8S / "alerts.test.yaml").read_text())["tests"]
              for t in case.get("alert_rule_test", [])}
    alerts = {r["alert"] for r in _rules(m.Objects("prod"))}
    untested = alerts - tested
    assert not untested, f"add promtool cases for {sorted(untested)} to deploy/k8s/alerts.test.yaml"


def test_alerts_use_metrics_that_exist(objects):
    registered = _registered()
    for rule in _rules(objects):
        for name in _metric_names(rule["expr"]):
            if name in EXTERNAL:
                continue
            if name in LAG_MONITOR:
                assert f'"{name}"' in (m.SERVICES_DIR / "common" / "lag" / "prometheus.py").read_text()
                continue
            if name in PLANNED:
                assert name not in registered, f"{name} exists now: remove it from PLANNED"
                continue
            assert name in registered, f"{rule['alert']}: no metric {name} in the services' code"


def test_alerts_use_label_values_that_exist(objects, service_facts):
    groups = set().union(*(service_facts(objects, s).groups for s in SERVICES))
    statuses = {s.value for s in DeliveryStatus}
    services = {o["metadata"]["name"] for o in objects.of("Service")}
    for rule in _rules(objects):
        expr = rule["expr"]
        for selector in re.findall(r'consumergroup=~"([^"]+)"', expr):
            pattern = selector.replace("\\\\", "\\")
            missed = {g for g in groups if not re.fullmatch(pattern, g)}
            assert not missed, f"{rule['alert']}: {selector} misses {sorted(missed)}"
        for literal in re.findall(r'"consumergroup", "([^"$]+)"', expr):
            assert literal in groups, f"{rule['alert']}: no consumer group {literal}"
        for values in re.findall(r'panui_dispatch_deliveries_total\{[^}]*status=~?"([^"]+)"', expr):
            assert set(values.split("|")) <= statuses, f"{rule['alert']}: {values}"
        for selector in re.findall(r'up\{job=~"([^"]+)"\}', expr):
            assert all(re.fullmatch(selector, s) for s in services), f"{rule['alert']}: {selector}"
        for outcome in re.findall(r'outcome="([^"]+)"', expr):
            source = "".join(p.read_text() for p in (m.SERVICES_DIR / "dispatch").rglob("*.py"))
            assert f'"{outcome}"' in source, f"{rule['alert']}: dispatch never reports outcome {outcome}"


@pytest.mark.parametrize("expr, names", [
    ('sum by (group) (rate(panui_consumer_batch_errors_total[5m])) > 0', {"panui_consumer_batch_errors_total"}),
    ('max(x{a="b"}) > 0 unless on (service) y', {"x", "y"}),
])
def test_metric_names_are_found(expr, names):
    assert _metric_names(expr) == names
