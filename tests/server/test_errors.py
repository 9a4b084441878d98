"""The error hierarchy's mapping to google.rpc.Status, as a table."""

from __future__ import annotations

import logging

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from server.errors import (
    ERROR_DOMAIN,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    Reason,
    ResourceExhausted,
    ServiceError,
    Unavailable,
    Unimplemented,
    to_grpc_status,
    to_rpc_status,
)

POINT_VIOLATION = FieldViolation("prompt_sets[0].points[1].x", "x = 700 px is outside the image width 640 px")

TABLE = [
    # error, gRPC code, reason, field violations
    (InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", []),
    (
        InvalidArgument("point outside", Reason.POINT_OUTSIDE_IMAGE, field_violations=[POINT_VIOLATION]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "POINT_OUTSIDE_IMAGE",
        [POINT_VIOLATION],
    ),
    (
        NotFound("image abc is not cached; re-send the image", Reason.EMBEDDING_NOT_FOUND),
        grpc.StatusCode.NOT_FOUND,
        "EMBEDDING_NOT_FOUND",
        [],
    ),
    (NotFound("gone"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND", []),
    (FailedPrecondition("model mismatch"), grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION", []),
    (ResourceExhausted("too many prompt sets"), grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", []),
    (Unavailable("triton down", Reason.BACKEND_UNAVAILABLE), grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", []),
    (DeadlineExceeded("too slow"), grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", []),
    (Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED, "UNIMPLEMENTED", []),
    (Internal("broken invariant"), grpc.StatusCode.INTERNAL, "INTERNAL", []),
]


def unpack(status: status_pb2.Status) -> dict[str, object]:
    found: dict[str, object] = {}
    for detail in status.details:
        for message_type in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if detail.Is(message_type.DESCRIPTOR):
                message = message_type()
                detail.Unpack(message)
                found[message_type.DESCRIPTOR.name] = message
    return found


@pytest.mark.parametrize(("error", "code", "reason", "violations"), TABLE, ids=lambda v: getattr(v, "name", None))
def test_service_error_maps_to_status(
    error: ServiceError, code: grpc.StatusCode, reason: str, violations: list[FieldViolation]
) -> None:
    grpc_status = to_grpc_status(error)

    assert grpc_status.code == code
    assert grpc_status.details == error.message
    ((key, value),) = grpc_status.trailing_metadata
    assert key == "grpc-status-details-bin"
    status = status_pb2.Status.FromString(value)
    assert status.code == code.value[0]
    assert status.message == error.message
    details = unpack(status)
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == (reason, ERROR_DOMAIN)
    if violations:
        bad_request = details["BadRequest"]
        assert isinstance(bad_request, error_details_pb2.BadRequest)
        assert [(v.field, v.description) for v in bad_request.field_violations] == [
            (v.field, v.description) for v in violations
        ]
    else:
        assert "BadRequest" not in details
    assert "RetryInfo" not in details


def test_metadata_and_retry_delay_are_reported() -> None:
    error = Unavailable("triton restarting", metadata={"model": "sam_encoder"}, retry_delay_s=1.5)

    details = unpack(to_rpc_status(error))

    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert dict(info.metadata) == {"model": "sam_encoder"}
    retry = details["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000


def test_unexpected_exception_is_internal_with_a_generic_message_and_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("secret internal detail")
    except KeyError as error:
        with caplog.at_level(logging.ERROR, logger="server.errors"):
            grpc_status = to_grpc_status(error)

    assert grpc_status.code == grpc.StatusCode.INTERNAL
    assert "secret internal detail" not in grpc_status.details
    info = unpack(status_pb2.Status.FromString(grpc_status.trailing_metadata[0][1]))["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "INTERNAL"
    incident_id = info.metadata["incident_id"]
    assert incident_id in grpc_status.details
    (record,) = caplog.records
    assert incident_id in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError


@pytest.mark.parametrize("reason", ["not_upper", "SPACE IN", "", "9STARTS_WITH_DIGIT", "A" * 64])
def test_reason_must_be_upper_snake(reason: str) -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE"):
        InvalidArgument("x", reason)


def test_negative_retry_delay_is_rejected() -> None:
    with pytest.raises(ValueError, match="retry_delay_s"):
        Unavailable("x", retry_delay_s=-1)
