"""Loss and metric curves drawn with Pillow (no plotting library): one PNG with stacked panels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2):
        return f"{v:.0e}"
    return f"{v:.3g}"


def draw_panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str,
               series: dict[str, tuple[Sequence[float], Sequence[float]]], log_y: bool = False,
               font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None) -> None:
    """Draws named ``(x, y)`` series into the pixel ``box`` (left, top, right, bottom)."""
    font = font or ImageFont.load_default()
    left, top, right, bottom = box
    draw.rectangle(box, outline=(0, 0, 0), fill=(255, 255, 255))
    draw.text((left + 4, top - 14), title, fill=(0, 0, 0), font=font)
    pts = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys, strict=True)
           if math.isfinite(y) and (not log_y or y > 0)]
    if not pts:
        draw.text((left + 10, top + 10), "no data yet", fill=(120, 120, 120), font=font)
        return

    def ty(v: float) -> float:
        return math.log10(v) if log_y else v

    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_lo, y_hi = min(ty(p[1]) for p in pts), max(ty(p[1]) for p in pts)
    if x_hi == x_lo:
        x_hi = x_lo + 1
    pad = (y_hi - y_lo) * 0.05 or 0.5
    y_lo, y_hi = y_lo - pad, y_hi + pad
    pl, pr, pt, pb = left + 52, right - 8, top + 6, bottom - 20

    def px(x: float) -> float:
        return pl + (x - x_lo) / (x_hi - x_lo) * (pr - pl)

    def py(y: float) -> float:
        return pb - (ty(y) - y_lo) / (y_hi - y_lo) * (pb - pt)

    for tick in _nice_ticks(x_lo, x_hi):
        draw.line([(px(tick), pb), (px(tick), pb + 3)], fill=(0, 0, 0))
        draw.text((px(tick) - 10, pb + 5), _fmt(tick), fill=(0, 0, 0), font=font)
    for tick in _nice_ticks(y_lo, y_hi):
        y = pb - (tick - y_lo) / (y_hi - y_lo) * (pb - pt)
        draw.line([(pl, y), (pr, y)], fill=(230, 230, 230))
        draw.text((left + 4, y - 6), _fmt(10**tick if log_y else tick), fill=(0, 0, 0), font=font)
    draw.line([(pl, pt), (pl, pb), (pr, pb)], fill=(0, 0, 0))
    legend = (pr - 200, pt + 2, pr - 2, pt + 6 + 12 * len(series))
    for k, (xs, ys) in enumerate(series.values()):
        colour = PALETTE[k % len(PALETTE)]
        line = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(y) and (not log_y or y > 0)]
        if len(line) == 1:
            x, y = line[0]
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        elif line:
            draw.line(line, fill=colour, width=2)
    draw.rectangle(legend, fill=(255, 255, 255), outline=(200, 200, 200))
    for k, name in enumerate(series):
        draw.text((legend[0] + 4, pt + 4 + 12 * k), name, fill=PALETTE[k % len(PALETTE)], font=font)


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (bias-corrected), for noisy training losses."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def draw_curves(records: Sequence[dict], path: str | Path, width: int = 900) -> None:
    """Writes a PNG with the training loss (log scale, raw and smoothed) and the validation metrics
    from JSON-lines log records (``{"type": "train"|"val", "step": ..., ...}``)."""
    train = [r for r in records if r.get("type") == "train"]
    val = [r for r in records if r.get("type") == "val"]
    steps = [float(r["step"]) for r in train]
    panels: list[tuple[str, dict, bool]] = [
        ("training loss (log scale)", {"loss": (steps, [r["loss"] for r in train]),
                                      "loss (smoothed)": (steps, smooth([r["loss"] for r in train]))}, True),
        ("training: mean IoU of the mask passed on", {
            "round 1": (steps, [r.get("iou_round_1", float("nan")) for r in train]),
            "last round": (steps, [r.get("iou_last_round", float("nan")) for r in train])}, False),
    ]
    wanted = ("one_click_miou_best_of_3", "one_click_miou_top_ranked", "box_miou")
    metric_keys = [k for k in wanted if val and k in val[0]]
    vsteps = [float(r["step"]) for r in val]
    panels.append(("validation", {k: (vsteps, [float(r[k]) for r in val]) for k in metric_keys}, False))
    panel_h = 220
    img = Image.new("RGB", (width, 20 + len(panels) * (panel_h + 30)), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i, (title, series, log_y) in enumerate(panels):
        top = 24 + i * (panel_h + 30)
        draw_panel(draw, (10, top, width - 10, top + panel_h), title, series, log_y, font)
    tmp = Path(path).with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)
