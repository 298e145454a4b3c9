"""tools/sfm.py: structure from motion with pycolmap into a COLMAP capture, and the comparison of its
cameras with known ones.

Fast tests: the similarity alignment and the camera errors on exactly known transforms, the
option parsing, and the one-line failures (no images, pycolmap missing, images SIFT cannot match;
that one runs pycolmap's whole pipeline on three flat images). The slow test reconstructs a
synthetic scene SIFT can handle (see docs/sfm.md) and checks registration and camera accuracy.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest

from pcf_gs.data import colmap
from pcf_gs.geometry import quat_to_rotmat
from tests.conftest import load_tool


@pytest.fixture(scope="module")
def sfm():
    return load_tool("sfm")


def _random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_rotmat(q / np.linalg.norm(q))


def _axis_angle(axis, deg) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(axis, np.float64) / np.linalg.norm(axis) * np.radians(deg))[0]


def _known_model(n: int = 12, seed: int = 0) -> colmap.Model:
    """Cameras on a ring around the origin, looking roughly inwards, at different heights."""
    rng = np.random.default_rng(seed)
    cam = colmap.Camera(1, "SIMPLE_PINHOLE", 64, 48, np.array([50.0, 32.0, 24.0]))
    images = {}
    for i in range(n):
        a = 2 * np.pi * i / n
        c2w = np.eye(4)
        c2w[:3, :3] = _random_rotation(rng)
        c2w[:3, 3] = [3 * np.cos(a), 3 * np.sin(a), 1 + 0.5 * rng.uniform()]
        images[i + 1] = colmap.image_from_c2w(i + 1, c2w, 1, f"{i}.png")
    return colmap.Model({1: cam}, images, np.zeros((0, 3)), np.zeros((0, 3), np.uint8))


def _transformed(model: colmap.Model, s: float, R: np.ndarray, t: np.ndarray, focal: float = 1.0,
                 rot_noise: dict | None = None) -> colmap.Model:
    """``model`` seen in another frame: x' = s R x + t (what SfM's arbitrary frame is), ids shuffled."""
    images = {}
    for k, im in enumerate(reversed(list(model.images.values()))):
        c2w = im.c2w()
        new = np.eye(4)
        new[:3, :3] = R @ c2w[:3, :3]
        if rot_noise and im.name in rot_noise:
            new[:3, :3] = new[:3, :3] @ rot_noise[im.name]
        new[:3, 3] = s * R @ c2w[:3, 3] + t
        images[100 + k] = colmap.image_from_c2w(100 + k, new, 7, im.name)
    cam = model.cameras[1]
    cam = colmap.Camera(7, cam.model, cam.width, cam.height, cam.params * np.array([focal, 1, 1]))
    return colmap.Model({7: cam}, images, model.points, model.colors)


# ------------------------------------------------------------------------------------------------ alignment


def test_umeyama_recovers_a_similarity(sfm):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3))
    R = _random_rotation(rng)
    s, t = 0.37, np.array([1.0, -2.0, 5.0])
    s2, R2, t2 = sfm.umeyama(x, s * x @ R.T + t)
    assert s2 == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-9)
    # a reflection is never returned, even for mirrored points
    _, R3, _ = sfm.umeyama(x, x * np.array([1, 1, -1]))
    assert np.linalg.det(R3) == pytest.approx(1.0)


def test_compare_cameras_is_zero_for_the_same_cameras_in_another_frame(sfm):
    known = _known_model()
    rng = np.random.default_rng(2)
    other = _transformed(known, 0.05, _random_rotation(rng), np.array([10.0, 0.0, -3.0]), focal=1.02)
    cmp = sfm.compare_cameras(other, known)
    assert cmp["matched"] == 12
    assert cmp["scale"] == pytest.approx(20.0, rel=1e-9)
    assert cmp["rotation_deg"]["max"] < 1e-5
    assert cmp["relative_rotation_deg"]["max"] < 1e-5
    assert cmp["centre_rel"]["max"] < 1e-9
    assert cmp["focal_ratio"]["mean"] == pytest.approx(1.02)
    assert cmp["aspect_ratio"]["mean"] == pytest.approx(1.0)


def test_compare_cameras_measures_rotation_and_centre_errors(sfm):
    known = _known_model()
    rng = np.random.default_rng(3)
    other = _transformed(known, 2.0, _random_rotation(rng), np.zeros(3),
                         rot_noise={"3.png": _axis_angle([0, 1, 1], 2.0)})
    cmp = sfm.compare_cameras(other, known)
    assert cmp["per_image"]["3.png"]["rotation_deg"] == pytest.approx(2.0, abs=1e-6)
    assert cmp["per_image"]["4.png"]["rotation_deg"] < 1e-6
    assert cmp["rotation_deg"]["max"] == pytest.approx(2.0, abs=1e-6)
    # pairs with image 3 are off by 2 degrees, the others exact
    assert cmp["relative_rotation_deg"]["max"] == pytest.approx(2.0, abs=1e-6)
    assert cmp["relative_rotation_deg"]["median"] < 1e-6

    # one centre moved by 10% of the camera radius: the alignment spreads it, the error is at most that
    radius = cmp["known_radius"]
    moved = _transformed(known, 1.0, np.eye(3), np.zeros(3))
    im = next(i for i in moved.images.values() if i.name == "5.png")
    c2w = im.c2w()
    c2w[:3, 3] += [0.1 * radius, 0, 0]
    moved.images[im.id] = colmap.image_from_c2w(im.id, c2w, im.camera_id, im.name)
    cmp = sfm.compare_cameras(moved, known)
    assert 0.05 < cmp["per_image"]["5.png"]["centre_rel"] <= 0.1
    assert cmp["centre_rel"]["median"] < 0.02


def test_compare_dirs_reads_capture_roots(sfm, tmp_path):
    known = _known_model()
    colmap.write_model(tmp_path / "known" / "sparse" / "0", known)
    colmap.write_model(tmp_path / "sfm" / "sparse" / "0", _transformed(known, 3.0, np.eye(3), np.ones(3)), binary=False)
    cmp = sfm.compare_dirs(tmp_path / "sfm", tmp_path / "known")
    assert cmp["matched"] == 12 and cmp["centre_rel"]["max"] < 1e-9


def test_compare_needs_three_shared_names(sfm):
    known = _known_model(4)
    other = _transformed(known, 1.0, np.eye(3), np.zeros(3))
    for im in list(other.images.values())[:2]:
        im.name = "x" + im.name
    with pytest.raises(sfm.SfmError, match="share a name"):
        sfm.compare_cameras(other, known)


# ------------------------------------------------------------------------------------------------ options and errors


def test_extra_options_parse_and_reach_pycolmap(sfm):
    pycolmap = pytest.importorskip("pycolmap")
    extra = sfm._parse_extra(["map.mapper.init_min_tri_angle=8", "match.guided_matching=true",
                              "extract.sift.peak_threshold=0.004"])
    mapper = pycolmap.IncrementalPipelineOptions()
    sfm._apply(mapper, extra["map"], "map")
    assert mapper.mapper.init_min_tri_angle == 8
    match = pycolmap.FeatureMatchingOptions()
    sfm._apply(match, extra["match"], "match")
    assert match.guided_matching is True
    ext = pycolmap.FeatureExtractionOptions()
    sfm._apply(ext, extra["extract"], "extract")
    assert ext.sift.peak_threshold == pytest.approx(0.004)
    with pytest.raises(sfm.SfmError, match="STAGE"):
        sfm._parse_extra(["mapper.init_min_tri_angle=8"])
    with pytest.raises(sfm.SfmError, match="no such option"):
        sfm._apply(mapper, sfm._parse_extra(["map.mapper.no_such=1"])["map"], "map")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("tools/sfm.py: ")
    return err[0]


def test_missing_images_folder_is_one_line(sfm, tmp_path, capsys):
    pytest.importorskip("pycolmap")
    (tmp_path / "scene").mkdir()
    assert sfm.main([str(tmp_path / "scene"), "--out", str(tmp_path / "out")]) == 1
    assert "no images/ folder" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_missing_pycolmap_is_one_line(sfm, tmp_path, capsys, monkeypatch):
    (tmp_path / "scene" / "images").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap raises ImportError
    assert sfm.main([str(tmp_path / "scene"), "--out", str(tmp_path / "out")]) == 2
    assert "pip install pycolmap" in _one_line_error(capsys)


def test_images_sift_cannot_match_fail_cleanly(sfm, tmp_path, capsys):
    """pycolmap's whole pipeline runs on three flat images, finds nothing, and the tool says so."""
    pytest.importorskip("pycolmap")
    images = tmp_path / "scene" / "images"
    images.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((48, 64, 3), 60 + 40 * i, np.uint8))
    js = tmp_path / "summary.json"
    assert sfm.main([str(tmp_path / "scene"), "--out", str(tmp_path / "out"), "--json", str(js)]) == 1
    assert "no reconstruction" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()
    summary = json.loads(js.read_text())
    assert summary["images"] == 3 and summary["registered"] == 0 and "error" in summary


# ------------------------------------------------------------------------------------------------ end to end

# What SIFT reconstructs (docs/sfm.md): a 256 px orbit with 60 frames and the mapper's inlier
# thresholds relaxed. Measured (pycolmap 4.2.1, one thread, so repeatable): 60/60 registered,
# rotation error 0.91 deg mean / 1.53 max, centre error 1.3% / 5.5% of the camera radius, focal 0.992.
SFM_ARGS = ["--camera-model", "SIMPLE_PINHOLE", "--init-min-inliers", "50", "--abs-pose-min-inliers", "15",
            "--colmap", "match.guided_matching=true", "--threads", "1"]


@pytest.mark.slow
def test_sfm_reconstructs_a_synthetic_orbit(sfm, tmp_path):
    pytest.importorskip("pycolmap")
    from pcf_gs.config import DataConfig
    from pcf_gs.data import load_scene
    from pcf_gs.synth import SynthOptions, generate_scene
    from pcf_gs.synth.layouts import write_layout

    generate_scene(tmp_path / "mos", SynthOptions(frames=60, width=256, height=256, seed=0, camera_path="orbit"),
                   progress=False)
    write_layout(tmp_path / "mos", tmp_path / "known", "colmap")
    out = tmp_path / "sfm"
    assert sfm.main([str(tmp_path / "known"), "--out", str(out), *SFM_ARGS]) == 0

    summary = json.loads((out / "sfm.json").read_text())
    assert summary["images"] == 60
    assert summary["registered"] >= 54, summary["models"]
    assert summary["mean_reprojection_error"] < 1.5
    cmp = summary["comparison"]
    assert cmp["matched"] == summary["registered"]
    assert cmp["rotation_deg"]["mean"] < 3.0 and cmp["rotation_deg"]["max"] < 6.0
    assert cmp["relative_rotation_deg"]["mean"] < 3.0
    assert cmp["centre_rel"]["mean"] < 0.05 and cmp["centre_rel"]["median"] < 0.05
    assert abs(cmp["focal_ratio"]["mean"] - 1) < 0.05

    # OUT is a COLMAP capture in COLMAP's own frame, with the predictions and ground truth beside it
    assert {"images", "panoptic", "panoptic.json", "confidence", "panoptic_gt", "panoptic_gt.json"} <= set(
        summary["copied"])
    assert (out / "sparse" / "0" / "cameras.bin").is_file()
    assert not (out / "images").is_symlink()
    assert abs(cmp["scale"] - 1) > 1e-3  # not the known frame
    scene = load_scene(out, DataConfig(test_every=0, test_fraction=0.0), progress=False)
    assert len(scene.frames) == summary["registered"]
    assert all(f.has_ground_truth for f in scene.frames)
    assert scene.points is not None and len(scene.points) == summary["points"]
