"""LocalTriton against a real tritonserver from the nvidia-pytriton wheel.

The model repository is built in a temporary folder: a Python-backend model that ``torch.jit.load``s
a scripted ``Linear(4, 3)`` created here, configured only through ``configs/cpu.pbtxt`` so that it
loads only if ``--model-config-name=cpu`` reaches tritonserver.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from server.backend.local_triton import REPO_ROOT, LocalTriton, TritonStartError

pytestmark = [
    pytest.mark.slow,
    # TorchScript is what the model repository serves; torch 2.13 marks it deprecated.
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]

LINEAR_MODEL_PY = textwrap.dedent(
    """
    import os

    import torch
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
            self.module = torch.jit.load(path).eval()

        def execute(self, requests):
            responses = []
            for request in requests:
                x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
                with torch.no_grad():
                    y = self.module(torch.from_numpy(x)).numpy()
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", y)]))
            return responses
    """
)

LINEAR_CONFIG = textwrap.dedent(
    """
    name: "tiny_linear"
    backend: "python"
    max_batch_size: 8
    input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]
    output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 3 ] } ]
    instance_group [ { kind: KIND_CPU, count: 1 } ]
    """
)

# numpy only (no torch import in the stub): starts fast, for the CLI and failure tests.
ECHO_MODEL_PY = textwrap.dedent(
    """
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            if {broken}:
                raise RuntimeError("deliberately broken model: initialize refuses to load")

        def execute(self, requests):
            return [
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT", pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() * 2)]
                )
                for r in requests
            ]
    """
)

ECHO_CONFIG = textwrap.dedent(
    """
    name: "echo"
    backend: "python"
    max_batch_size: 0
    input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
    output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ -1 ] } ]
    instance_group [ { kind: KIND_CPU, count: 1 } ]
    """
)


def write_echo_repository(root: Path, *, broken: bool) -> Path:
    model = root / "echo"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(ECHO_MODEL_PY.format(broken=broken))
    (model / "config.pbtxt").write_text(ECHO_CONFIG)
    return root


@pytest.fixture(scope="module")
def linear() -> torch.jit.ScriptModule:
    torch.manual_seed(0)
    return torch.jit.script(torch.nn.Linear(4, 3).eval())


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory, linear: torch.jit.ScriptModule) -> Iterator[LocalTriton]:
    root = tmp_path_factory.mktemp("model_repository")
    model = root / "tiny_linear"
    (model / "1").mkdir(parents=True)
    (model / "configs").mkdir()
    torch.jit.save(linear, str(model / "1" / "model.pt"))
    (model / "1" / "model.py").write_text(LINEAR_MODEL_PY)
    (model / "configs" / "cpu.pbtxt").write_text(LINEAR_CONFIG)
    log = tmp_path_factory.mktemp("logs") / "triton.log"
    with LocalTriton(root, model_config_name="cpu", log_path=log) as server:
        yield server


def infer_linear(url: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url)
    try:
        inputs = [grpcclient.InferInput("INPUT", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        result = client.infer("tiny_linear", inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT")])
        output = result.as_numpy("OUTPUT")
        assert output is not None
        return output
    finally:
        client.close()


def test_serves_the_scripted_module_over_grpc(triton: LocalTriton, linear: torch.jit.ScriptModule) -> None:
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    expected = linear(torch.from_numpy(x)).detach().numpy()

    output = infer_linear(triton.grpc_url, x)

    assert output.shape == (5, 3)
    np.testing.assert_allclose(output, expected, rtol=1e-6, atol=1e-6)


def test_binds_loopback_and_exposes_metrics(triton: LocalTriton) -> None:
    for url in (triton.http_url, triton.metrics_url):
        assert url.startswith("http://127.0.0.1:")
    assert triton.grpc_url.startswith("127.0.0.1:")
    assert len({triton.http_port, triton.grpc_port, triton.metrics_port}) == 3

    with urllib.request.urlopen(triton.metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    assert 'nv_inference_request_success{model="tiny_linear"' in metrics

    command = triton.command()
    for flag in ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"):
        assert flag in command


def test_backend_dir_has_the_python_backend_side_by_side(triton: LocalTriton) -> None:
    python_dir = triton.build_dir / "triton_backends" / "python"
    names = {p.name for p in python_dir.iterdir()}
    # (__pycache__ appears once the stub has imported the utilities module.)
    assert {"libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"} <= names
    assert os.access(python_dir / "triton_python_backend_stub", os.X_OK)


def test_stop_then_start_again_on_the_same_ports(triton: LocalTriton, linear: torch.jit.ScriptModule) -> None:
    ports = (triton.http_port, triton.grpc_port, triton.metrics_port)
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert client.is_server_ready()
        assert triton.stop() == 0
        assert not triton.running
        assert not triton.is_ready()
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            client.is_server_ready()
    finally:
        client.close()

    triton.start()

    assert (triton.http_port, triton.grpc_port, triton.metrics_port) == ports
    # A new channel: the old one is in gRPC's reconnect back-off after the refused connection.
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert client.is_server_ready()
        assert client.is_model_ready("tiny_linear")
    finally:
        client.close()
    x = np.ones((1, 4), dtype=np.float32)
    np.testing.assert_allclose(
        infer_linear(triton.grpc_url, x), linear(torch.from_numpy(x)).detach().numpy(), rtol=1e-6, atol=1e-6
    )


def test_start_failure_raises_with_the_log_tail(tmp_path: Path) -> None:
    repository = write_echo_repository(tmp_path / "repo", broken=True)
    server = LocalTriton(repository, log_path=tmp_path / "triton.log", startup_timeout_s=120)

    with pytest.raises(TritonStartError, match="deliberately broken model"):
        server.start()

    assert not server.running


def test_command_line_runs_in_the_foreground_until_sigterm(tmp_path: Path) -> None:
    repository = write_echo_repository(tmp_path / "repo", broken=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "server.backend.local_triton", "--model-repository", str(repository),
         "--log-file", str(tmp_path / "triton.log"), "--log-verbose=1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = process.stdout.readline()  # blocks until ready (or the process ends)
        assert line.startswith("tritonserver ready: grpc 127.0.0.1:"), line + process.stderr.read()
        grpc_url = line.split()[3]
        client = grpcclient.InferenceServerClient(grpc_url)
        try:
            assert client.is_model_ready("echo")
        finally:
            client.close()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        with pytest.raises(InferenceServerException):
            grpcclient.InferenceServerClient(grpc_url).is_server_live()
        # The pass-through flag reached tritonserver: verbose logging is on.
        assert "--log-verbose=1" in (tmp_path / "triton.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
