"""Helpers of the deployment checks: rendering kustomize overlays and finding objects in them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("gpu", "cpu")
# The gpu overlay with the optional Redis component switched on (the commented line uncommented).
GPU_REDIS = "gpu+redis"
REDIS_COMPONENT_LINE = "  # - ../../components/redis"

Obj = dict[str, Any]


def kubectl_binary() -> str | None:
    return shutil.which("kubectl")


def kustomize(path: Path) -> list[Obj]:
    binary = kubectl_binary()
    if binary is None:
        pytest.skip("kubectl not found on PATH: cannot render the kustomize overlays (`kubectl kustomize` is offline)")
    result = subprocess.run([binary, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind}/{name}, found {len(matches)}")
    return matches[0]


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def container(deployment: Obj, name: str) -> Obj:
    containers = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    if len(containers) != 1:
        raise AssertionError(f"{deployment['metadata']['name']} has no single container {name!r}")
    return containers[0]


def env_of(container_spec: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_spec.get("env", []) if "value" in e}


def ports_of(container_spec: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container_spec.get("ports", [])}


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)

