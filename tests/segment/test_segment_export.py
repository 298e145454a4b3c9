"""Segmentation outputs, PLY export layout and round trips, evaluation sanity."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from plyfile import PlyData

from pcf_gs.cli import main
from pcf_gs.data import load_scene
from pcf_gs.data.scene import Normalization
from pcf_gs.evaluation.evaluate import evaluate_predictions, write_raw_predictions
from pcf_gs.splats.export import export_objects
from pcf_gs.splats.ply import Splats, read_ply, write_ply

REPO = Path(__file__).resolve().parents[2]


def random_splats(n=20, degree=2, seed=0) -> Splats:
    rng = np.random.default_rng(seed)
    S = (degree + 1) ** 2
    return Splats(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        scales=rng.normal(-3, 0.5, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(size=n).astype(np.float32),
        sh0=rng.normal(size=(n, 1, 3)).astype(np.float32),
        shN=rng.normal(size=(n, S - 1, 3)).astype(np.float32),
    )


def test_ply_round_trip_and_standard_layout(tmp_path):
    s = random_splats()
    s.extra = {"instance_id": np.arange(20, dtype=np.int32), "inst_mu": np.ones((20, 3), np.float32)}
    write_ply(tmp_path / "a.ply", s)
    names = PlyData.read(str(tmp_path / "a.ply"))["vertex"].data.dtype.names
    assert names[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    assert "f_rest_23" in names and "f_rest_24" not in names  # 8 coefficients x 3 channels
    assert {"opacity", "scale_2", "rot_3", "instance_id", "inst_mu_0"} <= set(names)
    back, _ = read_ply(tmp_path / "a.ply")
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert np.array_equal(getattr(back, k), getattr(s, k)), k
    assert np.array_equal(back.extra["instance_id"], s.extra["instance_id"])
    # channel-major f_rest: f_rest_0..7 are the red coefficients
    v = PlyData.read(str(tmp_path / "a.ply"))["vertex"]
    assert np.allclose(v["f_rest_1"], s.shN[:, 1, 0]) and np.allclose(v["f_rest_8"], s.shN[:, 0, 1])


def test_read_ply_rejects_non_splat_files(tmp_path):
    from pcf_gs.errors import UserError

    (tmp_path / "x.ply").write_text("not a ply")
    with pytest.raises(UserError, match="not a readable PLY"):
        read_ply(tmp_path / "x.ply")
    v = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    from plyfile import PlyElement

    PlyData([PlyElement.describe(v, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(UserError, match="not a 3DGS PLY"):
        read_ply(tmp_path / "pts.ply")


def test_export_objects_splits_cleanly(tmp_path):
    s = random_splats(30)
    inst = np.array([0] * 10 + [1] * 8 + [2] * 12, np.int32)
    sem = np.array([0] * 10 + [1] * 20, np.int32)
    table = export_objects(tmp_path, s, inst, sem, ["background", "foreground"], np.array([False, True]))
    assert [t["id"] for t in table] == [1, 2] and [t["num_gaussians"] for t in table] == [8, 12]
    o1, _ = read_ply(tmp_path / "objects" / "1_foreground.ply")
    assert np.array_equal(o1.means, s.means[10:18])
    bg, _ = read_ply(tmp_path / "stuff" / "background.ply")
    assert len(bg) == 10
    full, _ = read_ply(tmp_path / "scene_labeled.ply")
    assert np.array_equal(full.extra["instance_id"], inst)
    meta = json.loads((tmp_path / "objects.json").read_text())["objects"]
    assert meta[0]["bbox_min"] == s.means[10:18].min(0).round(5).tolist()
    o_names = PlyData.read(str(tmp_path / "objects" / "2_foreground.ply"))["vertex"].data.dtype.names
    assert "instance_id" not in o_names  # per-object files are plain 3DGS


def test_params_to_splats_goes_back_to_world_frame():
    import torch

    from pcf_gs.splats.export import params_to_splats
    from pcf_gs.lift.model import ModelSpec, init_params

    pts = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    spec = ModelSpec(num_classes=2, sh_degree=1)
    params = init_params(pts, None, spec)
    norm = Normalization(center=np.array([1.0, 2.0, 3.0]), scale=0.5)
    s = params_to_splats(params, spec, norm)
    assert np.allclose(s.means, pts / 0.5 + [1, 2, 3], atol=1e-5)
    assert np.allclose(np.exp(s.scales), torch.exp(params["scales"]).detach().numpy() / 0.5, rtol=1e-5)


def test_raw_2d_predictions_score_low_and_ground_truth_scores_100(tmp_path):
    scene = load_scene(REPO / "assets" / "demo", progress=False)
    write_raw_predictions(scene, tmp_path / "raw")
    raw = evaluate_predictions(scene, tmp_path / "raw")
    # per-view IDs are not consistent across views: no object matches; the background (stuff) half does
    assert raw["pq_things"] < 5 and raw["protocol"] == "messy_rooms", raw
    assert raw["pq"] == pytest.approx((raw["per_class"]["0"]["pq"] + raw["per_class"]["1"]["pq"]) * 50)
    gt = tmp_path / "gt"
    for d in ("pred_semantics", "pred_surrogateid"):
        (gt / d).mkdir(parents=True)
    for f in scene.test_frames:
        cv2.imwrite(str(gt / "pred_semantics" / f"{f.name}.png"), f.gt_semantics.astype(np.uint16))
        cv2.imwrite(str(gt / "pred_surrogateid" / f"{f.name}.png"), (f.gt_instances * 7 + 3 * (f.gt_instances > 0)).astype(np.uint16))
    perfect = evaluate_predictions(scene, gt)
    assert perfect["pq"] == pytest.approx(100.0) and perfect["miou"] == pytest.approx(100.0)
    assert perfect["pq_things"] == pytest.approx(100.0)


def test_segment_and_eval_cli_on_tiny_run(tiny_mr, tmp_path, capsys):
    from tests.lift.test_train import FAST

    root, _ = tiny_mr
    run = tmp_path / "run"
    assert main(["-q", "train", str(root), "--out", str(run), *FAST]) == 0
    seg = tmp_path / "seg"
    assert main(["-q", "segment", str(run), "--out", str(seg), "--split", "all", "--export-ply"]) == 0
    for d in ("pred_semantics", "pred_surrogateid", "vis"):
        files = sorted(p.name for p in (seg / d).iterdir())
        assert files == [f"{i}.png" for i in range(5)], d
    a = cv2.imread(str(seg / "pred_surrogateid" / "0.png"), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint16 and a.shape == (24, 32)
    assert (seg / "scene_labeled.ply").is_file() and (seg / "objects.json").is_file()
    secs = json.loads((seg / "segment.json").read_text())["seconds"]
    assert list(secs) == ["load", "classes", "render_nodes", "clustering", "label_views", "label_gaussians", "export"]
    assert all(v >= 0 for v in secs.values())
    assert main(["-q", "segment", str(run), "--out", str(tmp_path / "seg_v"), "--gaussian-labels", "vote",
                 "--clustering", "hdbscan", "--set", "segment.hdbscan_min_cluster_size=5"]) == 0
    assert main(["-q", "eval", str(run), "--data", str(root), "--pred", str(seg), "--split", "all"]) == 0
    m = json.loads((seg / "metrics.json").read_text())
    assert 0 <= m["pq"] <= 100 and m["psnr"] > 0
    capsys.readouterr()
    assert main(["-q", "segment", str(tmp_path / "nope"), "--out", str(seg)]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_exported_files_load_in_an_independent_reader(tmp_path):
    """gsply (PyPI, its own PLY parser) reads our per-object and labelled files with the same values."""
    gsply = pytest.importorskip("gsply")
    s = random_splats(25, degree=3, seed=4)
    inst = np.array([1] * 10 + [2] * 15, np.int32)
    export_objects(tmp_path, s, inst, np.ones(25, np.int32), ["background", "foreground"], np.array([False, True]))
    for path, sel in ((tmp_path / "objects" / "2_foreground.ply", slice(10, 25)), (tmp_path / "scene_labeled.ply", slice(0, 25))):
        d = gsply.plyread(str(path))
        assert np.allclose(d.means, s.means[sel])
        assert np.allclose(d.sh0, s.sh0[sel, 0])
        assert np.allclose(d.shN, s.shN[sel])  # same coefficient order (channel-major f_rest)
        assert np.allclose(d.opacities, s.opacities[sel]) and np.allclose(d.scales, s.scales[sel])
        assert np.allclose(d.quats, s.quats[sel])
