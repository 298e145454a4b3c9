"""The same synthetic scene in the capture layouts: COLMAP (binary or text) and nerfstudio.

:func:`write_layout` reads a Messy Rooms scene that ``generate_scene`` wrote (world frame, not
normalised) and writes its images, cameras, points, 2D predictions and ground truth as a user's
capture would hold them, so a loader can be checked against the Messy Rooms one:

- ``images/<i>.png``: the colour frames, byte for byte;
- COLMAP: ``sparse/0/{cameras,images,points3D}.{bin|txt}``, one PINHOLE camera per distinct K;
  nerfstudio: ``transforms.json`` (OpenGL camera-to-world, global intrinsics, ``sparse_pc.ply``);
- ``panoptic/`` + ``panoptic.json``: the noisy predictions as COCO panoptic (class c is category
  c + 1; background is a stuff category), ``confidence/<i>.png`` (16-bit), and the ground truth as
  ``panoptic_gt/`` + ``panoptic_gt.json`` (a thing segment's id is its instance id).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.atomic import atomic_dir
from pcf_gs.config import DataConfig
from pcf_gs.data import colmap
from pcf_gs.data.messy_rooms import load_messy_rooms
from pcf_gs.data.predictions import GROUND_TRUTH, PANOPTIC, coco_categories, encode_panoptic, write_coco_panoptic
from pcf_gs.geometry import opencv_to_blender

LAYOUTS = ("mos", "colmap", "colmap-text", "nerfstudio")


def write_layout(src: Path, out: Path, layout: str, overwrite: bool = False) -> None:
    """Write the Messy Rooms scene ``src`` to ``out`` in ``layout`` (one of :data:`LAYOUTS` but "mos")."""
    if layout not in LAYOUTS[1:]:
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    src, out = Path(src), Path(out)
    scene = load_messy_rooms(src, DataConfig(normalize=False), progress=False)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        names = []
        for f in scene.frames:
            shutil.copyfile(src / "color" / f"{f.name}.png", tmp / "images" / f"{f.name}.png")
            names.append(f"{f.name}.png")
        points = scene.points if scene.points is not None else np.zeros((0, 3))
        colors = scene.point_colors if scene.point_colors is not None else np.full((len(points), 3), 128, np.uint8)
        if layout.startswith("colmap"):
            _write_colmap(tmp, scene, names, points, colors, binary=layout == "colmap")
        else:
            _write_nerfstudio(tmp, scene, names, src)
        _write_predictions(tmp, scene)


def _write_colmap(out: Path, scene, names, points, colors, binary: bool) -> None:
    cams: dict[tuple, colmap.Camera] = {}
    images = {}
    for i, (f, name) in enumerate(zip(scene.frames, names), 1):
        K = f.K.astype(np.float64)
        key = (f.width, f.height, *np.round(K[[0, 1, 0, 1], [0, 1, 2, 2]], 9))
        if key not in cams:
            cams[key] = colmap.Camera(len(cams) + 1, "PINHOLE", f.width, f.height, K[[0, 1, 0, 1], [0, 1, 2, 2]])
        images[i] = colmap.image_from_c2w(i, f.c2w, cams[key].id, name)
    model = colmap.Model({c.id: c for c in cams.values()}, images, np.asarray(points, np.float64),
                         np.asarray(colors, np.uint8))
    colmap.write_model(out / "sparse" / "0", model, binary=binary)


def _write_nerfstudio(out: Path, scene, names, src: Path) -> None:
    f0 = scene.frames[0]
    K = f0.K.astype(np.float64)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2], "w": f0.width, "h": f0.height,
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": [],
    }
    for f, name in zip(scene.frames, names):
        fr = {"file_path": f"images/{name}", "transform_matrix": opencv_to_blender(f.c2w.astype(np.float64)).tolist()}
        if not np.allclose(f.K, f0.K) or (f.width, f.height) != (f0.width, f0.height):
            Kf = f.K.astype(np.float64)
            fr.update({"fl_x": Kf[0, 0], "fl_y": Kf[1, 1], "cx": Kf[0, 2], "cy": Kf[1, 2], "w": f.width, "h": f.height})
        meta["frames"].append(fr)
    if (src / "points3d.ply").is_file():
        shutil.copyfile(src / "points3d.ply", out / "sparse_pc.ply")
        meta["ply_file_path"] = "sparse_pc.ply"
    (out / "transforms.json").write_text(json.dumps(meta, indent=1))


def _write_predictions(out: Path, scene) -> None:
    cats = coco_categories(scene.classes)
    cat_ids = [c["id"] for c in cats]
    is_thing = np.concatenate([[False], scene.classes.is_thing_array()])  # indexed by class + 1
    pred, gt = [], []
    (out / "confidence").mkdir()
    for f in scene.frames:
        seg, info = encode_panoptic(f.semantics + 1, f.instances, is_thing, cat_ids)
        pred.append((f.name, seg, info))
        if f.confidence is not None:
            cv2.imwrite(str(out / "confidence" / f"{f.name}.png"), np.round(f.confidence * 65535).astype(np.uint16))
        if f.has_ground_truth:
            seg, info = encode_panoptic(f.gt_semantics + 1, f.gt_instances, is_thing, cat_ids, keep_ids=True)
            gt.append((f.name, seg, info))
    write_coco_panoptic(out, PANOPTIC, pred, cats)
    if gt:
        write_coco_panoptic(out, GROUND_TRUTH, gt, cats)
