"""A tiny in-process implementation of the service for client behaviour tests (retries, deadlines,
image-id reuse, error details, metadata). It answers from canned handlers; no model involved."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_status import rpc_status
from sam_client._proto import segment_anything_pb2 as pb

from server.errors import ServiceError, to_rpc_status

SERVICE = "segmentanything.v1.SegmentAnythingService"
_REQUESTS = {
    "EmbedImage": pb.EmbedImageRequest,
    "Segment": pb.SegmentRequest,
    "GetModelInfo": pb.GetModelInfoRequest,
    "DeleteImage": pb.DeleteImageRequest,
}


@dataclass
class FakeService:
    """Handlers by method name: ``fn(request, context) -> response`` (raise ServiceError to fail).
    Every call is recorded as ``(method, request, metadata dict)``."""

    handlers: dict[str, Callable[[Any, grpc.ServicerContext], Any]] = field(default_factory=dict)
    calls: list[tuple[str, Any, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _wrap(self, name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self.lock:
                self.calls.append((name, request, dict(context.invocation_metadata())))
            try:
                return self.handlers[name](request, context)
            except ServiceError as error:
                context.abort_with_status(rpc_status.to_status(to_rpc_status(error)))

        return handle

    def methods(self) -> list[str]:
        return [c[0] for c in self.calls]

    def start(self, port: int = 0) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._wrap(name),
                request_deserializer=_REQUESTS[name].FromString,
                response_serializer=lambda m: m.SerializeToString(),
            )
            for name in self.handlers
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server, bound


def model_info(_request: Any, _context: Any) -> pb.GetModelInfoResponse:
    return pb.GetModelInfoResponse(
        name="fake", version="1", image_size_px=1024, embedding_shape=[256, 64, 64], low_res_mask_size_px=256
    )
