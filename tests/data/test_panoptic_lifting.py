"""Panoptic Lifting loader: a sample written in the official layout loads to the same scene as its
Messy Rooms source (cameras, predictions, ground truth), with the layout's split and class table."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import cv2
import numpy as np
import pytest

from pcf_gs.config import DataConfig
from pcf_gs.data.images import resize_nearest
from pcf_gs.data.messy_rooms import is_messy_rooms, load_messy_rooms
from pcf_gs.data.panoptic_lifting import is_panoptic_lifting, load_panoptic_lifting, safe_unpickle
from pcf_gs.errors import DataError
from tests.data.panoptic_lifting_sample import (
    DEFAULT_SYNTH, REDUCED_FG, REDUCED_NAMES, default_class_map, write_panoptic_lifting_sample,
)  # fmt: skip

RAW = DataConfig(normalize=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from pcf_gs.synth import SynthOptions, generate_scene

    d = tmp_path_factory.mktemp("pl_source") / "mr"
    generate_scene(d, SynthOptions(**DEFAULT_SYNTH), progress=False)
    return d


@pytest.fixture(scope="module")
def mr_raw(source):
    return load_messy_rooms(source, RAW, progress=False)


@pytest.fixture
def sample(tmp_path, source):
    root = tmp_path / "scene"
    return root, write_panoptic_lifting_sample(root, source)


def load(root, cfg=RAW):
    return load_panoptic_lifting(root, cfg, progress=False)


def by_name(scene):
    return {f.name: f for f in scene.frames}


# ----------------------------------------------------------------------------- detection


def test_detection(sample, source):
    root, _ = sample
    assert is_panoptic_lifting(root)
    assert not is_messy_rooms(root)
    assert not is_panoptic_lifting(source)
    assert not is_panoptic_lifting(root / "missing")


# ----------------------------------------------------------------------------- cameras


def test_cameras_equal_messy_rooms_world_frame(sample, mr_raw):
    root, _ = sample
    scene = load(root)
    assert scene.format == "panoptic_lifting"
    ref = by_name(mr_raw)
    assert len(scene.frames) == len(mr_raw.frames)
    for f in scene.frames:
        g = ref[f.name]
        assert f.K.dtype == np.float32 and f.c2w.dtype == np.float32
        np.testing.assert_allclose(f.K, g.K, atol=1e-5)
        np.testing.assert_allclose(f.c2w, g.c2w, atol=1e-5)
        assert np.isclose(np.linalg.det(f.c2w[:3, :3]), 1.0, atol=1e-5)


def test_intrinsics_file_uses_integer_pixel_centres(sample, mr_raw):
    root, _ = sample
    K_file = np.loadtxt(root / "intrinsic" / "intrinsic_color.txt")
    K = mr_raw.frames[0].K
    assert K_file.shape == (4, 4)
    assert np.allclose(K_file[:2, 2], K[:2, 2] - 0.5, atol=1e-5)  # (W-1)/2 convention of the layout
    scene = load(root)
    assert np.allclose(scene.meta["panoptic_lifting"]["intrinsics"]["K"], K_file[:3, :3])


def test_normalised_cameras_equal_messy_rooms(sample, source):
    root, _ = sample
    a, b = load(root, DataConfig()), load_messy_rooms(source, DataConfig(), progress=False)
    assert np.allclose(a.normalization.center, b.normalization.center, atol=1e-5)
    assert np.isclose(a.normalization.scale, b.normalization.scale, rtol=1e-5)
    ref = by_name(b)
    for f in a.frames:
        np.testing.assert_allclose(f.c2w, ref[f.name].c2w, atol=1e-5)


# ----------------------------------------------------------------------------- labels


def test_predictions_and_ground_truth_equal(sample, mr_raw):
    root, info = sample
    scene = load(root)
    cmap = np.array([info["class_map"][k] for k in sorted(info["class_map"])])
    ref = by_name(mr_raw)
    n_inst = 0
    for f in scene.frames:
        g = ref[f.name]
        assert f.semantics.dtype == np.int32 and f.instances.dtype == np.int32
        np.testing.assert_array_equal(f.semantics, cmap[g.semantics])
        # m2f ids come from one counter over all frames: same segments, other numbers
        imap = info["instance_maps"][f.name]
        expect = np.zeros_like(g.instances)
        for u, v in imap.items():
            expect[g.instances == u] = v
        np.testing.assert_array_equal(f.instances, expect)
        n_inst += len(imap)
        np.testing.assert_allclose(f.confidence, g.confidence, atol=1e-6)
        np.testing.assert_array_equal(f.gt_semantics, cmap[g.gt_semantics])
        np.testing.assert_array_equal(f.gt_instances, g.gt_instances)
        assert f.valid is None
        assert np.abs(f.rgb.astype(int) - g.rgb).mean() < 12  # JPEG
    assert n_inst > 0
    assert scene.has_ground_truth
    # m2f instance ids are unique over the whole sequence
    ids = [set(np.unique(f.instances)) - {0} for f in scene.frames]
    assert sum(len(s) for s in ids) == len(set().union(*ids))


def test_without_probabilities_or_ground_truth(tmp_path, source):
    root = tmp_path / "s"
    write_panoptic_lifting_sample(root, source, probabilities=False, ground_truth=False)
    scene = load(root)
    assert all(f.confidence is None and f.gt_semantics is None for f in scene.frames)
    assert not scene.has_ground_truth
    root2 = tmp_path / "s2"
    write_panoptic_lifting_sample(root2, source)
    assert not load(root2, DataConfig(load_ground_truth=False)).has_ground_truth


def test_ground_truth_needed_for_test_frames_only(sample):
    root, info = sample
    train_stem = info["train"][0]
    (root / "rs_semantics" / f"{train_stem}.png").unlink()
    scene = load(root)
    fr = by_name(scene)
    assert fr[train_stem].gt_semantics is None and fr[train_stem].gt_instances is None
    assert all(f.has_ground_truth for f in scene.test_frames)


def test_invalid_mask(sample):
    root, info = sample
    stem = info["stems"][1]
    f0 = by_name(load(root))[stem]
    mask = np.zeros((f0.height, f0.width), np.uint8)
    mask[:, :10] = 255
    (root / "invalid").mkdir()
    cv2.imwrite(str(root / "invalid" / f"{stem}.jpg"), mask)
    scene = load(root)
    for f in scene.frames:
        if f.name == stem:
            assert f.valid is not None and not f.valid[:, :9].any() and f.valid[:, 12:].all()
        else:
            assert f.valid is None


# ----------------------------------------------------------------------------- split


def test_split_from_splits_json(sample):
    root, info = sample
    scene = load(root)
    names = [f.name for f in scene.frames]
    assert names == sorted(info["stems"], key=int)
    assert [names[i] for i in scene.train_ids] == info["train"]
    assert [names[i] for i in scene.test_ids] == info["test"]
    assert info["test"] == ["0", "4", "8"]  # create_validation_set(fraction=0.25): every 4th frame
    meta = scene.meta["panoptic_lifting"]
    assert meta["test_split_key"] == "test" and meta["split_file"] == "splits.json"


def test_split_val_fallback_and_unlisted_frames(sample):
    root, _ = sample
    (root / "splits.json").write_text(json.dumps({"train": ["1", "2", 3], "val": ["9", "5"]}))
    scene = load(root)
    names = [f.name for f in scene.frames]
    assert names == ["1", "2", "3", "5", "9"]  # frames neither split names are not loaded
    assert [names[i] for i in scene.test_ids] == ["9", "5"]
    meta = scene.meta["panoptic_lifting"]
    assert meta["test_split_key"] == "val"
    assert meta["unused_frames"] == ["0", "4", "6", "7", "8"]


def test_no_split_file_holds_out_last_frames(sample):
    root, _ = sample
    (root / "splits.json").unlink()
    scene = load(root)
    assert scene.train_ids == list(range(8)) and scene.test_ids == [8, 9]  # test_fraction 0.2
    assert scene.meta["panoptic_lifting"]["test_split_key"] is None


# ----------------------------------------------------------------------------- classes


def test_class_table_reduced_scannet(sample):
    root, _ = sample
    scene = load(root)
    assert scene.classes.names == REDUCED_NAMES
    assert scene.classes.num_classes == 22
    assert scene.classes.thing_ids == REDUCED_FG == [4, 5, 6, 14, 15, 16, 17, 18, 20]
    meta = scene.meta["panoptic_lifting"]
    assert meta["class_ids"] == list(range(22))
    assert meta["faulty_classes"] == [0]
    assert meta["class_names"] == "scannet_reduced"
    with open(root / "segmentation_data.pkl", "rb") as fh:  # the sample is an ordinary pickle
        assert pickle.load(fh)["fg_classes"] == REDUCED_FG


def test_sparse_class_ids_become_dense(tmp_path, source, mr_raw):
    root = tmp_path / "s"
    write_panoptic_lifting_sample(root, source, class_map={0: 0, 1: 7}, fg_classes=[7], bg_classes=[0, 3])
    scene = load(root)
    assert scene.classes.names == ["void", "class_3", "class_7"]
    assert scene.classes.thing_ids == [2] and scene.classes.stuff_ids == [0, 1]
    meta = scene.meta["panoptic_lifting"]
    assert meta["class_ids"] == [0, 3, 7] and meta["faulty_classes"] == [0]
    ref = by_name(mr_raw)
    for f in scene.frames:
        np.testing.assert_array_equal(f.semantics, ref[f.name].semantics * 2)  # 1 -> id 7 -> dense 2
        np.testing.assert_array_equal(f.gt_semantics, ref[f.name].gt_semantics * 2)


def test_default_class_map_is_official_table(mr_raw):
    assert default_class_map(mr_raw.classes) == {0: 0, 1: 4}


# ----------------------------------------------------------------------------- resizing


def test_downscale(sample):
    root, _ = sample
    full, half = load(root), load(root, DataConfig(normalize=False, downscale=2))
    for f0, f1 in zip(full.frames, half.frames):
        assert (f1.width, f1.height) == (24, 24)
        assert np.allclose(f1.K[:2], f0.K[:2] / 2, atol=1e-5)
        assert np.allclose(f1.c2w, f0.c2w)
        np.testing.assert_array_equal(f1.semantics, resize_nearest(f0.semantics, 24, 24))
        np.testing.assert_array_equal(f1.instances, resize_nearest(f0.instances, 24, 24))
        np.testing.assert_array_equal(f1.gt_instances, resize_nearest(f0.gt_instances, 24, 24))
        assert f1.confidence.shape == (24, 24)
    capped = load(root, DataConfig(normalize=False, max_size=16))
    assert (capped.frames[0].width, capped.frames[0].height) == (16, 16)
    assert np.allclose(capped.frames[0].K[:2], full.frames[0].K[:2] / 3, atol=1e-5)


def test_labels_at_another_resolution_are_resized(sample):
    root, info = sample
    stem = info["stems"][0]
    p = root / "rs_semantics" / f"{stem}.png"
    big = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(p), np.repeat(np.repeat(big, 2, 0), 2, 1))  # 96x96 GT beside 48x48 colour
    f = by_name(load(root))[stem]
    np.testing.assert_array_equal(f.gt_semantics, big.astype(np.int32))


# ----------------------------------------------------------------------------- bad input


def _pickle(root, **changes):
    p = root / "segmentation_data.pkl"
    with open(p, "rb") as fh:
        d = pickle.load(fh)
    d.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del d[k]
    p.write_bytes(pickle.dumps(d))


def _write(path, text):
    path.write_text(text)


BAD_INPUTS = {
    "no color folder": (lambda r: shutil.rmtree(r / "color"), "color"),
    "no jpg frames": (lambda r: [p.rename(p.with_suffix(".png")) for p in (r / "color").iterdir()], "color"),
    "no m2f_semantics": (lambda r: shutil.rmtree(r / "m2f_semantics"), "m2f_semantics"),
    "missing m2f_instance file": (lambda r: (r / "m2f_instance" / "3.png").unlink(), "m2f_instance/3.png"),
    "missing probabilities file": (lambda r: (r / "m2f_probabilities" / "5.npz").unlink(), "m2f_probabilities/5.npz"),
    "probabilities without confidence": (
        lambda r: np.savez(r / "m2f_probabilities" / "2.npz", probability=np.zeros((48, 48, 22), np.float32)),
        "m2f_probabilities/2.npz",
    ),
    "missing pose file": (lambda r: (r / "pose" / "7.txt").unlink(), "pose/7.txt"),
    "pose with NaN": (lambda r: _write(r / "pose" / "2.txt", "1 0 0 nan\n0 1 0 0\n0 0 1 0\n0 0 0 1\n"), "pose/2.txt"),
    "pose with -inf (ScanNet)": (
        lambda r: _write(r / "pose" / "2.txt", "-inf -inf -inf -inf\n" * 4), "pose/2.txt"),
    "pose 3x4": (lambda r: _write(r / "pose" / "6.txt", "1 0 0 0\n0 1 0 0\n0 0 1 0\n"), "pose/6.txt"),
    "pose ragged": (lambda r: _write(r / "pose" / "6.txt", "1 0 0 0\n0 1 0\n0 0 1 0\n0 0 0 1\n"), "pose/6.txt"),
    "pose not numbers": (lambda r: _write(r / "pose" / "1.txt", "a b c d\n" * 4), "pose/1.txt"),
    "pose mirrored": (
        lambda r: _write(r / "pose" / "1.txt", "-1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n"), "pose/1.txt"),
    "no intrinsics": (lambda r: (r / "intrinsic" / "intrinsic_color.txt").unlink(), "intrinsic_color.txt"),
    "intrinsics zero focal": (
        lambda r: _write(r / "intrinsic" / "intrinsic_color.txt", "0 0 24 0\n0 0 24 0\n0 0 1 0\n0 0 0 1\n"),
        "intrinsic_color.txt",
    ),
    "splits not json": (lambda r: _write(r / "splits.json", "{train: 1"), "splits.json"),
    "splits without train": (lambda r: _write(r / "splits.json", '{"test": ["0"]}'), "splits.json"),
    "splits without test": (lambda r: _write(r / "splits.json", '{"train": ["0"]}'), "splits.json"),
    "splits unknown frame": (lambda r: _write(r / "splits.json", '{"train": ["0", "42"], "test": ["1"]}'), "splits.json"),
    "splits overlap": (lambda r: _write(r / "splits.json", '{"train": ["0", "1"], "test": ["1"]}'), "splits.json"),
    "splits not a list": (lambda r: _write(r / "splits.json", '{"train": "0", "test": ["1"]}'), "splits.json"),
    "no class table": (lambda r: (r / "segmentation_data.pkl").unlink(), "segmentation_data.pkl"),
    "class table not a pickle": (
        lambda r: (r / "segmentation_data.pkl").write_bytes(b"\x00garbage"), "segmentation_data.pkl"),
    "class table not a dict": (
        lambda r: (r / "segmentation_data.pkl").write_bytes(pickle.dumps([1, 2])), "segmentation_data.pkl"),
    "class table without fg_classes": (lambda r: _pickle(r, fg_classes=None), "segmentation_data.pkl"),
    "class table overlap": (lambda r: _pickle(r, bg_classes=[0, 1, 4]), "segmentation_data.pkl"),
    "class table bad id": (lambda r: _pickle(r, fg_classes=[4, "chair"]), "segmentation_data.pkl"),
    "class table wrong count": (lambda r: _pickle(r, num_semantic_classes=21), "segmentation_data.pkl"),
    "prediction outside the table": (
        lambda r: cv2.imwrite(str(r / "m2f_semantics" / "3.png"), np.full((48, 48), 40, np.uint16)),
        "m2f_semantics/3.png",
    ),
    "rgb label png": (
        lambda r: cv2.imwrite(str(r / "m2f_instance" / "3.png"), np.zeros((48, 48, 3), np.uint8)),
        "m2f_instance/3.png",
    ),
    "label of another aspect ratio": (
        lambda r: cv2.imwrite(str(r / "m2f_semantics" / "3.png"), np.zeros((48, 30), np.uint16)),
        "m2f_semantics/3.png",
    ),
    "gt missing for a test frame": (lambda r: (r / "rs_instance" / "4.png").unlink(), "rs_instance/4.png"),
    "colour image of another size": (
        lambda r: cv2.imwrite(str(r / "color" / "5.jpg"), np.zeros((40, 48, 3), np.uint8)), "color/5.jpg"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_file(case, sample):
    root, _ = sample
    breaker, where = BAD_INPUTS[case]
    breaker(root)
    with pytest.raises(DataError) as ei:
        load(root)
    msg = str(ei.value)
    assert "\n" not in msg
    assert ei.value.path is not None and ei.value.path.replace(os.sep, "/").endswith(where), (ei.value.path, msg)


def test_missing_scene_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "nope")


# ----------------------------------------------------------------------------- pickle safety


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_class_table_pickle_runs_no_code(sample, tmp_path):
    root, _ = sample
    marker = tmp_path / "pwned"
    _pickle(root, gt_bboxes={0: _Evil(marker)}, extra=[_Evil(marker)])
    scene = load(root)  # the class table itself is plain data
    assert scene.classes.num_classes == 22
    assert not marker.exists()
    (root / "segmentation_data.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(DataError, match="expected a pickled dict"):
        load(root)
    assert not marker.exists()


def test_safe_unpickle_keeps_numpy_and_drops_objects():
    from collections import OrderedDict

    d = {"a": np.arange(4, dtype=np.float32), "b": np.int64(3), "c": OrderedDict(x=1), "d": {1, 2}, "e": shutil.rmtree}
    for proto in (2, 4, 5):
        out = safe_unpickle(pickle.dumps(d, protocol=proto))
        np.testing.assert_array_equal(out["a"], d["a"])
        assert out["b"] == 3 and out["c"] == {"x": 1} and out["d"] == {1, 2}
        assert out["e"] is not shutil.rmtree and not callable(getattr(out["e"], "__name__", None))
