"""End to end on a seconds-fast synthetic scene: losses fall and the rendered embedding
separates objects whose 2D IDs differ from view to view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pcf_gs.cli import main
from pcf_gs.lift.pp_kernel import pairwise_pp_kernel
from pcf_gs.lift.model import render_features
from pcf_gs.lift.run import Run
from pcf_gs.synth import SynthOptions, generate_scene


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    scene = root / "scene"
    generate_scene(scene, SynthOptions.small(seed=3, camera_path="orbit"), progress=False)
    run = root / "run"
    rc = main([
        "-q", "train", str(scene), "--out", str(run), "--config", "cpu_fast",
        "--set", "train.iterations=400", "--set", "train.warmup_iterations=100", "--set", "train.cross_view_start=300",
        "--set", "train.densify_from=50", "--set", "train.densify_until=250", "--set", "train.log_every=20",
        "--set", "train.pixels_per_view=256", "--set", "model.init_points=2000", "--set", "data.max_size=0",
    ])
    assert rc == 0
    return scene, run


def test_losses_fall(trained):
    _, run = trained
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    app = [r["appearance"] for r in recs]
    assert np.mean(app[-3:]) < 0.7 * np.mean(app[:3])
    con = [r["contrastive"] for r in recs if "contrastive" in r]
    assert np.mean(con[-3:]) < np.mean(con[:3])
    assert recs[-1]["psnr_heldout"] > recs[0]["psnr_heldout"]


def test_embedding_separates_objects_across_views(trained):
    from pcf_gs.data import load_scene

    scene_dir, run = trained
    trained_run = Run.load(run)
    scene = load_scene(scene_dir, progress=False)
    feats = {}
    for i in trained_run.train_ids:
        vm, K = trained_run.view(i)
        with torch.no_grad():
            f = render_features(trained_run.params, trained_run.spec, vm, K, trained_run.width, trained_run.height, slow=False)
        feats[i] = (f["mu"][0], f["var"][0])
    # objects seen (>= 30 GT pixels) in at least 3 training views
    seen: dict[int, list[int]] = {}
    for i in trained_run.train_ids:
        ids, cnt = np.unique(scene.frames[i].gt_instances, return_counts=True)
        for o, c in zip(ids, cnt):
            if o > 0 and c >= 30:
                seen.setdefault(int(o), []).append(i)
    objs = [o for o, v in seen.items() if len(v) >= 3]
    assert len(objs) >= 2
    rng = np.random.default_rng(0)
    within, across = [], []
    for a in objs:
        for b in objs:
            va, vb = seen[a][0], seen[b][-1]  # different views: the 2D IDs there are unrelated
            pa = np.argwhere(scene.frames[va].gt_instances == a)
            pb = np.argwhere(scene.frames[vb].gt_instances == b)
            sa = pa[rng.choice(len(pa), 20)]
            sb = pb[rng.choice(len(pb), 20)]
            mu_a, var_a = feats[va][0][sa[:, 0], sa[:, 1]], feats[va][1][sa[:, 0], sa[:, 1]]
            mu_b, var_b = feats[vb][0][sb[:, 0], sb[:, 1]], feats[vb][1][sb[:, 0], sb[:, 1]]
            k = pairwise_pp_kernel(mu_a, var_a, mu_b, var_b).median().item()
            (within if a == b else across).append(k)
    assert np.mean(within) > np.mean(across) + 0.2, (np.mean(within), np.mean(across))


def test_exported_object_renders_alone(trained, tmp_path):
    """Each exported object's PLY, rendered alone with the scene's own (world-frame) cameras,
    shows that object and (almost) nothing of its neighbours, judged where the object is not
    hidden behind the ground-truth depth (:func:`pcf_gs.evaluation.diagnostics.object_isolation`)."""
    from pcf_gs.config import DataConfig
    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.diagnostics import object_isolation
    from pcf_gs.splats.ply import read_ply

    scene_dir, run = trained
    seg = tmp_path / "seg"
    assert main(["-q", "segment", str(run), "--out", str(seg), "--split", "train", "--export-ply"]) == 0
    scene = load_scene(scene_dir, DataConfig(normalize=False), progress=False)  # world frame, as the files
    objects = json.loads((seg / "objects.json").read_text())["objects"]
    res = [object_isolation(read_ply(seg / o["file"])[0], scene, scene_dir / "depth") for o in objects]
    res = [r for r in res if r["mass"] > 50]  # leave out specks barely visible anywhere
    assert len(res) >= 2
    on = np.array([r["on_object"] for r in res])
    other = np.array([r["on_other_objects"] for r in res])
    print("on object", on.round(3), "on neighbours", other.round(3))
    # a 400-step toy run leaves soft, blobby objects (the 25-object benchmark run: median 86% on
    # the object, 2% on neighbours; docs/results.md); here: clearly more on itself than on others
    assert np.mean(on > 2 * other) >= 0.7 and np.median(other) < 0.2, (on, other)
    assert len({r["object"] for r in res}) >= 0.8 * len(res)  # distinct objects, not fragments of one
