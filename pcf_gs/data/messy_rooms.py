"""Messy Rooms loader (Contrastive Lift's public data set, Kubric renders).

Layout, read exactly as published::

    ROOT/color/<i>.png                 RGB frames, sorted numerically by stem
    ROOT/metadata.json                 Kubric metadata; we read "camera":
        K           3x3, normalised and signed: [[fx, 0, -cx], [0, -fy, -cy], [0, 0, -1]]
                    (fx, cx in image widths; fy, cy in image heights)
        positions   [F][3] camera centres (world)
        quaternions [F][4] camera rotations, w, x, y, z (Blender camera: y up, looking down -z)
    ROOT/detic_semantic/<i>.npy        predicted semantics  H x W (0 background, 1 foreground)
    ROOT/detic_instance/<i>.npy        predicted instances  H x W, per-view ids, 0 = none
    ROOT/detic_probabilities/<i>.npy   per-pixel confidence H x W (optional)
    ROOT/semantic/<i>.npy              ground-truth semantics (optional)
    ROOT/instance/<i>.npy              ground-truth instances, consistent ids (optional)
    ROOT/invalid/<i>.jpg               pixels to ignore, > 0 = invalid (optional)

Camera conversion (as the official loader, :func:`pcf_gs.geometry.kubric_to_opencv`):
K[0] *= W, K[1] *= H, K = |K|; c2w_opencv = [R(q) | position] @ diag(1, -1, -1, 1). The last 20% of frames
(``data.test_fraction``) are the test split. Background confidence is set to
1, as the official loader does, since the detector scores only detections.
Extras written by ``pcf-gs synth`` are read when present and ignored
otherwise: ``metadata["pcf_gs"]["classes"]`` (a class table) and
``points3d.ply`` (surface points to initialise Gaussians).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pcf_gs.config import DataConfig
from pcf_gs.data import images as imgio
from pcf_gs.data.loading import load_frames, normalize_frames, read_json
from pcf_gs.data.scene import ClassTable, Frame, Scene
from pcf_gs.errors import DataError
from pcf_gs.geometry import kubric_to_opencv

log = logging.getLogger("pcf_gs")

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
PRED_PREFIX = "detic"
MAX_NORMALISED_K = 1e4  # |K| entries, in image sizes (a 1e4 focal is a 0.006 degree field of view)
MAX_POSITION = 1e9  # camera centres, world units


def _frame_sort_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_frames(color_dir: Path) -> list[Path]:
    """Colour images sorted numerically by stem (``2.png`` before ``10.png``)."""
    if not color_dir.is_dir():
        raise DataError("missing folder of colour images", color_dir)
    files = [p for p in color_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    if not files:
        raise DataError("no images found (expected <i>.png)", color_dir)
    return sorted(files, key=lambda p: _frame_sort_key(p.stem))


def read_kubric_cameras(meta: dict, width: int, height: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kubric camera block -> (K [F,3,3] pixels, c2w [F,4,4] OpenCV world frame), validated."""
    cam = meta.get("camera") if isinstance(meta, dict) else None
    if not isinstance(cam, dict):
        raise DataError('no "camera" block', path)
    for key in ("K", "positions", "quaternions"):
        if key not in cam:
            raise DataError(f'"camera" has no "{key}"', path)
    try:
        K = np.asarray(cam["K"], dtype=np.float64)
        pos = np.asarray(cam["positions"], dtype=np.float64)
        quat = np.asarray(cam["quaternions"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError("camera K/positions/quaternions are not numeric arrays", path) from None
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise DataError(f"camera.positions must be [F][3], got shape {pos.shape}", path)
    if quat.ndim != 2 or quat.shape[1] != 4:
        raise DataError(f"camera.quaternions must be [F][4], got shape {quat.shape}", path)
    if len(pos) != len(quat):
        raise DataError(f"camera has {len(pos)} positions but {len(quat)} quaternions", path)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (len(pos), 3, 3)).copy()
    elif K.shape != (len(pos), 3, 3):
        raise DataError(f"camera.K must be 3x3 (or one per frame), got shape {K.shape}", path)
    if not (np.all(np.isfinite(K)) and np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
        raise DataError("camera has non-finite values (NaN/inf)", path)
    qn = np.linalg.norm(quat, axis=1)
    if np.any(qn < 1e-8):
        raise DataError(f"camera.quaternions[{int(np.argmin(qn))}] is zero (degenerate pose)", path)
    # Kubric's K is in image widths/heights (focal ~1), positions in metres: far beyond these is a corrupt
    # file, and would overflow to inf when scaled to pixels or squared by the normalisation
    if np.abs(K).max() > MAX_NORMALISED_K:
        raise DataError(f"camera.K has implausible entries (|K| up to {np.abs(K).max():.3g}; "
                        f"expected image-relative values, at most {MAX_NORMALISED_K:g})", path)
    if np.abs(pos).max(initial=0) > MAX_POSITION:
        raise DataError(f"camera.positions up to {np.abs(pos).max():.3g} (more than {MAX_POSITION:g})", path)
    with np.errstate(all="raise"):
        try:
            K, c2w = kubric_to_opencv(K, pos, quat, width, height)
        except FloatingPointError as e:
            raise DataError(f"camera values overflow when converted ({e})", path) from None
    if np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
        raise DataError("camera.K has a zero focal length", path)
    return K, c2w


def _check_folder(folder: Path, stems: list[str], ext: str, required: bool) -> bool:
    """True if ``folder`` holds one ``<stem><ext>`` per frame; error if it is incomplete."""
    if not folder.is_dir():
        if required:
            raise DataError(f"missing folder (expected one {ext} per frame)", folder)
        return False
    present = {p.stem for p in folder.iterdir() if p.suffix.lower() == ext}
    missing = [s for s in stems if s not in present]
    if missing:
        raise DataError(
            f"{len(present)} {ext} files but color/ has {len(stems)} images (missing {missing[0]}{ext})", folder
        )
    return True


def _read_points(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from plyfile import PlyData

    try:
        v = PlyData.read(str(path))["vertex"]
        xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
        names = v.data.dtype.names
        rgb = None
        if all(c in names for c in ("red", "green", "blue")):
            rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read points ({type(e).__name__}: {e})", path) from None
    keep = np.all(np.isfinite(xyz), axis=1)
    return xyz[keep], (None if rgb is None else rgb[keep])


def is_messy_rooms(root: Path) -> bool:
    return (root / "metadata.json").is_file() and (root / "color").is_dir()


def load_messy_rooms(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Read a Messy Rooms scene folder into a :class:`Scene` (see module docstring)."""
    cfg = cfg or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise DataError("scene folder not found", root)
    images = list_frames(root / "color")
    stems = [p.stem for p in images]
    meta_path = root / "metadata.json"
    meta = read_json(meta_path)

    W0, H0 = imgio.reference_size(images)  # the majority's: a lone odd frame is the one named, wherever it is
    K_all, c2w_all = read_kubric_cameras(meta, W0, H0, meta_path)
    if all(s.isdigit() for s in stems) and max(int(s) for s in stems) < len(c2w_all):
        cam_index = [int(s) for s in stems]  # frame "7" is camera 7 even if some frames are absent
    elif len(c2w_all) == len(stems):
        cam_index = list(range(len(stems)))
    else:
        raise DataError(f"{len(c2w_all)} camera poses but color/ has {len(stems)} images", meta_path)

    pred_sem = root / f"{PRED_PREFIX}_semantic"
    pred_ins = root / f"{PRED_PREFIX}_instance"
    pred_conf = root / f"{PRED_PREFIX}_probabilities"
    _check_folder(pred_sem, stems, ".npy", required=True)
    _check_folder(pred_ins, stems, ".npy", required=True)
    has_conf = _check_folder(pred_conf, stems, ".npy", required=False)
    # ground truth: used when both folders exist, and then they must be complete
    has_gt = cfg.load_ground_truth and (root / "semantic").is_dir() and (root / "instance").is_dir()
    if has_gt:
        _check_folder(root / "semantic", stems, ".npy", required=True)
        _check_folder(root / "instance", stems, ".npy", required=True)
    invalid_dir = root / "invalid"

    classes = ClassTable.messy_rooms()
    extra = meta.get("pcf_gs") if isinstance(meta.get("pcf_gs"), dict) else {}
    if "classes" in extra:
        try:
            classes = ClassTable.from_list(extra["classes"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise DataError(f'bad "pcf_gs.classes" table ({e})', meta_path) from None

    W, H = imgio.target_size(W0, H0, cfg.downscale, cfg.max_size, root)
    sx, sy = W / W0, H / H0

    def load_one(i: int) -> Frame:
        stem = stems[i]
        rgb = imgio.read_rgb(images[i])
        if rgb.shape[:2] != (H0, W0):
            raise DataError(f"image size {rgb.shape[1]}x{rgb.shape[0]} differs from the other frames' {W0}x{H0}", images[i])
        rgb = imgio.resize_image(rgb, W, H)

        def label(folder: Path) -> np.ndarray:
            p = folder / f"{stem}.npy"
            lab = imgio.fit_label_map(imgio.read_npy(p, "label"), W0, H0, p)
            return imgio.resize_nearest(lab, W, H)

        sem, ins = label(pred_sem), label(pred_ins)
        if sem.max(initial=0) >= classes.num_classes:
            raise DataError(
                f"semantic id {sem.max()} but the scene has {classes.num_classes} classes", pred_sem / f"{stem}.npy"
            )
        conf = None
        if has_conf:
            p = pred_conf / f"{stem}.npy"
            conf = imgio.fit_label_map(imgio.read_npy(p, "confidence"), W0, H0, p, nearest=False)
            conf = imgio.resize_image(conf, W, H)
            conf[sem == 0] = 1.0
        gt_sem = gt_ins = None
        if has_gt:
            gt_sem, gt_ins = label(root / "semantic"), label(root / "instance")
        valid = None
        inv = invalid_dir / f"{stem}.jpg"
        if inv.is_file():
            m = imgio.read_rgb(inv)[..., 0]
            valid = imgio.resize_nearest(imgio.fit_label_map(m, W0, H0, inv), W, H) == 0
        j = cam_index[i]
        return Frame(
            name=stem,
            rgb=rgb,
            K=imgio.scale_intrinsics(K_all[j], sx, sy).astype(np.float32),
            c2w=c2w_all[j],  # normalised below
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

    points = colors = None
    if (root / "points3d.ply").is_file():
        pts, colors = _read_points(root / "points3d.ply")
        points = norm.world_to_scene_points(pts).astype(np.float32)

    n = len(frames)
    # clipped first: a DataConfig built in code skips the config's range check, and int(inf) raises
    n_train = int(n * (1.0 - min(max(float(cfg.test_fraction), 0.0), 1.0))) if n > 1 else n
    n_train = min(max(n_train, 1), n)
    return Scene(
        root=root,
        format="messy_rooms",
        frames=frames,
        train_ids=list(range(n_train)),
        test_ids=list(range(n_train, n)),
        classes=classes,
        normalization=norm,
        points=points,
        point_colors=colors,
        meta={"kubric": {k: v for k, v in meta.items() if k not in ("camera", "instances")}},
    )
