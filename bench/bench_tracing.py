"""What tracing costs a Segment call (a benchmark, not a test).

In one run, with a real Triton (Python-backend CPU configs) and two real gateways
(``python -m server`` subprocesses) on free loopback ports:

- off: the default gateway (no ``OTEL_*`` variables: the API's no-op tracer);
- on: ``OTEL_TRACES_EXPORTER=otlp``, every call sampled, the SDK's batch span processor exporting
  OTLP/gRPC to a collector in this process that counts the spans and drops them.

Both answer the same Segment (cached embedding, one foreground point, MULTI, RLE masks at the
original size). Calls alternate between the two gateways (off, on, on, off, ...), so load from
elsewhere on the machine hits both alike; each round times ``--requests`` calls per gateway.
Reported: the median over rounds of each gateway's p50 (and p99), the ratio on/off, the spans
the collector received per traced call (proof that tracing was on), and each gateway process's CPU
time per call (user + system, export thread included), which other load on the machine disturbs
far less than latency.

    python bench/bench_tracing.py [--image 480x640] [--requests 200] [--rounds 5]

Run it on an otherwise idle machine: it is a 2-core VM here and other load shows up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_serving import Gateway, png, scene  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402

import sam  # noqa: E402
from sam.export.model_repository import build_model_repository  # noqa: E402
from segmentanything.v1 import segment_anything_pb2 as pb  # noqa: E402
from server.backend.local_triton import LocalTriton  # noqa: E402


class DroppingCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace collector that counts spans and keeps nothing."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(self, request, context):  # type: ignore[no-untyped-def] # noqa: N802 - the OTLP service's name
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(call: object, request: object, count: int) -> list[float]:
    out = []
    for _ in range(count):
        start = time.perf_counter()
        call(request)  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def interleaved(calls: dict[str, tuple[object, object]], count: int) -> dict[str, list[float]]:
    """``count`` timed calls per name, alternating names (ABBA order)."""
    names = list(calls)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(count):
        for name in names if i % 2 == 0 else reversed(names):
            call, request = calls[name]
            out[name].extend(timed(call, request, 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="480x640", help="original image size HxW (default 480x640)")
    parser.add_argument("--requests", type=int, default=200, help="timed Segment calls per gateway per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, alternating which gateway goes first")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls per gateway first (default 20)")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.image.lower().split("x"))

    work = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    print(f"model tiny (random weights, seed 0), image {height}x{width}, {args.rounds} rounds x {args.requests} "
          f"calls per gateway, {os.cpu_count()} CPUs, logs in {work}", flush=True)  # fmt: skip
    torch.manual_seed(0)
    checkpoint = work / "weights.pt"
    torch.save(sam.build_model("tiny").state_dict(), checkpoint)
    build_model_repository("tiny", work / "repository", checkpoint=checkpoint)

    collector = DroppingCollector()
    sink = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, sink)
    sink_port = sink.add_insecure_port("127.0.0.1:0")
    sink.start()
    traced_env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
                  "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_SERVICE_NAME": "sam-gateway-bench"}  # fmt: skip
    untraced_env = {"OTEL_TRACES_EXPORTER": "none"}

    data = png(scene(height, width, seed=1))
    prompt = pb.PromptSet(points=[pb.Point(x=width * 0.4, y=height * 0.45, label=pb.Point.FOREGROUND)])
    p50: dict[str, list[float]] = {"off": [], "on": []}
    p99: dict[str, list[float]] = {"off": [], "on": []}
    with LocalTriton(work / "repository", model_config_name="cpu", log_path=work / "triton.log") as triton:
        gateways = {name: Gateway(triton.grpc_url, work, env)
                    for name, env in (("off", untraced_env), ("on", traced_env))}  # fmt: skip
        try:
            requests = {}
            for name, gateway in gateways.items():
                image_id = gateway.api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=data))).image_id
                requests[name] = pb.SegmentRequest(image_id=image_id, prompt_sets=[prompt],
                                                   multimask_mode=pb.SegmentRequest.MULTI)  # fmt: skip
                timed(gateway.api.Segment, requests[name], args.warmup)
            time.sleep(6)  # the traced gateway's batch processor exports every 5 s: count from here
            spans_before = collector.spans
            cpu_before = {name: cpu_seconds(g.process.pid) for name, g in gateways.items()}
            calls = {name: (gateways[name].api.Segment, requests[name]) for name in ("off", "on")}
            for round_index in range(args.rounds):
                for name, values in interleaved(calls, args.requests).items():
                    p50[name].append(float(np.percentile(values, 50)) * 1e3)
                    p99[name].append(float(np.percentile(values, 99)) * 1e3)
                ratio = p50["on"][-1] / p50["off"][-1]
                print(f"round {round_index + 1}: p50 off {p50['off'][-1]:.2f} ms, on {p50['on'][-1]:.2f} ms "
                      f"({ratio:.3f}x)", flush=True)  # fmt: skip
            traced_calls = args.rounds * args.requests
            cpu_ms = {name: (cpu_seconds(g.process.pid) - cpu_before[name]) / traced_calls * 1e3
                      for name, g in gateways.items()}  # fmt: skip
            seen = -1
            while collector.spans != seen:  # until an export interval (5 s) brings nothing new
                seen = collector.spans
                time.sleep(6)
            spans_per_call = (collector.spans - spans_before) / traced_calls
        finally:
            for gateway in gateways.values():
                gateway.stop()
            sink.stop(None)

    off50, on50 = statistics.median(p50["off"]), statistics.median(p50["on"])
    off99, on99 = statistics.median(p99["off"]), statistics.median(p99["on"])
    ratios = [on / off for on, off in zip(p50["on"], p50["off"], strict=True)]
    print()
    print(f"Segment p50 / p99, tracing off: {off50:.2f} / {off99:.2f} ms   (median over {args.rounds} rounds)")
    print(
        f"Segment p50 / p99, tracing on:  {on50:.2f} / {on99:.2f} ms   "
        f"({spans_per_call:.2f} spans exported per call, OTLP/gRPC batch processor to a dropping collector)"
    )
    print(f"ratio on/off: p50 {on50 / off50:.3f}x (per-round {min(ratios):.3f}..{max(ratios):.3f}), "
          f"p99 {on99 / off99:.3f}x")  # fmt: skip
    print(f"gateway CPU per call: off {cpu_ms['off']:.2f} ms, on {cpu_ms['on']:.2f} ms "
          f"({cpu_ms['on'] / cpu_ms['off']:.3f}x; the traced gateway's export thread included)")  # fmt: skip
    print("goal: p50 ratio <= 1.05x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
