"""The kustomize overlays: they render, every object validates against the Kubernetes schemas
offline (kubernetes-validate), and the properties operators rely on hold in every overlay."""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest
import yaml

from server.settings import Settings, parse_bytes
from tests.deploy.manifests import (
    DEPLOY,
    GPU_REDIS,
    Obj,
    container,
    env_of,
    find,
    labels_match,
    of_kind,
    ports_of,
)

# Oldest and newest Kubernetes the manifests are written for (native gRPC probes are GA in 1.27).
K8S_VERSIONS = ("1.29.0", "1.37.0")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
ALL_VARIANTS = ("gpu", "cpu", GPU_REDIS)


def _quantity(text: str | int) -> float:
    """Kubernetes quantity -> float (cores or bytes)."""
    value = str(text)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def _deployments(objects: list[Obj]) -> list[Obj]:
    return of_kind(objects, "Deployment")


# -- rendering and schema validation -----------------------------------------------------------


def test_overlays_render_the_expected_objects(rendered: dict[str, list[Obj]]) -> None:
    for variant in ALL_VARIANTS:
        kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered[variant]}
        for expected in [
            ("Deployment", "sam-gateway"), ("Deployment", "sam-triton"),
            ("Service", "sam-gateway"), ("Service", "sam-triton"), ("Service", "sam-gateway-headless"),
            ("PodDisruptionBudget", "sam-gateway"), ("PodDisruptionBudget", "sam-triton"),
            ("HorizontalPodAutoscaler", "sam-gateway"), ("NetworkPolicy", "sam-triton"),
            ("Namespace", "sam-cpu" if variant == "cpu" else "sam"),
        ]:  # fmt: skip
            assert expected in kinds, f"{variant}: {expected} missing"
    gpu = {(o["kind"], o["metadata"]["name"]) for o in rendered["gpu"]}
    assert {("ServiceMonitor", "sam-gateway"), ("ServiceMonitor", "sam-triton"), ("PrometheusRule", "sam-serving"),
            ("ConfigMap", "sam-dashboards"), ("HorizontalPodAutoscaler", "sam-triton")} <= gpu
    assert not any(o["kind"] == "Deployment" and o["metadata"]["name"] == "sam-redis" for o in rendered["gpu"]), (
        "Redis must stay off by default"
    )
    find(rendered[GPU_REDIS], "Deployment", "sam-redis")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_object_validates_offline(rendered: dict[str, list[Obj]], variant: str, version: str) -> None:
    checked = 0
    for obj in rendered[variant]:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue  # no core schema; test_monitoring.py checks their structure
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{variant}: {obj['kind']}/{obj['metadata']['name']}"
            raise AssertionError(f"{where} invalid for Kubernetes {version}: {error}") from error
        checked += 1
    assert checked >= 12


def test_validation_catches_a_typo(rendered: dict[str, list[Obj]]) -> None:
    """The offline validation is strict: an unknown field (a typo in a probe) is an error."""
    deployment = copy.deepcopy(find(rendered["gpu"], "Deployment", "sam-gateway"))
    container(deployment, "gateway")["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_everything_is_in_one_namespace(rendered: dict[str, list[Obj]]) -> None:
    for variant in ALL_VARIANTS:
        namespace = next(o for o in rendered[variant] if o["kind"] == "Namespace")
        name = namespace["metadata"]["name"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for obj in rendered[variant]:
            if obj["kind"] != "Namespace":
                assert obj["metadata"].get("namespace") == name, f"{variant}: {obj['kind']}/{obj['metadata']['name']}"


# -- pods: security, resources ---------------------------------------------------------------------


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_pod_is_hardened(rendered: dict[str, list[Obj]], variant: str) -> None:
    """What Pod Security "restricted" demands, plus a read-only root filesystem and no API token."""
    for deployment in _deployments(rendered[variant]):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for c in pod["containers"] + pod.get("initContainers", []):
            security = c.get("securityContext", {})
            where = f"{variant}: {name}/{c['name']}"
            assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser", 0)) != 0, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("privileged", False) is False, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            seccomp = security.get("seccompProfile", pod_security.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_container_has_requests_and_limits(rendered: dict[str, list[Obj]], variant: str) -> None:
    for deployment in _deployments(rendered[variant]):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{variant}: {deployment['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
            assert _quantity(resources["limits"]["cpu"]) >= _quantity(resources["requests"]["cpu"]), where
            # Memory is not compressible: a limit above the request invites OOM kills under pressure.
            assert resources["limits"]["memory"] == resources["requests"]["memory"], where


def test_gateway_memory_holds_its_cache(objects: list[Obj]) -> None:
    gateway = container(find(objects, "Deployment", "sam-gateway"), "gateway")
    capacity = parse_bytes(env_of(gateway)["SAM_CACHE_CAPACITY_BYTES"])
    limit = _quantity(gateway["resources"]["limits"]["memory"])
    assert limit >= capacity + 256 * 2**20, f"memory limit {limit:.0f} B leaves no room beside a {capacity} B cache"


# -- the gateway ---------------------------------------------------------------------------------------


def _gateway_settings(gateway: Obj) -> Settings:
    return Settings.from_args([], environ=env_of(gateway))


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_gateway_environment_is_settings_the_gateway_accepts(rendered: dict[str, list[Obj]], variant: str) -> None:
    gateway = container(find(rendered[variant], "Deployment", "sam-gateway"), "gateway")
    fields = {"SAM_" + name.upper() for name in Settings.__dataclass_fields__}
    unknown = {k for k in env_of(gateway) if k.startswith("SAM_")} - fields
    assert not unknown, f"{variant}: the gateway has no setting for {sorted(unknown)} (server/settings.py)"
    settings = _gateway_settings(gateway)  # exits (SystemExit) on a value the gateway rejects
    assert settings.host == "0.0.0.0"
    assert ports_of(gateway) == {"grpc": settings.port, "metrics": settings.metrics_port}


def test_gateway_probes_use_the_grpc_health_service(objects: list[Obj]) -> None:
    gateway = container(find(objects, "Deployment", "sam-gateway"), "gateway")
    grpc_port = ports_of(gateway)["grpc"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert gateway[probe]["grpc"]["port"] == grpc_port, probe
    # Readiness follows the whole server (NOT_SERVING without Triton); liveness must not, or a Triton
    # outage would restart every gateway.
    assert gateway["readinessProbe"]["grpc"].get("service", "") == ""
    assert gateway["livenessProbe"]["grpc"]["service"] == "liveness"
    assert gateway["startupProbe"]["grpc"]["service"] == "liveness"
    assert gateway["readinessProbe"]["periodSeconds"] <= 10


def test_gateway_termination_outlasts_its_grace_period(objects: list[Obj]) -> None:
    deployment = find(objects, "Deployment", "sam-gateway")
    gateway = container(deployment, "gateway")
    grace = _gateway_settings(gateway).grace_period_s
    assert grace == Settings().grace_period_s or "SAM_GRACE_PERIOD_S" in env_of(gateway)
    pre_stop = gateway["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert budget > float(pre_stop[1]) + grace + 5, (
        f"terminationGracePeriodSeconds {budget} must exceed preStop {pre_stop[1]} s + grace {grace} s + 5 s margin"
    )


def test_gateway_points_at_the_triton_service(objects: list[Obj]) -> None:
    gateway = container(find(objects, "Deployment", "sam-gateway"), "gateway")
    host, port = _gateway_settings(gateway).triton_url.rsplit(":", 1)
    service = find(objects, "Service", host)
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["port"] == int(port)
    triton = find(objects, "Deployment", "sam-triton")
    assert labels_match(service["spec"]["selector"], triton["spec"]["template"]["metadata"]["labels"])


def test_gateway_replicas_belong_to_its_autoscaler(objects: list[Obj]) -> None:
    hpa = find(objects, "HorizontalPodAutoscaler", "sam-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sam-gateway"}
    assert "replicas" not in find(objects, "Deployment", "sam-gateway")["spec"], "the HPA owns the replica count"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert 50 <= metric["resource"]["target"]["averageUtilization"] <= 90
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


# -- Triton --------------------------------------------------------------------------------------------


def _triton_args(triton: Obj) -> dict[str, str]:
    args = triton["args"]
    assert args[0] == "tritonserver"
    return dict(a[2:].split("=", 1) for a in args[1:])


def test_triton_probes_ports_and_shared_memory(objects: list[Obj]) -> None:
    deployment = find(objects, "Deployment", "sam-triton")
    triton = container(deployment, "triton")
    ports = ports_of(triton)
    args = _triton_args(triton)
    assert ports == {name: int(args[f"{name}-port"]) for name in ("http", "grpc", "metrics")}
    assert ports["metrics"] == 8002
    assert args["model-repository"] == "/models" and args["strict-readiness"] == "true"
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):  # fmt: skip
        assert triton[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model loading may take minutes"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (shm,) = [m for m in triton["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
    shm_bytes = _quantity(volumes[shm["name"]]["emptyDir"]["sizeLimit"])
    assert shm_bytes >= 256 * 2**20
    assert _quantity(triton["resources"]["limits"]["memory"]) >= shm_bytes + 2 * 2**30, "/dev/shm counts as memory"


def test_gpu_overlay_gives_triton_a_gpu_and_tolerates_gpu_nodes(rendered: dict[str, list[Obj]]) -> None:
    deployment = find(rendered["gpu"], "Deployment", "sam-triton")
    triton = container(deployment, "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == triton["resources"]["requests"]["nvidia.com/gpu"] == "1"
    tolerations = deployment["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert "model-config-name" not in _triton_args(triton), "production uses config.pbtxt (libtorch on the GPU)"
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert "replicas" not in deployment["spec"]


def test_cpu_overlay_runs_the_libtorch_cpu_config_without_gpus(rendered: dict[str, list[Obj]]) -> None:
    deployment = find(rendered["cpu"], "Deployment", "sam-triton")
    triton = container(deployment, "triton")
    args = _triton_args(triton)
    assert args["model-config-name"] == "libtorch_cpu" and args["allow-gpu-metrics"] == "false"
    for kind in ("requests", "limits"):
        assert "nvidia.com/gpu" not in triton["resources"][kind]
    assert "tolerations" not in deployment["spec"]["template"]["spec"]


def test_triton_autoscaler_uses_the_adapter_metric(rendered: dict[str, list[Obj]]) -> None:
    hpa = find(rendered["gpu"], "HorizontalPodAutoscaler", "sam-triton")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "sam-triton"
    (metric,) = hpa["spec"]["metrics"]
    rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-adapter-rules.yaml").read_text())["rules"]
    served = {rule["name"]["as"] for rule in rules}
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in served
    assert hpa["spec"]["minReplicas"] >= 2


# -- services, disruption budgets, network policies ---------------------------------------------------


def test_services_have_named_ports_that_reach_container_ports(objects: list[Obj]) -> None:
    deployments = _deployments(objects)
    for service in of_kind(objects, "Service"):
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        selected = [d for d in deployments if labels_match(selector, d["spec"]["template"]["metadata"]["labels"])]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        container_ports = {p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port.get("name"), f"Service {name} has an unnamed port"
            assert port["targetPort"] in container_ports, f"Service {name} port {port['name']} -> {port['targetPort']}"
    assert {p["name"] for p in find(objects, "Service", "sam-gateway")["spec"]["ports"]} == {"grpc", "metrics"}
    assert {"grpc", "metrics"} <= {p["name"] for p in find(objects, "Service", "sam-triton")["spec"]["ports"]}


def test_disruption_budgets_cover_gateway_and_triton(objects: list[Obj]) -> None:
    for name in ("sam-gateway", "sam-triton"):
        pdb = find(objects, "PodDisruptionBudget", name)
        deployment = find(objects, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
        # maxUnavailable keeps node drains possible at any replica count; minAvailable could block them.
        assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_only_the_gateway_reaches_triton(rendered: dict[str, list[Obj]], variant: str) -> None:
    objects = rendered[variant]
    policy = find(objects, "NetworkPolicy", "sam-triton")
    triton = find(objects, "Deployment", "sam-triton")
    gateway_labels = find(objects, "Deployment", "sam-gateway")["spec"]["template"]["metadata"]["labels"]
    assert labels_match(policy["spec"]["podSelector"]["matchLabels"], triton["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    triton_ports = ports_of(container(triton, "triton"))
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits every pod"
        ports = {p["port"] for p in rule["ports"]}
        assert ports <= set(triton_ports), ports
        for peer in rule["from"]:
            if "podSelector" in peer and "namespaceSelector" not in peer:
                assert labels_match(peer["podSelector"]["matchLabels"], gateway_labels), peer
                assert ports == {"grpc"}
            else:
                assert "namespaceSelector" in peer and ports == {"metrics"}, "only Prometheus may scrape"
    assert any(
        peer.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "sam-gateway"}
        for rule in policy["spec"]["ingress"] for peer in rule["from"]
    )  # fmt: skip


def test_redis_component_is_hardened_private_and_wired(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered[GPU_REDIS]
    redis = container(find(objects, "Deployment", "sam-redis"), "redis")
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    maxmemory = re.fullmatch(r"(\d+)gb", args[args.index("--maxmemory") + 1])
    assert maxmemory, "maxmemory in gb"
    assert _quantity(redis["resources"]["limits"]["memory"]) > int(maxmemory.group(1)) * 2**30
    policy = find(objects, "NetworkPolicy", "sam-redis")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "sam-gateway"}}}]
    url = env_of(container(find(objects, "Deployment", "sam-gateway"), "gateway"))["SAM_REDIS_URL"]
    match = re.fullmatch(r"redis://([a-z0-9-]+):(\d+)/\d+", url)
    assert match, url
    service = find(objects, "Service", match.group(1))
    assert int(match.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    assert "SAM_REDIS_URL" not in env_of(container(find(rendered["gpu"], "Deployment", "sam-gateway"), "gateway"))
