"""The Grafana dashboard (deploy/grafana/panui-overview.json) is well-formed for Grafana's
import — unique panel ids, panels inside the 24-column grid, a Prometheus query in every
target — and charts only metrics the code exports, with what the ops issue asks for: lag per
consumer group, stage throughput, delivery outcomes, dead letters."""

import json

import pytest

from tests.deploy import manifests as m
from tests.deploy.test_monitoring import EXTERNAL, LAG_MONITOR, _metric_names, _registered

DASHBOARD = m.ROOT / "deploy" / "grafana" / "panui-overview.json"
LAG_SOURCE = (m.SERVICES_DIR / "common" / "lag" / "prometheus.py").read_text()


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def test_dashboard_is_well_formed(dashboard):
    assert {"uid", "title", "panels", "schemaVersion", "templating"} <= set(dashboard)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        assert panel["type"] in {"timeseries", "table", "stat", "bargauge"}, panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["datasource"]["uid"].strip("${}") in variables
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in panel["targets"])
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            for name in variables - {"datasource"}:
                expr = expr.replace(f"${name}", "")
            assert "$" not in expr, f"{panel['title']}: an undefined variable in {target['expr']}"


def test_dashboard_charts_metrics_the_code_exports(dashboard):
    registered = _registered()
    for title, expr in _exprs(dashboard):
        for name in _metric_names(expr):
            if name in EXTERNAL or name in LAG_MONITOR:
                assert f'"{name}"' in LAG_SOURCE or name == "up", f"{title}: {name}"
                continue
            assert name in registered, f"{title}: no metric {name} in the services' code"


def test_dashboard_covers_what_ops_chart(dashboard):
    used = set().union(*(_metric_names(e) for _, e in _exprs(dashboard)))
    for wanted in ("kafka_consumergroup_lag_sum", "panui_consumergroup_status",
                   "panui_outbox_published_total", "panui_messages_consumed_total",
                   "panui_dispatch_deliveries_total", "panui_dead_letters_total",
                   "panui_outbox_pending", "panui_http_request_seconds_bucket",
                   "panui_intake_records_total", "panui_dedupe_review_items_open"):
        assert wanted in used, wanted
