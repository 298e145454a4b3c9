"""Messy Rooms loader: Kubric cameras, split, resizing, label handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcf_gs.config import DataConfig
from pcf_gs.data import detect_format, load_scene
from pcf_gs.data.images import resize_nearest


def project(frame, X_scene):
    w2c = np.linalg.inv(frame.c2w.astype(np.float64))
    xc = w2c[:3, :3] @ X_scene + w2c[:3, 3]
    assert xc[2] > 0, "point must be in front of the OpenCV camera"
    uvw = frame.K.astype(np.float64) @ xc
    return uvw[0] / uvw[2], uvw[1] / uvw[2]


def test_detects_format(tiny_mr):
    root, _ = tiny_mr
    assert detect_format(root) == "messy_rooms"


def test_kubric_cameras_project_known_point(tiny_mr):
    root, info = tiny_mr
    scene = load_scene(root, progress=False)
    Xs = scene.normalization.world_to_scene_points(info["X"])
    for f, (u_ref, v_ref) in zip(scene.frames, info["pixels"]):
        u, v = project(f, Xs)
        assert abs(u - u_ref) < 1e-4 and abs(v - v_ref) < 1e-4
        # and the marked (red) pixel is where the camera says the point is
        assert tuple(f.rgb[int(v), int(u)]) == (255, 0, 0)
        # OpenCV convention: proper rotation
        assert np.isclose(np.linalg.det(f.c2w[:3, :3]), 1.0, atol=1e-5)


def test_intrinsics_are_pixels_and_positive(tiny_mr):
    root, info = tiny_mr
    f = load_scene(root, progress=False).frames[0]
    W, H = info["W"], info["H"]
    assert np.allclose(f.K, [[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1]], atol=1e-4)


def test_split_last_20_percent(tmp_path):
    from tests.conftest import write_tiny_messy_rooms

    write_tiny_messy_rooms(tmp_path / "s", n_frames=12)
    scene = load_scene(tmp_path / "s", progress=False)
    assert scene.train_ids == list(range(9)) and scene.test_ids == [9, 10, 11]  # int(12 * 0.8) = 9
    # numeric order: "10" after "9"
    assert [f.name for f in scene.frames] == [str(i) for i in range(12)]


def test_labels_confidence_and_gt(tiny_mr):
    root, _ = tiny_mr
    scene = load_scene(root, progress=False)
    f = scene.frames[2]
    assert f.semantics.dtype == np.int32 and f.instances.dtype == np.int32
    assert set(np.unique(f.instances)) == {0, 9}
    assert f.confidence is not None
    assert np.all(f.confidence[f.semantics == 0] == 1.0)  # background forced to 1 like the official loader
    assert np.allclose(f.confidence[f.semantics == 1], 0.8)
    assert scene.has_ground_truth
    assert scene.classes.names == ["background", "foreground"] and scene.classes.thing_ids == [1]


def test_downscale_scales_intrinsics(tiny_mr):
    root, info = tiny_mr
    full = load_scene(root, progress=False)
    half = load_scene(root, DataConfig(downscale=2), progress=False)
    f0, f1 = full.frames[1], half.frames[1]
    assert (f1.width, f1.height) == (info["W"] // 2, info["H"] // 2)
    assert np.allclose(f1.K[:2], f0.K[:2] / 2)
    assert f1.semantics.shape == (info["H"] // 2, info["W"] // 2)
    Xs = half.normalization.world_to_scene_points(info["X"])
    u, v = project(f1, Xs)
    u0, v0 = info["pixels"][1]
    assert abs(u - u0 / 2) < 1e-4 and abs(v - v0 / 2) < 1e-4


def test_normalisation_round_trip(tiny_mr):
    root, _ = tiny_mr
    scene = load_scene(root, progress=False)
    n = scene.normalization
    pos = np.stack([f.c2w[:3, 3] for f in scene.frames])
    assert np.isclose(np.linalg.norm(pos - pos.mean(0), axis=1).max(), 1.0, atol=1e-5)
    x = np.random.default_rng(0).normal(size=(10, 3))
    assert np.allclose(n.scene_to_world_points(n.world_to_scene_points(x)), x)
    m = n.matrix()
    assert np.allclose((m[:3, :3] @ x.T).T + m[:3, 3], n.world_to_scene_points(x))


def test_no_normalisation_keeps_world(tiny_mr):
    root, info = tiny_mr
    scene = load_scene(root, DataConfig(normalize=False), progress=False)
    meta = json.loads((root / "metadata.json").read_text())
    assert np.allclose(scene.frames[3].c2w[:3, 3], meta["camera"]["positions"][3], atol=1e-5)


def test_resize_nearest_samples_pixel_centres():
    a = np.arange(16).reshape(4, 4)
    assert np.array_equal(resize_nearest(a, 2, 2), [[5, 7], [13, 15]])
    assert np.array_equal(resize_nearest(a, 8, 8)[::2, ::2], a)


def test_label_map_of_other_size_same_aspect_is_resized(tiny_mr, caplog):
    root, info = tiny_mr
    big = np.kron(np.load(root / "detic_instance" / "1.npy"), np.ones((2, 2), np.int16))
    np.save(root / "detic_instance" / "1.npy", big)
    scene = load_scene(root, progress=False)
    assert scene.frames[1].instances.shape == (info["H"], info["W"])
    assert set(np.unique(scene.frames[1].instances)) == {0, 8}
    assert any("resizing" in r.message for r in caplog.records)


def test_extras_class_table_and_points(tiny_mr):
    root, _ = tiny_mr
    from plyfile import PlyData, PlyElement

    meta = json.loads((root / "metadata.json").read_text())
    meta["pcf_gs"] = {
        "classes": [
            {"id": 0, "name": "room", "thing": False},
            {"id": 1, "name": "toy", "thing": True},
            {"id": 2, "name": "box", "thing": True},
        ]
    }
    (root / "metadata.json").write_text(json.dumps(meta))
    v = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v["x"] = [0, 1, 2]
    PlyData([PlyElement.describe(v, "vertex")]).write(str(root / "points3d.ply"))
    scene = load_scene(root, progress=False)
    assert scene.classes.names == ["room", "toy", "box"]
    assert scene.points.shape == (3, 3)
    assert np.allclose(scene.normalization.scene_to_world_points(scene.points)[:, 0], [0, 1, 2], atol=1e-5)


@pytest.mark.parametrize("downscale,max_size,expect", [(1, 0, (32, 24)), (2, 0, (16, 12)), (1, 16, (16, 12))])
def test_target_size(downscale, max_size, expect):
    from pcf_gs.data.images import target_size

    assert target_size(32, 24, downscale, max_size) == expect
