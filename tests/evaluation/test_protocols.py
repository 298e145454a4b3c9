"""The official scoring rules per layout, on hand-built cases, and the scorer against an
independent brute-force re-implementation of the official formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_gs.evaluation.evaluate import score
from pcf_gs.evaluation.metrics import Protocol, panoptic_quality

MOS = Protocol("messy_rooms", frozenset({1}), frozenset({0}))
COCO = Protocol("coco", frozenset({2}), frozenset({1}), robust=0.0, coco=True, void=(0,))
PL = Protocol("panoptic_lifting", frozenset({2}), frozenset({0, 1}), faulty=(0,))


def run(proto, ps, pi, gs, gi, k=3):
    return score(*(np.array(a) for a in (ps, pi, gs, gi)), proto, k)


def test_messy_rooms_object_predicted_as_background_is_a_miss():
    # views concatenated: background x6, object A x2 (predicted entirely as background), object B x2
    gs = [0] * 6 + [1, 1, 1, 1]
    gi = [0] * 6 + [1, 1, 2, 2]
    ps = [0] * 8 + [1, 1]
    pi = [0] * 8 + [9, 9]
    r = run(MOS, ps, pi, gs, gi, k=2)
    # background: IoU 6/8 -> PQ 0.75; objects: B TP (IoU 1), A FN -> PQ 1 / 1.5
    assert r["per_class"]["0"]["pq"] == pytest.approx(0.75)
    assert r["per_class"]["1"] == pytest.approx({"pq": 2 / 3, "sq": 1.0, "rq": 2 / 3, "tp": 1, "fp": 0, "fn": 1})
    assert r["pq"] == pytest.approx(100 * (0.75 + 2 / 3) / 2)
    assert r["pq_things"] == pytest.approx(100 * 2 / 3)
    # the old rule (background as void) did not count A at all and scored objects only
    old = panoptic_quality(*(np.array(a) for a in (ps, pi, gs, gi)), things={1}, stuff=set())
    assert old.per_class[1]["fn"] == 0 and old.pq == pytest.approx(1.0)


def test_messy_rooms_scores_both_classes_and_every_pixel():
    gs = [0, 0, 0, 0, 1, 1, 1, 1]
    gi = [0, 0, 0, 0, 3, 3, 4, 4]
    r = run(MOS, gs, [0, 0, 0, 0, 5, 5, 6, 6], gs, gi, k=2)
    assert r["pq"] == pytest.approx(100) and r["miou"] == pytest.approx(100)
    assert set(r["per_class"]) == {"0", "1"} and r["protocol"] == "messy_rooms"


def test_panoptic_lifting_deletes_faulty_pixels_from_both_maps():
    # class 0 faulty; 1 wall (stuff); 2 chair (thing)
    gs = [0, 0, 1, 1, 1, 2, 2, 2]
    gi = [0, 0, 0, 0, 0, 5, 5, 5]
    ps = [2, 2, 1, 1, 1, 2, 2, 2]
    pi = [7, 7, 0, 0, 0, 7, 7, 7]
    r = run(PL, ps, pi, gs, gi)
    # the chair prediction's 2 pixels on faulty ground truth are gone: chair IoU 1, wall IoU 1
    assert r["pq"] == pytest.approx(100)
    kept = slice(2, None)
    same = run(Protocol("x", PL.things, PL.stuff), ps[kept], pi[kept], gs[kept], gi[kept])
    assert r["pq"] == same["pq"] and r["miou"] == same["miou"]
    # without the deletion (and no size filter to void class 0) the chair prediction covers 5 pixels
    # for 3 of ground truth: IoU 3/5
    nofaulty = run(Protocol("x", PL.things, PL.stuff, robust=0.0), ps, pi, gs, gi)
    assert nofaulty["per_class"]["2"]["sq"] == pytest.approx(0.6)


def test_panoptic_lifting_prediction_of_the_faulty_class_is_void():
    """After the deletion the target has no class 0, so the 0.5% filter drops class 0 and predicted
    class-0 pixels become void: the official scorer neither rewards nor punishes them."""
    gs = np.r_[np.ones(200, int), np.full(200, 2)]  # wall 200, chair 200
    gi = np.r_[np.zeros(200, int), np.full(200, 5)]
    ps = gs.copy()
    ps[:100] = 0  # half the wall predicted as class 0
    r = run(PL, ps, gi, gs, gi)
    assert "0" not in r["per_class"] and r["per_class"]["1"]["pq"] == pytest.approx(1.0)


def test_coco_every_unmatched_object_is_a_miss_and_void_is_not_scored():
    # class 0 unlabelled (void), 1 stuff, 2 thing
    gs = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    gi = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    # object 1 left unlabelled by the prediction; a predicted object lies mostly on void
    ps = [2, 2, 2, 0, 1, 1, 0, 0, 2, 2]
    pi = [8, 8, 8, 0, 0, 0, 0, 0, 9, 9]
    r = run(COCO, ps, pi, gs, gi)
    thing = r["per_class"]["2"]
    assert (thing["tp"], thing["fp"], thing["fn"]) == (1, 0, 1)  # 8 is on void: not an FP; 1 is a miss
    assert r["per_class"]["1"]["pq"] == pytest.approx(1.0)
    assert r["pq"] == pytest.approx(100 * (1.0 + 1 / 1.5) / 2)
    # Panoptic Lifting's rule would not count object 1 (it is > 50% void in the prediction)
    pl_like = panoptic_quality(*(np.array(a) for a in (ps, pi, gs, gi)), things={2}, stuff={1}, robust=0.0)
    assert pl_like.per_class[2]["fn"] == 0


def test_coco_has_no_size_filter_and_averages_over_occurring_classes():
    gs = [1] * 999 + [2]
    gi = [0] * 999 + [4]
    r = run(COCO, gs, gi, gs, gi)
    assert set(r["per_class"]) == {"1", "2"} and r["pq"] == pytest.approx(100)
    r = run(Protocol("coco", frozenset({2, 3}), frozenset({1}), robust=0.0, coco=True, void=(0,)), gs, gi, gs, gi, k=4)
    assert "3" not in r["per_class"]  # class 3 occurs nowhere: not in the mean


def test_protocol_follows_the_layout():
    from types import SimpleNamespace

    from pcf_gs.data.scene import ClassInfo, ClassTable

    table = ClassTable([ClassInfo(0, "unlabeled", False), ClassInfo(1, "wall", False), ClassInfo(2, "chair", True)])
    sc = lambda fmt, meta=None: SimpleNamespace(format=fmt, classes=table, meta=meta or {})  # noqa: E731
    assert Protocol.for_scene(sc("colmap")).coco and Protocol.for_scene(sc("nerfstudio")).stuff == {1}
    p = Protocol.for_scene(sc("panoptic_lifting", {"panoptic_lifting": {"faulty_classes": [0]}}))
    assert p.faulty == (0,) and p.stuff == {0, 1}
    m = Protocol.for_scene(SimpleNamespace(format="messy_rooms", classes=ClassTable.messy_rooms(), meta={}))
    assert (m.things, m.stuff, m.faulty) == ({1}, {0}, ())


# ------------------------------------------------------------- an independent re-implementation


def brute_force_pq(ps, pi, gs, gi, things, stuff, robust=0.005):
    """The official formula written out segment by segment with boolean masks (no shared code)."""
    ps, pi, gs, gi = (np.asarray(a).ravel() for a in (ps, pi, gs, gi))
    n = len(ps)
    classes = [c for c in sorted(things | stuff)
               if (ps == c).sum() >= robust * n and (gs == c).sum() >= robust * n and ((ps == c).any() or (gs == c).any())]
    pv = ~np.isin(ps, classes)  # void in the prediction
    gv = ~np.isin(gs, classes)
    out = {}
    for c in classes:
        pin = np.where(ps == c, pi if c in things else 0, -1)
        gin = np.where(gs == c, gi if c in things else 0, -1)
        P = [pin == i for i in np.unique(pin[pin >= 0])]
        G = [gin == i for i in np.unique(gin[gin >= 0])]
        tp, iou_sum, mp, mg = 0, 0.0, set(), set()
        for a, p in enumerate(P):
            for b, g in enumerate(G):
                inter = (p & g).sum()
                union = p.sum() - (p & gv).sum() + g.sum() - (pv & g).sum() - inter
                if inter and inter / union > 0.5:
                    tp, iou_sum = tp + 1, iou_sum + inter / union
                    mp.add(a); mg.add(b)
        fp = sum(1 for a, p in enumerate(P) if a not in mp and (p & gv).sum() / p.sum() <= 0.5)
        fn = sum(1 for b, g in enumerate(G) if b not in mg and (pv & g).sum() / g.sum() <= 0.5)
        den = tp + fp / 2 + fn / 2
        out[c] = (iou_sum / den if den else 0.0, iou_sum / tp if tp else 0.0, tp / den if den else 0.0)
    return out


def test_raw_2d_input_scores_what_the_written_out_formula_gives():
    """Two 3x4 views of a room with two objects; the 2D model's ids differ between views."""
    gt_sem = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0],
                       [0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0]]).ravel()
    gt_ins = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 0],
                       [0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 0]]).ravel()
    # view 1: ids 5 (object 1) and 6 (object 2); view 2: ids 6 (object 1) and 7 (object 2),
    # and the 2D model missed one pixel of object 1 in view 2
    pr_sem = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0],
                       [0, 0, 1, 1], [0, 0, 0, 1], [0, 1, 1, 0]]).ravel()
    pr_ins = np.array([[0, 0, 5, 5], [0, 0, 5, 5], [0, 6, 6, 0],
                       [0, 0, 6, 6], [0, 0, 0, 6], [0, 7, 7, 0]]).ravel()
    r = score(pr_sem, pr_ins, gt_sem, gt_ins, MOS, 2)
    # background: GT 12 px, predicted 13 px, overlap 12 -> IoU 12/13, one TP
    # objects: GT 1 has 8 px, GT 2 has 4 px. Predicted 5 (4 px, inside GT 1): IoU 4/8 = 0.5, not > 0.5;
    # predicted 6 (2 px of GT 2 + 3 px of GT 1): IoU with GT 1 = 3/10, with GT 2 = 2/7; predicted 7
    # (2 px of GT 2): IoU 2/4 = 0.5. No match: TP 0, FP 3, FN 2 -> PQ 0
    assert r["per_class"]["0"]["pq"] == pytest.approx(12 / 13)
    assert r["per_class"]["1"]["tp"] == 0 and r["per_class"]["1"]["fp"] == 3 and r["per_class"]["1"]["fn"] == 2
    assert r["pq"] == pytest.approx(100 * (12 / 13) / 2)
    bf = brute_force_pq(pr_sem, pr_ins, gt_sem, gt_ins, {1}, {0})
    assert r["per_class"]["0"]["pq"] == pytest.approx(bf[0][0]) and r["per_class"]["1"]["pq"] == bf[1][0]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.floats(0.0, 0.6), st.sampled_from([0.0, 0.005, 0.05]))
def test_scorer_equals_brute_force(seed, noise, robust):
    rng = np.random.default_rng(seed)
    n = 300
    gi = rng.integers(0, 5, n)
    gs = np.where(gi > 0, rng.integers(1, 3, n), rng.integers(0, 2, n))  # 0, 1 stuff-ish; 1, 2 things
    pi = np.where(rng.random(n) < noise, rng.integers(0, 6, n), gi)
    ps = np.where(rng.random(n) < noise, rng.integers(0, 4, n), gs)  # class 3 is void
    things, stuff = {1, 2}, {0}
    r = panoptic_quality(ps, pi, gs, gi, things, stuff, robust=robust)
    bf = brute_force_pq(ps, pi, gs, gi, things, stuff, robust=robust)
    assert set(r.per_class) == set(bf)
    for c, (q, s_, rq) in bf.items():
        assert r.per_class[c]["pq"] == pytest.approx(q) and r.per_class[c]["sq"] == pytest.approx(s_)
        assert r.per_class[c]["rq"] == pytest.approx(rq)
