"""Large scenes (issue 20): 200 and 500 objects are all placed without overlap, in a room that
grows with them, deterministically; the visibility statistics the generator reports."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pcf_gs.errors import UserError
from pcf_gs.synth import SynthOptions, generate_scene
from pcf_gs.synth import generator as gen
from pcf_gs.synth import layout
from pcf_gs.synth.visibility import pixel_counts, scene_visibility, view_coverage, visibility_stats


def _overlapping_pairs(sc: layout.Scene) -> list[tuple[int, int]]:
    """Pairs (GT ids) whose bounding spheres meet and that the layout's own separating-plane test
    cannot separate."""
    c, r = sc.prims.center, sc.prims.radius
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    near = np.argwhere(np.triu(d < r[:, None] + r[None], 1))
    return [(int(a) + 1, int(b) + 1) for a, b in near if not layout._separated(sc.objects[a], sc.objects[b])]


@pytest.mark.parametrize("n", [200, 500])
def test_many_objects_all_placed_no_overlap_deterministic(n):
    opts = SynthOptions(objects=n, frames=4, width=16, height=16, seed=3)
    t = time.perf_counter()
    sc, _, c2w = gen.build(opts)
    assert time.perf_counter() - t < 10.0  # ~0.1 s (200) / 0.3 s (500) on one core
    assert [o.id for o in sc.objects] == list(range(1, n + 1))
    assert _overlapping_pairs(sc) == []
    # every object's exact extent (support functions) lies inside the room
    E = np.concatenate([np.eye(3), -np.eye(3)])
    ext = np.stack([o.support(E) for o in sc.objects])  # [n, 6]
    assert (sc.prims.center + ext[:, :3] <= sc.room.hi + 1e-9).all()
    assert (sc.prims.center - ext[:, 3:] >= sc.room.lo - 1e-9).all()
    # the object region grows with the count: about the same floor area per object at 25 and at n
    small, _, _ = gen.build(SynthOptions(objects=25, frames=1, width=8, height=8, seed=3))
    per_obj = lambda s: 4 * np.prod(s.room.region) / len(s.objects)  # noqa: E731
    assert 0.5 < per_obj(sc) / per_obj(small) < 2.0
    assert sc.placement_stats["fallback"] == 0 and sc.placement_stats["shrunk"] < 0.05 * n
    # same seed -> the same layout and cameras, bit for bit; another seed -> another one
    sc2, _, c2w2 = gen.build(opts)
    assert np.array_equal(sc.prims.center, sc2.prims.center) and np.array_equal(sc.prims.rotation, sc2.prims.rotation)
    assert np.array_equal(sc.prims.scale, sc2.prims.scale) and np.array_equal(c2w, c2w2)
    sc3, _, _ = gen.build(SynthOptions(objects=n, frames=4, width=16, height=16, seed=4))
    assert not np.array_equal(sc.prims.center, sc3.prims.center)


def test_500_object_scene_writes_and_reports_visibility(tmp_path):
    opts = SynthOptions(objects=500, frames=10, width=32, height=32, supersample=1, points=200, seed=1)
    s = generate_scene(tmp_path / "s", opts, progress=False)
    v = s["visibility"]
    assert v["objects"] == 500 and s["placement"]["fallback"] == 0
    inst = np.load(tmp_path / "s" / "instance" / "0.npy")
    assert inst.dtype == np.int16 and inst.max() <= 500
    pred = np.load(tmp_path / "s" / "detic_instance" / "0.npy")
    assert pred.dtype == np.int16 and len(np.unique(pred)) > 10  # many objects per view, distinct ids
    assert v["objects_per_view"] > 10 and v["seen_train_views_ge3"] > 0
    assert scene_visibility(tmp_path / "s") == v  # the same numbers from the written GT maps


def test_visibility_stats_by_hand():
    # 5 frames (4 training, 1 test), 3 objects: 1 in every frame (10 px), 2 in two training frames (4 px),
    # 3 only in the test frame
    maps = [np.array([[1] * 10 + [2] * 4]), np.array([[1] * 10 + [2] * 4]), np.array([[1] * 10 + [0] * 4]),
            np.array([[1] * 10 + [0] * 4]), np.array([[1] * 10 + [3] * 4])]
    c = pixel_counts(maps, 3)
    assert c.shape == (5, 4) and c[:, 1].tolist() == [10] * 5 and c[4, 3] == 4
    v = visibility_stats(c, test_fraction=0.2, min_views=3, small=5)
    assert v["seen_train_views_ge3"] == 1 and v["never_seen_train"] == 1
    assert v["in_test"] == 2 and v["in_test_seen_train_ge3"] == 1
    assert v["pixels_per_view"]["mean"] == 7.0 and v["train_views_per_object"]["p50"] == 2.0
    assert v["objects_per_view"] == 1.6
    assert v["best_view_pixels"]["p50"] == 4.0 and v["best_view_lt5"] == 2
    assert visibility_stats(c, small=5)["best_view_lt5"] == 2


def test_unplaceable_objects_are_a_user_error(monkeypatch):
    monkeypatch.setattr(layout, "_fits", lambda *a: False)
    with pytest.raises(UserError, match="could not place object 1 of 3"):
        gen.build(SynthOptions(objects=3, frames=1, width=8, height=8))


def test_view_coverage_by_hand():
    # a wall 2 m in front of the cameras; frame 0 trains, frame 1 tests
    K = np.array([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]])
    depth = np.full((2, 8, 8), 2.0)
    inst = np.zeros((2, 8, 8), np.int16)
    inst[1, :2] = 1
    same = np.stack([np.eye(4)] * 2)
    assert view_coverage(depth, K, same, 1, inst) == {"seen1": 1.0, "seen2": 0.0, "object_seen1": 1.0, "object_seen2": 0.0}
    back = same.copy()
    back[0, :3, :3] = np.diag([-1.0, 1.0, -1.0])  # the training camera looks the other way
    assert view_coverage(depth, K, back, 1)["seen1"] == 0.0
    far = same.copy()
    far[0, 2, 3] = -5.0  # 7 m from the wall against the test view's 2 m: under half the resolution
    depth_far = depth.copy()
    depth_far[0] = 7.0
    assert view_coverage(depth_far, K, far, 1)["seen1"] == 0.0
    assert view_coverage(depth_far, K, far, 1, max_ratio=4.0)["seen1"] > 0.0
