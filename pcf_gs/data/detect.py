"""Layout detection and the one entry point that loads any supported scene folder.

Each layout is one module with ``is_<layout>(root)`` and ``load_<layout>(root, cfg, progress)``:

- ``messy_rooms``       color/ + metadata.json (Contrastive Lift's Messy Rooms, our synthetic scenes)
- ``panoptic_lifting``  Panoptic Lifting's ScanNet / Replica / Hypersim scenes
- ``colmap``            images/ + sparse/0/ (or sparse/) cameras, images, points3D
- ``nerfstudio``        transforms.json
"""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

from pcf_gs.config import DataConfig
from pcf_gs.data.scene import Scene
from pcf_gs.errors import DataError

log = logging.getLogger("pcf_gs")

# detection order: the first layout whose test passes is used
LAYOUTS = ("messy_rooms", "panoptic_lifting", "colmap", "nerfstudio")
DESCRIPTIONS = {
    "messy_rooms": "Messy Rooms (color/ + metadata.json)",
    "panoptic_lifting": "Panoptic Lifting (color/ + pose/ + intrinsic/)",
    "colmap": "COLMAP (images/ + sparse/0/)",
    "nerfstudio": "nerfstudio (transforms.json)",
}


def _module(name: str):
    return importlib.import_module(f"pcf_gs.data.{name}")


def detect_format(root: Path) -> str:
    """Name of the layout in ``root``; a one-line error if there is none we can read."""
    root = Path(root)
    if not root.exists():
        raise DataError("scene folder not found", root)
    if not root.is_dir():
        raise DataError("not a folder", root)
    found = [name for name in LAYOUTS if getattr(_module(name), f"is_{name}")(root)]
    if found:
        if len(found) > 1:
            log.info("%s: looks like %s; using %s (--format to choose)", root,
                     " and ".join(DESCRIPTIONS[n] for n in found), found[0])
        return found[0]
    if (root / "color").is_dir():
        raise DataError("has color/ but no metadata.json (Messy Rooms) or pose/ (Panoptic Lifting)", root)
    if (root / "images").is_dir():
        raise DataError("has images/ but no poses: expected sparse/0/ (COLMAP) or transforms.json (nerfstudio); "
                        "run COLMAP or ns-process-data first", root)
    raise DataError("no known scene layout (supported: " + "; ".join(DESCRIPTIONS.values()) + ")", root)


def load_scene(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Load a scene folder; ``cfg.format`` = "auto" detects the layout."""
    cfg = cfg or DataConfig()
    root = Path(root)
    fmt = cfg.format if cfg.format != "auto" else detect_format(root)
    if fmt not in LAYOUTS:
        raise DataError(f"unknown format {fmt!r} (supported: {', '.join(LAYOUTS)})", root)
    if not root.is_dir():
        raise DataError("scene folder not found", root)
    # a numeric warning while reading (an overflow in a camera, a NaN in a map) means a value that the
    # loaders' own checks did not expect: it becomes a one-line error naming the scene, not stderr noise
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            scene = getattr(_module(fmt), f"load_{fmt}")(root, cfg, progress=progress)
        except (RuntimeWarning, FloatingPointError) as e:
            raise DataError(f"implausible values in the scene ({e})", root) from None
    if not scene.frames:
        raise DataError("scene has no frames", root)
    return scene
