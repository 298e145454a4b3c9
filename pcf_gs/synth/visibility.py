"""Visibility statistics of a synthetic scene: how often and how large each object is seen.

A lifted object can only be recovered if enough training views see it at a usable size, so
these numbers say whether a generated scene is a fair test (e.g. at 500 objects, where a big
room puts many objects far from every camera). Inputs are ground-truth instance maps (object
id 1..N, 0 = room); the training views are the first ``1 - test_fraction`` of the frames, as
the Messy Rooms loader splits them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def pixel_counts(instance_maps, num_objects: int) -> np.ndarray:
    """[F, N+1] int64 pixels of each id (column 0 = room) per frame; ``instance_maps`` is an
    iterable of [H,W] integer GT maps."""
    rows = [np.bincount(np.asarray(m, np.int64).ravel(), minlength=num_objects + 1)[: num_objects + 1]
            for m in instance_maps]
    return np.stack(rows) if rows else np.zeros((0, num_objects + 1), np.int64)


def visibility_stats(counts: np.ndarray, test_fraction: float = 0.2, min_views: int = 3, small: int = 100) -> dict:
    """Summary of per-object visibility from ``counts`` [F, N+1] (pixels per frame and id).

    Returns a dict (pixel sizes in pixels of the maps' resolution):
      objects                     N
      seen_train_views_ge{k}      objects visible (>= 1 px) in at least ``min_views`` training views
      never_seen_train            objects visible in no training view
      in_test                     objects visible in some test view (those the score counts)
      in_test_seen_train_ge{k}    of those, seen in >= ``min_views`` training views
      train_views_per_object      {mean, p10, p50, p90} training views that see an object
      pixels_per_view             {mean, p10, p50, p90} over objects of their mean pixel count in the
                                  training views that see them (objects never seen left out)
      best_view_pixels            {mean, p10, p50, p90} over objects of their largest pixel count in
                                  one training view (0 if never seen)
      best_view_lt{s}             objects whose best training view shows fewer than ``small`` pixels
      objects_per_view            mean number of objects visible in a frame
    """
    F, n1 = counts.shape
    n_train = int(F * (1.0 - test_fraction)) if F > 1 else F  # the Messy Rooms loader's split
    obj = counts[:, 1:]
    tr, te = obj[:n_train], obj[n_train:]
    views = (tr > 0).sum(0)
    in_test = (te > 0).any(0)
    seen = views > 0
    mean_px = np.where(seen, tr.sum(0) / np.maximum(views, 1), 0.0)
    best = tr.max(0) if n_train else np.zeros(n1 - 1, np.int64)

    def q(x: np.ndarray) -> dict:
        if len(x) == 0:
            return {"mean": 0.0, "p10": 0.0, "p50": 0.0, "p90": 0.0}
        p = np.percentile(x, [10, 50, 90])
        return {"mean": round(float(x.mean()), 1), "p10": round(float(p[0]), 1),
                "p50": round(float(p[1]), 1), "p90": round(float(p[2]), 1)}

    k = min_views
    return {
        "objects": int(n1 - 1),
        f"seen_train_views_ge{k}": int((views >= k).sum()),
        "never_seen_train": int((~seen).sum()),
        "in_test": int(in_test.sum()),
        f"in_test_seen_train_ge{k}": int((in_test & (views >= k)).sum()),
        "train_views_per_object": q(views.astype(np.float64)),
        "pixels_per_view": q(mean_px[seen]),
        "best_view_pixels": q(best.astype(np.float64)),
        f"best_view_lt{small}": int((best < small).sum()),
        "objects_per_view": round(float((obj > 0).sum(1).mean()), 1) if F else 0.0,
    }


def scene_visibility(scene_dir: str | Path, test_fraction: float = 0.2, min_views: int = 3, small: int = 100) -> dict:
    """:func:`visibility_stats` of a scene folder written by ``pcf-gs synth`` (reads ``instance/<i>.npy``)."""
    d = Path(scene_dir)
    files = sorted((d / "instance").glob("*.npy"), key=lambda p: int(p.stem))
    maps = [np.load(f) for f in files]
    n = max((int(m.max()) for m in maps), default=0)
    meta = d / "metadata.json"
    if meta.exists():
        n = max(n, int(json.loads(meta.read_text())["metadata"].get("num_instances", n)))
    return visibility_stats(pixel_counts(maps, n), test_fraction, min_views, small)


def view_coverage(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, n_train: int, instance: np.ndarray | None = None,
                  max_ratio: float = 2.0, rel_tol: float = 0.02) -> dict:
    """How much of what the test views show the training views saw, at a usable resolution.

    depth [F,H,W] z-depth (metres) of every frame, K [3,3] pixel intrinsics, c2w [F,4,4] OpenCV
    camera-to-world, frames ``n_train..F-1`` are the test views; ``instance`` [F,H,W] GT ids
    (0 = room) to report object pixels separately. A test pixel's surface point counts as seen by
    a training view if it projects inside that view, its depth there agrees with the view's depth
    map (within ``rel_tol`` x depth + 2 cm: not occluded) and that view is at most ``max_ratio``
    times farther from it than the test view (so it was seen with at least half the resolution).

    Returns fractions of test pixels seen by >= 1 and >= 2 training views:
    {"seen1", "seen2", "object_seen1", "object_seen2"} (object ones None without ``instance``
    or object pixels).
    """
    F, H, W = depth.shape
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    w2c = np.linalg.inv(c2w)
    seen, obj = [], []
    for k in range(n_train, F):
        z0 = depth[k].reshape(-1).astype(np.float64)
        cam = np.stack([(j.ravel() - K[0, 2]) / K[0, 0] * z0, (i.ravel() - K[1, 2]) / K[1, 1] * z0, z0], 1)
        P = cam @ c2w[k, :3, :3].T + c2w[k, :3, 3]  # [H*W,3] world points of the test view
        n = np.zeros(len(P), np.int64)
        for t in range(n_train):
            Q = P @ w2c[t, :3, :3].T + w2c[t, :3, 3]
            z = Q[:, 2]
            zs = np.maximum(z, 1e-6)
            u = Q[:, 0] / zs * K[0, 0] + K[0, 2]
            v = Q[:, 1] / zs * K[1, 1] + K[1, 2]
            ok = (z > 0.05) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            d = depth[t][np.clip(v.astype(np.int64), 0, H - 1), np.clip(u.astype(np.int64), 0, W - 1)]
            n += ok & (np.abs(d - z) < rel_tol * z + 0.02) & (z < max_ratio * z0)
        seen.append(n)
        if instance is not None:
            obj.append(instance[k].reshape(-1) > 0)
    n = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    out = {"seen1": float((n >= 1).mean()) if len(n) else None, "seen2": float((n >= 2).mean()) if len(n) else None,
           "object_seen1": None, "object_seen2": None}
    if obj:
        m = np.concatenate(obj)
        if m.any():
            out["object_seen1"], out["object_seen2"] = float((n[m] >= 1).mean()), float((n[m] >= 2).mean())
    return {k: (None if v is None else round(v, 3)) for k, v in out.items()}


def scene_view_coverage(scene_dir: str | Path, test_fraction: float = 0.2) -> dict:
    """:func:`view_coverage` of a scene folder written by ``pcf-gs synth`` (needs its depth PNGs and
    ``pcf_gs_scene.json``)."""
    import cv2

    d = Path(scene_dir)
    cams = json.loads((d / "pcf_gs_scene.json").read_text())["cameras"]
    c2w = np.asarray(cams["c2w"], np.float64)
    F = len(c2w)
    depth = np.stack([cv2.imread(str(d / "depth" / f"{i}.png"), cv2.IMREAD_UNCHANGED).astype(np.float64) / 1000.0
                      for i in range(F)])
    inst = np.stack([np.load(d / "instance" / f"{i}.npy") for i in range(F)])
    n_train = int(F * (1.0 - test_fraction)) if F > 1 else F
    return view_coverage(depth, np.asarray(cams["K"], np.float64), c2w, n_train, inst)
