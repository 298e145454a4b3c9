"""PQ^scene on hand-built label cases with known answers; invariance to ID renaming."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_gs.evaluation.metrics import mean_iou, panoptic_quality

THINGS, STUFF = {1}, {0}


def pq(ps, pi, gs, gi, things=THINGS, stuff=STUFF):
    return panoptic_quality(np.array(ps), np.array(pi), np.array(gs), np.array(gi), things, stuff)


def test_perfect_prediction():
    gs = [0, 0, 1, 1, 1, 1]
    gi = [0, 0, 1, 1, 2, 2]
    r = pq(gs, [0, 0, 7, 7, 9, 9], gs, gi)
    assert r.pq == 1.0 and r.sq == 1.0 and r.rq == 1.0


def test_known_partial_case():
    # target: stuff x4, thing A x4, thing B x2. prediction: stuff x4, A x3 (+1 px as C), B x2
    gs = [0] * 4 + [1] * 6
    gi = [0] * 4 + [1] * 4 + [2] * 2
    ps = [0] * 4 + [1] * 6
    pi = [0] * 4 + [5, 5, 5, 6, 8, 8]
    r = pq(ps, pi, gs, gi)
    # thing class: A matched IoU 3/4, B matched IoU 1, C (1 px) false positive -> PQ = 1.75 / (2 + 0.5)
    assert np.isclose(r.per_class[1]["pq"], 1.75 / 2.5)
    assert np.isclose(r.per_class[1]["sq"], 1.75 / 2)
    assert np.isclose(r.per_class[1]["rq"], 2 / 2.5)
    assert r.per_class[0]["pq"] == 1.0
    assert np.isclose(r.pq, (1.75 / 2.5 + 1) / 2)


def test_id_must_be_consistent_across_views():
    # two views of the same object with different IDs -> concatenated, both halves are IoU 0.5 -> no match
    gs = [1] * 4 + [0] * 4
    gi = [1] * 4 + [0] * 4
    r = pq(gs, [3, 3, 4, 4] + [0] * 4, gs, gi)
    assert r.per_class[1]["tp"] == 0 and r.per_class[1]["fn"] == 1 and r.per_class[1]["fp"] == 2


def test_small_classes_are_dropped():
    gs = [0] * 999 + [1]
    gi = [0] * 999 + [1]
    r = pq([0] * 1000, [0] * 1000, gs, gi)  # class 1 is 0.1% of target pixels
    assert set(r.per_class) == {0}


def test_void_target_pixels_do_not_count():
    # class 2 is not evaluated (void). prediction covers the object plus void pixels: IoU stays 1
    gs = [1, 1, 2, 2]
    gi = [1, 1, 0, 0]
    r = pq([1, 1, 1, 1], [4, 4, 4, 4], gs, gi, things={1}, stuff=set())
    assert r.per_class[1]["tp"] == 1 and np.isclose(r.per_class[1]["sq"], 1.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**6), st.permutations(list(range(1, 6))))
def test_invariant_to_renaming_predicted_ids(seed, perm):
    rng = np.random.default_rng(seed)
    gi = rng.integers(0, 6, 500)
    gs = (gi > 0).astype(int)
    pi = np.where(rng.random(500) < 0.2, rng.integers(0, 6, 500), gi)
    ps = (pi > 0).astype(int)
    a = pq(ps, pi, gs, gi)
    mapping = np.array([0] + list(perm)) * 13 + np.array([0] + [1] * 5)
    b = pq(ps, mapping[pi], gs, gi)
    assert np.isclose(a.pq, b.pq) and np.isclose(a.sq, b.sq) and np.isclose(a.rq, b.rq)


def test_mean_iou():
    assert mean_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == (0.5 + 2 / 3) / 2
    assert mean_iou(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2, ignore=(0,)) == 2 / 3
