"""The scene data model shared by every loader, the trainer and the evaluator.

Conventions (docs/conventions.md):
- cameras are OpenCV (x right, y down, z forward); ``c2w`` is a 4x4 float32
  camera-to-world matrix in the *normalised* scene frame; ``K`` is 3x3 in
  pixels of the loaded (possibly downscaled) image, pixel centres at +0.5;
- semantic id 0 is background/void as the format defines it; instance id 0
  means "no instance". 2D instance ids are per view (not consistent across
  views); ground-truth instance ids are consistent.

Images are kept as uint8 to bound memory (a 600-frame 512² scene is 470 MB
as uint8, 1.9 GB as float32); :meth:`Frame.image_float` converts on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    thing: bool


@dataclass
class ClassTable:
    """Semantic classes: ids are dense 0..K-1, each either a thing (has instances) or stuff."""

    classes: list[ClassInfo]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise ValueError(f"class ids must be 0..K-1 in order, got {ids}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def thing_ids(self) -> list[int]:
        return [c.id for c in self.classes if c.thing]

    @property
    def stuff_ids(self) -> list[int]:
        return [c.id for c in self.classes if not c.thing]

    def is_thing_array(self) -> np.ndarray:
        """[K] bool, True for thing classes."""
        return np.array([c.thing for c in self.classes], dtype=bool)

    def to_list(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "thing": c.thing} for c in self.classes]

    @classmethod
    def from_list(cls, items: list[dict]) -> "ClassTable":
        items = sorted(items, key=lambda d: int(d["id"]))
        return cls([ClassInfo(int(d["id"]), str(d["name"]), bool(d["thing"])) for d in items])

    @classmethod
    def messy_rooms(cls) -> "ClassTable":
        """Messy Rooms: 0 background (stuff), 1 foreground (thing)."""
        return cls([ClassInfo(0, "background", False), ClassInfo(1, "foreground", True)])


@dataclass
class Normalization:
    """Similarity between the original world frame and the normalised scene frame.

    x_scene = (x_world - center) * scale. Outputs (splat files, camera paths)
    are written back in the world frame with :meth:`scene_to_world`.
    """

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # [3], world units
    scale: float = 1.0  # scene units per world unit

    def world_to_scene_points(self, x: np.ndarray) -> np.ndarray:
        """x: [..., 3] world -> [..., 3] scene."""
        return (np.asarray(x, dtype=np.float64) - self.center) * self.scale

    def scene_to_world_points(self, x: np.ndarray) -> np.ndarray:
        """x: [..., 3] scene -> [..., 3] world."""
        return np.asarray(x, dtype=np.float64) / self.scale + self.center

    def world_to_scene_c2w(self, c2w: np.ndarray) -> np.ndarray:
        """c2w: [..., 4, 4] world-frame poses -> scene-frame poses (rotation unchanged)."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[..., :3, 3] = (out[..., :3, 3] - self.center) * self.scale
        return out

    def scene_to_world_c2w(self, c2w: np.ndarray) -> np.ndarray:
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[..., :3, 3] = out[..., :3, 3] / self.scale + self.center
        return out

    def matrix(self) -> np.ndarray:
        """[4,4] world-to-scene similarity transform."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.center * self.scale
        return m

    def to_dict(self) -> dict:
        return {"center": [float(v) for v in self.center], "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        return cls(center=np.asarray(d["center"], dtype=np.float64), scale=float(d["scale"]))

    @classmethod
    def from_cameras(cls, c2w: np.ndarray) -> "Normalization":
        """Centre on the camera centroid and scale so the farthest camera is at distance 1.

        c2w: [F, 4, 4] world-frame poses. With a single camera (or all at one
        point) the scale stays 1.
        """
        pos = np.asarray(c2w, dtype=np.float64)[:, :3, 3]
        center = pos.mean(axis=0)
        radius = float(np.linalg.norm(pos - center, axis=1).max()) if len(pos) else 0.0
        scale = 1.0 / radius if radius > 1e-8 else 1.0
        return cls(center=center, scale=scale)


@dataclass
class Frame:
    """One posed view with its 2D predictions and, optionally, ground truth.

    Shapes: H x W at the loaded resolution.
    """

    name: str  # file stem, used to name outputs
    rgb: np.ndarray  # [H, W, 3] uint8
    K: np.ndarray  # [3, 3] float32, pixels
    c2w: np.ndarray  # [4, 4] float32, OpenCV, normalised scene frame
    semantics: np.ndarray  # [H, W] int32, predicted 2D semantic ids
    instances: np.ndarray  # [H, W] int32, predicted 2D instance ids (per view), 0 = none
    confidence: np.ndarray | None = None  # [H, W] float32 in [0, 1]
    gt_semantics: np.ndarray | None = None  # [H, W] int32
    gt_instances: np.ndarray | None = None  # [H, W] int32, consistent across views
    valid: np.ndarray | None = None  # [H, W] bool, False where the format marks pixels invalid
    source_size: tuple[int, int] | None = None
    """(width, height) of the image before ``data.downscale`` / ``data.max_size`` (and the common-size
    resampling), after undistortion: every resize scales K per axis, so K at this size is K scaled by
    source / loaded. ``segment`` labels views at this size (``segment.resolution``). None: as loaded."""

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def image_float(self) -> np.ndarray:
        """[H, W, 3] float32 in [0, 1]."""
        return self.rgb.astype(np.float32) / 255.0

    @property
    def viewmat(self) -> np.ndarray:
        """[4, 4] float32 world-to-camera (what gsplat calls ``viewmats``)."""
        return np.linalg.inv(self.c2w.astype(np.float64)).astype(np.float32)

    @property
    def has_ground_truth(self) -> bool:
        return self.gt_semantics is not None and self.gt_instances is not None


@dataclass
class Scene:
    """A loaded scene: frames, split, classes and the world normalisation."""

    root: Path
    format: str
    frames: list[Frame]
    train_ids: list[int]  # indices into frames
    test_ids: list[int]
    classes: ClassTable
    normalization: Normalization = field(default_factory=Normalization)
    points: np.ndarray | None = None  # [P, 3] float32 initial points (scene frame), e.g. SfM
    point_colors: np.ndarray | None = None  # [P, 3] uint8
    meta: dict = field(default_factory=dict)  # format-specific extras

    @property
    def train_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.train_ids]

    @property
    def test_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.test_ids]

    def split(self, name: str) -> list[Frame]:
        if name == "train":
            return self.train_frames
        if name == "test":
            return self.test_frames
        if name == "all":
            return list(self.frames)
        raise ValueError(f"unknown split {name!r} (train|test|all)")

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.frames) and all(f.has_ground_truth for f in self.frames)

    def c2w_array(self) -> np.ndarray:
        """[F, 4, 4] float32 scene-frame camera-to-world of all frames."""
        return np.stack([f.c2w for f in self.frames]).astype(np.float32)

    def summary(self) -> dict:
        """Plain-JSON description (counts, sizes, classes), used by ``pcf-gs demo``/``info``."""
        sizes = sorted({(f.width, f.height) for f in self.frames})
        n_pred = [len(np.setdiff1d(np.unique(f.instances), [0])) for f in self.frames]
        out = {
            "root": str(self.root),
            "format": self.format,
            "frames": len(self.frames),
            "train_frames": len(self.train_ids),
            "test_frames": len(self.test_ids),
            "image_sizes": [list(s) for s in sizes],
            "classes": self.classes.to_list(),
            "pred_instances_per_view_mean": float(np.mean(n_pred)) if n_pred else 0.0,
            "has_confidence": any(f.confidence is not None for f in self.frames),
            "has_ground_truth": self.has_ground_truth,
            "normalization": self.normalization.to_dict(),
            "initial_points": 0 if self.points is None else int(len(self.points)),
            "views_without_predictions": sum(
                1 for f in self.frames if f.confidence is not None and not f.confidence.any()
            ),
        }
        if self.has_ground_truth:
            ids = set()
            for f in self.frames:
                ids.update(np.unique(f.gt_instances).tolist())
            ids.discard(0)
            out["gt_instances"] = len(ids)
        return out
