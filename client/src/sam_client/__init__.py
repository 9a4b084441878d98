"""Python client of the Segment Anything gRPC service (``segmentanything.v1``).

    from sam_client import SamClient

    with SamClient("localhost:50051") as client:
        result = client.segment("cat.jpg", points=[(320, 240)])   # uploads the image once
        best = result.best                                      # highest-scoring mask
        print(best.score, best.bbox, best.mask.shape)           # mask: bool [H, W]

``AsyncSamClient`` has the same methods for asyncio. Errors are :class:`SamError` subclasses that
keep the gRPC code and the server's ``google.rpc.Status`` details. Depends on grpcio, protobuf,
numpy and Pillow only.
"""

from sam_client._core import DEFAULT_ADDRESS, DEFAULT_TIMEOUT_S, NO_RETRY, RetryPolicy
from sam_client.aio import AsyncSamClient
from sam_client.client import SamClient
from sam_client.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SamError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from sam_client.images import image_id
from sam_client.types import Box, EmbedResult, GeneratedMask, Mask, ModelInfo, Point, PromptSet, SegmentResult

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_TIMEOUT_S",
    "NO_RETRY",
    "AsyncSamClient",
    "Box",
    "DeadlineExceededError",
    "EmbedResult",
    "FailedPreconditionError",
    "FieldViolation",
    "GeneratedMask",
    "InternalError",
    "InvalidArgumentError",
    "Mask",
    "ModelInfo",
    "NotFoundError",
    "PermissionDeniedError",
    "Point",
    "PromptSet",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SamClient",
    "SamError",
    "SegmentResult",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "image_id",
]
