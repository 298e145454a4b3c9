"""COLMAP and nerfstudio captures with COCO panoptic predictions: the same synthetic scene in
every layout loads the same cameras, images, predictions and ground truth; undistortion, the
images_N folders, several cameras, splits, missing files and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from pcf_gs.cli import main
from pcf_gs.config import DataConfig
from pcf_gs.data import colmap, load_scene
from pcf_gs.data.messy_rooms import load_messy_rooms
from pcf_gs.data.predictions import find_predictions, id_to_rgb, rgb_to_id
from pcf_gs.errors import DataError
from pcf_gs.synth import SynthOptions, generate_scene
from pcf_gs.synth.layouts import write_layout

ALL = DataConfig(test_every=0, test_fraction=0.0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    generate_scene(root / "mos", SynthOptions(objects=5, frames=10, width=40, height=32, seed=2, points=500),
                   progress=False)
    for layout in ("colmap", "colmap-text", "nerfstudio"):
        write_layout(root / "mos", root / layout, layout)
    return root


def _copy(scenes: Path, layout: str, dst: Path) -> Path:
    shutil.copytree(scenes / layout, dst)
    return dst


@pytest.mark.parametrize("layout", ["colmap", "colmap-text", "nerfstudio"])
def test_layout_loads_what_messy_rooms_loads(scenes, layout):
    ref = load_messy_rooms(scenes / "mos", ALL, progress=False)
    s = load_scene(scenes / layout, ALL, progress=False)
    assert s.format == layout.split("-")[0]
    by = {f.name: f for f in s.frames}
    assert set(by) == {f.name for f in ref.frames}
    for f in ref.frames:
        g = by[f.name]
        np.testing.assert_allclose(g.K, f.K, atol=1e-5)
        np.testing.assert_allclose(g.c2w, f.c2w, atol=1e-5)
        assert (g.rgb == f.rgb).all()
        assert (g.semantics == f.semantics + 1).all()  # COCO: category = class + 1, 0 unlabelled
        assert (g.gt_semantics == f.gt_semantics + 1).all() and (g.gt_instances == f.gt_instances).all()
        # per-view ids are renumbered, the partition is the same
        pairs = set(zip(g.instances.ravel().tolist(), f.instances.ravel().tolist()))
        assert len(pairs) == len(np.unique(f.instances))
        np.testing.assert_allclose(g.confidence, f.confidence, atol=1e-4)
    np.testing.assert_allclose(s.points, ref.points, atol=1e-5)
    assert s.classes.names == ["unlabeled", "background", "foreground"]
    assert s.classes.thing_ids == [2]
    np.testing.assert_allclose(s.normalization.center, ref.normalization.center, atol=1e-5)


def test_split_every_eighth_image(scenes):
    s = load_scene(scenes / "colmap", DataConfig(), progress=False)
    assert s.test_ids == [0, 8] and len(s.train_ids) == 8
    names = [f.name for f in s.frames]
    assert names == sorted(names)
    s = load_scene(scenes / "colmap", DataConfig(test_every=3), progress=False)
    assert s.test_ids == [0, 3, 6, 9]


def test_our_colmap_files_agree_with_pycolmap(scenes, tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    ours_bin = colmap.read_model(scenes / "colmap" / "sparse" / "0")
    rec = pycolmap.Reconstruction(str(scenes / "colmap-text" / "sparse" / "0"))  # pycolmap reads our text
    assert rec.num_images() == len(ours_bin.images) and len(rec.points3D) == len(ours_bin.points)
    out = tmp_path / "pyc"
    out.mkdir()
    rec.write_binary(str(out))  # ... and we read pycolmap's binary
    theirs = colmap.read_model(out)
    for iid, im in ours_bin.images.items():
        t = theirs.images[iid]
        assert t.name == im.name
        np.testing.assert_allclose(t.c2w(), im.c2w(), atol=1e-9)
        c, tc = ours_bin.cameras[im.camera_id], theirs.cameras[t.camera_id]
        assert (c.model, c.width, c.height) == (tc.model, tc.width, tc.height)
        np.testing.assert_allclose(tc.params, c.params)
    order = np.lexsort(theirs.points.T)
    np.testing.assert_allclose(theirs.points[order], ours_bin.points[np.lexsort(ours_bin.points.T)], atol=1e-12)
    out_txt = tmp_path / "pyc_txt"
    out_txt.mkdir()
    rec.write_text(str(out_txt))
    assert set(colmap.read_model(out_txt).images) == set(ours_bin.images)


def test_undistortion_puts_points_where_the_pinhole_camera_says(tmp_path):
    """Dots drawn at the *distorted* projections of known 3D points land, after loading, at the
    loaded pinhole camera's projections (OPENCV and FULL_OPENCV)."""
    W, H = 160, 120
    K = np.array([[150.0, 0, 80.5], [0, 140.0, 59.0], [0, 0, 1]])
    g = np.linspace(-0.45, 0.45, 4)  # a grid of well-separated points in front of an identity camera
    X = np.array([[x, y, 2.0] for x in g for y in g * 0.8])
    for model, params in [("OPENCV", [-0.2, 0.05, 0.001, -0.002]),
                          ("FULL_OPENCV", [-0.1, 0.02, 0.0, 0.001, 0.0, 0.01, 0.0, 0.0])]:
        root = tmp_path / model
        (root / "images").mkdir(parents=True)
        dist = np.array(params)
        Kcv = K.copy(); Kcv[:2, 2] -= 0.5
        uv, _ = cv2.projectPoints(X, np.zeros(3), np.zeros(3), Kcv, dist)
        uv = uv[:, 0] + 0.5  # to centres at +0.5
        img = np.zeros((H * 4, W * 4, 3), np.uint8)
        for u, v in uv:  # anti-aliased dots: draw at 4x and shrink
            cv2.circle(img, (int(round(u * 4 - 0.5)), int(round(v * 4 - 0.5))), 6, (255, 255, 255), -1)
        cv2.imwrite(str(root / "images" / "a.png"), cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA))
        cam = colmap.Camera(1, model, W, H, np.r_[K[0, 0], K[1, 1], K[0, 2], K[1, 2], dist])
        colmap.write_model(root / "sparse" / "0", colmap.Model(
            {1: cam}, {1: colmap.image_from_c2w(1, np.eye(4), 1, "a.png")}, np.zeros((0, 3)), np.zeros((0, 3), np.uint8)))
        f = load_scene(root, DataConfig(normalize=False), progress=False).frames[0]
        p = (f.K.astype(np.float64) @ X.T).T
        p = p[:, :2] / p[:, 2:]
        gray = f.rgb[..., 0].astype(np.float64)
        for u, v in p:
            if not (6 <= u < f.width - 6 and 6 <= v < f.height - 6):
                continue
            ys, xs = np.mgrid[int(v) - 5:int(v) + 6, int(u) - 5:int(u) + 6]
            w = gray[ys, xs]
            cu, cv_ = (w * (xs + 0.5)).sum() / w.sum(), (w * (ys + 0.5)).sum() / w.sum()
            assert abs(cu - u) < 0.35 and abs(cv_ - v) < 0.35, (model, u, v, cu, cv_)


def test_images_n_folder_is_used_for_downscale(scenes, tmp_path):
    root = _copy(scenes, "colmap", tmp_path / "c")
    (root / "images_2").mkdir()
    for p in (root / "images").iterdir():
        img = cv2.imread(str(p))
        small = cv2.resize(img, (20, 16), interpolation=cv2.INTER_AREA)
        small[0, 0] = (1, 2, 3)  # a mark: the copy was read
        cv2.imwrite(str(root / "images_2" / p.name), small)
    full = load_scene(root, ALL, progress=False)
    s = load_scene(root, DataConfig(downscale=2, test_every=0), progress=False)
    f, g = s.frames[0], full.frames[0]
    assert (f.width, f.height) == (20, 16) and tuple(f.rgb[0, 0]) == (3, 2, 1)
    np.testing.assert_allclose(f.K[:2], g.K[:2] / 2, atol=1e-5)
    assert f.semantics.shape == (16, 20)


def test_several_cameras_of_different_sizes(scenes, tmp_path):
    root = _copy(scenes, "colmap-text", tmp_path / "c")
    model = colmap.read_model(root / "sparse" / "0")
    cam = model.cameras[1]
    big = colmap.Camera(2, "SIMPLE_PINHOLE", 80, 64, np.array([cam.params[0] * 2, cam.params[2] * 2, cam.params[3] * 2]))
    model.cameras[2] = big
    im = model.images[1]
    im.camera_id = 2
    img = cv2.imread(str(root / "images" / im.name))
    cv2.imwrite(str(root / "images" / im.name), cv2.resize(img, (80, 64), interpolation=cv2.INTER_LINEAR))
    colmap.write_model(root / "sparse" / "0", model, binary=False)
    ref = load_scene(scenes / "colmap", ALL, progress=False)
    s = load_scene(root, ALL, progress=False)
    assert {(f.width, f.height) for f in s.frames} == {(40, 32)}  # resampled to the common size
    for f, g in zip(s.frames, ref.frames):
        np.testing.assert_allclose(f.K, g.K, rtol=1e-5, atol=1e-4)


def test_missing_images_error_or_skip(scenes, tmp_path, capsys):
    root = _copy(scenes, "colmap", tmp_path / "c")
    (root / "images" / "3.png").unlink()
    assert main(["-q", "info", str(root)]) == 2
    err = capsys.readouterr().err
    assert "3.png" in err and "--skip-missing" in err and len(err.strip().splitlines()) == 1
    assert main(["-q", "info", str(root), "--skip-missing"]) == 0
    s = load_scene(root, DataConfig(skip_missing=True), progress=False)
    assert len(s.frames) == 9


def test_images_without_predictions_train_appearance_only(scenes, tmp_path):
    root = _copy(scenes, "nerfstudio", tmp_path / "n")
    d = json.loads((root / "panoptic.json").read_text())
    d["annotations"] = [a for a in d["annotations"] if a["file_name"] != "4.png"]
    (root / "panoptic.json").write_text(json.dumps(d))
    (root / "panoptic" / "4.png").unlink()
    s = load_scene(root, ALL, progress=False)
    f = next(f for f in s.frames if f.name == "4")
    assert f.confidence.max() == 0 and f.instances.max() == 0
    assert s.meta["predictions"]["images_without"] == 1


def test_instance_maps_only(scenes, tmp_path):
    root = _copy(scenes, "colmap", tmp_path / "c")
    ref = load_scene(root, ALL, progress=False)
    shutil.rmtree(root / "panoptic")
    (root / "panoptic.json").unlink()
    (root / "instances").mkdir()
    for f in ref.frames:
        cv2.imwrite(str(root / "instances" / f"{f.name}.png"), (f.instances * 3).astype(np.uint16))
    s = load_scene(root, ALL, progress=False)
    assert s.classes.names == ["background", "object"] and s.classes.thing_ids == [1]
    for f, g in zip(s.frames, ref.frames):
        assert ((f.instances > 0) == (g.instances > 0)).all()
        assert (f.semantics == (g.instances > 0)).all()
        # ground truth mapped to background / object
        assert (f.gt_semantics == (g.gt_semantics == 2)).all()


def test_coco_panoptic_rgb_id_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 2**24 - 1, 12345]])
    assert (rgb_to_id(id_to_rgb(ids)) == ids).all()


def test_nerfstudio_split_lists_and_mask(scenes, tmp_path):
    root = _copy(scenes, "nerfstudio", tmp_path / "n")
    meta = json.loads((root / "transforms.json").read_text())
    meta["train_filenames"] = [f"images/{i}.png" for i in range(7)]
    meta["val_filenames"] = [f"images/{i}.png" for i in range(7, 10)]
    (root / "masks").mkdir()
    m = np.full((32, 40), 255, np.uint8)
    m[:, :10] = 0
    cv2.imwrite(str(root / "masks" / "0.png"), m)
    meta["frames"][0]["mask_path"] = "masks/0.png"
    (root / "transforms.json").write_text(json.dumps(meta))
    s = load_scene(root, DataConfig(), progress=False)
    assert [s.frames[i].name for i in s.test_ids] == ["7", "8", "9"] and len(s.train_ids) == 7
    f0 = next(f for f in s.frames if f.name == "0")
    assert f0.valid is not None and not f0.valid[:, :10].any() and f0.valid[:, 10:].all()


def test_fisheye_camera_is_refused_by_name(scenes, tmp_path, capsys):
    root = _copy(scenes, "colmap-text", tmp_path / "c")
    p = root / "sparse" / "0" / "cameras.txt"
    lines = p.read_text().splitlines()
    lines = [ln if ln.startswith("#") else " ".join(ln.split()[:1] + ["OPENCV_FISHEYE"] + ln.split()[2:8] + ["0", "0", "0", "0"]) for ln in lines]
    p.write_text("\n".join(lines) + "\n")
    assert main(["-q", "info", str(root)]) == 2
    assert "OPENCV_FISHEYE" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ bad input


def _bad_bin_truncated(root):
    p = root / "sparse/0/images.bin"
    p.write_bytes(p.read_bytes()[:-30])
    return "images.bin"


def _bad_model_id(root):
    p = root / "sparse/0/cameras.bin"
    b = bytearray(p.read_bytes())
    b[12:16] = (99).to_bytes(4, "little")  # u64 count, i32 id, then the model id
    p.write_bytes(bytes(b))
    return "unknown camera model id 99"


def _bad_fields(root):
    p = root / "sparse/0/images.txt"
    lines = p.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln and not ln.startswith("#"))
    lines[i] = " ".join(lines[i].split()[:7])
    p.write_text("\n".join(lines) + "\n")
    return "images.txt"


def _bad_quat(value):
    def f(root):
        p = root / "sparse/0/images.txt"
        lines = p.read_text().splitlines()
        i = next(k for k, ln in enumerate(lines) if ln and not ln.startswith("#"))
        t = lines[i].split()
        t[1:5] = [value] * 4
        lines[i] = " ".join(t)
        p.write_text("\n".join(lines) + "\n")
        return "images.txt"
    return f


def _no_frames(root):
    (root / "transforms.json").write_text(json.dumps({"fl_x": 1, "frames": []}))
    return "transforms.json"


def _no_intrinsics(root):
    m = json.loads((root / "transforms.json").read_text())
    for k in ("fl_x", "fl_y"):
        m.pop(k)
    (root / "transforms.json").write_text(json.dumps(m))
    return "fl_x"


def _unknown_segment(root):
    p = root / "panoptic" / "2.png"
    seg = rgb_to_id(cv2.imread(str(p))[..., ::-1])
    seg[0, 0] = 4242
    cv2.imwrite(str(p), id_to_rgb(seg)[..., ::-1])
    return "4242"


def _entry_without_png(root):
    (root / "panoptic" / "5.png").unlink()
    return "5.png"


def _wrong_size_mask(root):
    p = root / "panoptic" / "1.png"
    cv2.imwrite(str(p), np.zeros((10, 40, 3), np.uint8))
    return "aspect ratio"


@pytest.mark.parametrize(("layout", "breaker"), [
    ("colmap", _bad_bin_truncated), ("colmap", _bad_model_id), ("colmap-text", _bad_fields),
    ("colmap-text", _bad_quat("0")), ("colmap-text", _bad_quat("nan")), ("nerfstudio", _no_frames),
    ("nerfstudio", _no_intrinsics), ("colmap", _unknown_segment), ("colmap", _entry_without_png),
    ("colmap", _wrong_size_mask),
], ids=["truncated-bin", "model-id", "fields", "zero-quat", "nan-quat", "no-frames", "no-intrinsics",
        "unknown-segment", "json-without-png", "mask-size"])
def test_bad_input_is_one_line_exit_2(scenes, tmp_path, capsys, layout, breaker):
    root = _copy(scenes, layout, tmp_path / "s")
    needle = breaker(root)
    assert main(["-q", "info", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_predictions_finder_reports_half_layouts(tmp_path):
    (tmp_path / "panoptic").mkdir()
    with pytest.raises(DataError, match="panoptic.json"):
        find_predictions(tmp_path)


def test_nerfstudio_per_frame_intrinsics_and_distortion(scenes, tmp_path):
    """A frame's own intrinsics win over the global ones; distortion coefficients undistort."""
    root = _copy(scenes, "nerfstudio", tmp_path / "n")
    meta = json.loads((root / "transforms.json").read_text())
    ref = load_scene(root, ALL, progress=False)
    fr = meta["frames"][0]
    fr.update({"fl_x": meta["fl_x"] * 1.1, "fl_y": meta["fl_y"] * 1.1, "cx": meta["cx"], "cy": meta["cy"]})
    meta["frames"][1]["k1"] = -0.1
    (root / "transforms.json").write_text(json.dumps(meta))
    s = load_scene(root, ALL, progress=False)
    by = {f.name: f for f in s.frames}
    name0 = fr["file_path"].split("/")[-1][:-4]
    name1 = meta["frames"][1]["file_path"].split("/")[-1][:-4]
    g0 = next(f for f in ref.frames if f.name == name0)
    np.testing.assert_allclose(by[name0].K[0, 0], g0.K[0, 0] * 1.1, rtol=1e-5)
    g1 = next(f for f in ref.frames if f.name == name1)
    assert not np.allclose(by[name1].K, g1.K)  # the undistorted pinhole camera differs
    assert by[name1].rgb.shape[:2] == (by[name1].height, by[name1].width)


def test_synth_layout_flag_writes_a_loadable_capture(tmp_path, capsys):
    out = tmp_path / "cap"
    assert main(["-q", "synth", str(out), "--objects", "2", "--frames", "3", "--size", "24", "--layout", "colmap-text"]) == 0
    assert (out / "sparse" / "0" / "images.txt").is_file() and (out / "panoptic.json").is_file()
    assert load_scene(out, ALL, progress=False).format == "colmap"
    assert main(["-q", "synth", str(out), "--objects", "2", "--frames", "3", "--size", "24", "--layout", "nerfstudio"]) == 2
    assert "exists" in capsys.readouterr().err
