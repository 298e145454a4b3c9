"""What every layout's loader does the same way: read its JSON files with one-line errors, load
its frames in parallel behind one progress bar, and normalise the cameras."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pcf_gs.data.scene import Frame, Normalization
from pcf_gs.errors import DataError
from pcf_gs.progress import progress_bar

T = TypeVar("T")


def read_json(path: Path, obj: bool = False) -> Any:
    """Parsed JSON of ``path``; with ``obj`` it must be a JSON object. One-line errors naming the file."""
    if not path.is_file():
        raise DataError("file not found", path)
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not valid JSON ({e})", path) from None
    if obj and not isinstance(d, dict):
        raise DataError("expected a JSON object", path)
    return d


def load_frames(load_one: Callable[[T], Frame], items: Sequence[T], root: Path, progress: bool) -> list[Frame]:
    """``[load_one(x) for x in items]`` on 4 threads (image decoding releases the GIL), in order,
    with a progress bar named after ``root``."""
    frames = []
    with ThreadPoolExecutor(max_workers=4) as pool, progress_bar(
        f"loading {root.name}", total=len(items), enabled=progress
    ) as advance:
        for fr in pool.map(load_one, items):
            frames.append(fr)
            advance()
    return frames


def normalize_frames(frames: list[Frame], normalize: bool) -> Normalization:
    """Move the frames' world-frame ``c2w`` into the normalised scene frame (in place; float32) and
    return the normalisation (the identity when not ``normalize``)."""
    norm = Normalization.from_cameras(np.stack([f.c2w for f in frames])) if normalize else Normalization()
    for f in frames:
        f.c2w = norm.world_to_scene_c2w(f.c2w).astype(np.float32)
    return norm
