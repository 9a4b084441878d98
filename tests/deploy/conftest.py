"""Fixtures of the deployment checks: every overlay rendered once per session."""

from __future__ import annotations

import shutil

import pytest

from tests.deploy.manifests import DEPLOY, GPU_REDIS, OVERLAYS, REDIS_COMPONENT_LINE, Obj, kustomize


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """Every overlay rendered once: ``{"gpu": [...], "cpu": [...], "gpu+redis": [...]}``.

    ``gpu+redis`` is overlays/gpu with its commented-out Redis component line switched on, in a copy.
    """
    out = {name: kustomize(DEPLOY / "overlays" / name) for name in OVERLAYS}
    copy = tmp_path_factory.mktemp("deploy") / "deploy"
    shutil.copytree(DEPLOY, copy)
    kustomization = copy / "overlays" / "gpu" / "kustomization.yaml"
    text = kustomization.read_text()
    if REDIS_COMPONENT_LINE not in text:
        raise AssertionError(f"overlays/gpu/kustomization.yaml lost the line {REDIS_COMPONENT_LINE.strip()!r}")
    kustomization.write_text(text.replace(REDIS_COMPONENT_LINE, REDIS_COMPONENT_LINE.replace("# ", "")))
    out[GPU_REDIS] = kustomize(copy / "overlays" / "gpu")
    return out


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def objects(rendered: dict[str, list[Obj]], overlay: str) -> list[Obj]:
    """The objects of one overlay (the test runs once per overlay)."""
    return rendered[overlay]
