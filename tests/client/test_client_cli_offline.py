"""The CLI without a server: usage errors (exit 2) and an unreachable server (exit 3), with messages
that say what to fix."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "client" / "src"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(CLIENT_SRC)}
    env.pop("SAM_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "sam_client", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_help_lists_commands_examples_and_exit_codes() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("health", "info", "embed", "segment", "generate", "examples:", "exit codes:", "SAM_ADDRESS"):
        assert word in out.stdout
    segment = run_cli("segment", "--help")
    assert "--point X,Y[,LABEL]" in segment.stdout and "overlay.png" in segment.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["segment", "x.png", "--point", "1"], "X,Y or X,Y,LABEL"),
        (["segment", "x.png", "--point", "1,2,7"], "label must be 1"),
        (["segment", "x.png", "--box", "5,5,1,1"], "X0 <= X1"),
        (["segment", "x.png", "--mode", "all", "--point", "1,1"], "invalid choice"),
        (["--timeout", "0", "info"], "seconds > 0"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_and_says_what_to_fix(args: list[str], message: str) -> None:
    out = run_cli(*args)
    assert out.returncode == 2
    assert message in out.stderr


def test_missing_inputs_exit_2(tmp_path) -> None:
    out = run_cli("--address", "127.0.0.1:1", "segment", str(tmp_path / "nope.jpg"), "--point", "1,1")
    assert out.returncode == 2 and "image not found" in out.stderr
    out = run_cli("--address", "127.0.0.1:1", "segment", str(tmp_path), "--point", "1,1")
    assert out.returncode == 2 and "no PNG, JPEG or WebP images" in out.stderr
    out = run_cli("segment", str(tmp_path))
    assert out.returncode == 2 and "--point" in out.stderr


def test_an_unreachable_server_exits_3_naming_the_address(tmp_path, free_port: int) -> None:
    image = tmp_path / "a.png"
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    image.write_bytes(buffer.getvalue())
    address = f"127.0.0.1:{free_port}"
    for args in (["health"], ["info"], ["segment", str(image), "--point", "1,1"]):
        out = run_cli("--address", address, "--timeout", "1", *args)
        assert out.returncode == 3, out.stderr
        assert address in out.stderr and "--address" in out.stderr
