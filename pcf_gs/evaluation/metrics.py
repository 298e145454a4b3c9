"""Scene-level panoptic quality (PQ^scene), SQ, RQ and semantic mIoU.

PQ^scene (Panoptic Lifting's protocol, docs/conventions.md): all test pixels of all
test views are concatenated into one list of (class, instance) pairs and
panoptic quality is computed once, so a predicted instance is a true positive
only if it carries the same ID in every view.

- Classes that appear in neither prediction nor target are dropped, and so
  are classes covering < ``robust`` (0.5%) of the pixels in the prediction or
  in the target; their pixels become void.
- Stuff classes get instance 0; predicted classes outside things/stuff are void.
- A predicted segment matches a target segment of the same class when their
  IoU > 0.5, the union leaving out pixels that are void in the other map.
- Unmatched targets that are > 50% void in the prediction, and unmatched
  predictions that are > 50% void in the target, are not counted.
- PQ_c = sum IoU / (TP + FP/2 + FN/2), SQ_c = sum IoU / TP, RQ_c = TP / (TP + FP/2 + FN/2);
  PQ, SQ, RQ are means over the remaining classes. (The public evaluate
  scripts print SQ and RQ swapped; these are the definitions.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOID = -1


@dataclass
class PanopticResult:
    pq: float
    sq: float
    rq: float
    per_class: dict  # class id -> {"pq", "sq", "rq", "tp", "fp", "fn"}

    def as_percent(self) -> dict:
        return {"pq": 100 * self.pq, "sq": 100 * self.sq, "rq": 100 * self.rq}


def _robust_classes(sem: np.ndarray, classes: set[int], robust: float) -> set[int]:
    ids, cnt = np.unique(sem, return_counts=True)
    frac = dict(zip(ids.tolist(), (cnt / max(sem.size, 1)).tolist()))
    return {c for c in classes if frac.get(c, 0.0) >= robust}


def _segments(sem: np.ndarray, ins: np.ndarray, things: set[int], stuff: set[int]) -> np.ndarray:
    """Segment key per pixel: class * 2^32 + instance (stuff instance 0), or VOID."""
    sem = sem.astype(np.int64)
    ins = ins.astype(np.int64)
    is_thing = np.isin(sem, list(things))
    is_stuff = np.isin(sem, list(stuff))
    key = np.full(sem.shape, VOID, dtype=np.int64)
    key[is_thing] = sem[is_thing] * (1 << 32) + ins[is_thing]
    key[is_stuff] = sem[is_stuff] * (1 << 32)
    return key


def panoptic_quality(
    pred_sem: np.ndarray,
    pred_ins: np.ndarray,
    gt_sem: np.ndarray,
    gt_ins: np.ndarray,
    things: set[int],
    stuff: set[int],
    robust: float = 0.005,
) -> PanopticResult:
    """PQ/SQ/RQ over flat pixel lists (concatenate all test views first for PQ^scene).

    All inputs are integer arrays of the same shape (any shape; flattened).
    ``things``/``stuff`` are the evaluated class ids (leave out void classes).
    """
    pred_sem, pred_ins, gt_sem, gt_ins = (np.asarray(a).reshape(-1) for a in (pred_sem, pred_ins, gt_sem, gt_ins))
    if not (pred_sem.shape == pred_ins.shape == gt_sem.shape == gt_ins.shape):
        raise ValueError("prediction and target must have the same number of pixels")
    present = set(np.unique(pred_sem).tolist()) | set(np.unique(gt_sem).tolist())
    keep = (things | stuff) & present
    keep = _robust_classes(pred_sem, keep, robust) & _robust_classes(gt_sem, keep, robust)
    things, stuff = things & keep, stuff & keep
    p = _segments(pred_sem, pred_ins, things, stuff)
    g = _segments(gt_sem, gt_ins, things, stuff)

    p_ids, p_area = np.unique(p, return_counts=True)
    g_ids, g_area = np.unique(g, return_counts=True)
    p_area = dict(zip(p_ids.tolist(), p_area.tolist()))
    g_area = dict(zip(g_ids.tolist(), g_area.tolist()))
    pair, inter = np.unique(np.stack([p, g], 1), axis=0, return_counts=True)
    inter_d = {(int(a), int(b)): int(n) for (a, b), n in zip(pair, inter)}

    classes = sorted(things | stuff)
    stats = {c: {"iou": 0.0, "tp": 0, "fp": 0, "fn": 0} for c in classes}
    matched_p, matched_g = set(), set()
    for (pk, gk), n in inter_d.items():
        if pk == VOID or gk == VOID or (pk >> 32) != (gk >> 32):
            continue
        union = p_area[pk] - inter_d.get((pk, VOID), 0) + g_area[gk] - inter_d.get((VOID, gk), 0) - n
        iou = n / union
        if iou > 0.5:
            c = int(gk >> 32)
            stats[c]["iou"] += iou
            stats[c]["tp"] += 1
            matched_p.add(pk)
            matched_g.add(gk)
    for gk, area in g_area.items():
        if gk == VOID or gk in matched_g:
            continue
        if inter_d.get((VOID, gk), 0) / area > 0.5:
            continue
        stats[int(gk >> 32)]["fn"] += 1
    for pk, area in p_area.items():
        if pk == VOID or pk in matched_p:
            continue
        if inter_d.get((pk, VOID), 0) / area > 0.5:
            continue
        stats[int(pk >> 32)]["fp"] += 1

    per_class = {}
    for c, s in stats.items():
        den = s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"]
        per_class[c] = {
            "pq": s["iou"] / den if den > 0 else 0.0,
            "sq": s["iou"] / s["tp"] if s["tp"] > 0 else 0.0,
            "rq": s["tp"] / den if den > 0 else 0.0,
            "tp": s["tp"], "fp": s["fp"], "fn": s["fn"],
        }
    if not per_class:
        return PanopticResult(0.0, 0.0, 0.0, {})
    mean = lambda k: float(np.mean([v[k] for v in per_class.values()]))  # noqa: E731
    return PanopticResult(mean("pq"), mean("sq"), mean("rq"), per_class)


def mean_iou(pred_sem: np.ndarray, gt_sem: np.ndarray, num_classes: int, ignore: tuple[int, ...] = ()) -> float:
    """Semantic mIoU over classes present in the target (``ignore``d target pixels excluded)."""
    p = np.asarray(pred_sem).reshape(-1).astype(np.int64)
    g = np.asarray(gt_sem).reshape(-1).astype(np.int64)
    m = ~np.isin(g, list(ignore)) & (g >= 0) & (g < num_classes)
    p, g = np.clip(p[m], 0, num_classes - 1), g[m]
    cm = np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = [c for c in range(num_classes) if cm[c].sum() > 0 and c not in ignore]
    if not present:
        return 0.0
    return float(np.mean([inter[c] / union[c] for c in present]))
