"""Format detection and the one entry point that loads any supported scene folder."""

from __future__ import annotations

from pathlib import Path

from pcf_gs.config import DataConfig
from pcf_gs.data.messy_rooms import is_messy_rooms, load_messy_rooms
from pcf_gs.data.scene import Scene
from pcf_gs.errors import DataError

LOADERS = {"messy_rooms": load_messy_rooms}

# Layouts we recognise but cannot read yet: (name, test, hint).
_PLANNED = [
    ("panoptic_lifting", lambda r: (r / "pose").is_dir() and (r / "color").is_dir(), "Panoptic Lifting (pose/, color/)"),
    ("colmap", lambda r: (r / "sparse").is_dir(), "COLMAP (sparse/0/)"),
    ("nerfstudio", lambda r: (r / "transforms.json").is_file(), "nerfstudio (transforms.json)"),
]


def detect_format(root: Path) -> str:
    """Name of the layout in ``root``; a one-line error if there is none we can read."""
    root = Path(root)
    if not root.exists():
        raise DataError("scene folder not found", root)
    if not root.is_dir():
        raise DataError("not a folder", root)
    if is_messy_rooms(root):
        return "messy_rooms"
    for name, test, desc in _PLANNED:
        if test(root):
            raise DataError(f"looks like {desc}, which pcf-gs cannot read yet (supported: messy_rooms)", root)
    if (root / "color").is_dir():
        raise DataError("has color/ but no metadata.json (Messy Rooms layout expected)", root)
    raise DataError("no known scene layout (Messy Rooms expects color/ and metadata.json)", root)


def load_scene(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Load a scene folder; ``cfg.format`` = "auto" detects the layout."""
    cfg = cfg or DataConfig()
    root = Path(root)
    fmt = cfg.format if cfg.format != "auto" else detect_format(root)
    if fmt not in LOADERS:
        raise DataError(f"unknown format {fmt!r} (supported: {', '.join(LOADERS)})", root)
    scene = LOADERS[fmt](root, cfg, progress=progress)
    if not scene.frames:
        raise DataError("scene has no frames", root)
    return scene
