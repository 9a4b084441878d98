from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("width_px", "height_px", "rgb")
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    width_px: int
    height_px: int
    rgb: bytes
    def __init__(self, width_px: _Optional[int] = ..., height_px: _Optional[int] = ..., rgb: _Optional[bytes] = ...) -> None: ...

class ImageSize(_message.Message):
    __slots__ = ("height_px", "width_px")
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    height_px: int
    width_px: int
    def __init__(self, height_px: _Optional[int] = ..., width_px: _Optional[int] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("data_type", "shape", "data")
    class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DATA_TYPE_UNSPECIFIED: _ClassVar[Tensor.DataType]
        FLOAT32: _ClassVar[Tensor.DataType]
        FLOAT16: _ClassVar[Tensor.DataType]
    DATA_TYPE_UNSPECIFIED: Tensor.DataType
    FLOAT32: Tensor.DataType
    FLOAT16: Tensor.DataType
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    data_type: Tensor.DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, data_type: _Optional[_Union[Tensor.DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class EmbedImageRequest(_message.Message):
    __slots__ = ("image", "embedding_data_type")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    image: Image
    embedding_data_type: Tensor.DataType
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., embedding_data_type: _Optional[_Union[Tensor.DataType, str]] = ...) -> None: ...

class EmbedImageResponse(_message.Message):
    __slots__ = ("image_id", "original_size", "resized_size", "cached", "embedding")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESIZED_SIZE_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    original_size: ImageSize
    resized_size: ImageSize
    cached: bool
    embedding: Tensor
    def __init__(self, image_id: _Optional[str] = ..., original_size: _Optional[_Union[ImageSize, _Mapping]] = ..., resized_size: _Optional[_Union[ImageSize, _Mapping]] = ..., cached: _Optional[bool] = ..., embedding: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y", "label")
    class Label(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LABEL_UNSPECIFIED: _ClassVar[Point.Label]
        FOREGROUND: _ClassVar[Point.Label]
        BACKGROUND: _ClassVar[Point.Label]
    LABEL_UNSPECIFIED: Point.Label
    FOREGROUND: Point.Label
    BACKGROUND: Point.Label
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    label: Point.Label
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., label: _Optional[_Union[Point.Label, str]] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class MaskPrompt(_message.Message):
    __slots__ = ("logits", "mask_id")
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    MASK_ID_FIELD_NUMBER: _ClassVar[int]
    logits: Tensor
    mask_id: str
    def __init__(self, logits: _Optional[_Union[Tensor, _Mapping]] = ..., mask_id: _Optional[str] = ...) -> None: ...

class PromptSet(_message.Message):
    __slots__ = ("points", "box", "mask")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[Point]
    box: Box
    mask: MaskPrompt
    def __init__(self, points: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., mask: _Optional[_Union[MaskPrompt, _Mapping]] = ...) -> None: ...

class Mask(_message.Message):
    __slots__ = ("mask_id", "score", "area_px", "bbox", "rle", "png", "low_res_logits")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[Mask.Encoding]
        RLE: _ClassVar[Mask.Encoding]
        PNG: _ClassVar[Mask.Encoding]
        LOW_RES_LOGITS: _ClassVar[Mask.Encoding]
    ENCODING_UNSPECIFIED: Mask.Encoding
    RLE: Mask.Encoding
    PNG: Mask.Encoding
    LOW_RES_LOGITS: Mask.Encoding
    MASK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    AREA_PX_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    RLE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    LOW_RES_LOGITS_FIELD_NUMBER: _ClassVar[int]
    mask_id: str
    score: float
    area_px: int
    bbox: Box
    rle: CocoRle
    png: bytes
    low_res_logits: Tensor
    def __init__(self, mask_id: _Optional[str] = ..., score: _Optional[float] = ..., area_px: _Optional[int] = ..., bbox: _Optional[_Union[Box, _Mapping]] = ..., rle: _Optional[_Union[CocoRle, _Mapping]] = ..., png: _Optional[bytes] = ..., low_res_logits: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class CocoRle(_message.Message):
    __slots__ = ("height_px", "width_px", "counts")
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    height_px: int
    width_px: int
    counts: str
    def __init__(self, height_px: _Optional[int] = ..., width_px: _Optional[int] = ..., counts: _Optional[str] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("image_id", "image", "prompt_sets", "multimask_mode", "mask_encoding")
    class MultimaskMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MULTIMASK_MODE_UNSPECIFIED: _ClassVar[SegmentRequest.MultimaskMode]
        AUTO: _ClassVar[SegmentRequest.MultimaskMode]
        MULTI: _ClassVar[SegmentRequest.MultimaskMode]
        SINGLE: _ClassVar[SegmentRequest.MultimaskMode]
    MULTIMASK_MODE_UNSPECIFIED: SegmentRequest.MultimaskMode
    AUTO: SegmentRequest.MultimaskMode
    MULTI: SegmentRequest.MultimaskMode
    SINGLE: SegmentRequest.MultimaskMode
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_SETS_FIELD_NUMBER: _ClassVar[int]
    MULTIMASK_MODE_FIELD_NUMBER: _ClassVar[int]
    MASK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image: Image
    prompt_sets: _containers.RepeatedCompositeFieldContainer[PromptSet]
    multimask_mode: SegmentRequest.MultimaskMode
    mask_encoding: Mask.Encoding
    def __init__(self, image_id: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., prompt_sets: _Optional[_Iterable[_Union[PromptSet, _Mapping]]] = ..., multimask_mode: _Optional[_Union[SegmentRequest.MultimaskMode, str]] = ..., mask_encoding: _Optional[_Union[Mask.Encoding, str]] = ...) -> None: ...

class PromptSetResult(_message.Message):
    __slots__ = ("masks",)
    MASKS_FIELD_NUMBER: _ClassVar[int]
    masks: _containers.RepeatedCompositeFieldContainer[Mask]
    def __init__(self, masks: _Optional[_Iterable[_Union[Mask, _Mapping]]] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("image_id", "original_size", "results", "cached")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    original_size: ImageSize
    results: _containers.RepeatedCompositeFieldContainer[PromptSetResult]
    cached: bool
    def __init__(self, image_id: _Optional[str] = ..., original_size: _Optional[_Union[ImageSize, _Mapping]] = ..., results: _Optional[_Iterable[_Union[PromptSetResult, _Mapping]]] = ..., cached: _Optional[bool] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("name", "version", "image_size_px", "embedding_shape", "low_res_mask_size_px", "mask_threshold", "cache_float16")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LOW_RES_MASK_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    MASK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CACHE_FLOAT16_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    image_size_px: int
    embedding_shape: _containers.RepeatedScalarFieldContainer[int]
    low_res_mask_size_px: int
    mask_threshold: float
    cache_float16: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., image_size_px: _Optional[int] = ..., embedding_shape: _Optional[_Iterable[int]] = ..., low_res_mask_size_px: _Optional[int] = ..., mask_threshold: _Optional[float] = ..., cache_float16: _Optional[bool] = ...) -> None: ...

class DeleteImageRequest(_message.Message):
    __slots__ = ("image_id", "allow_missing")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    allow_missing: bool
    def __init__(self, image_id: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class DeleteImageResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class GenerateMasksRequest(_message.Message):
    __slots__ = ("image_id", "image", "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area", "mask_encoding")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_SIDE_FIELD_NUMBER: _ClassVar[int]
    POINTS_PER_BATCH_FIELD_NUMBER: _ClassVar[int]
    PRED_IOU_THRESH_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_THRESH_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    BOX_NMS_THRESH_FIELD_NUMBER: _ClassVar[int]
    CROP_N_LAYERS_FIELD_NUMBER: _ClassVar[int]
    CROP_NMS_THRESH_FIELD_NUMBER: _ClassVar[int]
    CROP_OVERLAP_RATIO_FIELD_NUMBER: _ClassVar[int]
    CROP_N_POINTS_DOWNSCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MIN_MASK_REGION_AREA_FIELD_NUMBER: _ClassVar[int]
    MASK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    image: Image
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float
    box_nms_thresh: float
    crop_n_layers: int
    crop_nms_thresh: float
    crop_overlap_ratio: float
    crop_n_points_downscale_factor: int
    min_mask_region_area: int
    mask_encoding: Mask.Encoding
    def __init__(self, image_id: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., points_per_side: _Optional[int] = ..., points_per_batch: _Optional[int] = ..., pred_iou_thresh: _Optional[float] = ..., stability_score_thresh: _Optional[float] = ..., stability_score_offset: _Optional[float] = ..., box_nms_thresh: _Optional[float] = ..., crop_n_layers: _Optional[int] = ..., crop_nms_thresh: _Optional[float] = ..., crop_overlap_ratio: _Optional[float] = ..., crop_n_points_downscale_factor: _Optional[int] = ..., min_mask_region_area: _Optional[int] = ..., mask_encoding: _Optional[_Union[Mask.Encoding, str]] = ...) -> None: ...

class GeneratedMask(_message.Message):
    __slots__ = ("mask", "stability_score", "input_point", "crop_box")
    MASK_FIELD_NUMBER: _ClassVar[int]
    STABILITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    INPUT_POINT_FIELD_NUMBER: _ClassVar[int]
    CROP_BOX_FIELD_NUMBER: _ClassVar[int]
    mask: Mask
    stability_score: float
    input_point: Point
    crop_box: Box
    def __init__(self, mask: _Optional[_Union[Mask, _Mapping]] = ..., stability_score: _Optional[float] = ..., input_point: _Optional[_Union[Point, _Mapping]] = ..., crop_box: _Optional[_Union[Box, _Mapping]] = ...) -> None: ...

class GenerateMasksResponse(_message.Message):
    __slots__ = ("masks", "points_done", "points_total")
    MASKS_FIELD_NUMBER: _ClassVar[int]
    POINTS_DONE_FIELD_NUMBER: _ClassVar[int]
    POINTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    masks: _containers.RepeatedCompositeFieldContainer[GeneratedMask]
    points_done: int
    points_total: int
    def __init__(self, masks: _Optional[_Iterable[_Union[GeneratedMask, _Mapping]]] = ..., points_done: _Optional[int] = ..., points_total: _Optional[int] = ...) -> None: ...
