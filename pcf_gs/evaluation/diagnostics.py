"""Diagnostics beyond the benchmark scores: does an exported object render alone, where are the
ground-truth instance boundaries, and is the rendered embedding less sure there (PCF-Lift Fig. 5)?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pcf_gs.data.images import resize_nearest
from pcf_gs.errors import UserError

if TYPE_CHECKING:
    from pcf_gs.lift.run import Run


def object_isolation(splats, scene, depth_dir: Path, split: str = "train", rel_tol: float = 0.03) -> dict:
    """Does one exported object, rendered alone, show that object and nothing of its neighbours?

    ``splats`` (:class:`pcf_gs.splats.ply.Splats`, world frame) is rendered alone into the
    split's views of ``scene`` (loaded with ``normalize=False``: world frame too).
    Rendering alone removes occluders, so only the pixels where the object's rendered
    depth is not behind the ground-truth depth (``depth_dir/<frame>.png``, uint16 mm,
    z-depth, as ``pcf-gs synth`` writes) are judged; there its alpha mass is tallied
    by ground-truth instance. Returns {"object": the GT instance with most mass,
    "on_object", "on_other_objects", "on_background": fractions of the judged
    mass, "mass": judged mass in pixels}.
    """
    import torch

    from pcf_gs.data.images import imread
    from pcf_gs.render import rasterize

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    means, quats, scales, opac = t(splats.means), t(splats.quats), torch.exp(t(splats.scales)), torch.sigmoid(t(splats.opacities))
    tally: dict[int, float] = {}
    for f in scene.split(split):
        path = Path(depth_dir) / f"{f.name}.png"
        if not path.is_file():
            raise UserError("ground-truth depth missing", path)
        gt_depth = imread(path, cv2.IMREAD_UNCHANGED, what="ground-truth depth")
        gt_depth = resize_nearest(gt_depth, f.width, f.height).astype(np.float32) / 1000.0
        vm = torch.linalg.inv(t(f.c2w))
        z = means @ vm[:3, :3].T[:, 2] + vm[2, 3]  # camera z of each Gaussian [N]
        colors = torch.stack([torch.ones_like(z), z], 1)
        img, alpha, _ = rasterize(means, quats, scales, opac, colors, vm[None], t(f.K)[None], f.width, f.height)
        a = alpha[0, ..., 0].numpy()
        depth = (img[0, ..., 1] / alpha[0, ..., 0].clamp_min(1e-6)).numpy()
        judged = (a > 0.01) & (depth <= gt_depth * (1 + rel_tol))
        for o in np.unique(f.gt_instances[judged]):
            tally[int(o)] = tally.get(int(o), 0.0) + float(a[judged & (f.gt_instances == o)].sum())
    total = sum(tally.values())
    objs = {o: m for o, m in tally.items() if o > 0}
    if total <= 0 or not objs:
        return {"object": None, "on_object": 0.0, "on_other_objects": 0.0, "on_background": 1.0 if total else 0.0, "mass": total}
    best = max(objs, key=objs.get)
    return {
        "object": best,
        "on_object": objs[best] / total,
        "on_other_objects": (sum(objs.values()) - objs[best]) / total,
        "on_background": tally.get(0, 0.0) / total,
        "mass": total,
    }


def instance_boundaries(gt_instances: np.ndarray, gt_semantics: np.ndarray, band: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(boundary [H, W] bool, interior [H, W] bool) of the ground-truth thing masks.

    Both are thing pixels. A boundary pixel has a different (instance, class) pair — another object or
    stuff — within ``band`` pixels (Chebyshev distance); an interior pixel has none within ``2 * band``,
    so the two sets are ``band`` pixels apart.
    """
    # one number per (instance, class); exact in float64, which cv2's dilate/erode take
    key = (gt_instances.astype(np.int64) * 65536 + gt_semantics.astype(np.int64)).astype(np.float64)
    thing = gt_instances > 0

    def differs_within(r: int) -> np.ndarray:
        k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        # a neighbour differs iff the window's max or min differs from the centre
        return (cv2.dilate(key, k) != key) | (cv2.erode(key, k) != key)

    boundary = thing & differs_within(band)
    interior = thing & ~differs_within(2 * band)
    return boundary, interior


def boundary_uncertainty(run: Run, scene, split: str = "test", band: int = 1) -> dict:
    """Rendered embedding variance on instance boundaries against object interiors (PCF-Lift Fig. 5).

    For every view of ``split``: renders var [H, W, E], averages it over E, and pools it over the
    ground-truth boundary and interior pixels of :func:`instance_boundaries`. Returns mean variance on
    each (embedding units squared), their ``ratio`` (boundary / interior; > 1 means the model is less
    sure where objects meet) and the pixel counts. Pooled over pixels, one close-up object can outweigh
    the rest of a scene, so also per object and view (those with both kinds of pixel):
    ``object_ratio_median``, the median of boundary mean / interior mean, and ``objects_higher``, the
    fraction of them where it is > 1.
    """
    import torch

    from pcf_gs.lift.model import render_features

    sums = {"boundary": 0.0, "interior": 0.0}
    counts = {"boundary": 0, "interior": 0}
    per_object: list[float] = []
    for f in scene.split(split):
        if f.gt_instances is None or f.gt_semantics is None:
            raise UserError("the scene has no ground truth (semantic/ and instance/)", scene.root)
        vm = torch.linalg.inv(torch.from_numpy(f.c2w.astype(np.float32)))[None]
        K = torch.from_numpy(f.K.astype(np.float32))[None]
        with torch.no_grad():
            out = render_features(run.params, run.spec, vm, K, f.width, f.height, backend=run.config.render.backend,
                                  slow=False, **run.config.render.kw())
        var = out["var"][0].mean(-1).numpy()
        b, i = instance_boundaries(f.gt_instances, f.gt_semantics, band)
        for name, m in (("boundary", b), ("interior", i)):
            sums[name] += float(var[m].sum())
            counts[name] += int(m.sum())
        ids = f.gt_instances.astype(np.int64)
        n = int(ids.max()) + 1
        vb, nb = np.bincount(ids[b], var[b], n), np.bincount(ids[b], minlength=n)
        vi, ni = np.bincount(ids[i], var[i], n), np.bincount(ids[i], minlength=n)
        both = (nb > 0) & (ni > 0)
        per_object.extend((vb[both] / nb[both]) / (vi[both] / ni[both]))
    res = {k: (sums[k] / counts[k] if counts[k] else float("nan")) for k in sums}
    res["ratio"] = res["boundary"] / res["interior"] if counts["boundary"] and counts["interior"] else float("nan")
    po = np.asarray(per_object, dtype=np.float64)
    res["object_ratio_median"] = float(np.median(po)) if len(po) else float("nan")
    res["objects_higher"] = float((po > 1).mean()) if len(po) else float("nan")
    res["objects"] = int(len(po))
    res.update(boundary_pixels=counts["boundary"], interior_pixels=counts["interior"])
    return res
