"""What COLMAP and nerfstudio captures share once their cameras are read: images (or their
``images_N`` copies), undistortion, predictions and ground truth by image key, one training
size, the normalisation and the split.

Steps per view (:func:`build_capture_scene`):

1. the image: ``images/<name>``, or ``images_<d>/<name>`` when ``data.downscale`` = d and that
   folder exists (3DGS' pre-shrunk copies); K is scaled by the actual size ratio;
2. the 2D predictions, ground truth and mask, resized to the image if they were made at another
   size with the same aspect ratio;
3. undistortion (OpenCV's model; labels nearest-neighbour) to a pinhole camera whose image is
   cropped to the valid region (``getOptimalNewCameraMatrix`` with alpha 0), one map per camera;
4. ``data.downscale`` / ``data.max_size`` as for every layout;
5. frames of different sizes (several cameras) are resampled to the most common size with K
   scaled per axis (the rasterizer takes fx != fy), since a training step renders one size.

The split: every ``data.test_every``-th image (sorted by name; 0, 8, 16, ... with the default 8,
as gsplat and 3DGS do) is a test view. The scene is normalised from the cameras; outputs are
written back in the capture's own frame.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.config import DataConfig
from pcf_gs.data import images as imgio
from pcf_gs.data.predictions import find_ground_truth, find_predictions
from pcf_gs.data.loading import load_frames, normalize_frames
from pcf_gs.data.scene import ClassTable, Frame, Scene
from pcf_gs.errors import DataError

log = logging.getLogger("pcf_gs")


@dataclass
class CaptureView:
    """One image of a capture as its layout describes it (before loading)."""

    name: str  # path relative to images/ (COLMAP's NAME), with extension
    path: Path  # full-resolution image file
    K: np.ndarray  # [3,3] pixels of the full-resolution image, centres at +0.5
    dist: np.ndarray  # OpenCV distortion coefficients ([] = pinhole)
    width: int  # full-resolution size the camera describes
    height: int
    c2w: np.ndarray  # [4,4] OpenCV camera-to-world, capture frame
    camera_id: int = 0  # views sharing a camera share one undistortion map
    mask: Path | None = None  # optional mask image: 0 = ignore the pixel

    @property
    def key(self) -> str:
        """Path relative to images/ without extension: how predictions are found."""
        return Path(self.name).with_suffix("").as_posix()


def _image_file(root: Path, view: CaptureView, downscale: int) -> tuple[Path, bool]:
    """(file to read, whether it is a pre-shrunk images_<d> copy)."""
    if downscale > 1:
        small = root / f"images_{downscale}" / view.name
        if small.is_file():
            return small, True
    return view.path, False


class _Undistorter:
    """Per camera: the undistortion maps and the new pinhole K (pixel centres at +0.5), at one size."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, K: np.ndarray, dist: np.ndarray, w: int, h: int, cam: int):
        key = (cam, w, h)
        if key not in self.cache:
            # OpenCV puts pixel centres at integers: shift the principal point by 0.5 and back
            Kcv = K.copy(); Kcv[:2, 2] -= 0.5
            newK, roi = cv2.getOptimalNewCameraMatrix(Kcv, dist, (w, h), 0, (w, h))
            x, y, rw, rh = (int(v) for v in roi)
            if rw <= 0 or rh <= 0:
                x, y, rw, rh = 0, 0, w, h
            mx, my = cv2.initUndistortRectifyMap(Kcv, dist, None, newK, (w, h), cv2.CV_32FC1)
            Kout = newK.astype(np.float64).copy()
            Kout[0, 2] += 0.5 - x
            Kout[1, 2] += 0.5 - y
            self.cache[key] = (mx[y:y + rh, x:x + rw], my[y:y + rh, x:x + rw], Kout)
        return self.cache[key]


def build_capture_scene(
    root: Path, fmt: str, views: list[CaptureView], cfg: DataConfig, points: np.ndarray | None,
    colors: np.ndarray | None, progress: bool = True, meta: dict | None = None,
) -> Scene:
    """Load ``views`` (see the module docstring) into a :class:`Scene` of format ``fmt``."""
    missing = [v for v in views if not v.path.is_file()]
    if missing:
        if not cfg.skip_missing:
            names = ", ".join(v.name for v in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise DataError(
                f"{len(missing)} image(s) in the model are missing on disk: {names} "
                "(--skip-missing to train without them)", missing[0].path.parent
            )
        log.warning("%s: skipping %d image(s) missing on disk (first: %s)", root, len(missing), missing[0].name)
        views = [v for v in views if v.path.is_file()]
    if not views:
        raise DataError("no images to load", root)
    for w, h in sorted({(v.width, v.height) for v in views}):  # before any image is read
        imgio.target_size(w, h, cfg.downscale, cfg.max_size, root)
    preds = find_predictions(root)
    gt = find_ground_truth(root) if cfg.load_ground_truth else None
    classes = preds.classes if preds is not None else ClassTable.messy_rooms()
    gt_map = _gt_class_map(gt, preds, root) if gt is not None else None
    und = _Undistorter()

    def load_one(v: CaptureView) -> Frame:
        path, small = _image_file(root, v, cfg.downscale)
        rgb = imgio.read_rgb(path)
        h, w = rgb.shape[:2]
        if not small and (w, h) != (v.width, v.height):
            raise DataError(f"image is {w}x{h} but its camera says {v.width}x{v.height}", path)
        K = imgio.scale_intrinsics(v.K, w / v.width, h / v.height)
        labelled = preds is not None and preds.has(v.key)
        if labelled:
            sem, ins, conf = preds.read(v.key, w, h)
        else:
            sem = ins = np.zeros((h, w), np.int32)
            conf = np.zeros((h, w), np.float32)  # appearance only
        gt_sem = gt_ins = None
        if gt is not None and gt.has(v.key):
            gt_sem, gt_ins = gt.read(v.key, w, h)
            gt_sem = gt_map[gt_sem]
        valid = None
        if v.mask is not None:
            m = imgio.read_rgb(v.mask)[..., 0]
            valid = imgio.fit_label_map(m, w, h, v.mask) > 0
        if len(v.dist) and np.any(v.dist != 0):
            mx, my, K = und.get(K, v.dist, w, h, v.camera_id)
            rgb = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            near = lambda a: cv2.remap(a, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)  # noqa: E731
            sem, ins = near(sem), near(ins)
            conf = cv2.remap(conf, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if gt_sem is not None:
                gt_sem, gt_ins = near(gt_sem), near(gt_ins)
            if valid is not None:
                valid = near(valid.astype(np.uint8)) > 0
            h, w = rgb.shape[:2]
        W, H = imgio.target_size(w, h, 1 if small else cfg.downscale, cfg.max_size)
        return _frame(v, rgb, K, sem, ins, conf, gt_sem, gt_ins, valid, W, H)

    frames = load_frames(load_one, views, root, progress)

    if preds is not None:
        sem_max = max(int(f.semantics.max(initial=0)) for f in frames)
        if sem_max >= classes.num_classes:
            raise DataError(f"semantic id {sem_max} but the scene has {classes.num_classes} classes", root)
    n_unlabelled = sum(1 for v in views if preds is None or not preds.has(v.key))
    if preds is None:
        log.warning("%s: no 2D predictions (panoptic/ + panoptic.json or instances/): appearance only; "
                    "run pcf-gs predict to make them", root)
    elif n_unlabelled:
        log.warning("%s: %d of %d images have no prediction; they train appearance only", root, n_unlabelled, len(views))
    _common_size(frames, root)

    norm = normalize_frames(frames, cfg.normalize)
    pts = cols = None
    if points is not None and len(points):
        pts = norm.world_to_scene_points(points).astype(np.float32)
        cols = colors
    every = max(int(cfg.test_every), 0)
    test = [i for i in range(len(frames)) if every and i % every == 0] if len(frames) > 1 else []
    meta = dict(meta or {})
    meta["predictions"] = {"kind": preds.kind if preds is not None else None, "images_without": n_unlabelled}
    return Scene(
        root=root, format=fmt, frames=frames,
        train_ids=[i for i in range(len(frames)) if i not in set(test)], test_ids=test,
        classes=classes, normalization=norm, points=pts, point_colors=cols, meta=meta,
    )


def _frame(v, rgb, K, sem, ins, conf, gt_sem, gt_ins, valid, W, H) -> Frame:
    f = Frame(
        name=v.key.replace("/", "__"), rgb=rgb, K=K, c2w=np.asarray(v.c2w, np.float64),
        semantics=sem.astype(np.int32), instances=ins.astype(np.int32), confidence=conf.astype(np.float32),
        gt_semantics=gt_sem, gt_instances=gt_ins, valid=valid, source_size=(int(rgb.shape[1]), int(rgb.shape[0])),
    )
    _resize_frame(f, W, H)
    return f


def _resize_frame(f: Frame, W: int, H: int) -> None:
    """Resample a frame to W x H in place: the image (area / bilinear), label maps and mask (nearest),
    the confidence, and K scaled per axis (float32)."""
    near = lambda a: None if a is None else imgio.resize_nearest(a, W, H)  # noqa: E731
    f.K = imgio.scale_intrinsics(f.K, W / f.width, H / f.height).astype(np.float32)
    f.rgb = imgio.resize_image(f.rgb, W, H)
    f.semantics, f.instances = near(f.semantics), near(f.instances)
    f.gt_semantics, f.gt_instances, f.valid = near(f.gt_semantics), near(f.gt_instances), near(f.valid)
    if f.confidence is not None:
        f.confidence = imgio.resize_image(f.confidence, W, H)


def _common_size(frames: list[Frame], root: Path) -> None:
    """Resample frames to the most common size (in place), K scaled per axis."""
    sizes = Counter((f.width, f.height) for f in frames)
    if len(sizes) <= 1:
        return
    (W, H), _ = sizes.most_common(1)[0]
    odd = [f for f in frames if (f.width, f.height) != (W, H)]
    for f in odd:
        _resize_frame(f, W, H)
    log.warning("%s: %d image(s) resampled to the common size %dx%d (intrinsics scaled per axis)", root, len(odd), W, H)


def _gt_class_map(gt, preds, root: Path) -> np.ndarray:
    """[K_gt] lookup from ground-truth dense classes to the predictions' dense classes (by category id)."""
    gt_ids = gt.coco.category_ids
    if preds is None or preds.kind != "coco_panoptic":  # background (0) / object (1): things are objects
        return np.concatenate([[0], gt.classes.is_thing_array()[1:]]).astype(np.int32)
    pid = {c: i + 1 for i, c in enumerate(preds._coco.category_ids)}
    out = np.zeros(len(gt_ids) + 1, np.int32)
    for d, c in enumerate(gt_ids, 1):
        if c not in pid:
            raise DataError(f"ground-truth category {c} is not among the predictions' categories", gt.coco.json_path)
        out[d] = pid[c]
    return out
