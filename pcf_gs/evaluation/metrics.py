"""Scene-level panoptic quality (PQ^scene), SQ, RQ and semantic mIoU, under each official protocol.

PQ^scene (Panoptic Lifting's protocol, docs/official_scorers.md): all pixels of all test
views are concatenated into one list of (class, instance) pairs and panoptic quality is
computed once, so a predicted instance is a true positive only if it carries the same ID in
every view.

Rules shared by every protocol:

- Stuff classes get instance 0; classes outside ``things`` and ``stuff`` are void (VOID key).
- A predicted segment matches a target segment of the same class when their IoU > 0.5, the
  union leaving out pixels that are void in the other map:
  ``|P| - |P ∩ G_void| + |G| - |P_void ∩ G| - |P ∩ G|``.
- Unmatched predictions that are > 50% void in the target are not counted.
- PQ_c = sum IoU / (TP + FP/2 + FN/2), SQ_c = sum IoU / TP, RQ_c = TP / (TP + FP/2 + FN/2).
  (The public Panoptic Lifting / Contrastive Lift scripts print SQ and RQ swapped; these are
  the definitions.)

Per protocol (:class:`Protocol`):

- ``messy_rooms`` (Contrastive Lift's ``--MOS`` scorer): class 0 (background) is a scored stuff
  class and class 1 the thing class; every pixel is valid; PQ^scene is the mean over both.
- ``panoptic_lifting`` (ScanNet / Replica / Hypersim): pixels whose target class is faulty (0)
  are deleted from both maps; class 0 stays a stuff class, so predicting it elsewhere is a
  false positive.
- Both: classes under ``robust`` (0.5%) of the pixels of the prediction or of the target are
  dropped (their pixels become void in both maps); an unmatched target segment that is > 50%
  void in the prediction is not counted; the mean is over the remaining classes.
- ``coco`` (panopticapi, for COLMAP / nerfstudio ground truth): class 0 (unlabelled) is void;
  no size filter; every unmatched target segment is a miss; the mean is over classes with
  TP + FP + FN > 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VOID = -1


@dataclass(frozen=True)
class Protocol:
    """The rules of one official scorer (see the module docstring)."""

    name: str  # "messy_rooms", "panoptic_lifting" or "coco"
    things: frozenset[int]
    stuff: frozenset[int]  # scored stuff classes; classes in neither set are void
    faulty: tuple[int, ...] = ()  # target classes whose pixels are deleted from both maps
    robust: float = 0.005  # size filter (fraction of pixels); 0 = none
    coco: bool = False  # COCO's miss rule and class mean
    void: tuple[int, ...] = field(default=())  # classes that are void (documentation; not in things/stuff)

    @classmethod
    def for_scene(cls, scene) -> "Protocol":
        """The protocol of a loaded scene's layout."""
        things, stuff = frozenset(scene.classes.thing_ids), frozenset(scene.classes.stuff_ids)
        if scene.format == "panoptic_lifting":
            faulty = tuple(scene.meta.get("panoptic_lifting", {}).get("faulty_classes", [0]))
            return cls("panoptic_lifting", things, stuff, faulty=faulty)
        if scene.format in ("colmap", "nerfstudio"):
            return cls("coco", things - {0}, stuff - {0}, robust=0.0, coco=True, void=(0,))
        return cls("messy_rooms", things, stuff)


@dataclass
class PanopticResult:
    pq: float
    sq: float
    rq: float
    per_class: dict  # class id -> {"pq", "sq", "rq", "tp", "fp", "fn"}

    def things_only(self, things) -> float:
        """Mean PQ over the scored thing classes (0 if none): the instance half of PQ^scene."""
        v = [r["pq"] for c, r in self.per_class.items() if c in set(things)]
        return float(np.mean(v)) if v else 0.0

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
    faulty: tuple[int, ...] = (),
    coco: bool = False,
) -> PanopticResult:
    """PQ/SQ/RQ over flat pixel lists (concatenate all test views first for PQ^scene).

    All inputs are integer arrays of the same shape (any shape; flattened).
    ``things``/``stuff`` are the evaluated class ids (classes in neither are void);
    ``faulty`` target classes are deleted from both maps; ``coco`` selects COCO's miss rule
    and class mean (module docstring).
    """
    pred_sem, pred_ins, gt_sem, gt_ins = (np.asarray(a).reshape(-1) for a in (pred_sem, pred_ins, gt_sem, gt_ins))
    if not (pred_sem.shape == pred_ins.shape == gt_sem.shape == gt_ins.shape):
        raise ValueError("prediction and target must have the same number of pixels")
    if faulty:
        keep_px = ~np.isin(gt_sem, list(faulty))
        pred_sem, pred_ins, gt_sem, gt_ins = (a[keep_px] for a in (pred_sem, pred_ins, gt_sem, gt_ins))
    things, stuff = set(things), set(stuff)
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
        if not coco and inter_d.get((VOID, gk), 0) / area > 0.5:
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
        if coco and s["tp"] + s["fp"] + s["fn"] == 0:
            continue  # panopticapi averages over categories that occur
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


def mean_iou(
    pred_sem: np.ndarray, gt_sem: np.ndarray, num_classes: int, ignore: tuple[int, ...] = (),
    faulty: tuple[int, ...] = (), robust: float = 0.0,
) -> float:
    """Semantic mIoU over classes present in the target.

    ``ignore``: target classes not scored (their pixels excluded); ``faulty``: target classes
    deleted from both maps first (Panoptic Lifting); ``robust``: a class under this fraction of
    the pixels in both maps is dropped (the official scripts' mIoU filter).
    """
    p = np.asarray(pred_sem).reshape(-1).astype(np.int64)
    g = np.asarray(gt_sem).reshape(-1).astype(np.int64)
    m = ~np.isin(g, list(ignore) + list(faulty)) & (g >= 0) & (g < num_classes)
    p, g = np.clip(p[m], 0, num_classes - 1), g[m]
    cm = np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    n = max(len(g), 1)
    small = (cm.sum(1) / n < robust) & (cm.sum(0) / n < robust)
    present = [c for c in range(num_classes) if cm[c].sum() > 0 and c not in ignore and not small[c]]
    if not present:
        return 0.0
    return float(np.mean([inter[c] / union[c] for c in present]))
