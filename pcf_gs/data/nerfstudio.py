"""nerfstudio captures: ``transforms.json`` as ``ns-process-data`` writes it.

Layout::

    ROOT/transforms.json
        camera_model            "OPENCV" (default), "PINHOLE"/"SIMPLE_PINHOLE"; fisheye and
                                equirectangular models are refused with their name
        fl_x fl_y cx cy w h     intrinsics in pixels (pixel centres at +0.5, as COLMAP), global
                                or per frame (a frame's own keys win)
        k1 k2 k3 p1 p2          distortion (OpenCV's radial-tangential model), global or per frame
        frames[]                {"file_path", "transform_matrix" (4x4 camera-to-world, OpenGL:
                                 x right, y up, z back), "mask_path"? (0 = ignore the pixel)}
        applied_transform       3x4 that ns-process-data applied to COLMAP's poses; recorded only
        ply_file_path           initial points, already in the frame of the poses
        train_filenames / val_filenames / test_filenames   optional split (test: val + test)
    ROOT/images/...             the photos (``images_2/4/8`` copies as for COLMAP)
    ROOT/panoptic/ + panoptic.json | instances/, confidence/, panoptic_gt/   predictions and
                                ground truth (:mod:`pcf_gs.data.predictions`), keyed by the image
                                path relative to images/ without extension

The poses' frame is the capture frame: outputs are written back in it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pcf_gs.config import DataConfig
from pcf_gs.data.loading import read_json
from pcf_gs.data.scene import Scene
from pcf_gs.errors import DataError
from pcf_gs.geometry import blender_to_opencv

SUPPORTED = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE")
POSE_ORTHO_TOLERANCE = 0.05  # |R^T R - I|: as the Panoptic Lifting loader; a scale or shear is far above
_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DIST = ("k1", "k2", "p1", "p2", "k3")


def is_nerfstudio(root: Path) -> bool:
    return (root / "transforms.json").is_file()


def _num(d: dict, key: str, path: Path, where: str) -> float:
    try:
        v = float(d[key])
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: {key} is not a number", path) from None
    if not np.isfinite(v):
        raise DataError(f"{where}: {key} is not finite", path)
    return v


def _intrinsics(meta: dict, fr: dict, path: Path, where: str) -> tuple[np.ndarray, np.ndarray, int, int, str]:
    get = lambda k: fr[k] if k in fr else meta.get(k)  # noqa: E731
    model = str(get("camera_model") or "OPENCV")
    if model not in SUPPORTED:
        raise DataError(f"{where}: camera_model {model} is not supported (supported: {', '.join(SUPPORTED)})", path)
    src = {k: get(k) for k in (*_INTRINSICS, *_DIST) if get(k) is not None}
    if "fl_x" in src and "fl_y" not in src:
        src["fl_y"] = src["fl_x"]
    lacking = [k for k in _INTRINSICS if k not in src]
    if lacking:
        raise DataError(f"{where}: no intrinsics {', '.join(lacking)} (neither global nor per frame)", path)
    fx, fy, cx, cy, w, h = (_num(src, k, path, where) for k in _INTRINSICS)
    if fx <= 0 or fy <= 0 or w < 1 or h < 1:
        raise DataError(f"{where}: focal lengths and image size must be positive", path)
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    dist = np.array([_num(src, k, path, where) if k in src else 0.0 for k in _DIST], np.float64)
    return K, dist, int(round(w)), int(round(h)), model


def _matrix(fr: dict, path: Path, where: str) -> np.ndarray:
    try:
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
    except KeyError:
        raise DataError(f"{where}: no transform_matrix", path) from None
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{where}: transform_matrix is not a numeric 4x4 matrix", path) from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise DataError(f"{where}: transform_matrix must be a finite 4x4 matrix, got shape {m.shape}", path)
    if abs(np.linalg.det(m[:3, :3])) < 1e-8:
        raise DataError(f"{where}: transform_matrix has a degenerate rotation", path)
    R = m[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > POSE_ORTHO_TOLERANCE or np.linalg.det(R) <= 0:  # a scaled or sheared matrix is not a camera pose
        raise DataError(f"{where}: transform_matrix's rotation is not a proper rotation "
                        f"(|R^T R - I| = {err:.3g}, det = {float(np.linalg.det(R)):.3g})", path)
    return m


def _relative_to_images(file_path: str) -> str:
    """``images/a/b.png`` -> ``a/b.png`` (the key predictions use); other paths are kept."""
    parts = Path(file_path).parts
    if parts and parts[0] in (".",):
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "images":
        parts = parts[1:]
    return Path(*parts).as_posix()


def load_nerfstudio(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Read a nerfstudio capture into a :class:`Scene` (see the module docstring)."""
    from pcf_gs.data.capture import CaptureView, build_capture_scene
    from pcf_gs.data.messy_rooms import _read_points

    cfg = cfg or DataConfig()
    root = Path(root)
    path = root / "transforms.json"
    meta = read_json(path, obj=True)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataError('no "frames" (or an empty list)', path)
    views = []
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
            raise DataError(f"{where}: no file_path", path)
        K, dist, w, h, _ = _intrinsics(meta, fr, path, where)
        c2w = blender_to_opencv(_matrix(fr, path, where))
        name = _relative_to_images(fr["file_path"])
        mask = root / fr["mask_path"] if isinstance(fr.get("mask_path"), str) else None
        cam = hash((tuple(K.ravel()), tuple(dist), w, h))
        views.append(CaptureView(name, root / fr["file_path"], K, dist, w, h, c2w, camera_id=cam, mask=mask))
    if len({v.name for v in views}) != len(views):
        raise DataError("two frames have the same file_path", path)
    views.sort(key=lambda v: v.name)

    points = colors = None
    if isinstance(meta.get("ply_file_path"), str):
        ply = root / meta["ply_file_path"]
        if not ply.is_file():
            raise DataError("ply_file_path does not exist", ply)
        points, colors = _read_points(ply)
    extra = {"nerfstudio": {}}
    if "applied_transform" in meta:
        try:
            at = np.asarray(meta["applied_transform"], np.float64)
            assert at.shape in ((3, 4), (4, 4)) and np.all(np.isfinite(at))
        except (TypeError, ValueError, AssertionError):
            raise DataError("applied_transform must be a finite 3x4 matrix", path) from None
        extra["nerfstudio"]["applied_transform"] = at[:3].tolist()
    scene = build_capture_scene(root, "nerfstudio", views, cfg, points, colors, progress=progress, meta=extra)
    _apply_split_lists(scene, meta, path)
    return scene


def _apply_split_lists(scene: Scene, meta: dict, path: Path) -> None:
    """Use ``train_filenames``/``val_filenames``/``test_filenames`` when transforms.json has them."""
    if not any(k in meta for k in ("train_filenames", "val_filenames", "test_filenames")):
        return
    key_of = lambda p: Path(_relative_to_images(str(p))).with_suffix("").as_posix().replace("/", "__")  # noqa: E731
    test = {key_of(p) for k in ("val_filenames", "test_filenames") for p in meta.get(k) or []}
    train = {key_of(p) for p in meta.get("train_filenames") or []}
    names = [f.name for f in scene.frames]
    scene.test_ids = [i for i, n in enumerate(names) if n in test]
    scene.train_ids = [i for i, n in enumerate(names) if (n in train if train else n not in test)]
    if not scene.train_ids:
        raise DataError("train_filenames selects none of the frames", path)
