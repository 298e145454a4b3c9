"""Reading images and label maps with one-line errors, and resizing them.

Label maps are resized nearest-neighbour *at pixel centres*: destination
pixel j samples source pixel floor((j + 0.5) * src / dst), so a 2x downscale
takes the centre-most pixel rather than the top-left one (OpenCV's
INTER_NEAREST takes floor(j * src / dst)).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.errors import DataError

log = logging.getLogger("pcf_gs")


def read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB. 16-bit images are scaled to 8 bit; alpha is dropped."""
    if not path.is_file():
        raise DataError("image file not found", path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError("cannot read image (corrupt or unsupported format)", path)
    if img.dtype == np.uint16:
        img = (img / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise DataError(f"unsupported image dtype {img.dtype}", path)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise DataError(f"unsupported number of channels {img.shape[2]}", path)
    return np.ascontiguousarray(img)


def read_id_png(path: Path, what: str = "label") -> np.ndarray:
    """Single-channel 8/16-bit PNG of ids (labels, instance maps) -> [H, W] int32."""
    if not path.is_file():
        raise DataError(f"{what} file not found", path)
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None or a.size == 0:
        raise DataError(f"cannot read {what} image (corrupt or unsupported format)", path)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise DataError(f"expected a single-channel {what} PNG, got {a.shape[2]} channels", path)
    if a.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{what} PNG has unsupported dtype {a.dtype}", path)
    return a.astype(np.int32)


def read_npy(path: Path, kind: str) -> np.ndarray:
    """Load a 2D map from ``.npy``; ``kind`` ("label" or "confidence") picks the checks."""
    if not path.is_file():
        raise DataError(f"{kind} file not found", path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any parse failure is a data problem
        raise DataError(f"cannot read .npy ({type(e).__name__}: {e})", path) from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DataError(f"expected a 2D {kind} map, got shape {tuple(arr.shape)}", path)
    if kind == "label":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise DataError("label map has non-integer values", path)
        elif arr.dtype.kind not in "iub":
            raise DataError(f"label map has unsupported dtype {arr.dtype}", path)
        if arr.size and arr.min() < 0:
            raise DataError(f"label map has negative ids (min {arr.min()})", path)
        return arr.astype(np.int32)
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise DataError("confidence map has non-finite values", path)
    return np.clip(arr, 0.0, 1.0)


def resize_nearest(label: np.ndarray, width: int, height: int) -> np.ndarray:
    """[h, w] -> [height, width], nearest at pixel centres (exact, dtype kept)."""
    h, w = label.shape[:2]
    if (w, h) == (width, height):
        return label
    ys = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    xs = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return label[ys[:, None], xs[None, :]]


def resize_image(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area filter when shrinking, bilinear when growing."""
    h, w = img.shape[:2]
    if (w, h) == (width, height):
        return img
    interp = cv2.INTER_AREA if width < w or height < h else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def fit_label_map(label: np.ndarray, width: int, height: int, path: Path, nearest: bool = True) -> np.ndarray:
    """Bring a label/confidence map to the image's (width, height).

    Same aspect ratio: resized (nearest for labels), with a warning.
    Different aspect ratio: a :class:`DataError`.
    """
    h, w = label.shape[:2]
    if (w, h) == (width, height):
        return label
    if abs(w * height - h * width) > max(w, h, width, height):  # allow 1-pixel rounding
        raise DataError(f"size {w}x{h} does not match the image size {width}x{height} (different aspect ratio)", path)
    log.warning("%s: size %dx%d differs from the image %dx%d; resizing", path, w, h, width, height)
    if nearest:
        return resize_nearest(label, width, height)
    return resize_image(label, width, height)


def target_size(width: int, height: int, downscale: int, max_size: int) -> tuple[int, int]:
    """Size after an integer ``downscale`` and an optional cap on the longer side."""
    w = max(1, round(width / max(1, downscale)))
    h = max(1, round(height / max(1, downscale)))
    if max_size and max(w, h) > max_size:
        s = max_size / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    return w, h


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by (sx, sy); exact with pixel centres at +0.5."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0] *= sx
    K[1] *= sy
    return K
