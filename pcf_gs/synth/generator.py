"""``generate_scene``: write a synthetic scene in the Messy Rooms layout, atomically.

Output folder (see docs/synthetic.md)::

    OUT/color/<i>.png                 RGB uint8
    OUT/depth/<i>.png                 z-depth, uint16 millimetres (optional)
    OUT/metadata.json                 Kubric-style camera + metadata + "pcf_gs" block
    OUT/detic_semantic/<i>.npy        predicted semantics    [H,W] uint8
    OUT/detic_instance/<i>.npy        predicted instances    [H,W] int16, per-view ids
    OUT/detic_probabilities/<i>.npy   predicted confidence   [H,W] float16 in [0,1]
    OUT/semantic/<i>.npy              GT semantics           [H,W] uint8
    OUT/instance/<i>.npy              GT instances           [H,W] int16, 1..N consistent
    OUT/pcf_gs_scene.json             exact object/room/light/camera descriptors
    OUT/points3d.ply                  surface points + colours (like SfM points)

Determinism: every random choice comes from a named sub-stream
``default_rng(SeedSequence(seed, spawn_key=(stream, ...)))``, so the same options give
byte-identical files, and e.g. changing the frame count does not move the objects.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from pcf_gs import geometry
from pcf_gs.errors import UserError
from pcf_gs.atomic import atomic_dir
from pcf_gs.progress import progress_bar
from pcf_gs.synth import noise as noise_mod
from pcf_gs.synth import cameras as camera_mod
from pcf_gs.synth import layout
from pcf_gs.synth.shading import render_view
from pcf_gs.synth.visibility import pixel_counts, visibility_stats

GENERATOR_VERSION = 1

# named random sub-streams
_S_LAYOUT, _S_LOOK, _S_CAMERA, _S_POINTS, _S_NOISE, _S_PIXELS = 1, 2, 3, 4, 5, 6


class SceneExistsError(UserError, FileExistsError):
    """The output folder exists and is not empty (pass overwrite=True to replace it)."""


def _opt(default, help: str):  # noqa: A002 - "help" is what the CLI reads
    return field(default=default, metadata={"help": help})


@dataclass
class SynthOptions:
    """Everything that defines a synthetic scene. Defaults give a medium scene (~1 s/frame)."""

    objects: int = _opt(25, "number of objects (things)")
    frames: int = _opt(60, "number of views")
    width: int = _opt(256, "image width in pixels")
    height: int = _opt(256, "image height in pixels")
    seed: int = _opt(0, "random seed; the scene is deterministic per seed")
    camera_path: Literal["random", "orbit", "walk"] = _opt("random", "camera trajectory")
    fov: float = _opt(0.0, "horizontal field of view in degrees (0 = random in 50..75)")
    camera_height_min: float = _opt(0.7, "lowest camera height above the floor (m)")
    camera_height_max: float = _opt(2.2, "highest camera height above the floor (m)")
    size_min: float = _opt(0.1, "smallest object half-size (m); sizes are log-uniform")
    size_max: float = _opt(0.45, "largest object half-size (m)")
    shapes: str = _opt(
        "sphere,ellipsoid,box,cylinder,cone,capsule,torus", "comma-separated object shapes to draw from"
    )
    stacked_fraction: float = _opt(0.2, "probability an object rests on another")
    leaning_fraction: float = _opt(0.12, "probability an object leans on another")
    floating_fraction: float = _opt(0.13, "probability an object floats next to another")
    thing_classes: int = _opt(1, "number of thing classes (1 = Messy Rooms' single 'foreground')")
    lights: int = _opt(0, "number of lights besides ambient (0 = random 1..2)")
    shadows: bool = _opt(True, "cast shadows (shadow rays)")
    specular: bool = _opt(True, "allow specular highlights on some objects")
    supersample: int = _opt(2, "RGB anti-aliasing samples per pixel side (labels use the pixel centre)")
    image_noise: float = _opt(0.0, "std of Gaussian RGB sensor noise in 8-bit levels")
    # 2D prediction noise
    miss_rate: float = _opt(0.1, "probability an object is missed in a view")
    merge_rate: float = _opt(0.1, "probability two objects touching in 2D are merged in a view")
    split_rate: float = _opt(0.1, "probability an object is split in two in a view")
    class_flip_rate: float = _opt(0.05, "probability a thing gets a wrong class (thing_classes > 1)")
    boundary_anchors: int = _opt(100, "boundary-noise anchors per view (PCF-Lift)")
    boundary_window: int = _opt(5, "boundary-noise window size W, e.g. 1/9/17 as in PCF-Lift (1 = none)")
    boundary_model: Literal["stress", "paper"] = _opt(
        "stress", "stress: anchors per view on mask edges, copying class and instance; paper: PCF-Lift's, "
        "anchors per 512² at random pixels, copying the instance id only")
    min_split_pixels: int = _opt(16, "only masks with at least this many pixels are split")
    # extras
    depth: bool = _opt(True, "write depth/<i>.png (uint16 millimetres)")
    points: int = _opt(4000, "surface points written to points3d.ply (0 = none)")

    def __post_init__(self) -> None:
        ints = ("objects", "frames", "width", "height", "seed", "thing_classes", "lights", "supersample",
                "boundary_anchors", "boundary_window", "min_split_pixels", "points")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {v!r}")
            setattr(self, name, int(v))
        for name in ("objects", "frames", "width", "height", "thing_classes", "supersample", "boundary_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "lights", "boundary_anchors", "min_split_pixels", "points"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.objects > 2000:
            raise ValueError("objects must be <= 2000")
        if self.thing_classes > 254:
            raise ValueError("thing_classes must be <= 254 (uint8 semantic maps)")
        for name in ("miss_rate", "merge_rate", "split_rate", "class_flip_rate", "stacked_fraction",
                     "leaning_fraction", "floating_fraction"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
            setattr(self, name, v)
        if self.stacked_fraction + self.leaning_fraction + self.floating_fraction > 1.0:
            raise ValueError("stacked + leaning + floating fractions must be <= 1")
        if not (0 < self.size_min <= self.size_max):
            raise ValueError(f"need 0 < size_min <= size_max, got {self.size_min}, {self.size_max}")
        if self.boundary_model not in ("stress", "paper"):
            raise ValueError(f"boundary_model must be stress or paper, got {self.boundary_model!r}")
        if self.camera_path not in ("random", "orbit", "walk"):
            raise ValueError(f"camera_path must be random, orbit or walk, got {self.camera_path!r}")
        if not (self.fov == 0 or 10 <= self.fov <= 150):
            raise ValueError(f"fov must be 0 (random) or in [10, 150] degrees, got {self.fov}")
        if not (0.1 <= self.camera_height_min <= self.camera_height_max):
            raise ValueError("need 0.1 <= camera_height_min <= camera_height_max")
        if self.image_noise < 0:
            raise ValueError("image_noise must be >= 0")
        bad = [s for s in self.shape_list if s not in layout.OBJECT_SHAPES]
        if bad or not self.shape_list:
            raise ValueError(f"unknown shapes {bad}; choose from {', '.join(layout.OBJECT_SHAPES)}")

    @property
    def shape_list(self) -> list[str]:
        return [s.strip() for s in self.shapes.split(",") if s.strip()]

    @classmethod
    def small(cls, **overrides) -> "SynthOptions":
        """A seconds-fast scene for tests: 8 objects, 12 frames, 64x64."""
        base = dict(objects=8, frames=12, width=64, height=64, supersample=1, points=500, boundary_anchors=10, boundary_window=5)
        base.update(overrides)
        return cls(**base)


def parse_size(text: str) -> tuple[int, int]:
    """``"S"`` -> (S, S); ``"WxH"`` -> (W, H). Raises ValueError on anything else."""
    t = str(text).strip().lower()
    m = re.fullmatch(r"(\d+)\s*(?:[x*]\s*(\d+))?", t)
    if not m:
        raise ValueError("expected S or WxH, e.g. 256 or 320x240")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise ValueError("width and height must be in 1..16384")
    return w, h


def class_table(thing_classes: int) -> list[dict]:
    """Messy Rooms' two classes for K=1, else background + K thing classes."""
    if thing_classes <= 1:
        return [{"id": 0, "name": "background", "thing": False}, {"id": 1, "name": "foreground", "thing": True}]
    return [{"id": 0, "name": "background", "thing": False}] + [
        {"id": k, "name": f"thing_{k}", "thing": True} for k in range(1, thing_classes + 1)
    ]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(key)))


def _write_png(path: Path, img: np.ndarray) -> None:
    if img.ndim == 3:
        img = img[:, :, ::-1]
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, inst: np.ndarray) -> None:
    """Binary little-endian PLY: x y z (float32), red green blue (uint8), instance (int32, GT id)."""
    n = len(xyz)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        "comment pcf-gs synthetic surface points (instance = GT instance id, 0 = room)\n"
        f"element vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "property int instance\nend_header\n"
    )
    rec = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"), ("i", "<i4")])
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["r"], rec["g"], rec["b"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    rec["i"] = inst
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def _dir_nonempty(p: Path) -> bool:
    return p.exists() and (not p.is_dir() or any(p.iterdir()))


def build(options: SynthOptions) -> tuple[layout.Scene, np.ndarray, np.ndarray]:
    """The scene, pixel K [3,3] and OpenCV c2w [F,4,4] for ``options`` (no files written).

    The c2w are rebuilt from the quaternions/positions that metadata.json stores, so the
    rendered cameras are the ones a reader reconstructs (to the last bit: see the comment
    on the decoding below).
    """
    o = options
    shapes = tuple(o.shape_list)
    fl = 1.0 - o.stacked_fraction - o.leaning_fraction - o.floating_fraction
    sc = layout.build_scene(
        o.objects,
        _rng(o.seed, _S_LAYOUT),
        _rng(o.seed, _S_LOOK),
        size_range=(o.size_min, o.size_max),
        shapes=shapes,
        thing_classes=o.thing_classes,
        placement_probs=(fl, o.stacked_fraction, o.leaning_fraction, o.floating_fraction),
        num_lights=o.lights or None,
        specular=o.specular,
        shadows=o.shadows,
    )
    rc = _rng(o.seed, _S_CAMERA)
    fov = o.fov if o.fov > 0 else float(rc.uniform(50, 75))
    f = camera_mod.focal_from_fov(fov, o.width)
    K = np.array([[f, 0, o.width / 2], [0, f, o.height / 2], [0, 0, 1.0]])
    c2w, _ = camera_mod.camera_path(sc, o.camera_path, o.frames, rc, (o.camera_height_min, o.camera_height_max))
    cam = json.loads(json.dumps(geometry.opencv_to_kubric(K, c2w, o.width, o.height)))
    K_r = geometry.kubric_intrinsics(cam["K"], o.width, o.height)
    # frame by frame: a single quaternion is normalised with a BLAS dot, a batch row-wise
    # (geometry.quat_to_rotmat); they can differ in the last bit and scenes since version 1
    # were rendered with the per-frame cameras
    c2w_r = np.stack([geometry.kubric_c2w(p, q) for p, q in zip(cam["positions"], cam["quaternions"])])
    return sc, K_r, c2w_r


def generate_scene(out_dir: str | os.PathLike, options: SynthOptions | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Render ``options.frames`` views and write the Messy Rooms layout to ``out_dir``.

    The folder is built in a temporary sibling and renamed at the end: on any failure no
    (partial) ``out_dir`` is left, and an existing one is untouched. An existing non-empty
    ``out_dir`` is refused unless ``overwrite``. Returns a summary dict.
    """
    o = options or SynthOptions()
    out = Path(out_dir)
    if _dir_nonempty(out) and not overwrite:
        raise SceneExistsError("exists and is not empty (use overwrite=True / --overwrite to replace it)", out)
    t0 = time.perf_counter()
    sc, K, c2w = build(o)
    classes = class_table(o.thing_classes)
    W, H = o.width, o.height
    n_pts = [o.points // o.frames + (1 if i < o.points % o.frames else 0) for i in range(o.frames)]
    pts, cols, pinst = [], [], []
    visible = []
    counts = []  # [N+1] GT pixels per id, per frame (visibility statistics)
    stats_all = {"dropped": 0, "merged": 0, "split": 0, "flipped": 0, "boundary_changed_pixels": 0}
    with atomic_dir(out, overwrite=True) as tmp:
        for d in ("color", "detic_semantic", "detic_instance", "detic_probabilities", "semantic", "instance"):
            (tmp / d).mkdir()
        if o.depth:
            (tmp / "depth").mkdir()
        with progress_bar(f"synth {out.name}", total=o.frames, enabled=progress) as advance:
            for i in range(o.frames):
                v = render_view(sc, K, c2w[i], W, H, supersample=o.supersample)
                rgb = v["rgb"]
                if o.image_noise > 0:
                    nz = _rng(o.seed, _S_PIXELS, i).normal(0, o.image_noise, rgb.shape)
                    rgb = np.clip(np.round(rgb + nz), 0, 255).astype(np.uint8)
                pred = noise_mod.simulate_prediction(
                    v["semantic"],
                    v["instance"],
                    _rng(o.seed, _S_NOISE, i),
                    miss_rate=o.miss_rate,
                    merge_rate=o.merge_rate,
                    split_rate=o.split_rate,
                    class_flip_rate=o.class_flip_rate,
                    thing_classes=o.thing_classes,
                    boundary_anchors=o.boundary_anchors,
                    boundary_window=o.boundary_window,
                    min_split_pixels=o.min_split_pixels,
                    boundary_model=o.boundary_model,
                )
                name = str(i)
                _write_png(tmp / "color" / f"{name}.png", rgb)
                np.save(tmp / "semantic" / f"{name}.npy", v["semantic"].astype(np.uint8))
                np.save(tmp / "instance" / f"{name}.npy", v["instance"].astype(np.int16))
                np.save(tmp / "detic_semantic" / f"{name}.npy", pred["semantic"])
                np.save(tmp / "detic_instance" / f"{name}.npy", pred["instance"].astype(np.int16))
                np.save(tmp / "detic_probabilities" / f"{name}.npy", pred["confidence"].astype(np.float16))
                if o.depth:
                    mm = np.clip(np.round(v["depth"] * 1000.0), 0, 65535).astype(np.uint16)
                    _write_png(tmp / "depth" / f"{name}.png", mm)
                if n_pts[i]:
                    rp = _rng(o.seed, _S_POINTS, i)
                    idx = rp.choice(W * H, size=min(n_pts[i], W * H), replace=False)
                    pts.append(v["position"].reshape(-1, 3)[idx])
                    cols.append(v["rgb"].reshape(-1, 3)[idx])
                    pinst.append(v["instance"].reshape(-1)[idx].astype(np.int32))
                visible.append(len(np.unique(v["instance"])) - (1 if (v["instance"] == 0).any() else 0))
                counts.append(pixel_counts([v["instance"]], o.objects)[0])
                st = pred["stats"]
                for k in ("dropped", "merged", "split", "flipped"):
                    stats_all[k] += len(st[k])
                stats_all["boundary_changed_pixels"] += st["boundary_changed_pixels"]
                advance()

        cam = geometry.opencv_to_kubric(K, c2w, W, H)
        params = dataclasses.asdict(o)
        meta = {
            "flags": {"resolution": [W, H], "frame_start": 0, "frame_end": o.frames - 1, "seed": o.seed},
            "metadata": {
                "width": W,
                "height": H,
                "resolution": [W, H],
                "num_frames": o.frames,
                "num_instances": o.objects,
                "generator": "pcf-gs synth",
            },
            "camera": cam,
            "pcf_gs": {
                "version": GENERATOR_VERSION,
                "seed": o.seed,
                "options": params,
                "classes": classes,
                "depth_units": "millimetres, z-depth along the optical axis (uint16 PNG)",
                "noise_stats": stats_all,
            },
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        names = [c["name"] for c in classes]
        desc = {
            "version": GENERATOR_VERSION,
            "seed": o.seed,
            "conventions": {
                "world": "metres, z up, floor at z = 0",
                "object": "x_world = rotation @ (scale * x_unit) + center; unit primitives in pcf_gs.synth.raycast",
                "camera": "OpenCV c2w (x right, y down, z forward); pixel centres at +0.5",
                "instance_id": "GT instance id = object 'id' (1..N); 0 = room",
            },
            "room": sc.room.to_json(),
            "objects": [ob.to_json(names) for ob in sc.objects],
            "lights": [lt.to_json() for lt in sc.lights],
            "ambient": sc.ambient.tolist(),
            "classes": classes,
            "cameras": {"K": K.tolist(), "c2w": c2w.tolist(), "width": W, "height": H},
        }
        (tmp / "pcf_gs_scene.json").write_text(json.dumps(desc, indent=1) + "\n")
        if pts:
            _write_ply(tmp / "points3d.ply", np.concatenate(pts), np.concatenate(cols), np.concatenate(pinst))
    return {
        "out": str(out),
        "frames": o.frames,
        "objects": o.objects,
        "size": f"{W}x{H}",
        "seed": o.seed,
        "camera_path": o.camera_path,
        "mean_visible_objects": float(np.mean(visible)) if visible else 0.0,
        "visibility": visibility_stats(np.stack(counts)),
        "placement": sc.placement_stats,
        "points": int(sum(len(p) for p in pts)),
        "noise": stats_all,
        "seconds": round(time.perf_counter() - t0, 2),
    }
