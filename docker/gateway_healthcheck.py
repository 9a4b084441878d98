"""Exit 0 if the gateway's gRPC health service reports SERVING, else 1 (the image's HEALTHCHECK).

    python docker/gateway_healthcheck.py [--address HOST:PORT] [--service NAME] [--timeout S]

The address defaults to 127.0.0.1 and the port the gateway listens on (``SAM_PORT``, else
50051). ``--service ""`` (the default) is the whole server: SERVING once Triton's models are
ready, NOT_SERVING before and while draining. ``--service liveness`` asks only whether the
process serves gRPC at all. Kubernetes does not need this script: its native gRPC probes call
the same service (see deploy/base/gateway.yaml). grpc_health_probe would do the same job; it is not
installed so that the image carries nothing but the gateway's own Python packages.
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """``(serving, what happened)`` for one Health/Check call to ``address``."""
    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
    except grpc.RpcError as error:
        return False, f"{error.code().name}: {error.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return response.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--address", default=f"127.0.0.1:{os.environ.get('SAM_PORT', '50051')}")
    parser.add_argument("--service", default="")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds for the call (default 3)")
    args = parser.parse_args(argv)
    serving, status = check(args.address, args.service, args.timeout)
    print(f"{args.address} service={args.service!r}: {status}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
