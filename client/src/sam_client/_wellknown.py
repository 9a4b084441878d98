"""The few well-known messages the client reads besides its own API, without extra dependencies.

``google.rpc.Status`` / ``ErrorInfo`` / ``BadRequest`` / ``RetryInfo`` (error details, normally from
googleapis-common-protos) and ``grpc.health.v1`` (normally from grpcio-health-checking) are declared
here field for field as in their public .proto files and built in a private descriptor pool, so they
never clash with the official modules when those are also imported in the same process.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_pool = descriptor_pool.DescriptorPool()
_pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
_pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)


def _field(
    name: str, number: int, type_: int, *, repeated: bool = False, type_name: str = ""
) -> descriptor_pb2.FieldDescriptorProto:
    label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    field = _F(name=name, number=number, type=type_, label=label, json_name=name)
    if type_name:
        field.type_name = type_name
    return field


def _rpc_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="sam_client/google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    status = f.message_type.add(name="Status")
    status.field.extend(
        [
            _field("code", 1, _F.TYPE_INT32),
            _field("message", 2, _F.TYPE_STRING),
            _field("details", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".google.protobuf.Any"),
        ]
    )
    info = f.message_type.add(name="ErrorInfo")
    entry = info.nested_type.add(name="MetadataEntry")
    entry.field.extend([_field("key", 1, _F.TYPE_STRING), _field("value", 2, _F.TYPE_STRING)])
    entry.options.map_entry = True
    info.field.extend(
        [
            _field("reason", 1, _F.TYPE_STRING),
            _field("domain", 2, _F.TYPE_STRING),
            _field("metadata", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".google.rpc.ErrorInfo.MetadataEntry"),
        ]
    )
    bad = f.message_type.add(name="BadRequest")
    violation = bad.nested_type.add(name="FieldViolation")
    violation.field.extend([_field("field", 1, _F.TYPE_STRING), _field("description", 2, _F.TYPE_STRING)])
    bad.field.extend(
        [
            _field(
                "field_violations", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".google.rpc.BadRequest.FieldViolation"
            )
        ]
    )
    retry = f.message_type.add(name="RetryInfo")
    retry.field.extend([_field("retry_delay", 1, _F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")])
    return f


def _health_file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(
        name="sam_client/grpc_health.proto", package="grpc.health.v1", syntax="proto3"
    )
    f.message_type.add(name="HealthCheckRequest").field.extend([_field("service", 1, _F.TYPE_STRING)])
    response = f.message_type.add(name="HealthCheckResponse")
    enum = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        enum.value.add(name=name, number=number)
    response.field.extend(
        [_field("status", 1, _F.TYPE_ENUM, type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus")]
    )
    return f


_pool.Add(_rpc_file())
_pool.Add(_health_file())


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(full_name))


Status = _message("google.rpc.Status")
ErrorInfo = _message("google.rpc.ErrorInfo")
BadRequest = _message("google.rpc.BadRequest")
RetryInfo = _message("google.rpc.RetryInfo")
HealthCheckRequest = _message("grpc.health.v1.HealthCheckRequest")
HealthCheckResponse = _message("grpc.health.v1.HealthCheckResponse")
_serving_status = _pool.FindEnumTypeByName("grpc.health.v1.HealthCheckResponse.ServingStatus")
HEALTH_STATUS_NAMES = {v.number: v.name for v in _serving_status.values}
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"
