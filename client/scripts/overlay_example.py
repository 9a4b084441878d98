"""Regenerate docs/overlay_example.png: a real Triton + gateway, and ``sam-client segment``.

    .venv/bin/python client/scripts/overlay_example.py [--checkpoint PATH] [--seed N]

Serves the shipped small model (models/sam_small: config.json + model.pt) or, with --checkpoint, that
checkpoint under the same config (e.g. a training run's best.pt while model.pt is not shipped yet),
on free loopback ports; segments a synthetic scene from training.data.synthetic (the kind of image
the small model was trained on) from one foreground point in multi mode; copies the overlay to
docs/overlay_example.png and prints the CLI's table. Needs the repository's main environment.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "client" / "src")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "models/sam_small/config.json"))
    parser.add_argument("--checkpoint", default=str(REPO / "models/sam_small/model.pt"))
    parser.add_argument("--seed", type=int, default=3, help="synthetic scene seed")
    parser.add_argument("--point", default=None, help="X,Y prompt (default: the centre of the largest object)")
    parser.add_argument("--out", default=str(REPO / "docs/overlay_example.png"))
    args = parser.parse_args()

    import numpy as np
    from PIL import Image
    from sam_client import SamClient

    from training.data.synthetic import generate_scene

    work = Path(tempfile.mkdtemp(prefix="overlay-example-"))
    scene = generate_scene(args.seed)
    image_path = work / "scene.png"
    buffer = io.BytesIO()
    Image.fromarray(scene.image).save(buffer, format="PNG")
    image_path.write_bytes(buffer.getvalue())
    if args.point is None:
        wholes = [i for i in range(len(scene.masks)) if scene.parents[i] < 0]
        largest = max(wholes, key=lambda i: int(scene.masks[i].sum()))
        ys, xs = np.nonzero(scene.masks[largest])
        centre = np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2)  # an object pixel near the centroid
        point = f"{int(xs[centre])},{int(ys[centre])}"
    else:
        point = args.point

    repository = work / "model_repository"
    subprocess.run(
        [sys.executable, "-m", "sam.export.model_repository", "--model", args.config, "--checkpoint",
         args.checkpoint, "--out", str(repository)],
        check=True, cwd=REPO,
    )  # fmt: skip
    triton_grpc, port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    triton = subprocess.Popen(
        [sys.executable, "-m", "server.backend.local_triton", "--model-repository", str(repository),
         "--model-config-name", "cpu", "--grpc-port", str(triton_grpc), "--log-file", str(work / "triton.log")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    gateway = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--metrics-port", str(free_port())],
        cwd=REPO, env={**env, "SAM_TRITON_URL": f"127.0.0.1:{triton_grpc}"},
        stdout=open(work / "gateway.log", "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        with SamClient(address, timeout_s=2) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if client.health() == "SERVING":
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline or gateway.poll() is not None or triton.poll() is not None:
                    raise SystemExit(f"the service did not start; logs in {work}")
                time.sleep(0.5)
        out_dir = work / "out"
        command = [sys.executable, "-m", "sam_client", "--address", address, "segment", str(image_path),
                   "--point", point, "--mode", "multi", "--out", str(out_dir)]  # fmt: skip
        print("$ sam-client segment scene.png --point", point, "--mode multi --out out/")
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "client" / "src")})
        shutil.copyfile(out_dir / "scene" / "overlay.png", args.out)
        print(f"wrote {args.out}")
    finally:
        for process in (gateway, triton):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
