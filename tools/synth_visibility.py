"""How well the cameras of ``pcf-gs synth`` scenes see their objects, per object count and seed.

For each (objects, seed) it builds the scene exactly as ``pcf-gs synth`` does (same options, same
random streams), casts only the pixel-centre rays of every frame (no shading, no files: seconds
per scene) and prints :func:`pcf_gs.synth.visibility.visibility_stats`: objects seen in >= 3
training views, views per object, mean and best-view pixel counts per object at the image size;
and :func:`~pcf_gs.synth.visibility.view_coverage`: the share of test-view pixels (all, and object
pixels) whose surface two training views saw unoccluded from at most twice the distance.
Scene folders already written can be passed with ``--scene`` (their GT instance maps are read).

    python tools/synth_visibility.py --objects 25 50 100 200 500 --seeds 1 2 3 --json vis.json
    python tools/synth_visibility.py --scene /work/bq500/scenes/o500_w9_paper_f60_s256_seed1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pcf_gs.synth import SynthOptions, raycast
from pcf_gs.synth.cameras import camera_rays
from pcf_gs.synth.generator import build
from pcf_gs.synth.visibility import pixel_counts, scene_view_coverage, scene_visibility, view_coverage, visibility_stats


def built_visibility(opts: SynthOptions) -> dict:
    """Visibility statistics of the scene ``opts`` describes, from primary rays only."""
    sc, K, c2w = build(opts)
    maps, depth = [], []
    for M in c2w:
        o, d = camera_rays(K, M, opts.width, opts.height)
        h = raycast.trace(o, d, sc.prims, sc.room.lo, sc.room.hi, surface=False)
        maps.append(np.where(h.id >= 0, h.id + 1, 0).reshape(opts.height, opts.width))
        depth.append(h.t.reshape(opts.height, opts.width))  # camera_rays' directions have z = 1: t is z-depth
    v = visibility_stats(pixel_counts(maps, opts.objects))
    n_train = int(len(c2w) * 0.8) if len(c2w) > 1 else len(c2w)
    v["coverage"] = view_coverage(np.stack(depth), K, c2w, n_train, np.stack(maps))
    v["room_m"] = [round(float(x), 1) for x in sc.room.size]
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, nargs="*", default=[25, 50, 100, 200, 500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scene", nargs="*", default=[], help="scene folders to read instead of (or besides) building")
    ap.add_argument("--json", default=None, help="write every row here")
    a = ap.parse_args(argv)
    rows = []
    for n in a.objects:
        for sd in a.seeds:
            t = time.perf_counter()
            v = built_visibility(SynthOptions(objects=n, frames=a.frames, width=a.size, height=a.size, seed=sd))
            rows.append({"scene": f"{n} objects, seed {sd}", "seconds": round(time.perf_counter() - t, 1), **v})
    for p in a.scene:
        rows.append({"scene": Path(p).name, **scene_visibility(p), "coverage": scene_view_coverage(p)})
    t = Table(title=f"visibility per object ({a.frames} frames, the first 80% for training; pixels at the image size)")
    for c in ("scene", "room m", "seen >= 3 views", "in test (>= 3)", "views p10/p50/p90", "px/view p10/p50/p90",
              "best view p10/p50/p90", "best < 100 px", "objects/view", "test px seen >= 2 (objects)"):
        t.add_column(c, justify="left" if c == "scene" else "right")
    for r in rows:
        q = lambda d: f"{d['p10']:.0f} / {d['p50']:.0f} / {d['p90']:.0f}"  # noqa: E731
        t.add_row(r["scene"], "x".join(str(x) for x in r.get("room_m", [])) or "—",
                  f"{r['seen_train_views_ge3']} / {r['objects']}", f"{r['in_test']} ({r['in_test_seen_train_ge3']})",
                  q(r["train_views_per_object"]), q(r["pixels_per_view"]), q(r["best_view_pixels"]),
                  str(r["best_view_lt100"]), f"{r['objects_per_view']:.0f}",
                  f"{r['coverage']['seen2']:.2f} ({r['coverage']['object_seen2']:.2f})")
    Console().print(t)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
