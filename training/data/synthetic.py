"""Synthetic scenes for SAM-style training: objects with parts and sub-parts, deterministic by seed.

Every scene is drawn from ``np.random.default_rng(seed)`` alone, so a seed names a scene forever
(for a given :class:`SceneConfig`). The splits are disjoint seed ranges (:data:`SPLITS`).

What a scene holds (all in the scene's own pixel frame, ``H x W``, origin top-left, ``x`` right,
``y`` down; the long side is ``SceneConfig.long_side``):

- ``image``: ``HxWx3`` uint8 RGB.
- ``masks``: ``MxHxW`` bool, the *visible* pixels of every instance (occlusion applied).
- ``levels``: ``M`` int8, :data:`WHOLE` (0), :data:`PART` (1) or :data:`SUBPART` (2).
- ``parents``: ``M`` int32, index into ``masks`` of the nearest kept ancestor, -1 for wholes.
  ``masks[i]`` is a subset of ``masks[parents[i]]`` and ``levels[i] > levels[parents[i]]``.
- ``objects``: ``M`` int32, index of the object (0..K-1, in painting order) the instance belongs to.

Object kinds (each drawn with its own textures so that part boundaries are visible):

- ``creature``: torso + head + 2-4 two-segment limbs (parts); limb segments, a belly patch and an
  eye are sub-parts. The whole has no texture of its own: it is the union of its parts, so the
  whole/part ambiguity of a click on a limb is real.
- ``badge``: an outer shape (ellipse, polygon, star, rounded rectangle) with 1-3 inner panels
  (parts), each with 0-2 spots (sub-parts): nested whole / panel / spot.
- ``vehicle``: chassis, cabin and 2-3 wheels (parts); windows, hubcaps and a door (sub-parts).
- ``blob``: a smooth random outline, sometimes with an inner patch (part) and a spot in it.

Later objects occlude earlier ones. Instances smaller than ``min_area`` pixels, or almost equal
to their parent (IoU above ``max_child_iou``), are dropped; their children move up to the
nearest kept ancestor.

Only numpy and OpenCV are used (polygons filled with ``cv2.fillPoly``); a 256 px scene takes a
few milliseconds on one core.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

WHOLE, PART, SUBPART = 0, 1, 2
LEVEL_NAMES = ("whole", "part", "sub-part")
KINDS = ("creature", "badge", "vehicle", "blob")

# Disjoint seed ranges [start, stop) of the splits. A scene's seed is ``start + index``.
SPLITS: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000_000),
    "val": (1_000_000_000, 1_000_100_000),
    "test": (2_000_000_000, 2_000_100_000),
}

_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision: 1/16 px
_TEXTURES = ("flat", "stripes", "noise", "gradient", "checker")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes look. Sizes in pixels of the scene frame; fractions relative to the long side."""

    long_side: int = 256
    min_aspect: float = 0.6  # short side / long side is drawn from [min_aspect, 1]
    min_objects: int = 2
    max_objects: int = 5
    min_object_size: float = 0.2  # object extent as a fraction of the long side
    max_object_size: float = 0.65
    kinds: tuple[str, ...] = KINDS
    max_noise_std: float = 8.0  # per-pixel Gaussian noise, std drawn from [0, max] (0-255 scale)
    blur_probability: float = 0.5  # chance of a Gaussian blur with sigma drawn from [0.3, 1.0]
    min_area: int = 12  # visible pixels an instance needs to be kept
    max_child_iou: float = 0.9  # a child this similar to its parent is dropped (no real ambiguity)

    def __post_init__(self) -> None:
        problems = []
        if self.long_side < 32:
            problems.append(f"long_side must be at least 32 px, got {self.long_side}")
        if not 0.1 <= self.min_aspect <= 1.0:
            problems.append(f"min_aspect must be in [0.1, 1], got {self.min_aspect}")
        if not 1 <= self.min_objects <= self.max_objects:
            problems.append(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if not 0.02 <= self.min_object_size <= self.max_object_size <= 1.5:
            problems.append(
                "need 0.02 <= min_object_size <= max_object_size <= 1.5, got "
                f"{self.min_object_size}, {self.max_object_size}"
            )
        unknown = sorted(set(self.kinds) - set(KINDS))
        if not self.kinds or unknown:
            problems.append(f"kinds must be a non-empty subset of {list(KINDS)}, got {list(self.kinds)}")
        if self.max_noise_std < 0 or not 0 <= self.blur_probability <= 1:
            problems.append("max_noise_std must be >= 0 and blur_probability in [0, 1]")
        if self.min_area < 1 or not 0 < self.max_child_iou <= 1:
            problems.append("min_area must be >= 1 and max_child_iou in (0, 1]")
        if problems:
            raise ValueError("invalid SceneConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> SceneConfig:
        """Builds a config from a JSON-style dict; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SceneConfig keys {unknown}; known keys: {sorted(known)}")
        kwargs = dict(values)
        if "kinds" in kwargs:
            kwargs["kinds"] = tuple(kwargs["kinds"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Scene:
    """One generated scene; see the module docstring for the meaning and frames of the fields."""

    seed: int
    image: np.ndarray  # HxWx3 uint8 RGB
    masks: np.ndarray  # MxHxW bool, visible pixels
    levels: np.ndarray  # M int8
    parents: np.ndarray  # M int32, -1 for wholes
    objects: np.ndarray  # M int32
    kinds: tuple[str, ...] = field(default=())  # kind of each object, by object index

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the scene."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    def children(self, index: int) -> np.ndarray:
        """Indices of the instances whose parent is ``index``."""
        return np.flatnonzero(self.parents == index)

    def ancestors(self, index: int) -> list[int]:
        """Indices from ``index``'s parent up to its whole (empty for a whole)."""
        out = []
        i = int(self.parents[index])
        while i >= 0:
            out.append(i)
            i = int(self.parents[i])
        return out


# ----------------------------------------------------------------------------------------------
# Geometry in an object's local frame (units: about half the object's extent, y down).


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def _capsule(p0: np.ndarray, p1: np.ndarray, r: float, n: int = 8) -> np.ndarray:
    """A segment from ``p0`` to ``p1`` thickened by radius ``r`` with round ends."""
    d = p1 - p0
    a = math.atan2(d[1], d[0])
    t1 = np.linspace(a - math.pi / 2, a + math.pi / 2, n)
    t0 = np.linspace(a + math.pi / 2, a + 3 * math.pi / 2, n)
    end1 = p1 + r * np.stack([np.cos(t1), np.sin(t1)], axis=1)
    end0 = p0 + r * np.stack([np.cos(t0), np.sin(t0)], axis=1)
    return np.concatenate([end1, end0])


def _radial(rng: np.random.Generator, cx: float, cy: float, r: float, aspect: float, n: int = 48,
            wobble: float = 0.2) -> np.ndarray:
    """A smooth random closed outline: radius modulated by a few low harmonics."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    radius = np.ones_like(t)
    for k in (2, 3, 4):
        radius += rng.uniform(0, wobble) / k * np.sin(k * t + rng.uniform(0, 2 * math.pi))
    return np.stack([cx + r * radius * np.cos(t), cy + r * aspect * radius * np.sin(t)], axis=1)


def _shape(rng: np.random.Generator, cx: float, cy: float, r: float, aspect: float) -> np.ndarray:
    """A random closed shape of radius about ``r``: ellipse, polygon, star or rounded rectangle."""
    kind = rng.integers(4)
    if kind == 0:
        return _ellipse(cx, cy, r, r * aspect, rng.uniform(0, math.pi))
    if kind == 1:  # irregular convex-ish polygon
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n)) if n > 4 else np.arange(n) * 2 * math.pi / n
        t = t + rng.uniform(0, 2 * math.pi)
        rad = r * rng.uniform(0.8, 1.0, n)
        return np.stack([cx + rad * np.cos(t), cy + aspect * rad * np.sin(t)], axis=1)
    if kind == 2:  # star
        n = int(rng.integers(4, 8))
        inner = rng.uniform(0.45, 0.7)
        t = np.arange(2 * n) * math.pi / n + rng.uniform(0, math.pi)
        rad = np.where(np.arange(2 * n) % 2 == 0, r, r * inner)
        return np.stack([cx + rad * np.cos(t), cy + aspect * rad * np.sin(t)], axis=1)
    # rounded rectangle
    hw, hh = r, r * aspect
    rc = min(hw, hh) * rng.uniform(0.1, 0.5)
    pts = []
    for qx, qy, a0 in ((1, 1, 0.0), (-1, 1, 0.5), (-1, -1, 1.0), (1, -1, 1.5)):
        t = np.linspace(a0 * math.pi, (a0 + 0.5) * math.pi, 6)
        pts.append(np.stack([cx + qx * (hw - rc) + rc * np.cos(t), cy + qy * (hh - rc) + rc * np.sin(t)], axis=1))
    return np.concatenate(pts)


@dataclass
class _Node:
    level: int
    parent: int  # index within the object's node list, -1 for the whole
    polys: list[np.ndarray]  # local-frame polygons; empty for a whole that is the union of its parts
    contrast_to: int = -1  # node whose colour this one must differ from (-1: the parent)


def _creature(rng: np.random.Generator) -> list[_Node]:
    nodes = [_Node(WHOLE, -1, [])]
    rx, ry = rng.uniform(0.4, 0.6), rng.uniform(0.22, 0.35)
    nodes.append(_Node(PART, 0, [_ellipse(0, 0, rx, ry)]))
    torso = 1
    if rng.random() < 0.6:  # belly patch
        nodes.append(_Node(SUBPART, torso, [_ellipse(rng.uniform(-0.1, 0.1) * rx, 0.2 * ry, rx * rng.uniform(0.45, 0.7),
                                                     ry * rng.uniform(0.4, 0.6))]))
    head_angle = rng.uniform(-0.5, 0.5) + (math.pi if rng.random() < 0.5 else 0.0)
    limb_angles = []
    n_limbs = int(rng.integers(2, 5))
    base = np.linspace(0, 2 * math.pi, n_limbs, endpoint=False) + rng.uniform(0, 2 * math.pi)
    for a in base + rng.uniform(-0.3, 0.3, n_limbs):
        # keep limbs away from the head
        if abs((a - head_angle + math.pi) % (2 * math.pi) - math.pi) < 0.6:
            a += 1.0
        limb_angles.append(a)
    for a in limb_angles:
        anchor = np.array([0.8 * rx * math.cos(a), 0.8 * ry * math.sin(a)])
        d1 = a + rng.uniform(-0.5, 0.5)
        l1, l2 = rng.uniform(0.25, 0.45), rng.uniform(0.2, 0.4)
        w = rng.uniform(0.05, 0.1)
        joint = anchor + l1 * np.array([math.cos(d1), math.sin(d1)])
        d2 = d1 + rng.choice([-1, 1]) * rng.uniform(0.3, 1.2)
        tip = joint + l2 * np.array([math.cos(d2), math.sin(d2)])
        upper = _capsule(anchor, joint, w)
        lower = _capsule(joint, tip, w * rng.uniform(0.7, 1.0))
        limb = len(nodes)
        nodes.append(_Node(PART, 0, [upper, lower], contrast_to=torso))
        nodes.append(_Node(SUBPART, limb, [upper]))
        nodes.append(_Node(SUBPART, limb, [lower], contrast_to=limb + 1))
    hr = rng.uniform(0.14, 0.22)
    hc = np.array([(rx + 0.6 * hr) * math.cos(head_angle), (ry + 0.6 * hr) * math.sin(head_angle)])
    head = len(nodes)
    nodes.append(_Node(PART, 0, [_ellipse(hc[0], hc[1], hr, hr * rng.uniform(0.8, 1.1))], contrast_to=torso))
    if rng.random() < 0.8:
        er = hr * rng.uniform(0.25, 0.4)
        off = hr * 0.35 * np.array([math.cos(head_angle + 0.7), math.sin(head_angle + 0.7)])
        nodes.append(_Node(SUBPART, head, [_ellipse(hc[0] + off[0], hc[1] + off[1], er, er)]))
    return nodes


def _badge(rng: np.random.Generator) -> list[_Node]:
    aspect = rng.uniform(0.55, 1.0)
    nodes = [_Node(WHOLE, -1, [_shape(rng, 0, 0, 1.0, aspect)])]
    n_panels = int(rng.choice([1, 1, 2, 3]))
    if n_panels == 1:
        centres = [(rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1) * aspect)]
        pr = rng.uniform(0.4, 0.62)
    else:
        xs = np.linspace(-0.45, 0.45, n_panels) if n_panels == 2 else np.linspace(-0.5, 0.5, n_panels)
        centres = [(x, rng.uniform(-0.05, 0.05)) for x in xs]
        pr = rng.uniform(0.17, 0.22) if n_panels == 3 else rng.uniform(0.22, 0.3)
    for cx, cy in centres:
        panel = len(nodes)
        pa = rng.uniform(0.6, 1.0) * aspect
        nodes.append(_Node(PART, 0, [_shape(rng, cx, cy, pr, pa)]))
        for _ in range(int(rng.choice([0, 1, 1, 2]))):
            sr = pr * rng.uniform(0.2, 0.4)
            off = rng.uniform(-0.35, 0.35, 2) * pr
            nodes.append(_Node(SUBPART, panel, [_shape(rng, cx + off[0], cy + off[1] * pa, sr, rng.uniform(0.7, 1))]))
    return nodes


def _vehicle(rng: np.random.Generator) -> list[_Node]:
    nodes = [_Node(WHOLE, -1, [])]
    top, bottom = rng.uniform(-0.2, -0.05), rng.uniform(0.15, 0.3)
    chassis = np.array([[-1.0, top], [1.0, top], [1.0, bottom], [-1.0, bottom]])
    chassis[:2, 0] *= rng.uniform(0.85, 1.0)  # slanted front/back
    nodes.append(_Node(PART, 0, [chassis]))
    if rng.random() < 0.5:  # door / stripe
        x0 = rng.uniform(-0.5, 0.0)
        door = np.array([[x0, top + 0.04], [x0 + rng.uniform(0.3, 0.5), top + 0.04],
                         [x0 + rng.uniform(0.3, 0.5), bottom - 0.04], [x0, bottom - 0.04]])
        nodes.append(_Node(SUBPART, 1, [door]))
    cab_h = rng.uniform(0.3, 0.5)
    b0, b1 = rng.uniform(-0.7, -0.3), rng.uniform(0.2, 0.6)
    t0, t1 = b0 + rng.uniform(0.1, 0.25), b1 - rng.uniform(0.1, 0.25)
    cabin = np.array([[b0, top + 0.02], [t0, top - cab_h], [t1, top - cab_h], [b1, top + 0.02]])
    cab = len(nodes)
    nodes.append(_Node(PART, 0, [cabin], contrast_to=1))
    n_windows = int(rng.integers(1, 3))
    edges = np.linspace(0, 1, n_windows + 1)
    for i in range(n_windows):
        u0, u1 = edges[i] + 0.06, edges[i + 1] - 0.06
        yb, yt = top - 0.06, top - cab_h + 0.08
        lerp_b = lambda u: b0 + (b1 - b0) * u  # noqa: E731
        lerp_t = lambda u: t0 + (t1 - t0) * u  # noqa: E731
        win = np.array([[lerp_b(u0) + 0.05, yb], [lerp_t(u0) + 0.05, yt], [lerp_t(u1) - 0.05, yt],
                        [lerp_b(u1) - 0.05, yb]])
        nodes.append(_Node(SUBPART, cab, [win]))
    n_wheels = int(rng.choice([2, 2, 3]))
    wr = rng.uniform(0.17, 0.26)
    for x in np.linspace(-0.62, 0.62, n_wheels):
        wheel = len(nodes)
        nodes.append(_Node(PART, 0, [_ellipse(x, bottom, wr, wr)], contrast_to=1))
        if rng.random() < 0.8:
            nodes.append(_Node(SUBPART, wheel, [_ellipse(x, bottom, wr * 0.45, wr * 0.45)]))
    return nodes


def _blob(rng: np.random.Generator) -> list[_Node]:
    aspect = rng.uniform(0.5, 1.0)
    nodes = [_Node(WHOLE, -1, [_radial(rng, 0, 0, 0.9, aspect, wobble=0.5)])]
    if rng.random() < 0.4:
        c = rng.uniform(-0.25, 0.25, 2)
        nodes.append(_Node(PART, 0, [_radial(rng, c[0], c[1] * aspect, rng.uniform(0.3, 0.45), aspect)]))
        if rng.random() < 0.5:
            nodes.append(_Node(SUBPART, 1, [_radial(rng, c[0], c[1] * aspect, rng.uniform(0.1, 0.16), 1.0)]))
    return nodes


_BUILDERS = {"creature": _creature, "badge": _badge, "vehicle": _vehicle, "blob": _blob}


# ----------------------------------------------------------------------------------------------
# Rasterising and painting.


def _fill(polys: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    if polys:
        pts = [np.round(p * (1 << _SUBPIXEL_BITS)).astype(np.int32) for p in polys]
        cv2.fillPoly(canvas, pts, (1,), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return canvas.astype(bool)


def _random_colour(rng: np.random.Generator, avoid: np.ndarray | None, min_dist: float = 90.0) -> np.ndarray:
    colour = rng.uniform(0, 255, 3)
    for _ in range(12):
        if avoid is None or np.linalg.norm(colour - avoid) >= min_dist:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def _texture(rng: np.random.Generator, colour: np.ndarray, box: tuple[int, int, int, int],
             strength: float = 1.0) -> np.ndarray:
    """A textured patch ``hxwx3`` float32 for the pixel box ``(y0, y1, x0, x1)`` (global coordinates
    are used for periodic textures so that they stay continuous)."""
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    kind = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
    second = np.clip(colour + rng.normal(0, 45 * strength, 3), 0, 255)
    if kind == "flat":
        return np.broadcast_to(colour.astype(np.float32), (h, w, 3)).copy()
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    if kind == "stripes":
        period = rng.uniform(3.0, 14.0)
        a = rng.uniform(0, math.pi)
        t = np.sin((xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period) + rng.uniform(0, 6.3))
        t = np.clip(t * 2.0 + 0.5, 0.0, 1.0)
    elif kind == "checker":
        cell = rng.uniform(3.0, 10.0)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        proj = (xx - x0) * math.cos(a) + (yy - y0) * math.sin(a)
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    else:  # value noise
        cell = int(rng.integers(3, 12))
        coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        t = cv2.resize(coarse, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
        t = t[cell:cell + h, cell:cell + w]
        t = np.clip(t, 0.0, 1.0)
    return colour.astype(np.float32) * (1 - t[..., None]) + second.astype(np.float32) * t[..., None]


def _paint(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, colour: np.ndarray) -> None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    patch = _texture(rng, colour, box)
    region = image[box[0]:box[1], box[2]:box[3]]
    sub = mask[box[0]:box[1], box[2]:box[3]]
    region[sub] = patch[sub]


def _to_pixels(polys: list[np.ndarray], centre: np.ndarray, scale: float, angle: float,
               mirror: bool) -> list[np.ndarray]:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * scale
    if mirror:
        rot = rot @ np.diag([-1.0, 1.0])  # left-right flip in the object frame
    return [p @ rot.T + centre for p in polys]


def _object_masks(nodes: list[_Node], shape: tuple[int, int]) -> list[np.ndarray]:
    """Final (pre-occlusion) masks: children clipped to their parent, later siblings on top."""
    raw = [_fill(n.polys, shape) for n in nodes]
    for i, n in enumerate(nodes):  # a whole without its own outline is the union of its parts
        if n.level == WHOLE and not n.polys:
            for j, m in enumerate(nodes):
                if m.parent == i:
                    raw[i] |= raw[j]
    final: list[np.ndarray] = [np.zeros(shape, bool)] * len(nodes)
    for i, n in enumerate(nodes):
        mask = raw[i] if n.parent < 0 else raw[i] & final[n.parent]
        for j in range(i + 1, len(nodes)):
            if nodes[j].parent == n.parent and n.parent >= 0:
                mask = mask & ~raw[j]
        final[i] = mask
    return final


def generate_scene(seed: int, config: SceneConfig | None = None) -> Scene:
    """Draws the scene named by ``seed`` (any int >= 0). Same seed and config -> same scene."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    config = config or SceneConfig()
    rng = np.random.default_rng(seed)
    long = config.long_side
    short = int(round(long * rng.uniform(config.min_aspect, 1.0)))
    h, w = (short, long) if rng.random() < 0.5 else (long, short)
    shape = (h, w)

    image = _texture(rng, rng.uniform(30, 225, 3), (0, h, 0, w), strength=0.6)
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    per_object: list[tuple[list[_Node], list[np.ndarray]]] = []
    kinds: list[str] = []
    for _ in range(n_objects):
        kind = config.kinds[int(rng.integers(len(config.kinds)))]
        nodes = _BUILDERS[kind](rng)
        extent = rng.uniform(config.min_object_size, config.max_object_size) * long
        centre = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
        stretch = rng.uniform(0.75, 1.3)  # mild anisotropy on top of the builders' own shapes
        angle = rng.uniform(-math.pi, math.pi) if kind != "vehicle" else rng.uniform(-0.5, 0.5)
        mirror = bool(rng.random() < 0.5)
        for n in nodes:
            n.polys = [p * np.array([stretch, 1.0 / stretch]) for p in n.polys]
            n.polys = _to_pixels(n.polys, centre, extent / 2, angle, mirror)
        masks = _object_masks(nodes, shape)
        colours: list[np.ndarray] = []
        for i, n in enumerate(nodes):
            ref = n.contrast_to if n.contrast_to >= 0 else n.parent
            colour = _random_colour(rng, colours[ref] if ref >= 0 else None)
            colours.append(colour)
            if n.polys:  # a whole without an outline is fully covered by its parts
                _paint(image, masks[i], rng, colour)
        per_object.append((nodes, masks))
        kinds.append(kind)

    # Occlusion: walk from the top object down, removing what lies above.
    covered = np.zeros(shape, bool)
    for _, masks in reversed(per_object):
        whole = masks[0].copy()
        for i in range(len(masks)):
            masks[i] = masks[i] & ~covered
        covered |= whole

    out_masks: list[np.ndarray] = []
    levels: list[int] = []
    parents: list[int] = []
    objects: list[int] = []
    for k, (nodes, masks) in enumerate(per_object):
        kept: dict[int, int] = {}  # node index -> output index
        for i, n in enumerate(nodes):
            parent = n.parent
            while parent >= 0 and parent not in kept:
                parent = nodes[parent].parent
            area = int(masks[i].sum())
            if area < config.min_area:
                continue
            if parent >= 0:
                pmask = out_masks[kept[parent]]
                union = int((pmask | masks[i]).sum())
                if area / max(union, 1) > config.max_child_iou:
                    continue
            kept[i] = len(out_masks)
            out_masks.append(masks[i])
            levels.append(n.level)
            parents.append(kept[parent] if parent >= 0 else -1)
            objects.append(k)

    image = image.astype(np.float32)
    if rng.random() < config.blur_probability:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.0))
    noise_std = rng.uniform(0, config.max_noise_std)
    if noise_std > 0:
        image = image + rng.normal(0, noise_std, image.shape).astype(np.float32)
    image_u8 = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return Scene(
        seed=seed,
        image=image_u8,
        masks=np.stack(out_masks) if out_masks else np.zeros((0, h, w), bool),
        levels=np.asarray(levels, np.int8),
        parents=np.asarray(parents, np.int32),
        objects=np.asarray(objects, np.int32),
        kinds=tuple(kinds),
    )


def split_seed(split: str, index: int) -> int:
    """Seed of scene ``index`` of ``split`` (``train``, ``val`` or ``test``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(SPLITS)}")
    start, stop = SPLITS[split]
    if not 0 <= index < stop - start:
        raise ValueError(f"index {index} is outside split {split!r} (0..{stop - start - 1})")
    return start + index


class SyntheticDataset:
    """The first ``size`` scenes of a split (``dataset[i]`` is ``generate_scene(split_seed(split, offset + i))``).

    Scenes are generated on access (nothing is cached), so a dataset of any size costs no memory.
    """

    def __init__(self, split: str, size: int, config: SceneConfig | None = None, offset: int = 0) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        split_seed(split, offset)
        split_seed(split, offset + size - 1)
        self.split = split
        self.size = size
        self.offset = offset
        self.config = config or SceneConfig()

    def __len__(self) -> int:
        return self.size

    def seed(self, index: int) -> int:
        if not 0 <= index < self.size:
            raise IndexError(f"scene index {index} out of range 0..{self.size - 1}")
        return split_seed(self.split, self.offset + index)

    def __getitem__(self, index: int) -> Scene:
        return generate_scene(self.seed(index), self.config)

    def __iter__(self) -> Iterator[Scene]:
        for i in range(self.size):
            yield self[i]
