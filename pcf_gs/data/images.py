"""Reading images and label maps with one-line errors, and resizing them.

Label maps are resized nearest-neighbour *at pixel centres*: destination
pixel j samples source pixel floor((j + 0.5) * src / dst), so a 2x downscale
takes the centre-most pixel rather than the top-left one (OpenCV's
INTER_NEAREST takes floor(j * src / dst)).

Images are decoded with :func:`imread`: the codec libraries under OpenCV
(libpng, libjpeg) print their complaints straight to file descriptor 2 from C,
so a corrupt file would show a ``libpng error: ...`` line above our own
one-line error. :func:`imread` catches what they print and turns it into a
:class:`DataError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.errors import DataError

log = logging.getLogger("pcf_gs")


MIN_IMAGE_SIDE = 4  # pixels: smaller loaded images cannot hold a 2D mask, let alone train on
# what the codecs print on fd 2 (libpng errors/warnings, libjpeg's "Corrupt JPEG data", OpenCV's own)
_CODEC_LINE = re.compile(r"^(libpng|libtiff|Corrupt JPEG|Premature end of JPEG|Invalid SOS|Bogus|Unsupported marker|"
                         r"Warning:|JPEG|\[ WARN|\[ERROR|\[ INFO|\[WARN)")
# fd 2 is one per process: one thread redirects it at a time
_FD2_LOCK = threading.Lock()


@contextlib.contextmanager
def _capture_fd2():
    """Point file descriptor 2 at a temporary file while inside; yields a list that then holds what was
    written to it. Lines that are not a codec's (another thread's log output) are written back to stderr."""
    out: list[str] = []
    # the lock covers the dup too: a dup taken while another thread has fd 2 redirected would later
    # "restore" fd 2 to that thread's (deleted) temporary file, and every later message, the final
    # error included, would vanish
    with _FD2_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to keep clean
            saved = None
        if saved is None:
            yield out
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield out
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                other = []
                for line in tmp.read().decode("utf-8", "replace").splitlines():
                    (out if _CODEC_LINE.match(line.strip()) else other).append(line.strip())
                if other:
                    os.write(2, ("\n".join(other) + "\n").encode())


def imread(path: Path, flags: int = cv2.IMREAD_UNCHANGED, what: str = "image") -> np.ndarray:
    """``cv2.imread`` with one-line errors naming ``path``: a missing file, a file the codec rejects, and
    a file it decodes with complaints (a truncated JPEG decodes to grey rows with a warning) are all
    :class:`DataError`; nothing reaches stderr."""
    if not path.is_file():
        raise DataError(f"{what} file not found", path)
    try:
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {what} ({e.strerror or e})", path) from None
    with _capture_fd2() as said:
        img = cv2.imdecode(data, flags) if data.size else None
    why = "; ".join(dict.fromkeys(said))  # unique, in order
    if img is None or img.size == 0:
        raise DataError(f"cannot read {what} (corrupt or unsupported format{': ' + why if why else ''})", path)
    if why:
        raise DataError(f"corrupt {what} ({why})", path)
    return img


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding it; None if the header is unreadable
    (the decoder then reports the file)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return tuple(im.size)
    except Exception:  # noqa: BLE001 - any header problem is reported when the image is read
        return None


def reference_size(paths: list[Path]) -> tuple[int, int]:
    """The (width, height) most of ``paths`` have (ties: the earliest frame's), so that the frame of a
    different size is the one an error names, whichever position it has."""
    sizes = [image_size(p) for p in paths]
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        return read_rgb(paths[0]).shape[1::-1]
    best = max(counts.values())
    return next(s for s in sizes if s is not None and counts[s] == best)


def read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB. 16-bit images are scaled to 8 bit; alpha is dropped."""
    img = imread(path)
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
    a = imread(path, what=f"{what} image")
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


def target_size(width: int, height: int, downscale: int, max_size: int, scene: Path | None = None) -> tuple[int, int]:
    """Size (pixels) after an integer ``downscale`` and an optional cap on the longer side.

    With ``scene`` given, a size under :data:`MIN_IMAGE_SIDE` pixels a side is a DataError naming it
    (``data.downscale=1000000000`` would otherwise train on 1x1 images)."""
    w = max(1, round(width / max(1, downscale)))
    h = max(1, round(height / max(1, downscale)))
    if max_size and max(w, h) > max_size:
        s = max_size / max(w, h)
        w, h = max(1, round(w * s)), max(1, round(h * s))
    if scene is not None and min(w, h) < MIN_IMAGE_SIDE:
        how = " and ".join(f"data.{k}={v}" for k, v in (("downscale", downscale), ("max_size", max_size))
                           if v not in (0, 1)) or "as they are"
        raise DataError(f"{width}x{height} images loaded with {how} would be {w}x{h} pixels; "
                        f"at least {MIN_IMAGE_SIDE} a side is needed (use a smaller data.downscale)", scene)
    return w, h


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by (sx, sy); exact with pixel centres at +0.5."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0] *= sx
    K[1] *= sy
    return K
