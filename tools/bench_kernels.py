"""Per-kernel CPU time of the CPU rasterizer: projection, binning, compositing forward and backward, reduction.

The compositing kernels are timed twice where this machine builds the native ones: numba's, and the native
(``pcf_gs.render.cpu_native``) on the same inputs.

Calls the numba kernels directly (no torch autograd around them) on ``bench_render``'s scenes and reports
the process CPU time of each, best and median of ``--reps``. CPU time of one thread is much steadier than
wall time on a shared machine, so this is the tool for before/after comparisons of a kernel change: run
it from both trees, alternately, with ``NUMBA_NUM_THREADS=1``. Prints a table and writes JSON.

    NUMBA_NUM_THREADS=1 python tools/bench_kernels.py --scene 128:10000:3 --scene 128:47000:3 --json k.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_render import make_scene  # noqa: E402


def kernels(res: int, n: int, d: int) -> tuple[int, dict]:
    """The kernels of one forward + backward render of ``make_scene(res, n, d)``, as zero-argument callables."""
    R = importlib.import_module("pcf_gs.render.rasterize")
    from pcf_gs.render import cpu_composite as K
    from pcf_gs.render import cpu_native
    from pcf_gs.render import cpu_projection as P

    means, quats, scales, opac, colors, vm, Ks = make_scene(res, n, d)
    a = [t.detach().contiguous().numpy() for t in (means, quats, scales, opac, vm, Ks)]
    radii, m2, dep, cn, _ = P.project_fwd(*a, res, res, 0.3, 0.01, 1e10)
    op = opac.numpy().astype(np.float32)
    tx, ty, (to, fi, go, ge) = R._bin_tiles(m2, cn, op[None], torch.from_numpy(radii), torch.from_numpy(dep), res, res)
    m2f, cnf = m2.reshape(-1, 2), cn.reshape(-1, 3)
    col = colors.numpy().astype(np.float32)
    ec = K.EXP_C.astype(np.float32)
    bg = np.full((1, d), 0.3, np.float32)
    fwd_args = (m2f, cnf, op, col, bg, True, to, fi, 1, res, res, tx, ty, ec)
    _, tf, last = K.composite_fwd(*fwd_args)
    g = np.random.default_rng(0)
    vo = g.random((1, res, res, d), np.float32)
    va = g.random((1, res, res), np.float32)
    bwd_args = (m2f, cnf, op, col, bg, True, to, fi, 1, res, res, tx, ty, tf, last, vo, va, ec)
    slots = K.composite_bwd(*bwd_args)
    z = np.zeros
    v2, v1, v3 = z((1, n, 2), np.float32) + 1e-3, z((1, n), np.float32), z((1, n, 3), np.float32) + 1e-3
    fns = {
        "project fwd": lambda: P.project_fwd(*a, res, res, 0.3, 0.01, 1e10),
        "binning": lambda: R._bin_tiles(m2, cn, op[None], torch.from_numpy(radii), torch.from_numpy(dep), res, res),
        "composite fwd": lambda: K.composite_fwd(*fwd_args),
        "composite bwd": lambda: K.composite_bwd(*bwd_args),
        "composite bwd absgrad": lambda: K.composite_bwd_absgrad(*bwd_args),
        "reduce": lambda: K.reduce_entries(*slots, go, ge),
        "project bwd": lambda: P.project_bwd(a[0], a[1], a[2], a[4], a[5], res, res, 0.3, radii, v2, v1, v3, v1),
    }
    nat = cpu_native.kernels()
    if nat is not None:  # the native kernels on the same inputs (what the CPU path runs in float32)
        fns[f"composite fwd, native ({nat.isa}-bit)"] = lambda: nat.fwd(*fwd_args[:-1])
        fns[f"composite bwd, native ({nat.isa}-bit)"] = lambda: nat.bwd(*bwd_args[:-1])
    return len(fi), fns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", action="append", default=[], help="RES:N:D (repeatable; default 128:10000:3)")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default="bench_kernels.json")
    args = ap.parse_args()
    rows = []
    for spec in args.scene or ["128:10000:3"]:
        res, n, d = (int(x) for x in spec.split(":"))
        n_isect, fns = kernels(res, n, d)
        for name, f in fns.items():
            f()  # compiled / cached before timing
            ts = []
            for _ in range(args.reps):
                t = time.process_time()
                f()
                ts.append(time.process_time() - t)
            ts.sort()
            rows.append({"scene": spec, "intersections": n_isect, "kernel": name,
                         "best_ms": 1e3 * ts[0], "median_ms": 1e3 * ts[len(ts) // 2]})
    Path(args.json).write_text(json.dumps({"reps": args.reps, "rows": rows}, indent=1) + "\n")
    t = Table(title=f"CPU rasterizer kernels, process CPU time (best / median of {args.reps})")
    for c in ("scene RES:N:D", "intersections", "kernel", "best ms", "median ms"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["scene"], f"{r['intersections']:,}", r["kernel"], f"{r['best_ms']:.2f}", f"{r['median_ms']:.2f}")
    Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
