"""The committed stubs in segmentanything/ match the .proto, and the .proto documents everything."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from segmentanything.v1 import segment_anything_pb2 as pb
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTO = "segmentanything/v1/segment_anything.proto"


def generated_files(root: Path) -> dict[str, bytes]:
    package = root / "segmentanything"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(package.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    fresh = generated_files(tmp_path)
    committed = generated_files(REPO)

    assert "segmentanything/v1/segment_anything_pb2.py" in fresh
    assert sorted(committed) == sorted(fresh), "run: bash scripts/gen_proto.sh"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"stale generated files {stale}; run: bash scripts/gen_proto.sh"


def documented_paths() -> tuple[descriptor_pb2.FileDescriptorProto, dict[tuple[int, ...], str]]:
    """The parsed .proto and its leading comments by source path."""
    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "descriptor_set.bin"
        code = protoc.main(
            ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", "--include_source_info", f"--descriptor_set_out={out}", PROTO]
        )
        assert code == 0, "protoc failed to parse the .proto"
        file_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (file,) = file_set.file
    comments = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}
    return file, comments


# FileDescriptorProto / DescriptorProto / EnumDescriptorProto / ServiceDescriptorProto field numbers.
MESSAGE_TYPE, ENUM_TYPE, SERVICE = 4, 5, 6
FIELD, NESTED_TYPE, NESTED_ENUM, ONEOF = 2, 3, 4, 8
ENUM_VALUE, METHOD = 2, 2


def undocumented() -> list[str]:
    file, comments = documented_paths()
    missing: list[str] = []

    def need(path: tuple[int, ...], name: str) -> None:
        if not comments.get(path):
            missing.append(name)

    def enum(path: tuple[int, ...], proto: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        need(path, f"{scope}{proto.name}")
        for i, value in enumerate(proto.value):
            need((*path, ENUM_VALUE, i), f"{scope}{proto.name}.{value.name}")

    def message(path: tuple[int, ...], proto: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}{proto.name}"
        need(path, name)
        for i, field in enumerate(proto.field):
            need((*path, FIELD, i), f"{name}.{field.name}")
        for i, oneof in enumerate(proto.oneof_decl):
            if not oneof.name.startswith("_"):  # synthetic oneofs of proto3 `optional` fields
                need((*path, ONEOF, i), f"{name}.{oneof.name} (oneof)")
        for i, nested in enumerate(proto.nested_type):
            message((*path, NESTED_TYPE, i), nested, f"{name}.")
        for i, nested_enum in enumerate(proto.enum_type):
            enum((*path, NESTED_ENUM, i), nested_enum, f"{name}.")

    for i, proto in enumerate(file.message_type):
        message((MESSAGE_TYPE, i), proto, "")
    for i, top_enum in enumerate(file.enum_type):
        enum((ENUM_TYPE, i), top_enum, "")
    for i, service in enumerate(file.service):
        need((SERVICE, i), service.name)
        for j, method in enumerate(service.method):
            need((SERVICE, i, METHOD, j), f"{service.name}.{method.name}")
    return missing


def test_every_message_field_enum_value_and_method_is_documented() -> None:
    assert undocumented() == []


def test_enums_start_with_an_unspecified_zero_value() -> None:
    for enum in (pb.Point.Label, pb.Tensor.DataType, pb.Mask.Encoding, pb.SegmentRequest.MultimaskMode):
        zero = enum.Name(0)
        assert zero.endswith("_UNSPECIFIED"), zero
    assert pb.Point.Label.keys() == ["LABEL_UNSPECIFIED", "FOREGROUND", "BACKGROUND"]


def test_service_methods_and_streaming() -> None:
    service = pb.DESCRIPTOR.services_by_name["SegmentAnythingService"]
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {"EmbedImage", "Segment", "GetModelInfo", "DeleteImage", "GenerateMasks"}
    for name, method in methods.items():
        assert method.input_type.name == f"{name}Request"
        assert method.output_type.name == f"{name}Response"
    assert methods["GenerateMasks"].server_streaming and not methods["Segment"].server_streaming
    assert hasattr(pb_grpc, "SegmentAnythingServiceStub")
    assert hasattr(pb_grpc, "add_SegmentAnythingServiceServicer_to_server")


def test_generate_masks_parameters_distinguish_unset_from_zero() -> None:
    request = pb.GenerateMasksRequest(image_id="abc", crop_n_layers=0)
    assert request.HasField("crop_n_layers")
    assert not request.HasField("points_per_side")


def test_segment_names_its_image_by_id_or_inline() -> None:
    oneof = pb.SegmentRequest.DESCRIPTOR.oneofs_by_name["image_source"]
    assert [f.name for f in oneof.fields] == ["image_id", "image"]
    request = pb.SegmentRequest(image_id="abc")
    request.image.encoded = b"png bytes"  # setting the other member clears image_id
    assert request.WhichOneof("image_source") == "image" and request.image_id == ""
