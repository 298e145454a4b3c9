"""Label maps at the views' native size and scoring against the ground truth as it is on disk, for a run
trained on downscaled images (``data.max_size``)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pcf_gs.cli import main
from pcf_gs.config import DataConfig
from pcf_gs.data import load_scene
from pcf_gs.data.images import scale_intrinsics
from pcf_gs.evaluation.evaluate import evaluate_predictions, scoring_scene
from pcf_gs.synth import SynthOptions, generate_scene
from pcf_gs.synth.layouts import write_layout
from tests.data.test_captures import ALL


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from tests.data.panoptic_lifting_sample import write_panoptic_lifting_sample

    root = tmp_path_factory.mktemp("res")
    generate_scene(root / "mos", SynthOptions(objects=4, frames=6, width=40, height=32, seed=3, points=300),
                   progress=False)
    for layout in ("colmap", "nerfstudio"):
        write_layout(root / "mos", root / layout, layout)
    write_panoptic_lifting_sample(root / "pl", root / "mos")
    return root


@pytest.mark.parametrize("layout", ["mos", "colmap", "nerfstudio", "pl"])
def test_source_size_and_K_give_the_native_camera(layouts, layout):
    """Every loader records the size before downscaling; K scaled by source / loaded is the K of the
    scene loaded at that size."""
    import dataclasses

    full = load_scene(layouts / layout, ALL, progress=False)
    small = load_scene(layouts / layout, dataclasses.replace(ALL, max_size=20), progress=False)
    assert [f.name for f in small.frames] == [f.name for f in full.frames]
    for f, g in zip(small.frames, full.frames):
        assert (f.width, f.height) == (20, 16) and f.source_size == (g.width, g.height) == (40, 32)
        assert g.source_size == (40, 32)
        K = scale_intrinsics(f.K, g.width / f.width, g.height / f.height)
        np.testing.assert_allclose(K, g.K, rtol=1e-6, atol=1e-5)


def test_segment_writes_native_size_and_eval_scores_the_ground_truth_on_disk(tiny_mr, tmp_path):
    from tests.lift.test_train import FAST

    root, info = tiny_mr  # 32 x 24 images
    run = tmp_path / "run"
    assert main(["-q", "train", str(root), "--out", str(run), *FAST, "--set", "data.max_size=16"]) == 0
    native, train = tmp_path / "seg_native", tmp_path / "seg_train"
    assert main(["-q", "segment", str(run), "--out", str(native), "--split", "all"]) == 0
    assert main(["-q", "segment", str(run), "--out", str(train), "--split", "all",
                 "--set", "segment.resolution=train"]) == 0
    for d in ("pred_semantics", "pred_surrogateid", "vis"):
        assert cv2.imread(str(native / d / "0.png"), cv2.IMREAD_UNCHANGED).shape[:2] == (24, 32), d
        assert cv2.imread(str(train / d / "0.png"), cv2.IMREAD_UNCHANGED).shape[:2] == (12, 16), d
    assert json.loads((native / "segment.json").read_text())["resolution"] == "native"
    _native_render_is_the_training_render_upsampled(run)

    # the ground truth at its size on disk scores 100 from `pcf-gs eval RUN`, though the run trained at 16 x 12
    truth = scoring_scene(root, DataConfig(max_size=16), progress=False)
    assert (truth.frames[0].width, truth.frames[0].height) == (32, 24)
    gt = _ground_truth_as_prediction(truth, tmp_path / "gt")
    assert main(["-q", "eval", str(run), "--data", str(root), "--pred", str(gt), "--split", "all"]) == 0
    m = json.loads((gt / "metrics.json").read_text())
    assert m["pq"] == pytest.approx(100.0) and m["psnr"] > 0
    # a copy of the ground truth at the training size is not a perfect prediction of the one on disk
    small = load_scene(root, DataConfig(max_size=16), progress=False)
    down = _ground_truth_as_prediction(small, tmp_path / "down")
    assert evaluate_predictions(truth, down, "all")["pq"] < 100.0
    assert main(["-q", "eval", str(run), "--data", str(root), "--pred", str(native), "--split", "all"]) == 0


def _ground_truth_as_prediction(scene, out):
    """Every frame's ground truth written as a segment output (pred_semantics/, pred_surrogateid/) at its loaded size."""
    for d in ("pred_semantics", "pred_surrogateid"):
        (out / d).mkdir(parents=True)
    for f in scene.frames:
        cv2.imwrite(str(out / "pred_semantics" / f"{f.name}.png"), f.gt_semantics.astype(np.uint16))
        cv2.imwrite(str(out / "pred_surrogateid" / f"{f.name}.png"), f.gt_instances.astype(np.uint16))
    return out


def _native_render_is_the_training_render_upsampled(run_dir):
    """At twice the training size, with the 2D blur scaled by the pixel area (``scaled_kw``), a view's
    embedding averaged over 2 x 2 blocks is the training-size render; at the same blur in pixels it is less so
    (the footprints shrink: speckle between Gaussians)."""
    import torch

    from pcf_gs.lift.model import activated_geometry
    from pcf_gs.lift.run import Run
    from pcf_gs.render import rasterize
    from pcf_gs.segment.pipeline import scaled_kw, view_at

    run = Run.load(run_dir)
    run.config.render.eps2d = 2.0  # a blur that matters at this size
    p = run.params
    cols = p["inst_mu"].detach()
    g = activated_geometry(p, detach=True)
    errs = []
    for i in range(len(run.frames)):
        vm, K, W, H = view_at(run, i)
        small = rasterize(*g, cols, vm, K, W, H, backend="cpu", **run.config.render.kw())[0][0]
        vm, K2, W2, H2 = view_at(run, i, (2 * W, 2 * H))
        assert torch.allclose(K2[0, :2], 2 * K[0, :2]) and (W2, H2) == (2 * W, 2 * H)
        e = []
        for kw in (scaled_kw(run.config, run, W2, H2), run.config.render.kw()):
            big = rasterize(*g, cols, vm, K2, W2, H2, backend="cpu", **kw)[0][0]
            pooled = big.reshape(H, 2, W, 2, -1).mean((1, 3))
            e.append(float((pooled - small).abs().mean()))
        errs.append(e)
    scaled, same = np.mean(errs, 0)
    assert scaled < 0.8 * same, errs
