"""The library and the CLI against the real service (tests/conftest.py's ``sam_service``: a real
Triton and the real gateway on loopback ports, a tiny model with fixed random weights)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pycocotools.mask as coco
import pytest
from PIL import Image, ImageDraw
from sam_client import (
    AsyncSamClient,
    Box,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    Point,
    PromptSet,
    SamClient,
    image_id,
)

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "client" / "src"
WIDTH, HEIGHT = 160, 120


def scene(seed: int = 0) -> np.ndarray:
    """A small RGB test scene: a gradient, a disc and a rectangle (``uint8 [120, 160, 3]``)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (WIDTH, HEIGHT), (70, 90, 110))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 70, 70), fill=(220, 60, 40))
    draw.rectangle((90, 50, 145, 105), fill=(40, 180, 90))
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-8, 9, (HEIGHT, WIDTH, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def address(sam_service) -> str:
    return sam_service.address


@pytest.fixture()
def image_file(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    path.write_bytes(png_bytes(scene()))
    return path


@pytest.fixture()
def client(address: str):
    with SamClient(address, timeout_s=60) as c:
        yield c


# -- library ----------------------------------------------------------------------------------------


def test_health_and_model_info(client: SamClient) -> None:
    assert client.health() == "SERVING"
    assert client.health("liveness") == "SERVING"
    info = client.model_info()
    assert info.name and info.image_size_px > 0
    assert len(info.embedding_shape) == 3 and info.low_res_mask_size_px == 4 * info.embedding_shape[-1]


GENERATE_ALL = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def test_generate_streams_progress_then_masks(client: SamClient, image_file: Path) -> None:
    messages = list(client.generate(image_file, points_per_batch=5, **GENERATE_ALL))
    progress = [(done, total) for done, total, masks in messages if not masks]
    assert progress == [(5, 16), (10, 16), (15, 16), (16, 16)]
    masks = [m for _, _, batch in messages for m in batch]
    assert len(masks) == 16 * 3  # nothing filtered
    scores = [g.mask.score for g in masks]
    assert scores == sorted(scores, reverse=True)
    for g in masks:
        assert g.mask.mask is not None and g.mask.mask.shape == (HEIGHT, WIDTH)
        assert int(g.mask.mask.sum()) == g.mask.area_px and g.mask.rle_counts
        assert g.input_point.foreground and g.crop_box.as_tuple() == (0, 0, WIDTH, HEIGHT)
    by_id = [m for _, _, batch in client.generate(image_id=client.embed(image_file).image_id, encoding="png",
                                                  **GENERATE_ALL) for m in batch]  # fmt: skip
    # Another decoder batch size (64 vs 5 points) rounds the decoder's float32 arithmetic differently.
    assert [g.mask.score for g in by_id] == pytest.approx(scores, abs=1e-6) and all(g.mask.png for g in by_id)


def test_generate_bad_parameter_names_the_field(client: SamClient, image_file: Path) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        list(client.generate(image_file, points_per_side=1000))
    assert "points_per_side" in str(caught.value)


def test_embed_returns_the_locally_computed_id_and_caches(client: SamClient, image_file: Path) -> None:
    data = image_file.read_bytes()
    first = client.embed(image_file)
    assert first.image_id == image_id(data)
    assert first.original_size == (HEIGHT, WIDTH)
    again = client.embed(data)
    assert again.cached and again.image_id == first.image_id
    with_embedding = client.embed(data, embedding_dtype="float16")
    assert with_embedding.embedding is not None and with_embedding.embedding.dtype == np.float16


def test_segment_ranked_masks_in_every_encoding(client: SamClient, image_file: Path) -> None:
    rle = client.segment(image_file, points=[(45, 45)])  # a lone point: AUTO gives 3 masks
    assert (rle.height, rle.width) == (HEIGHT, WIDTH) and len(rle) == 1
    scores = [m.score for m in rle.masks]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    for mask in rle.masks:
        assert mask.mask.dtype == bool and mask.mask.shape == (HEIGHT, WIDTH)
        assert int(mask.mask.sum()) == mask.area_px
        if mask.area_px:
            ys, xs = np.nonzero(mask.mask)
            assert mask.bbox == Box(xs.min(), ys.min(), xs.max(), ys.max())
    png = client.segment(image_file, points=[(45, 45)], encoding="png")
    for a, b in zip(rle.masks, png.masks, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.score == pytest.approx(b.score)
    logits = client.segment(image_file, points=[(45, 45)], mode="single", encoding="logits")
    (best,) = logits.masks
    side = client.model_info().low_res_mask_size_px
    assert best.mask is None and best.low_res_logits.shape == (side, side)
    # refine with the logits, and with a mask id, and with several prompt sets at once
    refined = client.segment(image_id=rle.image_id, points=[(45, 45)], mask_logits=best.low_res_logits)
    assert len(refined.masks) == 1
    by_id = client.segment(image_file, points=[(45, 45)], mask_id=rle.best.mask_id, mode="single")
    assert len(by_id.masks) == 1
    many = client.segment(
        image_file,
        prompt_sets=[PromptSet(points=(Point(45, 45),)), PromptSet(box=Box(90, 50, 145, 105)),
                     PromptSet(points=(Point(100, 60), Point(10, 10, foreground=False)))],
        mode="multi",
    )  # fmt: skip
    assert [len(r) for r in many] == [3, 3, 3]


def test_numpy_and_pil_inputs_use_raw_rgb_ids(client: SamClient) -> None:
    pixels = scene(1)
    result = client.segment(pixels, box=(90, 50, 145, 105))
    assert result.image_id == image_id(pixels.tobytes(), (WIDTH, HEIGHT))
    assert len(result.masks) == 1
    assert client.segment(Image.fromarray(pixels), box=(90, 50, 145, 105)).cached


def test_delete_then_segment_resends_the_image(client: SamClient, image_file: Path) -> None:
    embedded = client.embed(image_file)
    assert client.delete_image(embedded.image_id) is True
    with pytest.raises(NotFoundError) as caught:
        client.delete_image(embedded.image_id)
    assert caught.value.reason == "EMBEDDING_NOT_FOUND" and caught.value.code == grpc.StatusCode.NOT_FOUND
    assert client.delete_image(embedded.image_id, allow_missing=True) is False
    result = client.segment(image_file, points=[(45, 45)])  # by id: not found; then the image
    assert result.image_id == embedded.image_id and not result.cached
    with pytest.raises(NotFoundError):
        client.segment(image_id="0" * 64, points=[(1, 1)])


def test_errors_carry_code_reason_and_field(client: SamClient, image_file: Path) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.segment(image_file, points=[(5000, 10)])
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "POINT_OUTSIDE_IMAGE" and error.domain == "segmentanything.v1"
    assert "prompt_sets[0].points[0].x" in error.fields
    with pytest.raises(InvalidArgumentError) as caught:
        client.embed(b"not an image")
    assert caught.value.reason == "IMAGE_DECODE_FAILED" and caught.value.fields
    with pytest.raises(NotFoundError) as caught:
        client.segment(image_file, points=[(45, 45)], mask_id="no-such-mask")
    assert caught.value.reason == "MASK_NOT_FOUND"


def test_a_deadline_is_honoured_by_the_real_service(client: SamClient) -> None:
    fresh = scene(7)  # not cached: the encoder has to run
    with pytest.raises(DeadlineExceededError) as caught:
        client.embed(fresh, timeout_s=0.005)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_async_client_has_the_same_methods(address: str, image_file: Path) -> None:
    async with AsyncSamClient(address, timeout_s=60) as client:
        assert await client.health() == "SERVING"
        assert (await client.model_info()).image_size_px > 0
        embedded = await client.embed(image_file)
        result = await client.segment(image_file, points=[(45, 45)], mode="multi", encoding="png")
        assert result.image_id == embedded.image_id and len(result.masks) == 3
        assert result.best.mask.shape == (HEIGHT, WIDTH)
        with pytest.raises(InvalidArgumentError) as caught:
            await client.segment(image_id=embedded.image_id, box=(0, 0, 999, 10))
        assert any(f.endswith("box.x_max") for f in caught.value.fields)
        assert await client.delete_image(embedded.image_id) is True


# -- CLI (subprocess) ---------------------------------------------------------------------------------


def run_cli(address: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(CLIENT_SRC)}
    return subprocess.run(
        [sys.executable, "-m", "sam_client", "--address", address, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_cli_health_info_embed_delete(address: str, image_file: Path) -> None:
    out = run_cli(address, "health")
    assert out.returncode == 0 and "SERVING" in out.stdout
    info = json.loads(run_cli(address, "info", "--json").stdout)
    assert info["image_size_px"] > 0
    assert "image_size_px" in run_cli(address, "info").stdout
    embedded = run_cli(address, "embed", str(image_file), "--json")
    assert embedded.returncode == 0, embedded.stderr
    record = json.loads(embedded.stdout)
    assert record["image_id"] == image_id(image_file.read_bytes())
    assert (record["width_px"], record["height_px"]) == (WIDTH, HEIGHT)
    deleted = run_cli(address, "delete", str(image_file), "--json")
    assert json.loads(deleted.stdout)[0]["deleted"] is True


def test_cli_segment_png_and_rle_agree_and_the_overlay_has_the_image_size(address: str, image_file: Path,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    png_out, rle_out = tmp_path / "png", tmp_path / "rle"
    prompts = ["--point", "45,45", "--point", "150,10,0", "--box", "15,15,75,75", "--mode", "multi"]
    png = run_cli(address, "segment", str(image_file), *prompts, "--format", "png", "--out", str(png_out))
    assert png.returncode == 0, png.stderr
    assert "rank" in png.stdout and "score" in png.stdout  # the table
    rle = run_cli(address, "segment", str(image_file), *prompts, "--format", "rle", "--out", str(rle_out), "--json")
    assert rle.returncode == 0, rle.stderr
    report = json.loads(rle.stdout)
    assert report["failures"] == []
    (summary,) = report["images"]
    assert [m["rank"] for m in summary["masks"]] == [1, 2, 3]
    for record in summary["masks"]:
        rle_mask = coco.decode({"size": record["rle"]["size"], "counts": record["rle"]["counts"].encode()})
        png_mask = np.asarray(Image.open(png_out / "scene" / f"mask_{record['rank']}.png").convert("L")) > 0
        assert rle_mask.shape == (HEIGHT, WIDTH)
        assert np.array_equal(rle_mask.astype(bool), png_mask)
    for folder in (png_out, rle_out):
        with Image.open(folder / "scene" / "overlay.png") as overlay:
            overlay.load()
            assert overlay.size == (WIDTH, HEIGHT) and overlay.format == "PNG"
    logits = run_cli(address, "segment", str(image_file), "--point", "45,45", "--format", "logits",
                     "--mode", "single", "--out", str(tmp_path / "logits"))  # fmt: skip
    assert logits.returncode == 0, logits.stderr
    assert np.load(tmp_path / "logits" / "scene" / "mask_1_logits.npy").ndim == 2


def test_cli_mask_id_from_one_call_refines_in_the_next(address: str, image_file: Path, tmp_path: Path) -> None:
    first = run_cli(address, "segment", str(image_file), "--point", "45,45", "--out", str(tmp_path), "--json")
    (summary,) = json.loads(first.stdout)["images"]
    mask_id = summary["masks"][0]["mask_id"]
    table = run_cli(address, "segment", str(image_file), "--point", "45,45", "--out", str(tmp_path))
    assert table.returncode == 0
    second = run_cli(address, "segment", str(image_file), "--point", "45,45", "--mask-id", mask_id,
                     "--mode", "single", "--out", str(tmp_path), "--json")  # fmt: skip
    assert second.returncode == 0, second.stderr
    (refined,) = json.loads(second.stdout)["images"]
    assert refined["cached"] is True and len(refined["masks"]) == 1


def test_cli_segment_folder_lists_failures_without_stopping(address: str, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        (folder / f"img{i}.png").write_bytes(png_bytes(scene(10 + i)))
    (folder / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored")
    out = run_cli(address, "segment", str(folder), "--point", "0.3,0.4", "--relative", "--out", str(tmp_path / "o"))
    assert out.returncode == 1
    assert "segmented 3 of 4 images" in out.stdout
    assert "1 image(s) failed" in out.stderr and "broken.jpg" in out.stderr
    assert "[4/4]" in out.stderr  # progress
    for i in range(3):
        assert (tmp_path / "o" / f"img{i}" / "overlay.png").is_file()


def test_cli_server_errors_exit_1_with_the_field(address: str, image_file: Path, tmp_path: Path) -> None:
    out = run_cli(address, "segment", str(image_file), "--point", "5000,5", "--out", str(tmp_path))
    assert out.returncode == 1
    assert "POINT_OUTSIDE_IMAGE" in out.stderr and "prompt_sets[0].points[0].x" in out.stderr
    out = run_cli(address, "segment", str(image_file), "--point", "5,5", "--mask-id", "nope", "--out", str(tmp_path))
    assert out.returncode == 1 and "--mask-id" in out.stderr


def test_cli_generate_writes_sa1b_json_and_an_overlay(address: str, image_file: Path, tmp_path: Path) -> None:
    flags = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
             "--box-nms-thresh", "1.0", "--points-per-batch", "8"]  # fmt: skip
    out = run_cli(address, "generate", str(image_file), *flags, "--out", str(tmp_path / "o"))
    assert out.returncode == 0, out.stderr
    assert "scene.png: 8/16 points" in out.stderr and "scene.png: 16/16 points" in out.stderr  # progress
    record = json.loads((tmp_path / "o" / "scene.json").read_text())
    assert record["image"] == {"file_name": "scene.png", "image_id": image_id(image_file.read_bytes()),
                               "height": HEIGHT, "width": WIDTH}  # fmt: skip
    annotations = record["annotations"]
    assert len(annotations) == 48
    keys = {"id", "segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
    for a in annotations:
        assert set(a) == keys
        rle = {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode("ascii")}
        mask = coco.decode(rle).astype(bool)
        assert mask.shape == (HEIGHT, WIDTH) and int(mask.sum()) == a["area"]
        ys, xs = np.nonzero(mask)
        assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
        assert a["crop_box"] == [0, 0, WIDTH, HEIGHT] and len(a["point_coords"]) == 1
    overlay = np.asarray(Image.open(tmp_path / "o" / "scene_overlay.png").convert("RGB"))
    assert overlay.shape == (HEIGHT, WIDTH, 3) and not np.array_equal(overlay, scene())


def test_cli_generate_a_folder_and_report_bad_parameters(address: str, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        (folder / f"img{i}.png").write_bytes(png_bytes(scene(seed=i)))
    out = run_cli(address, "generate", str(folder), "--points-per-side", "2", "--no-overlay", "--json",
                  "--out", str(tmp_path / "o"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert [Path(d["json"]).name for d in summary["images"]] == ["img0.json", "img1.json"]
    assert not list((tmp_path / "o").glob("*_overlay.png"))
    bad = run_cli(address, "generate", str(folder / "img0.png"), "--points-per-side", "1000")
    assert bad.returncode == 1 and "points_per_side" in bad.stderr and "limit" in bad.stderr


# -- a fresh virtual environment with only the client -----------------------------------------------


@pytest.mark.slow
def test_a_fresh_venv_with_only_the_client_segments(address: str, image_file: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # install from a copy, as from an sdist: the build uses the shipped stubs and writes nothing here
    source = tmp_path / "client"
    shutil.copytree(REPO / "client", source, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info"))
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("grpcio==1.85.3\nprotobuf==6.33.6\nnumpy==1.26.4\npillow==13.0.0\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(constraints),
         str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "segment-anything-client" in names
    assert not names & {"torch", "grpcio-status", "googleapis-common-protos", "pycocotools"}
    out = tmp_path / "out"
    segment = subprocess.run(
        [str(venv / "bin" / "sam-client"), "--address", address, "segment", str(image_file), "--point", "45,45",
         "--format", "rle", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    assert segment.returncode == 0, segment.stderr
    (summary,) = json.loads(segment.stdout)["images"]
    assert len(summary["masks"]) == 3
    with Image.open(out / "scene" / "overlay.png") as overlay:
        assert overlay.size == (WIDTH, HEIGHT)
