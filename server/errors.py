"""The gateway's one error hierarchy, and its one mapping to ``google.rpc.Status``.

Core code (codecs, caches, the Triton backend, handlers) raises a :class:`ServiceError` subclass.
Each subclass carries a canonical status code (``google.rpc.Code``, the same numbers gRPC uses) and
a default UPPER_SNAKE ``reason`` that an instance may override with a more specific one (for example
``NotFound(..., reason=Reason.EMBEDDING_NOT_FOUND)``: the client should re-send the image).

:func:`to_rpc_status` / :func:`to_grpc_status` are the only translation to the wire: a
``google.rpc.Status`` whose details hold an ``ErrorInfo`` (reason, domain, metadata), a
``BadRequest`` with field violations when there are any, and a ``RetryInfo`` when the error says
when to retry. Anything that is not a ``ServiceError`` becomes ``INTERNAL`` with a generic message,
and its traceback is logged together with an incident id that the client also receives.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

logger = logging.getLogger(__name__)

#: ``ErrorInfo.domain``: names the service that produced the error (clients match domain + reason).
ERROR_DOMAIN = "segmentanything.v1"

_REASON_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")


class Reason(StrEnum):
    """Well-known ``ErrorInfo.reason`` values. Clients may branch on these; never rename one."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    IMAGE_DECODE_FAILED = "IMAGE_DECODE_FAILED"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    RAW_IMAGE_SIZE_MISMATCH = "RAW_IMAGE_SIZE_MISMATCH"
    INVALID_PROMPT = "INVALID_PROMPT"
    POINT_OUTSIDE_IMAGE = "POINT_OUTSIDE_IMAGE"
    NOT_FOUND = "NOT_FOUND"
    EMBEDDING_NOT_FOUND = "EMBEDDING_NOT_FOUND"
    MASK_NOT_FOUND = "MASK_NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    UNAVAILABLE = "UNAVAILABLE"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: ``field`` is a path in the request message using proto field names,
    e.g. ``prompt_sets[0].points[2].x``; ``description`` says what is wrong and what to send instead."""

    field: str
    description: str


class ServiceError(Exception):
    """Base of every error the gateway reports on purpose.

    Args:
        message: for the caller; says what was wrong and what to do about it.
        reason: UPPER_SNAKE machine-readable cause (``[A-Z][A-Z0-9_]*``, at most 63 characters);
            defaults to the subclass's ``default_reason``.
        field_violations: bad request fields (reported as ``google.rpc.BadRequest``).
        metadata: extra ``ErrorInfo.metadata`` (string keys and values), e.g. ``{"limit_px": "..."}``.
        retry_delay_s: seconds after which a retry may succeed (reported as ``google.rpc.RetryInfo``).
    """

    code: ClassVar[int] = code_pb2.UNKNOWN
    default_reason: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str,
        reason: str | None = None,
        *,
        field_violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
        retry_delay_s: float | None = None,
    ) -> None:
        super().__init__(message)
        reason = str(reason) if reason is not None else self.default_reason
        if not _REASON_PATTERN.match(reason):
            raise ValueError(f"error reason {reason!r} must be UPPER_SNAKE_CASE ([A-Z][A-Z0-9_]*, <= 63 chars)")
        if retry_delay_s is not None and retry_delay_s < 0:
            raise ValueError(f"retry_delay_s must be >= 0 seconds, got {retry_delay_s}")
        self.message = message
        self.reason = reason
        self.field_violations = tuple(field_violations)
        self.metadata = dict(metadata or {})
        self.retry_delay_s = retry_delay_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(ServiceError):
    """The request is malformed or out of range regardless of server state (do not retry as is)."""

    code = code_pb2.INVALID_ARGUMENT
    default_reason = Reason.INVALID_ARGUMENT


class NotFound(ServiceError):
    """A named resource (image embedding, mask) does not exist, or no longer does."""

    code = code_pb2.NOT_FOUND
    default_reason = Reason.NOT_FOUND


class FailedPrecondition(ServiceError):
    """The request is valid but the server is not in a state to run it (e.g. model mismatch)."""

    code = code_pb2.FAILED_PRECONDITION
    default_reason = Reason.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    """A limit was hit (too many prompt sets, message size, queue full); the message names the limit."""

    code = code_pb2.RESOURCE_EXHAUSTED
    default_reason = Reason.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    """A dependency (Triton) cannot be reached or is not ready. The only code clients should retry."""

    code = code_pb2.UNAVAILABLE
    default_reason = Reason.UNAVAILABLE


class DeadlineExceeded(ServiceError):
    """The call's deadline passed before the work finished."""

    code = code_pb2.DEADLINE_EXCEEDED
    default_reason = Reason.DEADLINE_EXCEEDED


class Unimplemented(ServiceError):
    """The method or option is part of the API but not served by this version."""

    code = code_pb2.UNIMPLEMENTED
    default_reason = Reason.UNIMPLEMENTED


class Internal(ServiceError):
    """A server-side invariant broke; the message must not leak internals."""

    code = code_pb2.INTERNAL
    default_reason = Reason.INTERNAL


GENERIC_INTERNAL_MESSAGE = "internal error; the server logged the details under incident id {incident_id}"


def to_rpc_status(error: BaseException) -> status_pb2.Status:
    """``google.rpc.Status`` for ``error`` (see the module docstring).

    A non-:class:`ServiceError` is logged with its traceback at ERROR level and reported as
    ``INTERNAL`` with a generic message and an ``incident_id`` (in the message and in the metadata).
    """
    if not isinstance(error, ServiceError):
        incident_id = uuid.uuid4().hex[:16]
        logger.error("unexpected error, incident id %s", incident_id, exc_info=error)
        error = Internal(
            GENERIC_INTERNAL_MESSAGE.format(incident_id=incident_id), metadata={"incident_id": incident_id}
        )
    status = status_pb2.Status(code=error.code, message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.add().Pack(info)
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.field_violations
            ]
        )
        status.details.add().Pack(bad_request)
    if error.retry_delay_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(error.retry_delay_s * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def to_grpc_status(error: BaseException) -> grpc.Status:
    """``grpc.Status`` (code, details, ``grpc-status-details-bin`` trailer) for ``error``.

    Use as ``await context.abort_with_status(to_grpc_status(error))``.
    """
    return rpc_status.to_status(to_rpc_status(error))
