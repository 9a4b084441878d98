"""Monitoring assets: Prometheus Operator objects (no core schema, so their structure is checked
here), the rule file (promtool check + unit tests when promtool is installed), the Grafana
dashboard, and the metric names they use."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, Obj, find, labels_match, of_kind, run

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "prometheus" / "rules.yaml"
DASHBOARD = MONITORING / "dashboards" / "sam-serving.json"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# Triton's own metrics (https://docs.nvidia.com/deeplearning/triton-inference-server metrics page).
TRITON_METRICS = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us", "nv_gpu_utilization", "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes", "nv_gpu_power_usage",
}  # fmt: skip
METRIC = re.compile(r"\b((?:sam|nv)_[a-z0-9_]+)\b")
RECORDED = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+")


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not found; `bash scripts/install_system_deps.sh` installs it (Debian package prometheus)")
    return binary


def rule_groups() -> list[Obj]:
    return list(yaml.safe_load(RULES.read_text())["groups"])


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


# -- rules -----------------------------------------------------------------------------------------


def test_rules_have_the_fields_alertmanager_and_operators_need() -> None:
    alerts, records = [], []
    for group in rule_groups():
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert rule.get("expr", "").strip(), rule
            if "alert" in rule:
                alerts.append(rule["alert"])
                assert re.fullmatch(r"Sam[A-Z][A-Za-z]+", rule["alert"])
                assert DURATION.match(rule["for"]), f"{rule['alert']}: for: {rule.get('for')!r}"
                assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
                assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            else:
                records.append(rule["record"])
                assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
                assert "for" not in rule
    assert len(alerts) == len(set(alerts)) and len(records) == len(set(records))
    # What issue #6 asks the alerts to cover.
    assert {"SamSegmentLatencyHigh", "SamErrorRatioHigh", "SamEmbeddingCacheThrashing"} <= set(alerts)


def test_recording_rules_are_defined_before_use() -> None:
    records = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rule_groups() for r in g["rules"]] + dashboard_exprs()
    used = {name for expr in exprs for name in RECORDED.findall(expr)}
    assert used <= records, f"undefined recording rules: {sorted(used - records)}"


def test_prometheusrule_carries_the_same_groups_as_the_rule_file(rendered: dict[str, list[Obj]]) -> None:
    rule = find(rendered["gpu"], "PrometheusRule", "sam-serving")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == rule_groups(), (
        "deploy/monitoring/prometheusrule.yaml and prometheus/rules.yaml differ; edit both together"
    )


def test_promtool_checks_the_rules() -> None:
    result = run([promtool(), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    n_rules = sum(len(g["rules"]) for g in rule_groups())
    assert f"SUCCESS: {n_rules} rules found" in result.stdout


def test_promtool_unit_tests_the_alerts() -> None:
    result = run([promtool(), "test", "rules", str(MONITORING / "prometheus" / "rules_test.yaml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    text = RULES.read_text()
    broken.write_text(text.replace("sum by (namespace, method, code)", "sum by (namespace, method, code", 1))
    assert run([promtool(), "check", "rules", str(broken)]).returncode != 0


# -- scrape targets ---------------------------------------------------------------------------------


def test_service_monitors_select_services_with_a_metrics_port(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["gpu"]
    monitors = of_kind(objects, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"sam-gateway", "sam-triton"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = [s for s in of_kind(objects, "Service")
                    if labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
        assert [s["metadata"]["name"] for s in selected] == [monitor["metadata"]["name"]], (
            "one Service per ServiceMonitor (its name is the job label the alerts use)"
        )
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
            assert DURATION.match(endpoint["interval"])
    jobs = set(re.findall(r'job="([^"]+)"', RULES.read_text()))
    assert jobs <= {m["metadata"]["name"] for m in monitors}


# -- dashboard ----------------------------------------------------------------------------------------


def test_dashboard_is_valid_and_shipped_as_a_configmap(rendered: dict[str, list[Obj]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("latency", "error", "hit ratio", "triton"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    configmap = find(rendered["gpu"], "ConfigMap", "sam-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["sam-serving.json"]) == dashboard


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool has no expression checker, so every panel query becomes a recording rule."""
    rules = [
        {"record": f"dashboard:query:{i}", "expr": expr.replace("$namespace", ".*")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


# -- metric names -------------------------------------------------------------------------------------


def used_metrics() -> set[str]:
    exprs = [r["expr"] for g in rule_groups() for r in g["rules"]] + dashboard_exprs()
    adapter = yaml.safe_load((MONITORING / "prometheus-adapter-rules.yaml").read_text())["rules"]
    exprs += [rule["metricsQuery"] + rule["seriesQuery"] for rule in adapter]
    return {m for expr in exprs for m in METRIC.findall(expr)}


def test_triton_metric_names_exist() -> None:
    unknown = {m for m in used_metrics() if m.startswith("nv_")} - TRITON_METRICS
    assert not unknown, f"not Triton metrics: {sorted(unknown)}"


def test_gateway_metric_names_follow_the_conventions() -> None:
    for name in (m for m in used_metrics() if m.startswith("sam_")):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert re.search(r"_(total|seconds|bytes|in_flight|entries|available)$", base), (
            f"{name}: counters end in _total, durations in _seconds, sizes in _bytes"
        )


def exposed_gateway_metrics() -> set[str]:
    """Every series name the gateway's registry exposes (its real exposition text; counters are
    typed under their ``_total`` name), Redis included."""
    from prometheus_client import generate_latest

    from server.cache.embedding_cache import EmbeddingCache
    from server.cache.redis_cache import RedisCacheStats
    from server.observability.metrics import Metrics

    metrics = Metrics()
    redis = RedisCacheStats(hits=0, misses=0, errors=0, bypassed=0, writes=0, oversize=0, corrupt=0,
                            breaker_opens=0, available=True)
    metrics.watch_caches(EmbeddingCache(1 << 20).stats, lambda: redis)
    suffixes = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("_sum", "_count", "")}
    names: set[str] = set()
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def test_gateway_defines_the_metrics_the_rules_use() -> None:
    """Every sam_* series the rules, dashboard and adapter query is one the gateway exposes."""
    exposed = exposed_gateway_metrics()
    assert "sam_rpc_requests_total" in exposed and "sam_embedding_cache_hits_total" in exposed
    missing = sorted(m for m in used_metrics() if m.startswith("sam_") and m not in exposed)
    assert not missing, f"rules/dashboard use metrics the gateway does not define: {missing}"
