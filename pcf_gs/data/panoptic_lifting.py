"""Panoptic Lifting loader: the processed ScanNet / Replica / Hypersim scenes of Siddiqui et al.
(CVPR 2023, github.com/nihalsid/panoptic-lifting), read as the official ``PanopLiDataset`` reads them.

Layout (the full spec, with the official files it was read from: docs/layouts/panoptic_lifting.md)::

    ROOT/color/<f>.jpg                   RGB frames; only *.jpg; sorted numerically by stem
    ROOT/pose/<f>.txt                    4x4 camera-to-world, text, OpenCV camera axes
    ROOT/intrinsic/intrinsic_color.txt   4x4 (top-left 3x3 used) K of the colour images,
                                         pixel centres at integer coordinates
    ROOT/splits.json                     {"train": [stems], "test": [stems]} ("val" when no "test")
    ROOT/segmentation_data.pkl           pickled dict; the class table is fg_classes (things)
                                         + bg_classes (stuff); class 0 = void ("faulty")
    ROOT/m2f_semantics/<f>.png           Mask2Former (TTA) semantics, 16-bit PNG, table class ids
    ROOT/m2f_instance/<f>.png            Mask2Former instances, a new id per segment, 0 = none
    ROOT/m2f_probabilities/<f>.npz       "probability" [H,W,C], "confidence" [H,W] (optional here)
    ROOT/rs_semantics/<f>.png            ground truth semantics in the same class ids (optional)
    ROOT/rs_instance/<f>.png             ground truth instances, consistent across views (optional)
    ROOT/invalid/<f>.jpg                 > 0 = pixel to ignore (optional, per frame)

What we do with it:

- cameras: ``c2w`` is the pose file as is (already OpenCV); ``K`` is shifted by +0.5 px to our
  pixel-centre convention (the official rays are cast through integer pixel coordinates), then
  scaled to the loaded image size;
- frames: those ``splits.json`` names, train = "train", test = "test" (else "val"): exactly the
  views the official loader trains on and evaluates on. Without ``splits.json`` every frame is
  loaded and the last ``cfg.test_fraction`` are the test split (the official loader draws 8 at random);
- classes: the sorted ids of ``fg_classes + bg_classes`` become our dense ids 0..K-1 (identity for
  the published scenes); ``scene.meta["panoptic_lifting"]`` records the dataset id of each dense
  id and the faulty classes (dense ids) the official evaluation skips. ``segmentation_data.pkl``
  is read with a restricted unpickler that runs no code (:func:`safe_unpickle`).
"""

from __future__ import annotations

import builtins
import importlib
import io
import logging
import pickle
import threading
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.config import DataConfig
from pcf_gs.data import images as imgio
from pcf_gs.data.loading import load_frames, normalize_frames, read_json
from pcf_gs.data.scene import ClassInfo, ClassTable, Frame, Scene
from pcf_gs.errors import DataError

log = logging.getLogger("pcf_gs")

FORMAT = "panoptic_lifting"
COLOR_EXT = ".jpg"  # the official loader lists color/*.jpg only
INTRINSIC_FILE = ("intrinsic", "intrinsic_color.txt")
SPLIT_FILE = "splits.json"
CLASS_FILE = "segmentation_data.pkl"
PRED_SEM, PRED_INS, PRED_PROB = "m2f_semantics", "m2f_instance", "m2f_probabilities"
GT_SEM, GT_INS = "rs_semantics", "rs_instance"
INVALID_DIR = "invalid"
FAULTY_CLASSES = (0,)  # PanopLiDataset.faulty_classes / faulty_gt_classes: void, skipped in evaluation
PIXEL_CENTRE_SHIFT = 0.5  # layout: first pixel centre at (0, 0); ours: (0.5, 0.5)
LABEL_ASPECT_TOLERANCE = 0.02  # ScanNet's 640x480 labels vs 1296x968 colour differ by 0.4%
POSE_ORTHO_TOLERANCE = 0.05  # Hypersim poses keep rotation scale errors up to 1e-2

# Class names of the official class tables (resources/scannet_<set>_things.csv, with "void" at 0);
# the thing flags always come from the scene's own segmentation_data.pkl.
SCANNET_REDUCED_NAMES = (
    "void", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "counter",
    "shelves", "curtain", "ceiling", "refridgerator", "television", "person", "toilet", "sink", "lamp",
    "bag", "otherprop",
)  # fmt: skip
SCANNET_REDUCED_THINGS = (4, 5, 6, 14, 15, 16, 17, 18, 20)
SCANNET_EXTENDED_NAMES = SCANNET_REDUCED_NAMES[:-1] + (
    "bottle", "cup", "keyboard", "mouse", "book", "laptop", "blanket", "pillow", "clock", "cellphone", "otherprop",
)  # fmt: skip
SCANNET_EXTENDED_THINGS = SCANNET_REDUCED_THINGS + (21, 22, 23, 24, 25, 26, 28, 30)
KNOWN_TABLES = {
    "scannet_reduced": (SCANNET_REDUCED_NAMES, SCANNET_REDUCED_THINGS),
    "scannet_extended": (SCANNET_EXTENDED_NAMES, SCANNET_EXTENDED_THINGS),
}


# ----------------------------------------------------------------------------- frames and split


def _sort_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_frames(color_dir: Path) -> list[str]:
    """Stems of ``color/*.jpg``, numeric stems in numeric order (``2`` before ``10``)."""
    if not color_dir.is_dir():
        raise DataError("missing folder of colour images (expected <frame>.jpg)", color_dir)
    stems = [p.stem for p in color_dir.iterdir() if p.suffix == COLOR_EXT and not p.name.startswith(".")]
    if not stems:
        raise DataError("no .jpg images found (Panoptic Lifting frames are color/<frame>.jpg)", color_dir)
    return sorted(stems, key=_sort_key)


def read_splits(path: Path, stems: list[str]) -> tuple[list[str], list[str], str]:
    """``splits.json`` -> (train stems, test stems, key used for test), validated against color/."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError('expected a JSON object with "train" and "test" lists', path)
    test_key = "test" if "test" in data else "val" if "val" in data else None
    if "train" not in data or test_key is None:
        missing = "train" if "train" not in data else "test"
        raise DataError(f'has no "{missing}" list (keys: {", ".join(map(str, data)) or "none"})', path)
    known = set(stems)
    out = []
    for key in ("train", test_key):
        items = data[key]
        if not isinstance(items, list):
            raise DataError(f'"{key}" must be a list of frame names, got {type(items).__name__}', path)
        names = []
        for x in items:
            if isinstance(x, bool) or not isinstance(x, (str, int)):
                raise DataError(f'"{key}" has an entry that is not a frame name: {x!r}', path)
            name = str(x)  # the official loader looks frames up as f"{x}"
            if name not in known:
                raise DataError(f'"{key}" names frame {name!r}, which color/ does not have ({name}{COLOR_EXT})', path)
            names.append(name)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f'"{key}" lists frame {dup!r} twice', path)
        out.append(names)
    train, test = out
    if not train:
        raise DataError('"train" is empty', path)
    both = sorted(set(train) & set(test), key=_sort_key)
    if both:
        raise DataError(f'frame {both[0]!r} is in both "train" and "{test_key}"', path)
    return train, test, test_key


# ----------------------------------------------------------------------------- cameras


def read_matrix_txt(path: Path, what: str) -> np.ndarray:
    """A whitespace-separated text matrix (blank lines skipped) -> float64 [rows, cols]."""
    if not path.is_file():
        raise DataError(f"{what} file not found", path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{what} file is not text", path) from None
    try:
        rows = [[float(v) for v in line.split()] for line in text.splitlines() if line.strip()]
    except ValueError as e:
        raise DataError(f"{what} file has a value that is not a number ({e})", path) from None
    if not rows:
        raise DataError(f"{what} file is empty", path)
    if len({len(r) for r in rows}) != 1:
        raise DataError(f"{what} file has rows of different lengths {[len(r) for r in rows]}", path)
    return np.asarray(rows, dtype=np.float64)


def read_pose(path: Path) -> np.ndarray:
    """``pose/<f>.txt`` -> [4,4] float64 camera-to-world (OpenCV axes), validated."""
    m = read_matrix_txt(path, "pose")
    if m.shape != (4, 4):
        raise DataError(f"pose must be a 4x4 matrix, got {m.shape[0]}x{m.shape[1]}", path)
    if not np.all(np.isfinite(m)):
        raise DataError("pose has non-finite values (NaN/inf; ScanNet marks lost tracking with -inf)", path)
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=1e-4):
        raise DataError(f"pose's last row must be 0 0 0 1, got {' '.join(f'{v:g}' for v in m[3])}", path)
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > POSE_ORTHO_TOLERANCE or np.linalg.det(R) <= 0:
        det = float(np.linalg.det(R))
        raise DataError(f"pose rotation is not a proper rotation (|R^T R - I| = {err:.3g}, det = {det:.3g})", path)
    return m


def read_intrinsics(path: Path) -> np.ndarray:
    """``intrinsic/intrinsic_color.txt`` -> [3,3] float64 pixel K of the colour images, in the
    layout's convention (pixel centres at integer coordinates), validated."""
    m = read_matrix_txt(path, "intrinsics")
    if m.shape not in ((4, 4), (3, 3), (3, 4)):
        raise DataError(f"intrinsics must be a 4x4 (or 3x3) matrix, got {m.shape[0]}x{m.shape[1]}", path)
    K = m[:3, :3].copy()
    if not np.all(np.isfinite(K)):
        raise DataError("intrinsics have non-finite values (NaN/inf)", path)
    if not np.allclose(K[2], [0.0, 0.0, 1.0], atol=1e-6) or abs(K[1, 0]) > 1e-6:
        raise DataError("intrinsics are not a pinhole K ([[fx, s, cx], [0, fy, cy], [0, 0, 1]])", path)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(f"intrinsics have a non-positive focal length (fx={K[0, 0]:g}, fy={K[1, 1]:g})", path)
    return K


def layout_to_pixel_centre_K(K: np.ndarray) -> np.ndarray:
    """Layout K (first pixel centre at (0, 0), as the official ray generator assumes) -> our K
    (first pixel centre at (0.5, 0.5), docs/conventions.md)."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] += PIXEL_CENTRE_SHIFT
    K[1, 2] += PIXEL_CENTRE_SHIFT
    return K


# ----------------------------------------------------------------------------- class table


class _Inert:
    """Stands in for every object the pickle names that is not plain data; it runs no code and
    accepts (and drops) whatever the pickle does with it (calls, state, items)."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs) -> "_Inert":
        return _Inert()

    def __setstate__(self, state) -> None:
        pass

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass

    def __repr__(self) -> str:
        return "<object not loaded>"


_SAFE_BUILTINS = frozenset(
    ["dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray"]
)


def _numpy_attr(name: str):
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray", "numpy._core.numeric", "numpy.core.numeric"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        if hasattr(m, name):
            return getattr(m, name)
    return None


_NUMPY_RECONSTRUCT = {"_reconstruct", "scalar", "_frombuffer"}
_NUMPY_MODULES = {"numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    """Plain data only: builtin containers/numbers/strings, OrderedDict, numpy arrays and scalars
    (and ``_codecs.encode``, which protocol 2 uses to store bytes).

    Everything else a pickle names (functions, classes; e.g. torch tensors, EasyDict, os.system)
    becomes an :class:`_Inert` placeholder instead of being imported, so loading runs no code of
    the file's choosing. Persistent ids are refused (pickle's default).
    """

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if module == "_codecs" and name == "encode":
            return _latin1_encode  # protocol 2 stores bytes as _codecs.encode(str, "latin1")
        if module == "collections" and name == "OrderedDict":
            from collections import OrderedDict

            return OrderedDict
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in _NUMPY_MODULES and name in _NUMPY_RECONSTRUCT:
            fn = _numpy_attr(name)
            if fn is not None:
                return fn
        return _Inert


def safe_unpickle(data: bytes):
    """Unpickle ``data`` with :class:`_RestrictedUnpickler` (no code of the file runs)."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def _int_list(value, key: str, path: Path) -> list[int]:
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise DataError(f'"{key}" must be a list of class ids, got {type(value).__name__}', path)
    out = []
    for v in value:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or int(v) < 0:
            raise DataError(f'"{key}" has an entry that is not a class id: {v!r}', path)
        out.append(int(v))
    if len(set(out)) != len(out):
        dup = next(v for v in out if out.count(v) > 1)
        raise DataError(f'"{key}" lists class {dup} twice', path)
    return sorted(out)


def read_class_table(path: Path) -> tuple[ClassTable, list[int], list[int], list[int], str]:
    """``segmentation_data.pkl`` -> (dense ClassTable, dataset id of each dense id, fg ids, bg ids, names source)."""
    if not path.is_file():
        raise DataError("file not found (the class table: fg_classes / bg_classes)", path)
    try:
        data = safe_unpickle(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any parse failure is a data problem
        raise DataError(f"cannot read as a pickle ({type(e).__name__}: {e})", path) from None
    if not isinstance(data, dict):
        raise DataError(f"expected a pickled dict, got {type(data).__name__}", path)
    for key in ("fg_classes", "bg_classes"):
        if key not in data:
            raise DataError(f'has no "{key}" (keys: {", ".join(map(str, data)) or "none"})', path)
    fg = _int_list(data["fg_classes"], "fg_classes", path)
    bg = _int_list(data["bg_classes"], "bg_classes", path)
    both = sorted(set(fg) & set(bg))
    if both:
        raise DataError(f"class {both[0]} is in both fg_classes (things) and bg_classes (stuff)", path)
    ids = sorted(fg + bg)
    if not ids:
        raise DataError("fg_classes and bg_classes are both empty", path)
    n = data.get("num_semantic_classes")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise DataError(f'"num_semantic_classes" is not an integer: {n!r}', path)
        if int(n) != len(ids):
            raise DataError(f"num_semantic_classes is {int(n)} but fg_classes + bg_classes have {len(ids)}", path)
    source, names = "generic", None
    for name, (table, things) in KNOWN_TABLES.items():
        if ids == list(range(len(table))) and fg == list(things):
            source, names = name, table
    if names is None:
        names = ["void" if c == 0 else f"class_{c}" for c in ids]
    fg_set = set(fg)
    classes = ClassTable([ClassInfo(i, names[i], c in fg_set) for i, c in enumerate(ids)])
    return classes, ids, fg, bg, source


# ----------------------------------------------------------------------------- label maps


class _SizeFitter:
    """Bring maps of (nearly) the colour aspect ratio to the loaded size; warn once per folder."""

    def __init__(self, W0: int, H0: int, W: int, H: int) -> None:
        self.W0, self.H0, self.W, self.H = W0, H0, W, H
        self._warned: set[Path] = set()
        self._lock = threading.Lock()

    def __call__(self, a: np.ndarray, path: Path, nearest: bool = True) -> np.ndarray:
        h, w = a.shape[:2]
        if (w, h) != (self.W0, self.H0):
            if abs((w / h) / (self.W0 / self.H0) - 1.0) > LABEL_ASPECT_TOLERANCE:
                raise DataError(
                    f"size {w}x{h} does not match the colour images' {self.W0}x{self.H0} (different aspect ratio)", path
                )
            with self._lock:
                if path.parent not in self._warned:
                    self._warned.add(path.parent)
                    log.warning("%s: maps are %dx%d, colour images %dx%d; resizing", path.parent, w, h, self.W0, self.H0)
        if nearest:
            return imgio.resize_nearest(a, self.W, self.H)
        return imgio.resize_image(a, self.W, self.H)


def _dense(label: np.ndarray, lut: np.ndarray, ids: list[int], path: Path) -> np.ndarray:
    top = int(label.max(initial=0))
    bad = top if top >= len(lut) else None
    if bad is None:
        out = lut[label]
        if out.min(initial=0) < 0:
            bad = int(label[out < 0][0])
        else:
            return out
    table = f"{ids[0]}..{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids))
    raise DataError(f"class id {bad} is not in the class table ({CLASS_FILE}: {table})", path)


def _check_folder(folder: Path, stems: list[str], ext: str) -> None:
    if not folder.is_dir():
        raise DataError(f"missing folder (expected one <frame>{ext} per frame)", folder)
    present = {p.stem for p in folder.iterdir() if p.suffix == ext}
    missing = [s for s in stems if s not in present]
    if missing:
        more = f"; {len(missing)} of {len(stems)} frames have none" if len(missing) > 1 else ""
        raise DataError(f"file not found (one <frame>{ext} per frame{more})", folder / f"{missing[0]}{ext}")


def _read_confidence(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError("probabilities file not found", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "confidence" not in npz.files:
                raise DataError(f'has no "confidence" array (arrays: {", ".join(npz.files) or "none"})', path)
            conf = np.asarray(npz["confidence"])
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read .npz ({type(e).__name__}: {e})", path) from None
    if conf.ndim == 3 and conf.shape[-1] == 1:
        conf = conf[..., 0]
    if conf.ndim != 2 or conf.dtype.kind not in "fiu":
        raise DataError(f"confidence must be a 2D numeric map, got shape {conf.shape} {conf.dtype}", path)
    conf = conf.astype(np.float32)
    if not np.all(np.isfinite(conf)):
        raise DataError("confidence map has non-finite values", path)
    return np.clip(conf, 0.0, 1.0)


# ----------------------------------------------------------------------------- loader


def is_panoptic_lifting(root: Path) -> bool:
    """color/, pose/ and intrinsic/ folders: the ScanNet-export skeleton every Panoptic Lifting scene has."""
    root = Path(root)
    return (root / "color").is_dir() and (root / "pose").is_dir() and (root / "intrinsic").is_dir()


def load_panoptic_lifting(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Read a Panoptic Lifting scene folder into a :class:`Scene` (see module docstring)."""
    cfg = cfg or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise DataError("scene folder not found", root)
    all_stems = list_frames(root / "color")
    split_path = root / SPLIT_FILE
    if split_path.is_file():
        train, test, test_key = read_splits(split_path, all_stems)
        chosen = set(train) | set(test)
        stems = [s for s in all_stems if s in chosen]
        index = {s: i for i, s in enumerate(stems)}
        train_ids, test_ids = [index[s] for s in train], [index[s] for s in test]
    else:
        test_key = None
        stems = all_stems
        n = len(stems)
        n_train = min(max(int(n * (1.0 - cfg.test_fraction)) if n > 1 else n, 1), n)
        train_ids, test_ids = list(range(n_train)), list(range(n_train, n))
    test_set = {stems[i] for i in test_ids}

    classes, class_ids, fg, bg, names_source = read_class_table(root / CLASS_FILE)
    lut = np.full(max(class_ids) + 1, -1, dtype=np.int32)
    lut[class_ids] = np.arange(len(class_ids), dtype=np.int32)

    K_layout = read_intrinsics(root.joinpath(*INTRINSIC_FILE))
    _check_folder(root / "pose", stems, ".txt")
    poses = [read_pose(root / "pose" / f"{s}.txt") for s in stems]
    _check_folder(root / PRED_SEM, stems, ".png")
    _check_folder(root / PRED_INS, stems, ".png")
    has_conf = (root / PRED_PROB).is_dir()
    if has_conf:
        _check_folder(root / PRED_PROB, stems, ".npz")
    has_gt = cfg.load_ground_truth and (root / GT_SEM).is_dir() and (root / GT_INS).is_dir()
    if has_gt:  # the official evaluation reads ground truth for the test views only
        test_stems = [s for s in stems if s in test_set]
        _check_folder(root / GT_SEM, test_stems, ".png")
        _check_folder(root / GT_INS, test_stems, ".png")

    # the majority's size: a lone odd frame is the one named, wherever it is
    W0, H0 = imgio.reference_size([root / "color" / f"{s}{COLOR_EXT}" for s in stems])
    W, H = imgio.target_size(W0, H0, cfg.downscale, cfg.max_size, root)
    fit = _SizeFitter(W0, H0, W, H)
    K = imgio.scale_intrinsics(layout_to_pixel_centre_K(K_layout), W / W0, H / H0).astype(np.float32)

    def load_one(i: int) -> Frame:
        stem = stems[i]
        path = root / "color" / f"{stem}{COLOR_EXT}"
        rgb = imgio.read_rgb(path)
        if rgb.shape[:2] != (H0, W0):
            raise DataError(f"image size {rgb.shape[1]}x{rgb.shape[0]} differs from the other frames' {W0}x{H0}", path)
        rgb = imgio.resize_image(rgb, W, H)

        def label(folder: str, semantic: bool = False) -> np.ndarray:
            p = root / folder / f"{stem}.png"
            lab = imgio.read_id_png(p)
            if semantic:  # checked at full size, so the outcome does not depend on downscaling
                lab = _dense(lab, lut, class_ids, p)
            return fit(lab, p)

        sem = label(PRED_SEM, semantic=True)
        ins = label(PRED_INS)
        conf = None
        if has_conf:
            p = root / PRED_PROB / f"{stem}.npz"
            conf = fit(_read_confidence(p), p, nearest=False)
        gt_sem = gt_ins = None
        if has_gt and (stem in test_set or (
            (root / GT_SEM / f"{stem}.png").is_file() and (root / GT_INS / f"{stem}.png").is_file()
        )):
            gt_sem, gt_ins = label(GT_SEM, semantic=True), label(GT_INS)
        valid = None
        inv = root / INVALID_DIR / f"{stem}.jpg"
        if inv.is_file():
            m = imgio.imread(inv, cv2.IMREAD_GRAYSCALE, "invalid-pixel mask")
            valid = fit(m, inv) == 0
        return Frame(
            name=stem,
            rgb=rgb,
            K=K.copy(),
            c2w=poses[i],  # normalised below
            semantics=sem,
            instances=ins,
            confidence=conf,
            gt_semantics=gt_sem,
            gt_instances=gt_ins,
            valid=valid,
            source_size=(W0, H0),
        )

    frames = load_frames(load_one, range(len(stems)), root, progress)
    norm = normalize_frames(frames, cfg.normalize)

    loaded = set(stems)
    faulty = [int(lut[c]) for c in FAULTY_CLASSES if c < len(lut) and lut[c] >= 0]
    meta = {
        "class_ids": class_ids,
        "faulty_classes": faulty,
        "thing_classes": fg,
        "stuff_classes": bg,
        "class_names": names_source,
        "split_file": SPLIT_FILE if test_key else None,
        "test_split_key": test_key,
        "unused_frames": [s for s in all_stems if s not in loaded],
        "intrinsics": {"file": "/".join(INTRINSIC_FILE), "K": K_layout.tolist(), "size": [W0, H0],
                       "pixel_centre_shift": PIXEL_CENTRE_SHIFT},
        "confidence": f"{PRED_PROB}/*.npz['confidence']" if has_conf else None,
        "ground_truth": [GT_SEM, GT_INS] if has_gt else None,
    }
    return Scene(
        root=root,
        format=FORMAT,
        frames=frames,
        train_ids=train_ids,
        test_ids=test_ids,
        classes=classes,
        normalization=norm,
        meta={FORMAT: meta},
    )
