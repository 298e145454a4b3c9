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
