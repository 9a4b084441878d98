"""COCO-format instance segmentation data (images folder + annotations JSON) via pycocotools.

Annotations may be polygons, uncompressed RLE or compressed RLE; ``pycocotools`` decodes all three.
Masks come back in the image's own pixel frame (``H x W`` as stored in the file, which must match
the ``height``/``width`` the JSON gives for the image).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO


@dataclass(frozen=True)
class CocoSample:
    """One image with its instance masks.

    ``image``: ``HxWx3`` uint8 RGB. ``masks``: ``MxHxW`` bool. ``category_ids``, ``annotation_ids``:
    ``M`` int64, aligned with ``masks``. ``boxes``: ``Mx4`` float64 XYXY in pixels, from the masks.
    """

    image_id: int
    file_name: str
    image: np.ndarray
    masks: np.ndarray
    category_ids: np.ndarray
    annotation_ids: np.ndarray

    @property
    def boxes(self) -> np.ndarray:
        out = np.zeros((len(self.masks), 4))
        for i, mask in enumerate(self.masks):
            ys, xs = np.nonzero(mask)
            if ys.size:
                out[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        return out


class CocoDataset:
    """Images under ``images_dir`` with the instance annotations of ``annotations`` (a COCO JSON).

    Args:
        images_dir: folder that ``file_name`` of each image entry is relative to.
        annotations: path to the JSON file.
        include_crowd: keep ``iscrowd=1`` annotations (off by default: crowd regions are not instances).
        min_area: drop instances whose decoded mask has fewer pixels than this.
        skip_empty: leave out images with no instance left after filtering.
        category_ids: keep only these categories (None keeps all).
    """

    def __init__(self, images_dir: str | Path, annotations: str | Path, include_crowd: bool = False,
                 min_area: int = 1, skip_empty: bool = True, category_ids: list[int] | None = None) -> None:
        self.images_dir = Path(images_dir)
        annotations = Path(annotations)
        if not self.images_dir.is_dir():
            raise ValueError(f"images folder {self.images_dir} does not exist")
        if not annotations.is_file():
            raise ValueError(f"annotations file {annotations} does not exist")
        if min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {min_area}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                self.coco = COCO(str(annotations))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{annotations} is not a COCO instances file: {exc!r}") from exc
        if "annotations" not in self.coco.dataset or "images" not in self.coco.dataset:
            raise ValueError(f"{annotations} needs 'images' and 'annotations' lists (COCO instances format)")
        self.include_crowd = include_crowd
        self.min_area = min_area
        self.category_ids = None if category_ids is None else set(category_ids)
        ids = sorted(self.coco.getImgIds())
        if skip_empty:
            ids = [i for i in ids if self._annotations(i)]
        self.image_ids = ids

    def _annotations(self, image_id: int) -> list[dict]:
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))
        keep = []
        for ann in anns:
            if ann.get("iscrowd", 0) and not self.include_crowd:
                continue
            if self.category_ids is not None and ann.get("category_id") not in self.category_ids:
                continue
            if "segmentation" not in ann:
                continue
            keep.append(ann)
        return keep

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> CocoSample:
        if not 0 <= index < len(self.image_ids):
            raise IndexError(f"image index {index} out of range 0..{len(self.image_ids) - 1}")
        image_id = self.image_ids[index]
        info = self.coco.loadImgs([image_id])[0]
        path = self.images_dir / info["file_name"]
        if not path.is_file():
            raise ValueError(f"image {path} (id {image_id}) listed in the annotations is missing")
        with Image.open(path) as pil:
            image = np.array(pil.convert("RGB"))
        h, w = image.shape[:2]
        if (info.get("height"), info.get("width")) != (h, w):
            raise ValueError(
                f"image {path} is {h}x{w} px but the annotations say {info.get('height')}x{info.get('width')}; "
                "fix the JSON's height/width or the file"
            )
        masks, cats, ids = [], [], []
        for ann in self._annotations(image_id):
            mask = self.coco.annToMask(ann).astype(bool)
            if mask.sum() < max(self.min_area, 1):
                continue
            masks.append(mask)
            cats.append(ann.get("category_id", 0))
            ids.append(ann["id"])
        return CocoSample(
            image_id=int(image_id),
            file_name=str(info["file_name"]),
            image=image,
            masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
            category_ids=np.asarray(cats, np.int64),
            annotation_ids=np.asarray(ids, np.int64),
        )

    def __iter__(self) -> Iterator[CocoSample]:
        for i in range(len(self)):
            yield self[i]
