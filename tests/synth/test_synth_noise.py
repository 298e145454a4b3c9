"""Unit tests of the 2D prediction noise models on tiny hand-made label maps."""

from __future__ import annotations

import numpy as np
import pytest

from pcf_gs.synth import noise


def two_squares(touching: bool = True):
    """12x12 map: id 3 at cols 1..4, id 8 at cols 5..8 (touching) or 7..10 (apart)."""
    inst = np.zeros((12, 12), np.int64)
    inst[2:8, 1:5] = 3
    if touching:
        inst[2:8, 5:9] = 8
    else:
        inst[2:8, 7:11] = 8
    sem = (inst > 0).astype(np.uint8)
    return sem, inst


def many_instances(n: int = 400, size: int = 3):
    """n instances as a grid of size x size blocks separated by background."""
    side = int(np.ceil(np.sqrt(n)))
    inst = np.zeros((side * (size + 1), side * (size + 1)), np.int64)
    k = 0
    for r in range(side):
        for c in range(side):
            if k == n:
                break
            k += 1
            inst[r * (size + 1) : r * (size + 1) + size, c * (size + 1) : c * (size + 1) + size] = k
    return (inst > 0).astype(np.uint8), inst


def test_permute_ids_distinct_nonzero_and_bijective():
    _, inst = many_instances(50)
    out, mapping = noise.permute_ids(inst, np.random.default_rng(0))
    assert out.dtype == np.int16
    assert (out[inst == 0] == 0).all()
    new = np.array(list(mapping.values()))
    assert len(set(new.tolist())) == 50 and (new > 0).all() and (new <= 32767).all()
    for old, n in mapping.items():
        assert (out[inst == old] == n).all()
    assert (out[inst != 0] != 0).all()
    out2, m2 = noise.permute_ids(inst, np.random.default_rng(1))
    assert m2 != mapping
    with pytest.raises(ValueError):
        noise.permute_ids(inst, np.random.default_rng(0), id_range=(0, 100))


@pytest.mark.parametrize("p", [0.0, 0.2, 0.5])
def test_drop_rate_matches_probability(p):
    sem, inst = many_instances(400)
    total = 0
    for s in range(10):
        s2, i2, dropped = noise.drop_instances(sem, inst, p, np.random.default_rng(s))
        total += len(dropped)
        m = np.isin(inst, dropped)
        assert (s2[m] == 0).all() and (i2[m] == 0).all()
        assert (i2[~m] == inst[~m]).all() and (s2[~m] == sem[~m]).all()
    rate = total / 4000
    assert abs(rate - p) < 0.03  # binomial sd <= 0.008
    assert inst.max() == 400  # input untouched


def test_split_creates_exactly_one_extra_id():
    sem, inst = two_squares(touching=False)
    for seed in range(20):
        out, splits = noise.split_instances(inst, 1.0, np.random.default_rng(seed), min_pixels=4)
        assert len(splits) == 2
        ids = set(np.unique(out).tolist()) - {0}
        assert len(ids) == 4
        for old, new in splits:
            assert new not in (3, 8)
            union = (out == old) | (out == new)
            assert (union == (inst == old)).all()
            assert (out == old).any() and (out == new).any()
    one = np.zeros((6, 6), np.int64)
    one[1:5, 1:5] = 5
    out, splits = noise.split_instances(one, 1.0, np.random.default_rng(0), min_pixels=4)
    assert len(np.unique(out)) == 3 and len(splits) == 1
    out0, s0 = noise.split_instances(one, 0.0, np.random.default_rng(0))
    assert (out0 == one).all() and s0 == []
    small, s1 = noise.split_instances(one, 1.0, np.random.default_rng(0), min_pixels=100)
    assert (small == one).all() and s1 == []


def test_split_cut_is_a_line_through_centroid():
    one = np.zeros((21, 21), np.int64)
    one[0:21, 0:21] = 1
    out, ((old, new),) = noise.split_instances(one, 1.0, np.random.default_rng(3))
    a = (out == new).sum()
    assert abs(a - 441 / 2) < 25  # a line through the centre of a square halves it


def test_merge_touching_pair():
    sem, inst = two_squares(touching=True)
    assert noise.touching_pairs(inst) == [(3, 8)]
    s2, i2, merged = noise.merge_instances(sem, inst, 1.0, np.random.default_rng(0))
    assert len(merged) == 1
    ids = set(np.unique(i2).tolist()) - {0}
    assert len(ids) == 1
    assert ((i2 != 0) == (inst != 0)).all()
    # apart: nothing to merge
    sem, inst = two_squares(touching=False)
    assert noise.touching_pairs(inst) == []
    _, i3, m3 = noise.merge_instances(sem, inst, 1.0, np.random.default_rng(0))
    assert m3 == [] and (i3 == inst).all()


def test_merge_keeps_larger_class_and_merges_each_id_once():
    inst = np.zeros((4, 12), np.int64)
    inst[:, 0:4] = 1
    inst[:, 4:6] = 2
    inst[:, 6:12] = 3  # chain 1-2-3
    sem = np.array([0, 1, 2, 3])[inst].astype(np.uint8)
    s2, i2, merged = noise.merge_instances(sem, inst, 1.0, np.random.default_rng(0))
    assert len(merged) == 1  # 2 can be merged with 1 or 3, not both
    keep, gone = merged[0]
    assert (inst == keep).sum() >= (inst == gone).sum()
    assert (s2[inst == gone] == sem[inst == keep][0]).all()


def test_boundary_window_copies_one_pixel_label():
    sem, inst = two_squares(touching=True)
    sem = sem.copy()
    sem[inst == 8] = 2
    for seed in range(30):
        s2, i2, changed = noise.boundary_noise(sem, inst, 1, 5, np.random.default_rng(seed))
        diff = (s2 != sem) | (i2 != inst)
        assert (diff == changed).all()
        if not diff.any():
            continue
        ys, xs = np.nonzero(diff)
        # changed pixels fit in one 5x5 window, which is uniform and holds a label found inside it
        assert ys.max() - ys.min() < 5 and xs.max() - xs.min() < 5
        y0, x0 = max(ys.max() - 4, 0), max(xs.max() - 4, 0)
        labels = {(int(a), int(b)) for a, b in zip(s2[diff], i2[diff])}
        assert len(labels) == 1
        lab = labels.pop()
        win = slice(max(ys.min() - 4, 0), ys.max() + 5), slice(max(xs.min() - 4, 0), xs.max() + 5)
        assert lab in set(zip(sem[win].ravel().tolist(), inst[win].ravel().tolist()))
        assert y0 >= 0 and x0 >= 0


def test_boundary_anchor_window_is_uniform():
    rng = np.random.default_rng(0)
    sem = rng.integers(0, 3, (16, 16)).astype(np.uint8)
    inst = rng.integers(0, 5, (16, 16))
    s2, i2, _ = noise.boundary_noise(sem, inst, 1, 3, np.random.default_rng(5))
    # exactly one 3x3 window (maybe clipped) must be uniform with a label from inside it
    found = False
    for y in range(-1, 15):
        for x in range(-1, 15):
            ys, xs = slice(max(y, 0), y + 3), slice(max(x, 0), x + 3)
            outside = np.ones((16, 16), bool)
            outside[ys, xs] = False
            if (s2[outside] == sem[outside]).all() and (i2[outside] == inst[outside]).all():
                if len(np.unique(s2[ys, xs])) == 1 and len(np.unique(i2[ys, xs])) == 1:
                    pairs = set(zip(sem[ys, xs].ravel().tolist(), inst[ys, xs].ravel().tolist()))
                    found |= (int(s2[ys, xs].flat[0]), int(i2[ys, xs].flat[0])) in pairs
    assert found


def test_boundary_w1_changes_nothing_and_anchors_on_edges():
    sem, inst = two_squares()
    s2, i2, ch = noise.boundary_noise(sem, inst, 100, 1, np.random.default_rng(0))
    assert (s2 == sem).all() and (i2 == inst).all() and not ch.any()
    b = noise.boundary_pixels(sem, inst)
    assert b[2, 4] and b[2, 5] and b[1, 1] and not b[5, 2] and not b[11, 11]
    # with big windows the changes stay within W//2 of a boundary pixel
    s3, i3, ch3 = noise.boundary_noise(sem, inst, 50, 3, np.random.default_rng(1))
    from scipy.ndimage import binary_dilation

    near = binary_dilation(b, iterations=2, structure=np.ones((3, 3)))
    assert not (ch3 & ~near).any()


def test_flip_classes():
    sem, inst = many_instances(30)
    sem = sem.astype(np.uint8)
    s2, flipped = noise.flip_classes(sem, inst, 1.0, 3, np.random.default_rng(0))
    assert len(flipped) == 30
    assert ((s2[inst > 0] >= 1) & (s2[inst > 0] <= 3)).all()
    assert (s2[inst > 0] != sem[inst > 0]).all()
    assert (s2[inst == 0] == 0).all()
    s1, f1 = noise.flip_classes(sem, inst, 1.0, 1, np.random.default_rng(0))
    assert f1 == [] and (s1 == sem).all()


def test_confidences_background_one_and_penalties():
    sem, inst = two_squares(touching=False)
    c = noise.confidences(sem, inst, np.random.default_rng(0), penalised={3: 0.5}, edge_falloff=0.0)
    assert c.dtype == np.float32 and (c >= 0).all() and (c <= 1).all()
    assert (c[inst == 0] == 1).all()
    assert c[inst == 3].max() < 0.5 and c[inst == 8].min() >= 0.55
    c2 = noise.confidences(sem, inst, np.random.default_rng(0))
    assert c2[2, 1] < c2[4, 2]  # edge pixel below interior pixel


def test_simulate_prediction_deterministic_and_shapes():
    sem, inst = many_instances(40, size=6)
    a = noise.simulate_prediction(sem, inst, np.random.default_rng(7), miss_rate=0.2, split_rate=0.3, merge_rate=0.3)
    b = noise.simulate_prediction(sem, inst, np.random.default_rng(7), miss_rate=0.2, split_rate=0.3, merge_rate=0.3)
    c = noise.simulate_prediction(sem, inst, np.random.default_rng(8), miss_rate=0.2, split_rate=0.3, merge_rate=0.3)
    for k in ("semantic", "instance", "confidence"):
        assert np.array_equal(a[k], b[k])
        assert a[k].shape == sem.shape
    assert not np.array_equal(a["instance"], c["instance"])
    assert a["semantic"].dtype == np.uint8 and a["instance"].dtype == np.int16
    assert ((a["instance"] != 0) == (a["semantic"] != 0)).all()
    assert (a["confidence"][a["instance"] == 0] == 1).all()


def test_paper_boundary_model_copies_instances_only_at_area_scaled_anchors():
    """PCF-Lift's setting: 100 anchors per 512² image (6 at 128²), random pixels, instance ids only."""
    assert noise.paper_anchor_count(100, 512, 512) == 100
    assert noise.paper_anchor_count(100, 128, 128) == 6
    assert noise.paper_anchor_count(100, 256, 256) == 25
    sem, inst = two_squares()
    sem = sem * 2  # a second semantic value, to see that it is left alone
    rng = np.random.default_rng(0)
    s, i, changed = noise.boundary_noise(sem, inst, 50, 5, rng, on_edges=False, copy_semantics=False)
    assert (s == sem).all() and changed.any() and (changed == (i != inst)).all()


def test_paper_noise_covers_a_few_percent_of_the_image_at_w9():
    rng = np.random.default_rng(1)
    inst = np.repeat(np.repeat(np.arange(64).reshape(8, 8) + 1, 64, 0), 64, 1)  # 512², 64 blocks
    sem = np.ones_like(inst, dtype=np.uint8)
    cover = []
    for model in ("paper", "stress"):
        small = inst[::4, ::4]  # the same content at 128²
        p = noise.simulate_prediction(sem[::4, ::4], small, rng, miss_rate=0, merge_rate=0, split_rate=0,
                                      boundary_window=9, boundary_model=model)
        cover.append(p["stats"]["boundary_changed_pixels"] / small.size)
        assert (p["semantic"] == 1).all()
    assert cover[0] < 0.03 < cover[1]  # paper: ~6 windows of 81 px at most; stress: a large share
    with pytest.raises(ValueError, match="boundary_model"):
        noise.simulate_prediction(sem[:8, :8], inst[:8, :8], rng, boundary_model="nope")
