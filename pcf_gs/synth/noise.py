"""Simulated 2D panoptic predictions: pure noise models on label maps.

Every function takes numpy arrays and a ``numpy.random.Generator`` and returns new arrays
(inputs are never modified), so each model is deterministic per generator state and can be
unit-tested on tiny arrays. Maps are ``[H,W]``: ``sem`` semantic class (0 = stuff /
background), ``inst`` instance id (0 = none). Things are pixels with ``inst > 0``.

The generator applies them per view in this order (:func:`simulate_prediction`):

1. :func:`drop_instances`   missed detections (object -> semantic 0, instance 0)
2. :func:`merge_instances`  under-segmentation: two objects touching in 2D get one id
3. :func:`split_instances`  over-segmentation: one object cut in two along a line
                            through its mask centroid
4. :func:`flip_classes`     wrong thing class (only with more than one thing class)
5. :func:`boundary_noise`   PCF-Lift's mask-boundary noise (anchor windows)
6. :func:`permute_ids`      per-view random ids, so ids are inconsistent across views
7. :func:`confidences`      per-pixel scores in [0,1]

Boundary noise follows PCF-Lift (Zhu et al., ECCV 2024, robustness study): ``n`` anchors,
each a ``W x W`` window whose pixels all take the (semantic, instance) label of one random
pixel inside the window. PCF-Lift samples anchors on mask edges; we do the same -- anchors
are drawn uniformly among *boundary pixels* (a pixel whose 4-neighbourhood holds another
(semantic, instance) label), falling back to uniform pixels when a map has no boundary.
Source labels are read from the map *before* any window is written, so the result does not
depend on which of two overlapping windows is processed first except where they overlap
(the later anchor wins there). ``W = 1`` is the identity.

Two settings of it (``boundary_model`` of :func:`simulate_prediction`):

- ``"stress"`` (what every scene before 2026-12 used): ``n`` anchors per view whatever its
  size, on mask edges, copying the semantic class and the instance. At 128² and W = 9 the
  windows cover about half of every image.
- ``"paper"`` (PCF-Lift's definition): ``n`` anchors per 512² of image area (so 6 at 128²),
  at uniformly random pixels, copying only the instance id; the semantic map is left as the
  2D model gave it. About 3% of a 512² image at W = 9.
"""

from __future__ import annotations

import numpy as np

INT16_MAX = 32767


def _ids(inst: np.ndarray) -> np.ndarray:
    u = np.unique(inst)
    return u[u != 0]


def permute_ids(inst: np.ndarray, rng: np.random.Generator, id_range: tuple[int, int] = (1, INT16_MAX)) -> tuple[np.ndarray, dict[int, int]]:
    """Relabel every nonzero id with a distinct random id from ``[id_range[0], id_range[1]]``.

    inst [H,W] int -> (new [H,W] int16, mapping {old id: new id}). 0 stays 0.
    """
    lo, hi = id_range
    if lo < 1:
        raise ValueError("id_range must exclude 0")
    ids = _ids(inst)
    if len(ids) > hi - lo + 1:
        raise ValueError(f"{len(ids)} ids do not fit in {id_range}")
    new = rng.choice(np.arange(lo, hi + 1), size=len(ids), replace=False) if len(ids) else np.zeros(0, np.int64)
    out = np.zeros(inst.shape, np.int16)
    for o, n in zip(ids, new):
        out[inst == o] = n
    return out, {int(o): int(n) for o, n in zip(ids, new)}


def drop_instances(sem: np.ndarray, inst: np.ndarray, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Missed detections: each instance is dropped with probability ``rate``.

    Returns (sem, inst, dropped ids); dropped pixels become semantic 0 and instance 0.
    """
    sem, inst = sem.copy(), inst.copy()
    ids = _ids(inst)
    drop = ids[rng.uniform(size=len(ids)) < rate]
    if len(drop):
        m = np.isin(inst, drop)
        sem[m] = 0
        inst[m] = 0
    return sem, inst, [int(i) for i in drop]


def touching_pairs(inst: np.ndarray) -> list[tuple[int, int]]:
    """Sorted list of (a, b), a < b, nonzero ids that are 4-neighbours somewhere in the map."""
    pairs = set()
    for a, b in ((inst[:, :-1], inst[:, 1:]), (inst[:-1, :], inst[1:, :])):
        m = (a != b) & (a != 0) & (b != 0)
        if m.any():
            x, y = a[m].astype(np.int64), b[m].astype(np.int64)
            lo, hi = np.minimum(x, y), np.maximum(x, y)
            pairs.update(zip(lo.tolist(), hi.tolist()))
    return sorted(pairs)


def merge_instances(
    sem: np.ndarray, inst: np.ndarray, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Under-segmentation: each pair of touching instances is merged with probability ``rate``.

    Each instance takes part in at most one merge (pairs are visited in random order). The
    merged mask keeps the id -- and the semantic class -- of the larger of the two.
    Returns (sem, inst, merged pairs as (kept id, absorbed id)).
    """
    sem, inst = sem.copy(), inst.copy()
    pairs = touching_pairs(inst)
    if not pairs or rate <= 0:
        return sem, inst, []
    order = rng.permutation(len(pairs))
    take = rng.uniform(size=len(pairs)) < rate
    used: set[int] = set()
    merged = []
    for i in order:
        a, b = pairs[i]
        if not take[i] or a in used or b in used:
            continue
        ma, mb = inst == a, inst == b
        keep, gone, mk, mg = (a, b, ma, mb) if ma.sum() >= mb.sum() else (b, a, mb, ma)
        inst[mg] = keep
        sem[mg] = sem[mk][0]
        used.update((a, b))
        merged.append((int(keep), int(gone)))
    return sem, inst, merged


def split_instances(
    inst: np.ndarray, rate: float, rng: np.random.Generator, min_pixels: int = 16
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Over-segmentation: each instance (>= ``min_pixels``) is split with probability ``rate``.

    The cut is a line through the mask centroid at a uniformly random angle; the pixels on one
    side get a new id (max id + 1, + 2, ...). A split is only kept if both halves are
    non-empty, so each split adds exactly one id. Returns (inst, [(old id, new id)]).
    """
    inst = inst.copy()
    ids = _ids(inst)
    take = rng.uniform(size=len(ids)) < rate
    angles = rng.uniform(0, np.pi, size=len(ids))
    next_id = int(inst.max(initial=0)) + 1
    splits = []
    for k, t, ang in zip(ids, take, angles):
        if not t:
            continue
        ys, xs = np.nonzero(inst == k)
        if len(ys) < min_pixels:
            continue
        cy, cx = ys.mean(), xs.mean()
        side = (xs - cx) * np.cos(ang) + (ys - cy) * np.sin(ang) > 0
        if side.all() or not side.any():
            continue
        if next_id > INT16_MAX:
            break
        inst[ys[side], xs[side]] = next_id
        splits.append((int(k), next_id))
        next_id += 1
    return inst, splits


def flip_classes(
    sem: np.ndarray, inst: np.ndarray, rate: float, thing_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[int]]:
    """Each instance's class is replaced by a different thing class (1..K) with probability ``rate``.

    No-op when ``thing_classes < 2``. Returns (sem, flipped ids).
    """
    sem = sem.copy()
    if thing_classes < 2:
        return sem, []
    ids = _ids(inst)
    take = rng.uniform(size=len(ids)) < rate
    shift = rng.integers(1, thing_classes, size=len(ids))
    flipped = []
    for k, t, s in zip(ids, take, shift):
        if not t:
            continue
        m = inst == k
        c = int(sem[m][0])
        sem[m] = (c - 1 + s) % thing_classes + 1  # a different class in 1..K
        flipped.append(int(k))
    return sem, flipped


def boundary_pixels(sem: np.ndarray, inst: np.ndarray) -> np.ndarray:
    """[H,W] bool: pixel has a 4-neighbour with a different (semantic, instance) label."""
    key = sem.astype(np.int64) * 65536 + inst.astype(np.int64)
    b = np.zeros(key.shape, bool)
    dx = key[:, 1:] != key[:, :-1]
    dy = key[1:, :] != key[:-1, :]
    b[:, 1:] |= dx
    b[:, :-1] |= dx
    b[1:, :] |= dy
    b[:-1, :] |= dy
    return b


PAPER_AREA = 512 * 512  # the paper's anchors are per image at this resolution


def paper_anchor_count(n_per_512: int, height: int, width: int) -> int:
    """Anchors for an image of ``height x width`` when ``n_per_512`` fall on a 512² image."""
    return int(round(n_per_512 * height * width / PAPER_AREA))


def boundary_noise(
    sem: np.ndarray, inst: np.ndarray, n_anchors: int, window: int, rng: np.random.Generator, on_edges: bool = True,
    copy_semantics: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCF-Lift boundary noise: ``n_anchors`` windows of ``window x window`` pixels, each copying
    the label of one random pixel inside it onto the whole window: the (semantic, instance) pair,
    or the instance only when not ``copy_semantics``.

    Windows are centred on the anchor (offset -(W//2) .. W-1-W//2) and clipped to the image.
    Anchors are boundary pixels when ``on_edges``, else uniform pixels (see module docstring).
    Returns (sem, inst, changed [H,W] bool: pixels whose label changed).
    """
    H, W = sem.shape
    out_s, out_i = sem.copy(), inst.copy()
    if window <= 1 or n_anchors <= 0 or H == 0 or W == 0:
        return out_s, out_i, np.zeros((H, W), bool)
    cand = np.flatnonzero(boundary_pixels(sem, inst)) if on_edges else np.zeros(0, np.int64)
    if len(cand) == 0:
        cand = np.arange(H * W)
    anchors = cand[rng.integers(0, len(cand), size=n_anchors)]
    half = window // 2
    for a in anchors:
        ay, ax = divmod(int(a), W)
        y0, y1 = max(ay - half, 0), min(ay - half + window, H)
        x0, x1 = max(ax - half, 0), min(ax - half + window, W)
        sy = int(rng.integers(y0, y1))
        sx = int(rng.integers(x0, x1))
        if copy_semantics:
            out_s[y0:y1, x0:x1] = sem[sy, sx]
        out_i[y0:y1, x0:x1] = inst[sy, sx]
    changed = (out_s != sem) | (out_i != inst)
    return out_s, out_i, changed


def confidences(
    sem: np.ndarray,
    inst: np.ndarray,
    rng: np.random.Generator,
    score_range: tuple[float, float] = (0.55, 0.98),
    penalised: dict[int, float] | None = None,
    noisy_pixels: np.ndarray | None = None,
    edge_falloff: float = 0.25,
) -> np.ndarray:
    """Per-pixel confidence [H,W] float32 in [0,1].

    Background (``inst == 0``) is 1, as the official Messy Rooms loader forces. Each
    instance gets a detector score uniform in ``score_range`` times ``penalised[id]`` (e.g.
    0.6 for a split or merged mask); pixels next to the mask edge lose up to
    ``edge_falloff`` of it (1 px from the edge: full loss, 3 px: none); ``noisy_pixels`` (bool
    [H,W], e.g. boundary-noise windows) are halved.
    """
    conf = np.ones(sem.shape, np.float32)
    ids = _ids(inst)
    scores = rng.uniform(*score_range, size=len(ids))
    penalised = penalised or {}
    for k, s in zip(ids, scores):
        conf[inst == k] = s * penalised.get(int(k), 1.0)
    if len(ids) and edge_falloff > 0:
        edge = boundary_pixels(sem, inst) & (inst != 0)
        near = edge.copy()
        ring2 = np.zeros_like(edge)  # pixels 2 away from the edge (4-neighbour dilation of the edge)
        ring2[1:] |= edge[:-1]
        ring2[:-1] |= edge[1:]
        ring2[:, 1:] |= edge[:, :-1]
        ring2[:, :-1] |= edge[:, 1:]
        ring2 &= ~near & (inst != 0)
        conf[near] *= 1 - edge_falloff
        conf[ring2] *= 1 - 0.5 * edge_falloff
    if noisy_pixels is not None:
        m = noisy_pixels & (inst != 0)
        conf[m] *= 0.5
    return np.clip(conf, 0, 1)


def simulate_prediction(
    sem: np.ndarray,
    inst: np.ndarray,
    rng: np.random.Generator,
    miss_rate: float = 0.1,
    merge_rate: float = 0.1,
    split_rate: float = 0.1,
    class_flip_rate: float = 0.0,
    thing_classes: int = 1,
    boundary_anchors: int = 100,
    boundary_window: int = 9,
    min_split_pixels: int = 16,
    boundary_model: str = "stress",
) -> dict:
    """Noisy prediction from the exact GT of one view (models 1-7 of the module docstring).

    sem [H,W] uint8, inst [H,W] int GT. ``boundary_model``: "stress" or "paper" (module
    docstring; with "paper", ``boundary_anchors`` is per 512² of image). Returns dict with ``semantic`` [H,W] uint8,
    ``instance`` [H,W] int16 (per-view random ids), ``confidence`` [H,W] float32 and
    ``stats`` (what was dropped/merged/split/flipped, in GT ids).
    """
    s, i, dropped = drop_instances(sem, inst.astype(np.int64), miss_rate, rng)
    s, i, merged = merge_instances(s, i, merge_rate, rng)
    i, splits = split_instances(i, split_rate, rng, min_split_pixels)
    s, flipped = flip_classes(s, i, class_flip_rate, thing_classes, rng)
    if boundary_model == "paper":
        n = paper_anchor_count(boundary_anchors, *sem.shape)
        s, i, changed = boundary_noise(s, i, n, boundary_window, rng, on_edges=False, copy_semantics=False)
    elif boundary_model == "stress":
        s, i, changed = boundary_noise(s, i, boundary_anchors, boundary_window, rng)
    else:
        raise ValueError(f"boundary_model must be 'paper' or 'stress', got {boundary_model!r}")
    penal: dict[int, float] = {}
    for keep, _ in merged:
        penal[keep] = penal.get(keep, 1.0) * 0.7
    for old, new in splits:
        penal[old] = penal.get(old, 1.0) * 0.75
        penal[new] = penal.get(new, 1.0) * 0.75
    for k in flipped:
        penal[k] = penal.get(k, 1.0) * 0.6
    conf = confidences(s, i, rng, penalised=penal, noisy_pixels=changed)
    i, mapping = permute_ids(i, rng)
    return {
        "semantic": s.astype(np.uint8),
        "instance": i,
        "confidence": conf,
        "stats": {
            "dropped": dropped,
            "merged": merged,
            "split": splits,
            "flipped": flipped,
            "boundary_changed_pixels": int(changed.sum()),
            "id_map": mapping,
        },
    }
