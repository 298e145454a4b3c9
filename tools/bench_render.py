"""Benchmark the CPU rasterizer against the dense-tile PyTorch baseline.

    NUMBA_NUM_THREADS=2 python tools/bench_render.py [--out bench_render.json] [--reps 5] [--vs-numba]

The CPU path is timed as shipped ("cpu": native compositing kernels where they apply, i.e. float32 without
``absgrad``, numba otherwise); ``--vs-numba`` also times the numba kernels alone in the same run.

Every (configuration, method) runs in its own subprocess so that peak memory is
honest: the worker warms up once (numba cache load, allocator), then resets the
kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs`` resets VmHWM) and
reports ``VmHWM - VmRSS`` measured around the timed runs, i.e. the extra resident
memory the render needed at its peak (torch + numba + numpy allocations alike).

Timings: median (and best total) over --reps of forward (projection + binning + compositing, from
the parameters to the image) and backward (``loss.backward()`` down to the
parameters). The dense baseline is skipped where its estimated autograd memory
exceeds --dense-max-gib (the estimate is printed in the table).

Scenes look like reconstructions seen from inside: Gaussians spread over the view
frustum at depths 2..8, projected standard deviations log-uniform in 0.4..3 px
(anisotropic up to 3:1, random rotations) so that each covers a few to tens of
pixels, opacities uniform in 0.05..1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

CONFIGS = [(64, 1_000), (128, 10_000), (256, 50_000), (512, 200_000)]
CHANNELS = [3, 16]


def frustum_gaussians(n: int, res: int, g):
    """n random Gaussians filling a res x res view from the identity camera (depths 2-8, projected
    std 0.4-3 px, anisotropic, random rotations). Draws from generator ``g`` in a fixed order.
    Returns (means [n,3], quats [n,4], scales [n,3], opacities [n], u [n,2] pixel positions)."""
    import torch

    f = float(res)  # ~53 degree field of view
    z = 2.0 + 6.0 * torch.rand(n, generator=g)
    u = (torch.rand(n, 2, generator=g) * 1.1 - 0.05) * res  # a bit past the borders
    xy = (u - res / 2) * z[:, None] / f
    means = torch.cat([xy, z[:, None]], 1)
    lo, hi = math.log(0.4), math.log(3.0)
    sig_px = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g))
    aniso = 1.0 + 2.0 * torch.rand(n, 3, generator=g)
    aniso = aniso / aniso.max(1, keepdim=True).values
    scales = (sig_px * z / f)[:, None] * aniso
    quats = torch.randn(n, 4, generator=g)
    opac = 0.05 + 0.95 * torch.rand(n, generator=g)
    return means, quats, scales, opac, u


def make_scene(res: int, n: int, d: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    f = float(res)
    means, quats, scales, opac, _ = frustum_gaussians(n, res, g)
    colors = torch.rand(n, d, generator=g)
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[f, 0, res / 2], [0, f, res / 2], [0, 0, 1.0]])[None]
    return means, quats, scales, opac, colors, viewmats, Ks


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def worker(res: int, n: int, d: int, method: str, reps: int, dense_max_gib: float) -> dict:
    import torch

    if method == "numba_only":  # the numba kernels alone (the native ones off): the baseline of --vs-numba
        os.environ["PCF_GS_NATIVE"] = "0"
    torch.set_num_threads(int(os.environ.get("NUMBA_NUM_THREADS", "2")))
    from pcf_gs.render import rasterize
    from pcf_gs.render.projection import project_gaussians
    from pcf_gs.render.reference import dense_tile_memory_estimate, rasterize_dense

    scene = make_scene(res, n, d)
    params = [t.clone().requires_grad_() for t in scene[:5]]
    vm, Ks = scene[5], scene[6]
    gen = torch.Generator().manual_seed(1)
    wts = torch.rand(1, res, res, d, generator=gen)

    if method == "dense":
        with torch.no_grad():
            radii, m2, _, _ = project_gaussians(*scene[:4], vm, Ks, res, res)
        est = dense_tile_memory_estimate(radii[0], m2[0], res, res, d)
        if est > dense_max_gib * 2**30:
            return {"skipped": f"est. {est / 2**30:.1f} GiB > {dense_max_gib:g} GiB"}

        def fwd():
            out, alpha = rasterize_dense(*params, vm, Ks, res, res)
            return out, alpha
    else:
        kw = {"antialiased": {"rasterize_mode": "antialiased"}, "absgrad": {"absgrad": True}}.get(method, {})

        def fwd():
            out, alpha, meta = rasterize(*params, vm, Ks, res, res, backend="cpu", **kw)
            return out, alpha

    def once():
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        out, alpha = fwd()
        t1 = time.perf_counter()
        ((out * wts).sum() + alpha.sum()).backward()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    once()  # warm-up: numba cache load, allocator
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    times = []
    budget = time.perf_counter() + 60.0
    for _ in range(reps):
        times.append(once())
        if time.perf_counter() > budget:
            break
    peak = _status("VmHWM") - base
    fw = sorted(t[0] for t in times)[len(times) // 2]
    bw = sorted(t[1] for t in times)[len(times) // 2]
    best = min(t[0] + t[1] for t in times)
    return {"fwd_ms": fw * 1e3, "bwd_ms": bw * 1e3, "total_ms": (fw + bw) * 1e3,
            "best_total_ms": best * 1e3, "peak_mib": peak / 2**20, "reps": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench_render.json")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dense-max-gib", type=float, default=6.0)
    ap.add_argument("--only", default=None, help="e.g. 128:10000 to run one configuration")
    ap.add_argument("--no-dense", action="store_true")
    ap.add_argument("--modes", action="store_true",
                    help="also time gsplat's antialiased mode and absgrad (ratios to the classic render, same run)")
    ap.add_argument("--vs-numba", action="store_true",
                    help="also time the numba kernels alone (native kernels off): ratio in the same run")
    ap.add_argument("--worker", nargs=4, metavar=("RES", "N", "D", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        res, n, d, method = a.worker
        print(json.dumps(worker(int(res), int(n), int(d), method, a.reps, a.dense_max_gib)))
        return 0

    from rich.console import Console
    from rich.table import Table

    env = dict(os.environ)
    env.setdefault("NUMBA_NUM_THREADS", "2")
    configs = CONFIGS
    if a.only:
        r, n = a.only.split(":")
        configs = [(int(r), int(n))]
    rows = []
    for res, n in configs:
        for d in CHANNELS:
            row = {"res": res, "n": n, "d": d}
            extra = (("antialiased", "absgrad") if a.modes else ()) + (("numba_only",) if a.vs_numba else ())
            for method in ("cpu",) + extra + (() if a.no_dense else ("dense",)):
                cmd = [sys.executable, __file__, "--worker", str(res), str(n), str(d), method,
                       "--reps", str(a.reps), "--dense-max-gib", str(a.dense_max_gib)]
                p = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if p.returncode != 0:
                    row[method] = {"skipped": "failed: " + p.stderr.strip().splitlines()[-1][:80]}
                else:
                    row[method] = json.loads(p.stdout.strip().splitlines()[-1])
            nb, dn = row["cpu"], row.get("dense", {"skipped": "not run"})
            if "total_ms" in nb and "total_ms" in dn:
                row["speedup"] = dn["total_ms"] / nb["total_ms"]
            for m in extra:
                if "total_ms" in nb and "total_ms" in row[m]:
                    row[m + "_ratio"] = {k: row[m][k] / nb[k] for k in ("fwd_ms", "bwd_ms", "total_ms")}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    meta = {"threads": env["NUMBA_NUM_THREADS"], "cpu_count": os.cpu_count(), "reps": a.reps,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(a.out, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)

    t = Table(title=f"pcf_gs.render CPU rasterizer, NUMBA_NUM_THREADS={env['NUMBA_NUM_THREADS']} (median of {a.reps})")
    for col in ("image", "N", "D", "fwd ms", "bwd ms", "total ms", "best ms", "peak MiB",
                "dense total ms", "dense peak MiB", "speedup"):
        t.add_column(col, justify="right")
    for r in rows:
        nb, dn = r["cpu"], r.get("dense", {"skipped": "not run"})
        f = lambda x, k, fmt="{:.1f}": fmt.format(x[k]) if k in x else "—"  # noqa: E731
        if "skipped" in nb:
            print("CPU run failed:", nb["skipped"], file=sys.stderr)
        t.add_row(f"{r['res']}²", f"{r['n']:,}", str(r["d"]), f(nb, "fwd_ms"), f(nb, "bwd_ms"),
                  f(nb, "total_ms"), f(nb, "best_total_ms"), f(nb, "peak_mib", "{:.0f}"),
                  f(dn, "total_ms") if "total_ms" in dn else "skipped: " + dn.get("skipped", ""),
                  f(dn, "peak_mib", "{:.0f}"),
                  f"{r['speedup']:.0f}×" if "speedup" in r else "—")
    Console(width=160).print(t)
    if a.modes:
        t = Table(title="gsplat's optional modes on the CPU path: time / classic render's, same run (fwd, bwd, total)")
        for col in ("image", "N", "D", "antialiased", "absgrad"):
            t.add_column(col, justify="right")
        for r in rows:
            cells = [" / ".join(f"{x[k]:.2f}" for k in ("fwd_ms", "bwd_ms", "total_ms")) if (x := r.get(m + "_ratio")) else "—"
                     for m in ("antialiased", "absgrad")]
            t.add_row(f"{r['res']}²", f"{r['n']:,}", str(r["d"]), *cells)
        Console(width=160).print(t)
    if a.vs_numba:
        t = Table(title="the CPU path as shipped (native compositing where it applies) / the numba kernels alone, same run")
        for col in ("image", "N", "D", "numba fwd ms", "numba bwd ms", "numba total ms", "CPU total ms", "numba / CPU"):
            t.add_column(col, justify="right")
        for r in rows:
            x, nb = r.get("numba_only", {}), r["cpu"]
            if "total_ms" in x and "total_ms" in nb:
                t.add_row(f"{r['res']}²", f"{r['n']:,}", str(r["d"]), f"{x['fwd_ms']:.1f}", f"{x['bwd_ms']:.1f}",
                          f"{x['total_ms']:.1f}", f"{nb['total_ms']:.1f}", f"{x['total_ms'] / nb['total_ms']:.2f}×")
        Console(width=160).print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
