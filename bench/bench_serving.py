"""Serving overhead of the gateway + Triton against the in-process model (a benchmark, not a test).

In one run, on one model and one image, with a real Triton (Python-backend CPU configs) and real
gateways (``python -m server`` subprocesses) on free loopback ports:

(a) Segment latency over gRPC with a cached embedding (one foreground point, MULTI, RLE masks at
    the original size), p50 and p99, against ``sam.Predictor.predict`` in this process on the same
    model, image and prompt (three masks upsampled to the original size and thresholded). Measured
    with a plain gateway and with one that passes the embedding through shared memory.
(b) EmbedImage of an image that is already cached against its first encode (fresh images of the
    same size; the first encode includes PNG decode, resize and the encoder in Triton).
(c) Gateway memory per cached embedding, float32 and float16 caches: resident-set growth of the
    gateway process over N newly cached images, minus the growth of a gateway without a cache doing
    the same work (allocator retention of image decoding), divided by N; next to the array size.

    python bench/bench_serving.py [--model tiny|vit_b|PATH.json] [--checkpoint CKPT] [--image 480x640]
                                  [--requests 200] [--memory-images 40]

Without a checkpoint the weights are random (seed 0): latency and memory do not depend on them.
The in-process predictor uses torch's default thread count; Triton's CPU decoder config uses 2
threads. Run it on an otherwise idle machine: it is a 2-core VM here and other load shows up.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sam  # noqa: E402
from sam.export.model_repository import build_model_repository  # noqa: E402
from segmentanything.v1 import segment_anything_pb2 as pb  # noqa: E402
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc  # noqa: E402
from server.backend.local_triton import LocalTriton, free_ports  # noqa: E402

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]


def scene(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 180, (xx + yy) / (height + width) * 120], axis=-1)
    for _ in range(4):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.08, 0.25) * height, rng.uniform(0.08, 0.25) * width
        image[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.integers(0, 256, 3)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def timings(fn: Callable[[], object], repeats: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(sample.value)
    return 0.0


def stage_means_ms(url: str) -> str:
    """Mean time per Segment stage and per Triton decoder call, from the gateway's own metrics."""
    parts = []
    for stage in ("decode_prompt", "upsample", "encode_masks"):
        labels = {"stage": stage}
        count = metric(url, "sam_segment_stage_duration_seconds_count", labels)
        total = metric(url, "sam_segment_stage_duration_seconds_sum", labels)
        parts.append(f"{stage} {total / max(count, 1) * 1e3:.1f}")
    labels = {"model": "sam_decoder", "outcome": "ok"}
    count = metric(url, "sam_triton_request_duration_seconds_count", labels)
    total = metric(url, "sam_triton_request_duration_seconds_sum", labels)
    parts.append(f"(Triton decoder call {total / max(count, 1) * 1e3:.1f})")
    return "mean ms: " + ", ".join(parts)


class Gateway:
    """``python -m server`` in a subprocess on ``triton_url``, started and healthy.

    ``settings``: gateway settings (``use_shared_memory=True`` -> ``SAM_USE_SHARED_MEMORY=true``);
    ``env``: further environment variables (e.g. ``OTEL_*``).
    """

    def __init__(self, triton_url: str, log_dir: Path, env: dict[str, str] | None = None, **settings: Any) -> None:
        self.port, self.metrics_port = free_ports(2)
        env = {**os.environ, "PYTHONPATH": str(REPO), "SAM_TRITON_URL": triton_url, "SAM_PORT": str(self.port),
               "SAM_METRICS_PORT": str(self.metrics_port), "SAM_LOG_LEVEL": "WARNING",
               "SAM_HEALTH_POLL_INTERVAL_S": "0.2", **(env or {})}  # fmt: skip
        env.update({"SAM_" + k.upper(): str(v).lower() if isinstance(v, bool) else str(v) for k, v in settings.items()})
        self.log = open(log_dir / f"gateway-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "server"], cwd=REPO, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=CHANNEL_OPTIONS)
        self.api = pb_grpc.SegmentAnythingServiceStub(self.channel)
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + 120
        while True:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"gateway did not start; see {self.log.name}")
            time.sleep(0.1)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="registry name or JSON config (default tiny; e.g. vit_b)")
    parser.add_argument("--checkpoint", default=None, help="weights (default: random, seed 0)")
    parser.add_argument("--image", default="480x640", help="original image size HxW (default 480x640)")
    parser.add_argument("--requests", type=int, default=200, help="timed Segment calls per variant (default 200)")
    parser.add_argument("--encodes", type=int, default=5, help="fresh images for the first-encode time (default 5)")
    parser.add_argument("--memory-images", type=int, default=40, help="images cached for (c) (default 40)")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.image.lower().split("x"))

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    print(f"model {args.model} ({'checkpoint ' + args.checkpoint if args.checkpoint else 'random weights, seed 0'}),"
          f" image {height}x{width}, torch threads {torch.get_num_threads()}, logs in {work}", flush=True)  # fmt: skip
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        model = sam.build_model(args.model)
        checkpoint = str(work / "weights.pt")
        torch.save(model.state_dict(), checkpoint)
    else:
        model = sam.build_model(args.model, checkpoint)
    build_model_repository(args.model, work / "repository", checkpoint=checkpoint)

    image = scene(height, width, seed=1)
    data = png(image)
    point = (width * 0.4, height * 0.45)
    request_set = pb.PromptSet(points=[pb.Point(x=point[0], y=point[1], label=pb.Point.FOREGROUND)])

    rows: list[tuple[str, str, str]] = []
    with LocalTriton(work / "repository", model_config_name="cpu", log_path=work / "triton.log") as triton:
        plain = Gateway(triton.grpc_url, work)
        shared = Gateway(triton.grpc_url, work, use_shared_memory=True)
        try:
            # (a) Segment with a cached embedding vs Predictor.predict.
            predictor = sam.Predictor(model)
            predictor.set_image(image)
            coords, labels = np.array([point]), np.array([1])
            local = timings(lambda: predictor.predict(coords, labels, multimask_output=True), args.requests)
            results = {}
            for name, gateway in (("gRPC gateway", plain), ("gRPC gateway, shared memory", shared)):
                image_id = gateway.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data))).image_id
                request = pb.SegmentRequest(image_id=image_id, prompt_sets=[request_set],
                                            multimask_mode=pb.SegmentRequest.MULTI)  # fmt: skip
                results[name] = timings(lambda r=request, g=gateway: g.api.Segment(r), args.requests)
            local_p50, local_p99 = percentile(local, 50) * 1e3, percentile(local, 99) * 1e3
            rows.append(
                ("(a) Predictor.predict in process, p50 / p99", f"{local_p50:.2f} / {local_p99:.2f} ms", "1.00x")
            )
            stages = {name: stage_means_ms(gateway.metrics_url) for name, gateway in
                      (("gRPC gateway", plain), ("gRPC gateway, shared memory", shared))}  # fmt: skip
            for name, values in results.items():
                p50, p99 = percentile(values, 50) * 1e3, percentile(values, 99) * 1e3
                rows.append((f"(a) Segment over {name}, p50 / p99", f"{p50:.2f} / {p99:.2f} ms",
                             f"{p50 / local_p50:.2f}x (p99 {p99 / local_p99:.2f}x)"))  # fmt: skip
                rows.append(("    where the gateway's time went", "", stages[name]))

            # (b) Repeat EmbedImage of a cached image vs its first encode.
            firsts = []
            for seed in range(args.encodes):
                fresh = png(scene(height, width, seed=100 + seed))
                start = time.perf_counter()
                plain.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=fresh)))
                firsts.append(time.perf_counter() - start)
            repeat = timings(lambda: plain.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data))),
                             args.requests)  # fmt: skip
            first_ms, repeat_ms = statistics.median(firsts) * 1e3, statistics.median(repeat) * 1e3
            rows.append(("(b) EmbedImage, first encode (median)", f"{first_ms:.2f} ms", "1.00x"))
            rows.append(
                ("(b) EmbedImage, already cached (median)", f"{repeat_ms:.3f} ms", f"{repeat_ms / first_ms:.4f}x")
            )
        finally:
            plain.stop()
            shared.stop()

        # (c) Memory per cached embedding: RSS growth over N new images, minus that of a gateway
        # with no cache doing the same work (allocator retention of image decoding, worker threads).
        images = [png(scene(height, width, seed=1000 + i)) for i in range(args.memory_images)]
        growth: dict[str, float] = {}
        counted: dict[str, float] = {}
        for label, settings in (("no cache", {"cache_capacity_bytes": 0}), ("float32", {}),
                                ("float16", {"cache_float16": True})):  # fmt: skip
            gateway = Gateway(triton.grpc_url, work, **settings)
            try:
                gateway.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data)))  # warm the process
                before = rss_bytes(gateway.process.pid)
                for payload in images:
                    gateway.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=payload)))
                growth[label] = (rss_bytes(gateway.process.pid) - before) / len(images)
                entries = metric(gateway.metrics_url, "sam_embedding_cache_entries")
                counted[label] = metric(gateway.metrics_url, "sam_embedding_cache_bytes") / max(entries, 1)
            finally:
                gateway.stop()
        for dtype in ("float32", "float16"):
            net = growth[dtype] - growth["no cache"]
            rows.append((f"(c) gateway memory per cached embedding, {dtype}", f"{net / 2**20:.3f} MiB",
                         f"RSS growth {growth[dtype] / 2**20:.3f} MiB/image minus {growth['no cache'] / 2**20:.3f}"
                         f" without cache; array {counted[dtype] / 2**20:.3f} MiB"))  # fmt: skip

    width_label = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure'.ljust(width_label)}  {'value':>24}  ratio / note")
    for label, value, note in rows:
        print(f"{label.ljust(width_label)}  {value:>24}  {note}")
    print("\ngoals: (a) Segment p50 <= 1.2x Predictor.predict; (b) cached EmbedImage <= 0.01x the first encode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
