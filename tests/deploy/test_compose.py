"""deploy/compose.yaml (and its GPU override): parses, references files that exist, and wires the
services together the way the images and the Prometheus configuration expect."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.settings import Settings
from tests.deploy.manifests import DEPLOY, REPO, run

COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_GPU = DEPLOY / "compose.gpu.yaml"
PROMETHEUS_CONFIG = DEPLOY / "monitoring" / "prometheus" / "prometheus.yml"
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def expand(value: str) -> str:
    """``${VAR:-default}`` -> default (compose's interpolation with an empty environment)."""
    return VARIABLE.sub(lambda m: m.group(2) or "", value)


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"triton", "gateway", "prometheus", "grafana", "redis"} <= set(services)
    assert services["redis"]["profiles"] == ["redis"], "Redis is optional (off by default)"
    for name, service in services.items():
        assert service.get("read_only") is True and service.get("cap_drop") == ["ALL"], name
        image = expand(service["image"])
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag ({image})"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_references_existing_files(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert context == REPO, f"{name}: build context {context}"
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: volume source {source} does not exist"
            else:
                assert source in compose.get("volumes", {}), f"{name}: named volume {source} not declared"


def _triton_args(command: list[str]) -> dict[str, str]:
    assert command[0] == "tritonserver"
    return dict(a[2:].split("=", 1) for a in command[1:])


def test_gateway_reaches_triton_over_shared_memory(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateway, triton = services["gateway"], services["triton"]
    environment = {k: expand(str(v)) for k, v in gateway["environment"].items()}
    settings = Settings.from_args([], environ=environment)
    host, port = settings.triton_url.split(":")
    args = _triton_args(triton["command"])
    assert host == "triton" and port == args["grpc-port"]
    assert args["model-config-name"] == "libtorch_cpu"
    # Shared memory needs one IPC namespace and room in /dev/shm.
    assert settings.use_shared_memory
    assert triton["ipc"] == "shareable" and gateway["ipc"] == "service:triton"
    assert triton["shm_size"]
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    grace = int(gateway["stop_grace_period"].removesuffix("s"))
    assert grace > settings.grace_period_s + 5
    assert f"{settings.port}:{settings.port}" in gateway["ports"]


def test_gpu_override_uses_the_production_config_on_a_gpu() -> None:
    triton = load(COMPOSE_GPU)["services"]["triton"]
    assert "model-config-name" not in _triton_args(triton["command"])
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_prometheus_scrapes_the_compose_services(compose: dict[str, Any]) -> None:
    config = load(PROMETHEUS_CONFIG)
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    gateway_env = {k: expand(str(v)) for k, v in compose["services"]["gateway"]["environment"].items()}
    gateway_env.pop("SAM_REDIS_URL", None)
    metrics_port = Settings.from_args([], environ=gateway_env).metrics_port
    assert targets["sam-gateway"] == [f"gateway:{metrics_port}"]
    assert targets["sam-triton"] == [f"triton:{_triton_args(compose['services']['triton']['command'])['metrics-port']}"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"] if v.startswith("."))
    for rule_file in config["rule_files"]:
        assert rule_file in mounts.values(), f"{rule_file} is not mounted into the Prometheus container"


def test_promtool_checks_the_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found; `bash scripts/install_system_deps.sh` installs it (Debian package prometheus)")
    # The config names the rule file by its path inside the container: point it at the real one.
    rules = DEPLOY / "monitoring" / "prometheus" / "rules.yaml"
    config = PROMETHEUS_CONFIG.read_text().replace("/etc/prometheus/rules.yaml", str(rules))
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    result = run([promtool, "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_finds_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {target: DEPLOY / source for source, target, *_ in (v.split(":") for v in grafana["volumes"])
              if source.startswith(".")}  # fmt: skip
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = load(provisioning / "dashboards" / "sam.yaml")["providers"]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "sam-serving.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).relative_to(provider["options"]["path"])).is_file()
    (datasource,) = load(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
