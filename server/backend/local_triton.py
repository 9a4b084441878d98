"""Run a real ``tritonserver`` from the ``nvidia-pytriton`` wheel, without Docker.

The wheel ships Triton 2.51 with only the Python backend. Making it run takes a few steps that are
easy to get wrong (see ``shared/platform-notes.md``); this module is the one place that knows them:

1. The backend directory is assembled under ``<repo>/build/triton_backends/python/`` from copies of
   ``libtriton_python.so``, ``triton_python_backend_utils.py`` and the Python 3.11
   ``triton_python_backend_stub`` (site-packages is never edited).
2. ``LD_LIBRARY_PATH`` starts with this interpreter's ``LIBDIR`` and then ``nvidia_pytriton.libs``,
   so the stub loads the libpython that matches the venv's standard library.
3. The venv's ``bin/`` comes first on ``PATH``: the stub finds site-packages (torch, numpy) through
   the ``python3`` it finds there and ignores ``PYTHONPATH``.
4. HTTP, gRPC and metrics listen on loopback only, on ports chosen free at start (or given), with
   ``--allow-gpu-metrics=false --exit-on-error=true``.

Use it as a context manager in tests::

    with LocalTriton("model_repository", model_config_name="cpu") as triton:
        client = tritonclient.grpc.InferenceServerClient(triton.grpc_url)

or in the foreground from the shell (until SIGINT/SIGTERM)::

    python -m server.backend.local_triton --model-repository DIR --model-config-name cpu
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUILD_DIR = REPO_ROOT / "build"
LOOPBACK = "127.0.0.1"
_STUB_PYTHON_VERSION = "3.11"


class TritonStartError(RuntimeError):
    """Triton did not become ready (exited, or timed out). The message ends with its log tail."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths inside the installed ``nvidia-pytriton`` wheel."""

    server_binary: Path
    python_backend_dir: Path
    stub: Path
    libs_dir: Path

    @classmethod
    def find(cls) -> TritonInstall:
        """Locate the wheel's files; raise ``FileNotFoundError`` saying what to install if missing."""
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "package 'pytriton' is not installed; run scripts/setup_env.sh (it pins nvidia-pytriton)"
            )
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        server_dir = package_dir / "tritonserver"
        install = cls(
            server_binary=server_dir / "bin" / "tritonserver",
            python_backend_dir=server_dir / "backends" / "python",
            stub=server_dir / "python_backend_stubs" / _STUB_PYTHON_VERSION / "triton_python_backend_stub",
            libs_dir=package_dir.parent / "nvidia_pytriton.libs",
        )
        for path in (install.server_binary, install.python_backend_dir, install.stub, install.libs_dir):
            if not path.exists():
                raise FileNotFoundError(
                    f"{path} is missing from the nvidia-pytriton install; reinstall nvidia-pytriton==0.7.0"
                )
        return install


def _copy_if_changed(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically unless an identical-looking copy is already there."""
    source_stat = source.stat()
    try:
        target_stat = target.stat()
        if target_stat.st_size == source_stat.st_size and target_stat.st_mtime == source_stat.st_mtime:
            return
    except FileNotFoundError:
        pass
    # Copy beside the target and rename: a concurrent reader never sees a half-written file.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copy2(source, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def assemble_backend_dir(build_dir: Path = DEFAULT_BUILD_DIR, install: TritonInstall | None = None) -> Path:
    """Create ``build_dir/triton_backends/python/`` and return ``build_dir/triton_backends``.

    The folder holds copies of the Python backend library, its utilities module and the 3.11 stub,
    side by side, which is the layout ``tritonserver --backend-directory`` expects.
    """
    install = install or TritonInstall.find()
    backends = build_dir / "triton_backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (
        install.python_backend_dir / "libtriton_python.so",
        install.python_backend_dir / "triton_python_backend_utils.py",
        install.stub,
    ):
        _copy_if_changed(source, python_dir / source.name)
    return backends


def triton_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``tritonserver``: interpreter LIBDIR first on LD_LIBRARY_PATH, venv bin first on PATH."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR")
    library_path = [str(libdir)] if libdir else []
    library_path.append(str(install.libs_dir))
    if env.get("LD_LIBRARY_PATH"):
        library_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(library_path)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env["PATH"]]) if env.get("PATH") else venv_bin
    return env


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct TCP ports on ``host`` that nothing listens on right now (the OS picks them).

    All sockets are held open until every port is known, so the OS cannot hand out one port twice.
    """
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalTriton:
    """One ``tritonserver`` process serving ``model_repository`` on loopback.

    Ports: any of ``http_port``, ``grpc_port``, ``metrics_port`` left ``None`` is chosen free on the
    first :meth:`start` and kept afterwards, so :meth:`restart` (or ``stop()`` then ``start()``)
    brings Triton back on the same addresses. Output (stdout and stderr) is appended to ``log_path``
    (default: a new file in the system temp folder). ``extra_args`` are passed to ``tritonserver``
    verbatim, e.g. ``["--log-verbose=1"]`` or trace flags.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        model_config_name: str | None = None,
        extra_args: Sequence[str] = (),
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        build_dir: str | os.PathLike[str] = DEFAULT_BUILD_DIR,
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        if not self.model_repository.is_dir():
            raise FileNotFoundError(f"model repository {self.model_repository} is not a directory")
        if startup_timeout_s <= 0 or stop_timeout_s <= 0:
            raise ValueError("startup_timeout_s and stop_timeout_s must be positive seconds")
        self.model_config_name = model_config_name
        self.extra_args = tuple(extra_args)
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.metrics_port = metrics_port
        self.build_dir = Path(build_dir)
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._atexit_registered = False

    # -- addresses -------------------------------------------------------------------------------

    def _require_port(self, port: int | None) -> int:
        if port is None:
            raise RuntimeError("ports are chosen at start(); call start() first")
        return port

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT``, the form ``tritonclient.grpc`` and ``grpc.aio`` channels take."""
        return f"{LOOPBACK}:{self._require_port(self.grpc_port)}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT`` (KServe v2 REST, e.g. ``/v2/health/ready``)."""
        return f"http://{LOOPBACK}:{self._require_port(self.http_port)}"

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:PORT/metrics`` (Prometheus text format)."""
        return f"http://{LOOPBACK}:{self._require_port(self.metrics_port)}/metrics"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the ``tritonserver`` process started by :meth:`start` is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        """The full ``tritonserver`` command line for the current ports."""
        install = TritonInstall.find()
        backends = self.build_dir / "triton_backends"
        args = [
            str(install.server_binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends.resolve()}",
            f"--http-address={LOOPBACK}",
            f"--http-port={self._require_port(self.http_port)}",
            f"--grpc-address={LOOPBACK}",
            f"--grpc-port={self._require_port(self.grpc_port)}",
            f"--metrics-address={LOOPBACK}",
            f"--metrics-port={self._require_port(self.metrics_port)}",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
        ]
        if self.model_config_name:
            args.append(f"--model-config-name={self.model_config_name}")
        args.extend(self.extra_args)
        return args

    def start(self) -> LocalTriton:
        """Start Triton and block until ``/v2/health/ready`` answers 200.

        Raises :class:`TritonStartError` (with the log tail) if the process exits first or is not
        ready within ``startup_timeout_s``; the process is stopped in both cases.
        """
        with self._lock:
            if self.running:
                return self
            if self._process is not None:  # exited on its own: reap what is left of it
                self._kill_group(self._process)
                self._process = None
            install = TritonInstall.find()
            assemble_backend_dir(self.build_dir, install)
            http_port, grpc_port, metrics_port = free_ports(3)
            self.http_port = self.http_port or http_port
            self.grpc_port = self.grpc_port or grpc_port
            self.metrics_port = self.metrics_port or metrics_port
            command = self.command()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== local_triton: starting {' '.join(command)}\n".encode())
                log.flush()
                # A session of its own: a kill on timeout reaches the stub processes too.
                process = self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=triton_environment(install),
                    start_new_session=True,
                )
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        url = f"{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.05
        while True:
            code = process.poll()
            if code is not None:
                raise TritonStartError(
                    f"tritonserver exited with code {code} before it was ready "
                    f"(log: {self.log_path}):\n{self.log_tail()}"
                )
            if self.is_ready(url):
                return
            if time.monotonic() >= deadline:
                raise TritonStartError(
                    f"tritonserver was not ready within {self.startup_timeout_s:.0f} s "
                    f"(log: {self.log_path}); raise startup_timeout_s if models are slow to load:\n"
                    f"{self.log_tail()}"
                )
            # Poll with a short back-off: no answer yet is the normal case while models load.
            process_wait_s = min(delay, max(0.0, deadline - time.monotonic()))
            try:
                process.wait(timeout=process_wait_s)
            except subprocess.TimeoutExpired:
                pass
            delay = min(delay * 2, 0.5)

    def is_ready(self, url: str | None = None) -> bool:
        """True if Triton answers 200 on ``/v2/health/ready`` (all models ready) right now."""
        if url is None:
            url = f"{self.http_url}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> int | None:
        """Stop Triton: SIGTERM, wait ``stop_timeout_s``, then SIGKILL its whole process group.

        Returns the exit code, or ``None`` if it was not started. Safe to call twice.
        """
        with self._lock:
            process = self._process
            if process is None:
                return None
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    self._kill_group(process)
                    process.wait()
            # Stub processes left behind by a crash would hold the model's memory.
            self._kill_group(process)
            self._process = None
            return process.returncode

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def restart(self) -> LocalTriton:
        """Stop, then start again on the same ports."""
        self.stop()
        return self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit on its own; its exit code (``None`` if not started)."""
        process = self._process
        return None if process is None else process.wait(timeout=timeout)

    def log_tail(self, max_lines: int = 60) -> str:
        """The last ``max_lines`` lines of the log file."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-max_lines:])

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m server.backend.local_triton",
        description=(
            "Run tritonserver from the nvidia-pytriton wheel in the foreground on 127.0.0.1 until "
            "SIGINT/SIGTERM. Arguments not listed here are passed to tritonserver unchanged "
            "(e.g. --log-verbose=1, --trace-config ...)."
        ),
    )
    parser.add_argument("--model-repository", required=True, help="Triton model repository folder.")
    parser.add_argument(
        "--model-config-name",
        default=None,
        help="Use <model>/configs/NAME.pbtxt instead of config.pbtxt (e.g. 'cpu' for the Python-backend "
        "variant). Default: config.pbtxt.",
    )
    parser.add_argument("--http-port", type=int, default=None, help="HTTP port. Default: a free port.")
    parser.add_argument("--grpc-port", type=int, default=None, help="gRPC port. Default: a free port.")
    parser.add_argument("--metrics-port", type=int, default=None, help="Metrics port. Default: a free port.")
    parser.add_argument(
        "--log-file",
        default=None,
        help="Append tritonserver's output to this file. Default: a new file in the temp folder.",
    )
    parser.add_argument(
        "--build-dir",
        default=str(DEFAULT_BUILD_DIR),
        help="Folder where the backend directory is assembled. Default: %(default)s.",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="Seconds to wait for /v2/health/ready. Default: %(default)s.",
    )
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parse_args(argv)
    triton = LocalTriton(
        args.model_repository,
        model_config_name=args.model_config_name,
        extra_args=extra,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=args.log_file,
        build_dir=args.build_dir,
        startup_timeout_s=args.startup_timeout,
    )

    def request_stop(signum: int, _frame: object) -> None:
        raise _StopRequested(signum)

    # Raising from the handler also interrupts a start() that is still waiting for the models,
    # and start() stops Triton on the way out.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        triton.start()
        print(
            f"tritonserver ready: grpc {triton.grpc_url}  http {triton.http_url}  metrics {triton.metrics_url}"
            f"  (log: {triton.log_path})",
            flush=True,
        )
        code = triton.wait()
        print(f"tritonserver exited on its own (code {code}); log tail:\n{triton.log_tail()}", file=sys.stderr)
        return code or 1
    except _StopRequested:
        return 0
    except TritonStartError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        # A second signal must not interrupt the shutdown itself (stop() kills after its timeout).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        triton.stop()


class _StopRequested(Exception):
    """SIGINT or SIGTERM arrived in the foreground command."""


if __name__ == "__main__":
    sys.exit(main())
