"""The client installs on its own: declared dependencies, no torch, shipped stubs equal the generated ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "client" / "src"
CLIENT = REPO / "client"
SHIPPED = CLIENT_SRC / "sam_client" / "_proto"


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()


def test_declared_dependencies_are_grpcio_protobuf_numpy_pillow_only() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "segment-anything-client"
    assert {_name(r) for r in project["dependencies"]} == {"grpcio", "protobuf", "numpy", "pillow"}
    optional = {_name(r) for reqs in project.get("optional-dependencies", {}).values() for r in reqs}
    assert "torch" not in optional
    assert project["scripts"]["sam-client"] == "sam_client.cli:main"


def test_importing_the_client_and_cli_imports_no_torch_and_no_repository_package() -> None:
    code = (
        "import sys, sam_client, sam_client.cli, sam_client.aio; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'sam', 'server', 'segmentanything', "
        "'training', 'grpc_status', 'google.rpc'}); print(bad)"
    )
    # run from a folder outside the repository so that its top-level packages are not importable
    env = {**os.environ, "PYTHONPATH": str(CLIENT_SRC)}
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_shipped_stubs_equal_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHONPATH": "", "PYTHON": sys.executable},
    )
    fresh = tmp_path / "segmentanything" / "v1"
    shipped = sorted(p.name for p in SHIPPED.iterdir() if p.suffix in (".py", ".pyi") and p.name != "__init__.py")
    assert shipped == ["segment_anything_pb2.py", "segment_anything_pb2.pyi"]
    stale = [name for name in shipped if (SHIPPED / name).read_bytes() != (fresh / name).read_bytes()]
    assert not stale, f"stale client stubs {stale}: run bash scripts/gen_proto.sh && python client/setup.py sync_stubs"


def test_the_client_describes_the_same_service_as_the_repository_stubs() -> None:
    from sam_client import _core

    from segmentanything.v1 import segment_anything_pb2_grpc

    paths = {_core.method_path(name) for name in _core.SERVICE.methods_by_name}
    generated = set(re.findall(r"'(/segmentanything\.v1\.SegmentAnythingService/\w+)'", Path(
        segment_anything_pb2_grpc.__file__).read_text()))  # fmt: skip
    assert paths == generated and len(paths) == 5
