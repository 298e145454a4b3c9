"""`pcf-gs eval`: PQ^scene, SQ, RQ, mIoU (percent) and test PSNR (dB) of a segmentation.

Protocol (docs/official_scorers.md): every test view's predicted and ground-truth label
maps are resized to 512x512 (nearest), all pixels are concatenated and panoptic quality is
computed once, by the official rules of the scene's layout
(:class:`pcf_gs.evaluation.metrics.Protocol`): Messy Rooms scores background (stuff) and
objects (thing) and averages the two; Panoptic Lifting deletes its faulty class 0; COLMAP /
nerfstudio ground truth is scored by COCO's rules (unlabelled is void). Beside the official
PQ^scene, ``pq_things`` is the mean over thing classes only: the instance half, which is the
harder one (background stuff is easy to get right).

Diagnostics beyond these scores: :mod:`pcf_gs.evaluation.diagnostics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pcf_gs.data.images import resize_nearest
from pcf_gs.atomic import atomic_dir, write_json_atomic
from pcf_gs.errors import UserError
from pcf_gs.evaluation.metrics import Protocol, mean_iou, panoptic_quality

if TYPE_CHECKING:
    from pcf_gs.lift.run import Run

EVAL_SIZE = 512


def read_label_png(path: Path) -> np.ndarray:
    """[H, W] int64 ids of a single-channel (16-bit) label PNG such as ``segment`` writes."""
    from pcf_gs.data.images import imread

    if not path.is_file():
        raise UserError("prediction missing", path)
    a = imread(path, cv2.IMREAD_UNCHANGED, what="label PNG")  # corrupt: one line, no codec chatter on stderr
    if a.ndim != 2:
        raise UserError("not a single-channel label PNG", path)
    return a.astype(np.int64)


def evaluate_predictions(scene, pred_dir: Path, split: str = "test", size: int = EVAL_SIZE) -> dict:
    """PQ/SQ/RQ/mIoU in percent of ``pred_dir/pred_semantics`` + ``pred_surrogateid`` against the scene's ground truth."""
    frames = scene.split(split)
    if not frames:
        raise UserError(f"the scene has no {split} frames", scene.root)
    if not all(f.has_ground_truth for f in frames):
        raise UserError("the scene has no ground truth (semantic/ and instance/)", scene.root)
    ps, pi, gs, gi = [], [], [], []
    for f in frames:
        sem = read_label_png(pred_dir / "pred_semantics" / f"{f.name}.png")
        ins = read_label_png(pred_dir / "pred_surrogateid" / f"{f.name}.png")
        ps.append(resize_nearest(sem, size, size).ravel())
        pi.append(resize_nearest(ins, size, size).ravel())
        gs.append(resize_nearest(f.gt_semantics, size, size).ravel())
        gi.append(resize_nearest(f.gt_instances, size, size).ravel())
    ps, pi, gs, gi = (np.concatenate(a) for a in (ps, pi, gs, gi))
    proto = Protocol.for_scene(scene)
    return score(ps, pi, gs, gi, proto, scene.classes.num_classes) | {"frames": len(frames), "split": split}


def score(ps, pi, gs, gi, proto: Protocol, num_classes: int) -> dict:
    """The official numbers (percent) of flat predicted/target label arrays under ``proto``."""
    r = panoptic_quality(ps, pi, gs, gi, proto.things, proto.stuff, robust=proto.robust, faulty=proto.faulty,
                         coco=proto.coco)
    miou = mean_iou(ps, gs, num_classes, ignore=proto.void, faulty=proto.faulty, robust=proto.robust)
    return {
        "pq": 100 * r.pq, "sq": 100 * r.sq, "rq": 100 * r.rq, "miou": 100 * miou,
        "pq_things": 100 * r.things_only(proto.things), "protocol": proto.name,
        "per_class": {str(k): v for k, v in r.per_class.items()},
    }


def write_raw_predictions(scene, out: Path, split: str = "test") -> None:
    """The 2D model's own per-view predictions in the segment output layout (baseline (a))."""
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "pred_semantics").mkdir()
        (tmp / "pred_surrogateid").mkdir()
        for f in scene.split(split):
            cv2.imwrite(str(tmp / "pred_semantics" / f"{f.name}.png"), f.semantics.astype(np.uint16))
            cv2.imwrite(str(tmp / "pred_surrogateid" / f"{f.name}.png"), f.instances.astype(np.uint16))


def split_psnr(run: Run, scene, split: str = "test") -> float | None:
    """Mean PSNR (dB) of the run's renders of the split's views (the scene's cameras) against their images;
    None when the split has no views."""
    import torch

    from pcf_gs.lift.losses import psnr
    from pcf_gs.lift.model import render_rgb

    vals = []
    for f in scene.split(split):
        vm = torch.linalg.inv(torch.from_numpy(f.c2w.astype(np.float32)))[None]
        K = torch.from_numpy(f.K.astype(np.float32))[None]
        with torch.no_grad():
            rgb = render_rgb(run.params, vm, K, f.width, f.height, run.spec.sh_degree, backend=run.config.render.backend,
                             **run.config.render.kw())[0][0]
        vals.append(float(psnr(rgb.clamp(0, 1), torch.from_numpy(f.image_float()))))
    return float(np.mean(vals)) if vals else None


def scoring_scene(data: Path, cfg=None, progress: bool = True):
    """``data`` loaded as the official scorers read it: the ground truth at the size it has on disk.

    ``cfg`` (a :class:`~pcf_gs.config.DataConfig`, e.g. the run's) keeps its other settings, but not
    ``downscale`` / ``max_size``: the official evaluation reads the ground-truth maps as they are and resizes
    them to 512² itself, and a copy downsampled to the training size first would lose the thin and the small
    objects that the protocol counts (predictions at the training size are scored against it as they are)."""
    import dataclasses

    from pcf_gs.config import DataConfig
    from pcf_gs.data import load_scene

    cfg = dataclasses.replace(cfg or DataConfig(), downscale=1, max_size=0, load_ground_truth=True)
    return load_scene(data, cfg, progress=progress)


def run_eval(run_dir: Path | None, data: Path, pred: Path, split: str = "test", progress: bool = True) -> dict:
    """Score ``pred`` (a segment output) against the ground truth of ``data`` at its size on disk
    (:func:`scoring_scene`); PSNR of the run in ``run_dir`` when given, against the images at the size the
    run was trained at (its data settings). Writes PRED/metrics.json."""
    from pcf_gs.data import load_scene
    from pcf_gs.lift.run import Run

    run = Run.load(run_dir) if run_dir is not None else None
    scene = scoring_scene(data, run.config.data if run is not None else None, progress=progress)
    res = evaluate_predictions(scene, Path(pred), split)
    if run is not None:
        dc = run.config.data
        if dc.downscale != 1 or dc.max_size:  # the images at the training size
            scene = load_scene(data, dc, progress=progress)
        res["psnr"] = split_psnr(run, scene, split)
    else:
        res["psnr"] = None
    write_json_atomic(Path(pred) / "metrics.json", res)
    return res
