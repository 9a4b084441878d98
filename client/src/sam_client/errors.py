"""Server errors as Python exceptions that keep the gRPC code and the ``google.rpc.Status`` details.

Every failed call raises a :class:`SamError` subclass chosen by the gRPC status code. Besides the
message it carries what the server attached: ``reason`` and ``domain`` (``google.rpc.ErrorInfo``,
e.g. ``POINT_OUTSIDE_IMAGE`` in domain ``segmentanything.v1``), ``field_violations`` (which request
field was wrong and why, from ``google.rpc.BadRequest``), ``metadata`` and ``retry_delay_s``
(``google.rpc.RetryInfo``)::

    try:
        client.segment("cat.jpg", points=[(5000, 10)])
    except sam_client.InvalidArgumentError as error:
        print(error.code, error.reason, error.field_violations[0].field)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from sam_client import _wellknown

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: ``field`` is a path in the request message (proto field names, e.g.
    ``prompt_sets[0].points[2].x``); ``description`` says what is wrong."""

    field: str
    description: str


class SamError(Exception):
    """A call to the service failed. Subclasses per gRPC code; catch this for all of them.

    Attributes:
        code: the ``grpc.StatusCode``.
        message: the server's message (says what to fix).
        reason: ``ErrorInfo.reason`` (UPPER_SNAKE), or the code's name when the server sent none.
        domain: ``ErrorInfo.domain`` ("segmentanything.v1" for this service's own errors), or "".
        metadata: ``ErrorInfo.metadata`` (e.g. a limit).
        field_violations: the ``BadRequest`` field violations, possibly empty.
        retry_delay_s: the ``RetryInfo`` delay in seconds, or None.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: Iterable[FieldViolation] = (),
        retry_delay_s: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason or code.name
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = tuple(field_violations)
        self.retry_delay_s = retry_delay_s
        super().__init__(str(self))

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the bad request fields."""
        return tuple(v.field for v in self.field_violations)

    def __str__(self) -> str:
        text = f"{self.code.name} ({self.reason}): {self.message}"
        if self.field_violations:
            text += " [" + "; ".join(f"{v.field}: {v.description}" for v in self.field_violations) + "]"
        return text


class InvalidArgumentError(SamError):
    """INVALID_ARGUMENT: the request is wrong as sent (see ``field_violations``); do not retry as is."""


class NotFoundError(SamError):
    """NOT_FOUND: reason EMBEDDING_NOT_FOUND (send the image again) or MASK_NOT_FOUND (send logits)."""


class ResourceExhaustedError(SamError):
    """RESOURCE_EXHAUSTED: a limit was hit (the message names it), e.g. too many prompt sets."""


class UnavailableError(SamError):
    """UNAVAILABLE: the server or its backend cannot be reached; retried by the client until the deadline."""


class DeadlineExceededError(SamError):
    """DEADLINE_EXCEEDED: the call did not finish within its deadline."""


class UnimplementedError(SamError):
    """UNIMPLEMENTED: the server does not serve this method (yet)."""


class FailedPreconditionError(SamError):
    """FAILED_PRECONDITION: the server is not in a state to run the request."""


class UnauthenticatedError(SamError):
    """UNAUTHENTICATED: missing or wrong credentials (the bearer token)."""


class PermissionDeniedError(SamError):
    """PERMISSION_DENIED: the credentials do not allow this call."""


class InternalError(SamError):
    """INTERNAL (or UNKNOWN/DATA_LOSS): a server bug; the message holds an incident id to report."""


_BY_CODE: dict[grpc.StatusCode, type[SamError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}


def error_class(code: grpc.StatusCode) -> type[SamError]:
    return _BY_CODE.get(code, SamError)


def _status_details(trailing_metadata: Any) -> bytes | None:
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY:
            return value if isinstance(value, bytes) else None
    return None


def from_rpc_error(error: grpc.RpcError) -> SamError:
    """The :class:`SamError` for a failed call (``grpc.RpcError`` or ``grpc.aio.AioRpcError``)."""
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    message: str = error.details() or ""  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {}
    raw = _status_details(error.trailing_metadata())  # type: ignore[attr-defined]
    if raw is not None:
        try:
            status = _wellknown.Status.FromString(raw)
        except Exception:  # a malformed trailer must not hide the error itself
            status = None
        if status is not None:
            message = status.message or message
            violations: list[FieldViolation] = []
            for detail in status.details:
                type_name = detail.type_url.rsplit("/", 1)[-1]
                if type_name == "google.rpc.ErrorInfo":
                    info = _wellknown.ErrorInfo.FromString(detail.value)
                    kwargs.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
                elif type_name == "google.rpc.BadRequest":
                    bad = _wellknown.BadRequest.FromString(detail.value)
                    violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
                elif type_name == "google.rpc.RetryInfo":
                    delay = _wellknown.RetryInfo.FromString(detail.value).retry_delay
                    kwargs["retry_delay_s"] = delay.seconds + delay.nanos / 1e9
            kwargs["field_violations"] = violations
    return error_class(code)(code, message, **kwargs)
