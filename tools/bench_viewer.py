"""Benchmark the viewer's render call (``ViewRenderer.render``) on CPU, per mode.

    NUMBA_NUM_THREADS=2 python tools/bench_viewer.py [--sizes 256 512] [--gaussians 100000 1000000]
                                                     [--reps 7] [--out bench_viewer.json]

For every (Gaussians, image size) it times each mode — rgb, semantic, instance,
uncertainty, depth, and instance overlaid on rgb — and reports the median frame
time, the median CPU time of the process per frame (all threads; with
NUMBA_NUM_THREADS=1 it is what the frame costs one core, whatever else runs on
the machine), frames/s and the ratio to the baseline measured in the same run
(the RGB mode at the same size, full resolution). A "moving" row replays what the viewer
does while the camera moves over a square canvas of that size: the camera orbits
a little every frame and :class:`AdaptiveResolution` lowers the image size, then
the share of Gaussians drawn, until a frame fits the 10 frames/s budget; it
reports the steady-state size, share and rate.

Scenes are made like ``tools/bench_render.py``'s: Gaussians spread over the view
frustum at depths 2..8 with projected standard deviations log-uniform in
0.4..3 px at 512² (half that at 256²), anisotropic, random rotations, opacity
0.05..1, SH degree 3 (what 3DGS files carry), 50 objects + stuff labels and
embedding variances, so every mode has real work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `pcf-gs view` runs (pcf_gs/cli/view.py); before torch loads

MODES = [("rgb", False), ("semantic", False), ("instance", False), ("uncertainty", False), ("depth", False),
         ("instance", True)]


def make_scene(n: int, seed: int = 0, ref_res: int = 512):
    import numpy as np
    import torch

    from pcf_gs.splats.ply import Splats
    from pcf_gs.viewer.target import CameraPreset, ViewScene, objects_table

    from bench_render import frustum_gaussians  # the sibling script: tools/ is sys.path[0] when run as a script

    g = torch.Generator().manual_seed(seed)
    f = float(ref_res)
    means, quats, scales, opac, u = frustum_gaussians(n, ref_res, g)
    sh0 = torch.randn(n, 1, 3, generator=g) * 0.8
    shN = torch.randn(n, 15, 3, generator=g) * 0.05
    # objects: 50 spatial clusters (by position), the rest stuff
    cells = ((u[:, 0] / ref_res * 10).long().clamp(0, 9) + 10 * (u[:, 1] / ref_res * 5).long().clamp(0, 4))
    thing = torch.rand(n, generator=g) < 0.5
    inst = torch.where(thing, cells + 1, torch.zeros_like(cells)).numpy().astype(np.int32)
    sem = thing.numpy().astype(np.int32)
    var = torch.exp(torch.randn(n, generator=g)).numpy().astype(np.float32)
    splats = Splats(means.numpy(), torch.log(scales).numpy(), quats.numpy(), torch.logit(opac).numpy(),
                    sh0.numpy(), shN.numpy(), {"inst_var": np.repeat(var[:, None], 3, 1)})
    names = ["background", "foreground"]
    fov = 2 * math.atan(0.5 * ref_res / f)
    return ViewScene(splats=splats, sh_degree=3, instance_ids=inst, semantic_ids=sem, variance=var, class_names=names,
                     objects=objects_table(inst, sem, names), cameras=[CameraPreset("bench", np.eye(4), fov)],
                     source=f"bench {n}")


def orbit(camera, angle: float):
    """The camera turned by ``angle`` radians about the vertical axis through the scene centre (z = 5)."""
    import numpy as np

    from pcf_gs.viewer.view_renderer import Camera

    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    centre = np.array([0.0, 0.0, 5.0])
    c2w = camera.c2w.copy()
    c2w[:3, :3] = R @ c2w[:3, :3]
    c2w[:3, 3] = centre + R @ (c2w[:3, 3] - centre)
    return Camera(c2w, camera.fov_y)


def bench(n: int, sizes: list[int], reps: int) -> list[dict]:
    import torch

    from pcf_gs.viewer.view_renderer import AdaptiveResolution, Camera, DisplayState, ViewRenderer

    t = time.perf_counter()
    scene = make_scene(n)
    r = ViewRenderer(scene, device="cpu")
    print(f"  scene with {n:,} Gaussians ready in {time.perf_counter() - t:.1f} s", flush=True)
    cam0 = Camera(scene.cameras[0].c2w, scene.cameras[0].fov_y)
    rows = []
    for res in sizes:
        base = None
        for mode, overlay in MODES:
            st = DisplayState(mode=mode, overlay=overlay)
            r.render(cam0, st, res, res)  # warm-up
            ts, cpu = [], []
            for k in range(reps):
                cam = orbit(cam0, 0.01 * k)  # a new view every frame (no caching across frames)
                c0 = time.process_time()
                with torch.no_grad():
                    _, info = r.render(cam, st, res, res)
                cpu.append(time.process_time() - c0)
                ts.append(info.seconds)
            med = statistics.median(ts)
            if mode == "rgb" and not overlay:
                base = med
            rows.append({"gaussians": n, "size": res, "mode": mode + ("+overlay" if overlay else ""),
                         "ms": med * 1000, "best_ms": min(ts) * 1000, "cpu_ms": statistics.median(cpu) * 1000,
                         "fps": 1 / med, "ratio": med / base})
            print(f"  {n:>9,} {res}² {rows[-1]['mode']:<17} {med * 1000:8.1f} ms  (CPU {rows[-1]['cpu_ms']:.1f} ms)",
                  flush=True)
        # moving: adaptive resolution over a res x res canvas, 10 frames/s budget
        ar = AdaptiveResolution(max_side=res, moving_side=res, target_fps=10)
        ts, sides, cpu, details = [], [], [], []
        st = DisplayState(mode="rgb")
        for k in range(reps * 5):
            w, h = ar.size(res, res, moving=True)
            d = ar.frame_detail(moving=True)
            c0 = time.process_time()
            _, info = r.render(orbit(cam0, 0.01 * k), st, w, h, detail=d)
            cpu.append(time.process_time() - c0)
            ar.record(info.seconds, moving=True)
            ts.append(info.seconds)
            sides.append(w)
            details.append(d)
        h2 = len(ts) // 2  # steady state: the second half
        med = statistics.median(ts[h2:])
        rows.append({"gaussians": n, "size": res, "mode": "rgb moving (adaptive)", "ms": med * 1000,
                     "best_ms": min(ts[h2:]) * 1000, "cpu_ms": statistics.median(cpu[h2:]) * 1000,
                     "fps": 1 / med, "ratio": med / base, "moving_side": int(statistics.median(sides[h2:])),
                     "detail": float(statistics.median(details[h2:]))})
        print(f"  {n:>9,} {res}² rgb moving          {med * 1000:8.1f} ms at {rows[-1]['moving_side']}², "
              f"{rows[-1]['detail']:.0%} of the Gaussians (CPU {rows[-1]['cpu_ms']:.1f} ms)", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default="bench_viewer.json")
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table

    rows = []
    for n in args.gaussians:
        rows += bench(n, args.sizes, args.reps)
    table = Table(title="viewer render call (CPU), median of warmed-up frames")
    for c in ("Gaussians", "image", "mode", "ms", "best ms", "CPU ms", "frames/s", "× RGB"):
        table.add_column(c, justify="right")
    for r in rows:
        img = f"{r['size']}²" + (f" (moving: {r['moving_side']}², {r['detail']:.0%})" if "moving_side" in r else "")
        table.add_row(f"{r['gaussians']:,}", img, r["mode"], f"{r['ms']:.1f}", f"{r['best_ms']:.1f}",
                      f"{r['cpu_ms']:.1f}", f"{r['fps']:.1f}", f"{r['ratio']:.2f}")
    Console().print(table)
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_avg": os.getloadavg()}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
