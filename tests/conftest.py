"""Session fixtures shared by the service tests (tests/server) and the client tests (tests/client).

``sam_service`` starts, once per test session, the real serving stack on free loopback ports:

1. a tiny SAM model with fixed random weights (``torch.manual_seed(0)``), saved as a checkpoint;
2. the Triton model repository built from it by ``python -m sam.export.model_repository``;
3. a real ``tritonserver`` serving it (:class:`server.backend.local_triton.LocalTriton`, the
   Python-backend CPU configs);
4. the real gateway, ``python -m server`` in a subprocess, polled until its health is SERVING.

Tests talk to it over gRPC at ``sam_service.address``. ``sam_service.start_gateway(...)`` starts
further gateways on the same Triton with other settings (a small cache, shared memory); they stop
when the test session ends, or earlier with ``stop()``. Heavy imports happen inside the fixtures,
so collecting unrelated tests stays fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
#: gRPC channel options for test clients (a float32 embedding of a real model is 4 MiB).
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
MODEL_SPEC = "tiny"
MODEL_SEED = 0


def wait_for_health(
    address: str,
    want: str = "SERVING",
    service: str = "",
    timeout_s: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``grpc.health.v1.Health/Check`` until ``service`` reports ``want`` (no fixed sleeps)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    wanted = health_pb2.HealthCheckResponse.ServingStatus.Value(want)
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the gateway exited with code {process.returncode} while waiting for {want}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0).status
                if status == wanted:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as error:
                last = error.code().name
            time.sleep(0.05)
    raise TimeoutError(f"health of {service!r} at {address} is {last}, not {want}, after {timeout_s:.0f} s")


@dataclass
class GatewayProcess:
    """One ``python -m server`` subprocess on free loopback ports."""

    settings: dict[str, Any]
    port: int
    metrics_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, wait_serving: bool = True) -> GatewayProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.update({"SAM_" + k.upper(): _env_value(v) for k, v in self.settings.items()})
        env.update({"SAM_PORT": str(self.port), "SAM_METRICS_PORT": str(self.metrics_port)})
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_serving:
            try:
                wait_for_health(self.address, "SERVING", timeout_s=90.0, process=self.process)
            except BaseException:
                self.stop()
                raise RuntimeError(f"gateway did not become SERVING; log tail:\n{self.log_tail()}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None
        return process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def channel(self) -> Any:
        import grpc

        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class SamService:
    """The running stack (see the module docstring)."""

    triton: Any  # server.backend.local_triton.LocalTriton
    gateway: GatewayProcess
    repository: Path
    checkpoint: Path
    model_spec: str = MODEL_SPEC
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sam-service-")))
    _extra: list[GatewayProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The gateway's ``host:port`` (plain insecure gRPC; raise the message limits on channels)."""
        return self.gateway.address

    @property
    def triton_url(self) -> str:
        return str(self.triton.grpc_url)

    def channel(self) -> Any:
        """A new sync ``grpc.Channel`` to the gateway with raised message limits (close it)."""
        return self.gateway.channel()

    def start_gateway(self, wait_serving: bool = True, **settings: Any) -> GatewayProcess:
        """Another gateway on the same Triton, with ``settings`` overriding the defaults (stopped at
        session end unless stopped earlier)."""
        gateway = _new_gateway(self.triton_url, self.workdir, settings)
        self._extra.append(gateway)
        return gateway.start(wait_serving)

    def build_model(self) -> Any:
        """The served model in-process (``sam.Sam``), from the same checkpoint."""
        import sam

        return sam.build_model(self.model_spec, self.checkpoint)


def _new_gateway(triton_url: str, workdir: Path, settings: dict[str, Any]) -> GatewayProcess:
    from server.backend.local_triton import free_ports

    port, metrics_port = free_ports(2)
    defaults = {"triton_url": triton_url, "health_poll_interval_s": 0.2, "log_level": "WARNING"}
    log_path = workdir / f"gateway-{port}.log"
    return GatewayProcess({**defaults, **settings}, port, metrics_port, log_path)


@pytest.fixture(scope="session")
def sam_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamService]:
    """The real Triton + gateway stack on free loopback ports, once per session."""
    import torch

    import sam
    from sam.export.model_repository import build_model_repository
    from server.backend.local_triton import LocalTriton

    root = tmp_path_factory.mktemp("sam_service")
    checkpoint = root / "tiny_seed0.pt"
    with torch.random.fork_rng():
        torch.manual_seed(MODEL_SEED)
        model = sam.build_model(MODEL_SPEC)
    torch.save(model.state_dict(), checkpoint)
    with warnings.catch_warnings():
        # TorchScript is what the model repository serves; torch 2.13 marks it deprecated.
        warnings.filterwarnings("ignore", r".*torch\.jit\..* is deprecated", DeprecationWarning)
        repository = build_model_repository(MODEL_SPEC, root / "model_repository", checkpoint=checkpoint)
    triton = LocalTriton(repository, model_config_name="cpu", log_path=root / "triton.log")
    triton.start()
    gateway = _new_gateway(triton.grpc_url, root, {})
    service = SamService(triton, gateway, repository, checkpoint, workdir=root)
    try:
        gateway.start()
        yield service
    finally:
        for extra in service._extra:
            extra.stop()
        gateway.stop()
        triton.stop()
