"""Where a segmentation loses its PQ: one row per ground-truth object.

For a scene with ground truth and a segmentation folder (``pred_semantics/`` + ``pred_surrogateid/``, as
``pcf-gs segment`` writes), per ground-truth thing object over the split's views (native resolution):

- ``px_per_view``: its pixels, summed over the views, divided by the number of views;
- ``iou`` / ``pred``: the best-matching predicted instance over all views at once (as PQ^scene matches) —
  matched when IoU > 0.5;
- ``background``: the share of its pixels predicted stuff / instance 0 (PQ^scene leaves out an object
  that is > 50% void, so these are misses the instance side never saw);
- ``pred_on_others``: the share of the best prediction's pixels that lie on *other* objects (merges);
- ``fg_2d_train``: the share of its pixels in the *training* views that the 2D predictions call a thing
  class: when it is below ~0.5 a multi-view vote calls the object background, whatever the lifting does.

    python tools/diagnose_objects.py SCENE SEGMENT_DIR [--split test] [--json out.json] [--rows 40]

Prints a table (largest objects first) and a summary by size band; writes JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def _thing_mask(sem: np.ndarray, is_thing: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels of a thing class (classes outside the scene's list count as not things)."""
    sem = sem.astype(np.int64)
    ok = (sem >= 0) & (sem < len(is_thing))
    thing = np.zeros(sem.shape, bool)
    thing[ok] = is_thing[sem[ok]]
    return thing


def _thing_ids(f, is_thing: np.ndarray) -> np.ndarray:
    """GT instance map with stuff (and unknown classes) zeroed."""
    return np.where(_thing_mask(f.gt_semantics, is_thing), f.gt_instances.astype(np.int64), 0)


def object_table(scene, pred_dir: Path, split: str = "test") -> list[dict]:
    """Rows as in the module docstring, one per ground-truth thing object of ``split``, largest first."""
    from pcf_gs.data.images import resize_nearest
    from pcf_gs.evaluation.evaluate import read_label_png

    is_thing = scene.classes.is_thing_array()
    frames = scene.split(split)
    P, G = [], []
    for f in frames:
        # a run trained below the scene's resolution (data.max_size) segments at its own size
        h, w = f.gt_instances.shape
        sem = resize_nearest(read_label_png(pred_dir / "pred_semantics" / f"{f.name}.png"), w, h)
        ins = resize_nearest(read_label_png(pred_dir / "pred_surrogateid" / f"{f.name}.png"), w, h)
        P.append(np.where(_thing_mask(sem, is_thing), ins, 0).ravel())
        G.append(_thing_ids(f, is_thing).ravel())
    P, G = np.concatenate(P), np.concatenate(G)
    # 2D foreground share per object over the training views
    fg, tot = {}, {}
    for f in scene.split("train"):
        if f.gt_instances is None:
            continue
        gi = _thing_ids(f, is_thing)
        th2 = _thing_mask(f.semantics, is_thing)
        ids, inv = np.unique(gi[gi > 0], return_inverse=True)
        cnt = np.bincount(inv, minlength=len(ids))
        hit = np.bincount(inv, weights=th2[gi > 0].astype(np.float64), minlength=len(ids))
        for g, c, h in zip(ids.tolist(), cnt, hit):
            tot[g] = tot.get(g, 0) + int(c)
            fg[g] = fg.get(g, 0.0) + float(h)
    pred_size = {int(k): int(v) for k, v in zip(*np.unique(P, return_counts=True))}
    rows = []
    for g in np.unique(G[G > 0]).tolist():
        m = G == g
        area = int(m.sum())
        vals, cnt = np.unique(P[m], return_counts=True)
        best, biou, inter = None, 0.0, 0
        for v, c in zip(vals.tolist(), cnt.tolist()):
            if v == 0:
                continue
            iou = c / (area + pred_size[v] - c)
            if iou > biou:
                best, biou, inter = v, iou, c
        rows.append({
            "object": g,
            "px_per_view": area / len(frames),
            "iou": biou,
            "matched": biou > 0.5,
            "pred": best,
            "background": float(cnt[vals == 0].sum()) / area,
            "pred_on_others": (1 - inter / pred_size[best]) if best is not None else None,
            "fg_2d_train": fg[g] / tot[g] if tot.get(g) else None,
        })
    rows.sort(key=lambda r: -r["px_per_view"])
    return rows


def size_bands(rows: list[dict], edges=(25, 85, 250)) -> list[dict]:
    """Count / matched / mostly-background per band of px_per_view."""
    out = []
    lo = 0.0
    for hi in list(edges) + [float("inf")]:
        sel = [r for r in rows if lo <= r["px_per_view"] < hi]
        out.append({"px_per_view": f"{lo:g}-{hi:g}", "objects": len(sel), "matched": sum(r["matched"] for r in sel),
                    "mostly_background": sum(r["background"] > 0.5 for r in sel)})
        lo = hi
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene")
    ap.add_argument("segment", help="a segmentation folder (pred_semantics/, pred_surrogateid/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", default=None)
    ap.add_argument("--rows", type=int, default=40, help="table rows to print (largest objects)")
    a = ap.parse_args(argv)
    from pcf_gs.data import load_scene
    from pcf_gs.errors import UserError

    console = Console()
    try:
        scene = load_scene(Path(a.scene), progress=False)
        rows = object_table(scene, Path(a.segment), a.split)
    except UserError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2
    t = Table(title=f"ground-truth objects, {a.split} views ({len(rows)}; matched {sum(r['matched'] for r in rows)})")
    for c in ("object", "px/view", "IoU", "pred", "background", "pred on others", "2D fg (train)"):
        t.add_column(c, justify="right")
    fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
    for r in rows[: a.rows]:
        t.add_row(str(r["object"]), f"{r['px_per_view']:.1f}", fmt(r["iou"]), str(r["pred"]), fmt(r["background"]),
                  fmt(r["pred_on_others"]), fmt(r["fg_2d_train"]))
    console.print(t)
    b = Table(title="by size")
    for c in ("px/view", "objects", "matched", "> 50% background"):
        b.add_column(c, justify="right")
    bands = size_bands(rows)
    for r in bands:
        b.add_row(r["px_per_view"], str(r["objects"]), str(r["matched"]), str(r["mostly_background"]))
    console.print(b)
    if a.json:
        Path(a.json).write_text(json.dumps({"objects": rows, "bands": bands}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
