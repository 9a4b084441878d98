"""``sam-client``: the Segment Anything service from a terminal. See ``sam-client --help``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from sam_client import _core
from sam_client.client import SamClient
from sam_client.errors import DeadlineExceededError, SamError, UnavailableError, UnimplementedError
from sam_client.images import load_rgb, prepare_image
from sam_client.masks import encode_png
from sam_client.overlay import distinct_colours, draw_overlay
from sam_client.types import Box, GeneratedMask, Mask, Point

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})

EXIT_CODES_HELP = """\
exit codes:
  0  success (health: the server is SERVING)
  1  the server answered with an error (bad prompt, unknown mask id, ...), health is not SERVING,
     or some images of a folder failed (they are listed)
  2  bad usage: wrong flags or values, image file missing or unreadable
  3  the server could not be reached in time: wrong --address, server down or not ready
     (UNAVAILABLE after retries, or DEADLINE_EXCEEDED)

environment:
  SAM_ADDRESS  default for --address (else localhost:50051)
  SAM_TOKEN    default for --token
"""

MAIN_EXAMPLES = """\
examples:
  sam-client --address localhost:50051 health
  sam-client info
  sam-client embed photo.jpg
  sam-client segment photo.jpg --point 320,240 --out masks/
  sam-client segment photo.jpg --box 10,20,300,400 --point 150,200,0 --mode single --json
  sam-client segment photos/ --point 0.5,0.5 --relative --format rle --out masks/
  sam-client generate photo.jpg --points-per-side 16 --out out/
"""

SEGMENT_EXAMPLES = """\
examples:
  # one foreground point; AUTO mode returns 3 ranked masks for a single point
  sam-client segment photo.jpg --point 320,240 --out out/
  # a box plus a background point (label 0), one mask
  sam-client segment photo.jpg --box 10,20,300,400 --point 150,200,0 --mode single
  # refine an earlier mask by its id (printed in the table / JSON of the earlier call)
  sam-client segment photo.jpg --point 320,240 --mask-id 3f2a... --mode single
  # a whole folder, prompts relative to each image's size, masks as COCO RLE JSON
  sam-client segment photos/ --point 0.5,0.5 --relative --format rle --out out/

output (per image, in OUT/<image name>/):
  mask_<rank>.png       --format png: 1-bit mask at the image's size, rank 1 = best score
  masks.json            scores, boxes, areas, mask ids (and RLE counts for --format rle)
  mask_<rank>_logits.npy  --format logits: float32 low-resolution logits
  overlay.png           the image with masks, prompts and scores drawn
"""


class UsageError(Exception):
    """Bad input the user can fix (exit code 2)."""


def _floats(text: str, count: tuple[int, ...], what: str, example: str) -> list[float]:
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in count or not parts:
        raise argparse.ArgumentTypeError(f"{what} must look like {example}, got {text!r}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    values = _floats(text, (2, 3), "a point", "X,Y or X,Y,LABEL (LABEL 1 = foreground, 0 = background)")
    label = 1 if len(values) == 2 else values[2]
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"point label must be 1 (foreground) or 0 (background), got {text!r}")
    return values[0], values[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = _floats(text, (4,), "a box", "X0,Y0,X1,Y1 (left, top, right, bottom)")
    if x1 < x0 or y1 < y0:
        raise argparse.ArgumentTypeError(f"a box needs X0 <= X1 and Y0 <= Y1, got {text!r}")
    return x0, y0, x1, y1


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")

    parser = argparse.ArgumentParser(
        prog="sam-client",
        description="Call the Segment Anything gRPC service: health, model info, embedding and segmentation.",
        epilog=MAIN_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("SAM_ADDRESS", _core.DEFAULT_ADDRESS),
        help="host:port of the gateway (default: $SAM_ADDRESS or %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=_core.DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="deadline of each call, retries included (default: %(default)s)",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system root certificates)")
    parser.add_argument("--ca-cert", metavar="PEM", help="root certificate file for TLS (implies --tls)")
    parser.add_argument(
        "--token", default=os.environ.get("SAM_TOKEN"), help="bearer token sent with every call (default: $SAM_TOKEN)"
    )
    parser.add_argument("--no-retry", action="store_true", help="do not retry when the server is UNAVAILABLE")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    health = sub.add_parser(
        "health",
        parents=[common],
        help="is the server serving? (exit 0 if SERVING)",
        description="Ask the server's gRPC health service. Exit 0 if SERVING, 1 if not, 3 if unreachable.",
        epilog="examples:\n  sam-client health\n  sam-client health --service liveness\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument("--service", default="", help="health service name ('' = the whole server, the default)")

    sub.add_parser(
        "info",
        parents=[common],
        help="the served model's name, version and sizes",
        description="Print the served model's name, version and sizes (GetModelInfo).",
        epilog="examples:\n  sam-client info\n  sam-client info --json\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    embed = sub.add_parser(
        "embed",
        parents=[common],
        help="upload images and cache their embeddings; print their ids",
        description="Embed images (EmbedImage): the server caches each embedding under the printed image id, "
        "so later segment calls are fast.",
        epilog="examples:\n  sam-client embed photo.jpg\n  sam-client embed a.png b.jpg --json\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    embed.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG or WebP file")

    delete = sub.add_parser(
        "delete",
        parents=[common],
        help="drop cached embeddings (by image file or image id)",
        description="Drop images' cached embeddings (DeleteImage). Missing ones are reported, not an error.",
        epilog="examples:\n  sam-client delete photo.jpg\n  sam-client delete 9f86d08...\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    delete.add_argument("images", nargs="+", metavar="IMAGE_OR_ID", help="an image file, or a 64-hex image id")

    segment = sub.add_parser(
        "segment",
        parents=[common],
        help="predict masks from point/box/mask prompts; write PNGs and an overlay",
        description="Segment an image, or every PNG/JPEG/WebP image in a folder, from prompts in original-image "
        "pixels (x to the right, y down). Writes the ranked masks and an overlay per image and prints a table.",
        epilog=SEGMENT_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    segment.add_argument("image", metavar="IMAGE", help="an image file, or a folder of images")
    segment.add_argument(
        "--point",
        type=parse_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="point prompt; LABEL 1 = on the object (default), 0 = background. Repeatable.",
    )
    segment.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="box prompt (left, top, right, bottom)")
    segment.add_argument("--mask-id", metavar="ID", help="refine the mask with this id from an earlier call")
    segment.add_argument(
        "--relative",
        action="store_true",
        help="point and box coordinates are fractions of the image's width and height (0..1)",
    )
    segment.add_argument(
        "--mode",
        choices=("auto", "multi", "single"),
        default="auto",
        help="masks per prompt: multi = 3, single = 1, auto = 3 for a lone point else 1 (default)",
    )
    segment.add_argument(
        "--format",
        choices=("png", "rle", "logits"),
        default="png",
        help="how masks are fetched and written: PNG files (default), COCO RLE in masks.json, or low-res logits .npy",
    )
    segment.add_argument("--out", default="sam_out", metavar="DIR", help="output folder (default: %(default)s)")
    segment.add_argument("--no-overlay", action="store_true", help="do not write overlay.png")

    generate = sub.add_parser(
        "generate",
        parents=[common],
        help="segment everything automatically (GenerateMasks): SA-1B style JSON + overlay per image",
        description="Automatic mask generation (GenerateMasks): a grid of point prompts, the confident and "
        "stable masks, duplicates removed. For each image writes OUT/NAME.json (SA-1B style: "
        '{"image": {...}, "annotations": [...]} with COCO RLE segmentations, area, bbox XYWH, '
        "predicted_iou, point_coords, stability_score, crop_box) and OUT/NAME_overlay.png (each mask in its "
        "own colour). A progress bar goes to stderr. Unset parameters take the server's defaults, which are "
        "the reference generator's.",
        epilog=GENERATE_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument("image", metavar="IMAGE", help="an image file (PNG, JPEG, WebP) or a folder of images")
    for flag, kind, help_text in GENERATE_PARAMETERS:
        generate.add_argument(flag, type=kind, metavar="N" if kind is int else "X", help=help_text)
    generate.add_argument("--out", default="sam_out", metavar="DIR", help="output folder (default: %(default)s)")
    generate.add_argument("--no-overlay", action="store_true", help="do not write NAME_overlay.png")
    return parser


# -- helpers ----------------------------------------------------------------------------------------


GENERATE_EXAMPLES = """\
examples:
  sam-client generate photo.jpg --out out/             # out/photo.json, out/photo_overlay.png
  sam-client generate photos/ --points-per-side 16 --pred-iou-thresh 0.8 --out out/
  sam-client generate photo.jpg --crop-n-layers 1 --min-mask-region-area 100
"""

#: ``sam-client generate`` flags: GenerateMasksRequest fields (flag name = field name with dashes).
GENERATE_PARAMETERS: tuple[tuple[str, type, str], ...] = (
    ("--points-per-side", int, "grid points per side (default 32)"),
    ("--points-per-batch", int, "grid points per decoder batch; progress steps (default 64)"),
    ("--pred-iou-thresh", float, "keep masks with predicted IoU above this (default 0.88)"),
    ("--stability-score-thresh", float, "keep masks with stability score at least this (default 0.95)"),
    ("--stability-score-offset", float, "logit offset of the stability score (default 1.0)"),
    ("--box-nms-thresh", float, "box IoU above which duplicates are dropped within a crop (default 0.7)"),
    ("--crop-n-layers", int, "layers of zoomed-in crops to also run on (default 0)"),
    ("--crop-nms-thresh", float, "box IoU threshold across crops (default 0.7)"),
    ("--crop-overlap-ratio", float, "crop overlap, fraction of the short image side (default 512/1500)"),
    ("--crop-n-points-downscale-factor", int, "crop layer i uses points-per-side / factor^i (default 1)"),
    ("--min-mask-region-area", int, "remove islands and holes smaller than this many pixels (default 0)"),
)


def _client(args: argparse.Namespace) -> SamClient:
    return SamClient(
        args.address,
        timeout_s=args.timeout,
        retry=_core.NO_RETRY if args.no_retry else None,
        tls=args.tls or args.ca_cert is not None,
        root_certificates=args.ca_cert,
        token=args.token,
    )


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], out: TextIO) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _image_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"no PNG, JPEG or WebP images in folder {path}")
        return files
    if not path.is_file():
        raise UsageError(f"image not found: {path} (give an image file or a folder of images)")
    return [path]


def _mask_record(rank: int, mask: Mask) -> dict[str, Any]:
    record: dict[str, Any] = {
        "rank": rank,
        "score": round(float(mask.score), 6),
        "area_px": int(mask.area_px),
        "bbox_xyxy": [mask.bbox.x_min, mask.bbox.y_min, mask.bbox.x_max, mask.bbox.y_max],
        "mask_id": mask.mask_id,
    }
    return record


class _Progress:
    """A one-line progress bar on a terminal, one line per image otherwise (stderr)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.done = 0

    def step(self, name: str, ok: bool) -> None:
        self.done += 1
        if self.tty:
            filled = round(30 * self.done / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            print(f"\r[{bar}] {self.done}/{self.total} {name[:40]:<40}", end="", file=self.stream, flush=True)
            if self.done == self.total:
                print(file=self.stream)
        else:
            print(f"[{self.done}/{self.total}] {name}: {'ok' if ok else 'FAILED'}", file=self.stream, flush=True)


# -- commands ---------------------------------------------------------------------------------------


def cmd_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.health(args.service)
    if args.json:
        print(json.dumps({"address": args.address, "service": args.service, "status": status}))
    else:
        print(f"{args.address}: {status}")
    return EXIT_OK if status == "SERVING" else EXIT_SERVER_ERROR


def cmd_info(args: argparse.Namespace) -> int:
    with _client(args) as client:
        info = client.model_info()
    fields = {
        "name": info.name,
        "version": info.version,
        "image_size_px": info.image_size_px,
        "embedding_shape": list(info.embedding_shape),
        "low_res_mask_size_px": info.low_res_mask_size_px,
        "mask_threshold": info.mask_threshold,
        "cache_float16": info.cache_float16,
    }
    if args.json:
        print(json.dumps(fields))
    else:
        _print_table([(k, v) for k, v in fields.items()], ("field", "value"), sys.stdout)
    return EXIT_OK


def cmd_embed(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.images]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"image not found: {path}")
    records = []
    with _client(args) as client:
        for path in paths:
            result = client.embed(path)
            records.append(
                {
                    "image": str(path),
                    "image_id": result.image_id,
                    "height_px": result.original_size[0],
                    "width_px": result.original_size[1],
                    "cached": result.cached,
                }
            )
    if args.json:
        print(json.dumps(records if len(records) > 1 else records[0]))
    else:
        rows = [(r["image"], r["image_id"], f"{r['width_px']}x{r['height_px']}", r["cached"]) for r in records]
        _print_table(rows, ("image", "image_id", "size", "was_cached"), sys.stdout)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    records = []
    with _client(args) as client:
        for item in args.images:
            path = Path(item)
            if path.is_file():
                image_id = prepare_image(path).image_id
            elif len(item) == 64 and all(c in "0123456789abcdef" for c in item):
                image_id = item
            else:
                raise UsageError(f"{item!r} is neither an image file nor a 64-character hex image id")
            deleted = client.delete_image(image_id, allow_missing=True)
            records.append({"image": item, "image_id": image_id, "deleted": deleted})
    if args.json:
        print(json.dumps(records))
    else:
        _print_table(
            [(r["image"], r["image_id"], r["deleted"]) for r in records], ("image", "image_id", "deleted"), sys.stdout
        )
    return EXIT_OK


def _scaled_prompts(
    args: argparse.Namespace, height: int, width: int
) -> tuple[list[tuple[float, float, int]], tuple[float, float, float, float] | None]:
    points = list(args.point)
    box = args.box
    if args.relative:
        points = [(x * width, y * height, label) for x, y, label in points]
        if box is not None:
            box = (box[0] * width, box[1] * height, box[2] * width, box[3] * height)
    return points, box


def _segment_one(client: SamClient, args: argparse.Namespace, path: Path, out_dir: Path) -> dict[str, Any]:
    try:
        pixels = load_rgb(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None
    height, width = pixels.shape[:2]
    points, box = _scaled_prompts(args, height, width)
    result = client.segment(
        path,
        points=points or None,
        box=box,
        mask_id=args.mask_id,
        mode=args.mode,
        encoding=args.format,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    masks = result.masks
    records = []
    for rank, mask in enumerate(masks, start=1):
        record = _mask_record(rank, mask)
        if args.format == "png":
            file = out_dir / f"mask_{rank}.png"
            file.write_bytes(mask.png if mask.png is not None else encode_png(mask.mask))  # type: ignore[arg-type]
            record["file"] = str(file)
        elif args.format == "rle":
            record["rle"] = {"size": [result.height, result.width], "counts": mask.rle_counts}
        else:
            file = out_dir / f"mask_{rank}_logits.npy"
            np.save(file, np.asarray(mask.low_res_logits))
            record["file"] = str(file)
        records.append(record)
    summary: dict[str, Any] = {
        "image": str(path),
        "image_id": result.image_id,
        "height_px": result.height,
        "width_px": result.width,
        "cached": result.cached,
        "masks": records,
    }
    (out_dir / "masks.json").write_text(json.dumps(summary, indent=1) + "\n")
    if not args.no_overlay:
        overlay = draw_overlay(
            pixels,
            masks,
            points=[Point(x, y, label == 1) for x, y, label in points],
            boxes=[Box(*box)] if box is not None else [],
        )
        overlay_file = out_dir / "overlay.png"
        overlay.save(overlay_file)
        summary["overlay"] = str(overlay_file)
    return summary


def cmd_segment(args: argparse.Namespace) -> int:
    if not args.point and args.box is None:
        raise UsageError("give at least one prompt: --point X,Y[,LABEL] (repeatable) and/or --box X0,Y0,X1,Y1")
    source = Path(args.image)
    files = _image_files(source)
    folder = source.is_dir()
    out_root = Path(args.out)
    progress = _Progress(len(files), sys.stderr) if folder else None
    done: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    names: set[str] = set()
    started = time.monotonic()
    with _client(args) as client:
        for path in files:
            name = path.stem if path.stem not in names else path.name
            names.add(name)
            try:
                done.append(_segment_one(client, args, path, out_root / name))
                ok = True
            except (UnavailableError, DeadlineExceededError):
                raise  # the server is gone: the other images would fail the same way
            except (SamError, UsageError) as error:
                if not folder:
                    raise
                failures.append({"image": str(path), "error": str(error)})
                ok = False
            if progress is not None:
                progress.step(path.name, ok)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"images": done, "failures": failures}))
    else:
        rows = []
        for summary in done:
            for record in summary["masks"]:
                x0, y0, x1, y1 = record["bbox_xyxy"]
                rows.append(
                    (
                        Path(summary["image"]).name,
                        record["rank"],
                        f"{record['score']:.3f}",
                        record["area_px"],
                        f"{x0:g},{y0:g},{x1:g},{y1:g}",
                        record["mask_id"],
                        record.get("file", str(out_root / Path(summary["image"]).stem / "masks.json")),
                    )
                )
        _print_table(rows, ("image", "rank", "score", "area_px", "bbox_xyxy", "mask_id", "output"), sys.stdout)
        if folder:
            print(
                f"\nsegmented {len(done)} of {len(files)} images in {elapsed:.1f} s; output in {out_root}",
                file=sys.stdout,
            )
    if failures:
        print(f"{len(failures)} image(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure['image']}: {failure['error']}", file=sys.stderr)
        return EXIT_SERVER_ERROR
    return EXIT_OK


class _PointProgress:
    """GenerateMasks progress on stderr: a redrawn bar on a terminal, else a line per update."""

    def __init__(self, name: str, stream: TextIO) -> None:
        self.name = name
        self.stream = stream
        self.tty = stream.isatty()

    def update(self, done: int, total: int) -> None:
        if self.tty:
            filled = round(30 * done / max(total, 1))
            bar = "#" * filled + "-" * (30 - filled)
            end = "\n" if done >= total else ""
            print(f"\r{self.name[:30]:<30} [{bar}] {done}/{total} points", end=end, file=self.stream, flush=True)
        else:
            print(f"{self.name}: {done}/{total} points", file=self.stream, flush=True)


def sa1b_record(path: Path, image_id: str, height: int, width: int, masks: Sequence[GeneratedMask]) -> dict[str, Any]:
    """The SA-1B style JSON of one image: ``{"image": {...}, "annotations": [...]}``, with the fields
    and conventions of ``sam.MaskGenerator(output_mode="coco_rle")`` (bbox and crop_box XYWH; the
    bbox width is ``x_max - x_min`` of the inclusive box, as the reference generator writes it)."""
    annotations = []
    for i, generated in enumerate(masks):
        mask, box, crop = generated.mask, generated.mask.bbox, generated.crop_box
        annotations.append({
            "id": i,
            "segmentation": {"size": [height, width], "counts": mask.rle_counts},
            "area": int(mask.area_px),
            "bbox": [int(box.x_min), int(box.y_min), int(box.x_max - box.x_min), int(box.y_max - box.y_min)],
            "predicted_iou": float(mask.score),
            "point_coords": [[float(generated.input_point.x), float(generated.input_point.y)]],
            "stability_score": float(generated.stability_score),
            "crop_box": [int(crop.x_min), int(crop.y_min), int(crop.x_max - crop.x_min), int(crop.y_max - crop.y_min)],
        })  # fmt: skip
    image = {"file_name": path.name, "image_id": image_id, "height": height, "width": width}
    return {"image": image, "annotations": annotations}


def _generate_one(client: SamClient, args: argparse.Namespace, path: Path, name: str) -> dict[str, Any]:
    try:
        pixels = load_rgb(path)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read image {path}: {error}") from None
    height, width = pixels.shape[:2]
    parameters = {
        flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag, _, _ in GENERATE_PARAMETERS
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    progress = _PointProgress(path.name, sys.stderr)
    generated: list[GeneratedMask] = []
    for done, total, batch in client.generate(path, encoding="rle", **parameters):
        generated.extend(batch)
        if not batch:
            progress.update(done, total)
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    record = sa1b_record(path, prepare_image(path).image_id, height, width, generated)
    json_file = out_root / f"{name}.json"
    json_file.write_text(json.dumps(record) + "\n")
    summary: dict[str, Any] = {"image": str(path), "masks": len(generated), "json": str(json_file)}
    if not args.no_overlay:
        overlay_file = out_root / f"{name}_overlay.png"
        colours = distinct_colours(len(generated))
        draw_overlay(pixels, [g.mask for g in generated], colours=colours, labels=False).save(overlay_file)
        summary["overlay"] = str(overlay_file)
    return summary


def cmd_generate(args: argparse.Namespace) -> int:
    source = Path(args.image)
    files = _image_files(source)
    folder = source.is_dir()
    done: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    names: set[str] = set()
    started = time.monotonic()
    try:
        with _client(args) as client:
            for path in files:
                name = path.stem if path.stem not in names else path.name
                names.add(name)
                try:
                    done.append(_generate_one(client, args, path, name))
                except (UnavailableError, DeadlineExceededError, UnimplementedError):
                    raise  # the server cannot do it: the other images would fail the same way
                except (SamError, UsageError) as error:
                    if not folder:
                        raise
                    failures.append({"image": str(path), "error": str(error)})
    except UnimplementedError:
        print(
            f"sam-client: the server at {args.address} does not offer automatic mask generation (GenerateMasks); "
            "use `sam-client segment IMAGE --point X,Y` with prompts instead",
            file=sys.stderr,
        )
        return EXIT_SERVER_ERROR
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"images": done, "failures": failures}))
    else:
        rows = [(Path(d["image"]).name, d["masks"], d["json"], d.get("overlay", "")) for d in done]
        _print_table(rows, ("image", "masks", "json", "overlay"), sys.stdout)
        if folder:
            print(f"\ngenerated masks for {len(done)} of {len(files)} images in {elapsed:.1f} s", file=sys.stdout)
    if failures:
        print(f"{len(failures)} image(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure['image']}: {failure['error']}", file=sys.stderr)
        return EXIT_SERVER_ERROR
    return EXIT_OK


COMMANDS = {
    "health": cmd_health,
    "info": cmd_info,
    "embed": cmd_embed,
    "delete": cmd_delete,
    "segment": cmd_segment,
    "generate": cmd_generate,
}


def _fail(code: int, message: str) -> int:
    print(f"sam-client: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int | NoReturn:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as error:
        return _fail(EXIT_USAGE, str(error))
    except FileNotFoundError as error:
        return _fail(EXIT_USAGE, str(error))
    except (UnavailableError, DeadlineExceededError) as error:
        hint = (
            f"cannot reach the Segment Anything service at {args.address} ({error.code.name}: {error.message}). "
            "Check --address (or SAM_ADDRESS) and that the gateway is running and ready"
        )
        if isinstance(error, DeadlineExceededError):
            hint += f", or raise --timeout (now {args.timeout:g} s)"
        return _fail(EXIT_UNAVAILABLE, hint)
    except SamError as error:
        message = f"the server rejected the request: {error}"
        if error.reason == "MASK_NOT_FOUND":
            message += " (the --mask-id expired or belongs to another image; run segment again without it)"
        return _fail(EXIT_SERVER_ERROR, message)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")


if __name__ == "__main__":
    sys.exit(main())
