"""Segmentation at scale: wall time, CPU time and peak memory of ``segment`` against the number of
views and of Gaussians, and of MVOA alone against the number of nodes, on synthetic inputs.

No training: :func:`synthetic_scene` builds a run directly (random Gaussians on a floor and on
spheres, one instance embedding per sphere) with ray-cast 2D predictions, and
:func:`synthetic_nodes` builds MVOA nodes (500 objects, 100 masks per view, 5% merged masks).
Every cell runs in its own process (one thread: torch, numba, BLAS), which reports

- per stage of :func:`pcf_gs.segment.pipeline.segment_scene` (classes, render_nodes, clustering,
  label_views, label_gaussians, export): wall and CPU seconds, and the peak RSS during the stage
  (the kernel's high-water mark, reset at each stage start via /proc/self/clear_refs), which
  includes what stays resident (the model, the scene's label maps);
- the RSS after building the inputs, and the whole process's peak.

Cells are cached in OUT/<cell>.json, so a rerun continues where it stopped; the table and the JSON
hold every cell in OUT.

    python tools/bench_segment_scale.py --out /tmp/bench_seg --json docs/bench_segment_scale.json
    python tools/bench_segment_scale.py --only mvoa --nodes 1e4,1e5 --code /path/to/other/checkout  # another version

Defaults: views 60 / 300 / 1000 at 10^5 Gaussians; Gaussians 10^5 / 10^6 / 10^7 at 20 views; MVOA at
10^4 / 10^5 / 10^6 nodes; images 64 x 64. Both are reduced (a capture has 256+ px and the Gaussians
axis would take 60 views) so that the 1,000-view and 10^7-Gaussian cells finish in an hour or two on
a shared 2-core machine; time per view grows with pixels and Gaussians, the scaling does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

STAGES = ("classes", "render_nodes", "clustering", "label_views", "label_gaussians", "export")


def synthetic_scene(n_gaussians: int, n_views: int, size: int = 64, n_objects: int = 100, embed_dim: int = 8,
                    sh_degree: int = 3, seed: int = 0):
    """(run, scene): a room of ``n_objects`` spheres on a floor, as random Gaussians, with ``n_views`` cameras
    on a ring and analytic 2D predictions (no training).

    Gaussians: half on the floor (class 0, stuff), half on the sphere surfaces (class 1, thing), sized to
    tile their surfaces (log-scale of sqrt(area / count)); each object's Gaussians carry the same instance
    embedding (plus noise), var ~ 0.09. The 2D predictions of a view are the ray-cast sphere / floor hits
    (instance ids renumbered per view, as a 2D model does), so nodes and labels are realistic.
    """
    from pcf_gs.config import Config
    from pcf_gs.data.scene import ClassTable, Frame, Normalization, Scene
    from pcf_gs.lift.model import ModelSpec
    from pcf_gs.lift.run import Run

    rng = np.random.default_rng(seed)
    centres = np.c_[rng.uniform(-0.8, 0.8, (n_objects, 2)), np.zeros(n_objects)]
    radii = rng.uniform(0.04, 0.09, n_objects) * min(2.5, np.sqrt(100 / n_objects))  # fewer objects: larger
    centres[:, 2] = radii
    n_floor = n_gaussians // 2
    n_obj_g = n_gaussians - n_floor
    floor = np.c_[rng.uniform(-1, 1, (n_floor, 2)), np.zeros(n_floor)]
    area = 4 * np.pi * radii**2
    obj = rng.choice(n_objects, n_obj_g, p=area / area.sum())
    d = rng.normal(size=(n_obj_g, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = np.concatenate([floor, centres[obj] + radii[obj, None] * d]).astype(np.float32)
    s_floor = np.sqrt(4.0 / max(n_floor, 1))
    s_obj = np.sqrt(area.sum() / max(n_obj_g, 1))
    scale = np.r_[np.full(n_floor, s_floor), np.full(n_obj_g, s_obj)].astype(np.float32)
    label = np.r_[np.full(n_floor, -1), obj]
    N = n_gaussians
    emb = rng.normal(size=(n_objects + 1, embed_dim)).astype(np.float32) * 2.0
    S = (sh_degree + 1) ** 2
    g = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.from_numpy(pts),
        "scales": torch.from_numpy(np.log(scale))[:, None].repeat(1, 3),
        "quats": torch.tensor([1.0, 0, 0, 0]).repeat(N, 1),
        "opacities": torch.full((N,), 2.0),
        "sh0": torch.rand(N, 1, 3, generator=g) - 0.5,
        "shN": torch.zeros(N, S - 1, 3),
        "semantics": torch.from_numpy(np.where(label[:, None] >= 0, [-2.0, 2.0], [2.0, -2.0]).astype(np.float32)),
        "inst_mu": torch.from_numpy(emb[label + 1]) + 0.05 * torch.randn(N, embed_dim, generator=g),
        "inst_var": torch.full((N, embed_dim), -2.5),
    }
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.contiguous(), requires_grad=False) for k, v in params.items()})
    # cameras on a ring around the room, looking at its centre
    ang = 2 * np.pi * np.arange(n_views) / n_views
    height = 0.8 + 0.4 * np.sin(7 * ang)
    pos = np.c_[2.2 * np.cos(ang), 2.2 * np.sin(ang), height]
    c2w = np.zeros((n_views, 4, 4), np.float32)
    for v in range(n_views):
        f = -pos[v] / np.linalg.norm(pos[v])
        r = np.cross(f, [0, 0, 1.0])
        r /= np.linalg.norm(r)
        u = np.cross(f, r)  # OpenCV: y down
        c2w[v, :3, :3] = np.stack([r, u, f], 1)
        c2w[v, :3, 3] = pos[v]
        c2w[v, 3, 3] = 1
    W = H = size
    K = np.array([[1.2 * W, 0, W / 2], [0, 1.2 * W, H / 2], [0, 0, 1]], np.float32)
    frames = []
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    rays_cam = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1).reshape(-1, 3)
    for v in range(n_views):
        dirs = rays_cam @ c2w[v, :3, :3].T.astype(np.float64)
        o = c2w[v, :3, 3].astype(np.float64)
        t_best = np.where(dirs[:, 2] < 0, -o[2] / np.minimum(dirs[:, 2], -1e-9), np.inf)
        t_best[np.abs(np.c_[o[:2]].T + t_best[:, None] * dirs[:, :2]).max(1) > 1] = np.inf
        hit = np.full(len(dirs), -1)
        for k in range(n_objects):  # ray-sphere
            oc = o - centres[k]
            b = dirs @ oc
            c = oc @ oc - radii[k] ** 2
            a = (dirs**2).sum(1)
            disc = b**2 - a * c
            t = (-b - np.sqrt(np.maximum(disc, 0))) / a
            ok = (disc > 0) & (t > 0) & (t < t_best)
            t_best[ok] = t[ok]
            hit[ok] = k
        perm = rng.permutation(n_objects) + 1
        ins = np.where(hit >= 0, perm[np.maximum(hit, 0)], 0).reshape(H, W).astype(np.int32)
        sem = (hit >= 0).reshape(H, W).astype(np.int32)
        frames.append(Frame(name=f"{v:05d}", rgb=np.zeros((H, W, 3), np.uint8), K=K, c2w=c2w[v],
                            semantics=sem, instances=ins))
    test_ids = list(range(0, n_views, 10))
    train_ids = [i for i in range(n_views) if i % 10]
    classes = ClassTable.messy_rooms()
    scene = Scene(root=Path("."), format="synth", frames=frames, train_ids=train_ids,
                  test_ids=test_ids, classes=classes)
    run = Run(params=params, spec=ModelSpec(num_classes=2, embed_dim=embed_dim, sh_degree=sh_degree),
              c2w=torch.from_numpy(c2w), K=torch.from_numpy(K)[None].repeat(n_views, 1, 1), width=W, height=H,
              frames=[f.name for f in frames], train_ids=train_ids, test_ids=test_ids, normalization=Normalization(),
              classes=classes, root=scene.root, format="synth", config=Config())
    return run, scene


def synthetic_nodes(n_nodes: int, n_objects: int = 500, masks_per_view: int = 100, embed_dim: int = 8, seed: int = 0):
    """MVOA nodes as a trained model gives them: ``n_nodes`` masks of ``n_objects`` objects, ``masks_per_view``
    per view; a node's mean is its object's embedding plus noise (sd 0.1), its variance the object's
    profile (0.05-0.4 per dimension) +-10%, its score in [0.9, 1); 5% are merged masks (the mean of two
    objects, score 0.3-0.85) that should not become objects."""
    from pcf_gs.segment.mvoa import Nodes

    g = torch.Generator().manual_seed(seed)
    M, E = n_nodes, embed_dim
    centres = torch.randn(n_objects, E, generator=g) * 2.0
    profile = 0.05 * 2 ** (3 * torch.rand(n_objects, E, generator=g))
    obj = torch.randint(0, n_objects, (M,), generator=g)
    mu = centres[obj] + 0.1 * torch.randn(M, E, generator=g)
    var = profile[obj] * (1 + 0.1 * (2 * torch.rand(M, E, generator=g) - 1))
    score = 0.9 + 0.1 * torch.rand(M, generator=g)
    merged = torch.rand(M, generator=g) < 0.05
    other = torch.randint(0, n_objects, (M,), generator=g)
    mu[merged] = 0.5 * (centres[obj] + centres[other])[merged] + 0.1 * torch.randn(int(merged.sum()), E, generator=g)
    score[merged] = 0.3 + 0.55 * torch.rand(int(merged.sum()), generator=g)
    view = torch.arange(M) // masks_per_view
    return Nodes(mu, var, score, view, torch.arange(M) % masks_per_view + 1, torch.randint(10, 2000, (M,), generator=g))


# ---- one cell, in its own process ----

def _rss_peak_gib() -> float:
    """This process's resident-set high-water mark (GiB), from /proc (resettable), else getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rss_now_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Meter:
    """Per stage: wall s, CPU s, peak RSS GiB (hooked into segment's stage clock)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self._start()

    def _start(self):
        self._t, self._c = time.perf_counter(), _cpu_s()
        _reset_peak()

    def lap(self, name: str) -> None:
        self.rows[name] = {"wall_s": round(time.perf_counter() - self._t, 2), "cpu_s": round(_cpu_s() - self._c, 2),
                           "peak_gib": round(_rss_peak_gib(), 3)}
        self._start()


def run_cell(cell: dict) -> dict:
    """Measure one cell (in this process): {"kind": "segment", "views", "gaussians", "size"} or
    {"kind": "mvoa", "nodes"}."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if cell["kind"] == "mvoa":
        from pcf_gs.config import SegmentConfig
        from pcf_gs.segment.mvoa import associate, refine_prototypes

        sc = SegmentConfig()
        nodes = synthetic_nodes(int(cell["nodes"]))
        out = _setup_done(t0)
        m = _Meter()
        protos, T = associate(nodes, threshold=sc.threshold, score_threshold=sc.score_threshold, min_views=sc.min_views)
        m.lap("associate")
        refine_prototypes(nodes, protos, sc.refine_rounds)
        m.lap("refine")
        out.update(stages=m.rows, prototypes=len(protos), views=int(nodes.view.max()) + 1)
    else:
        import tempfile

        import pcf_gs.segment.pipeline as pl

        from pcf_gs.config import apply_overrides

        run, scene = synthetic_scene(int(cell["gaussians"]), int(cell["views"]), int(cell["size"]))
        cfg = apply_overrides(run.config, cell.get("sets") or [])
        cfg.render.backend = "cpu"
        out = _setup_done(t0)
        m = _Meter()
        clock = pl._StageClock()
        lap = clock.lap
        clock.lap = lambda name: (lap(name), m.lap(name))
        with tempfile.TemporaryDirectory() as tmp:
            info = pl.segment_scene(run, scene, cfg, Path(tmp) / "seg", split="test", progress=False, clock=clock)
        out.update(stages=m.rows, nodes=info["nodes"], prototypes=info["prototypes"],
                   train_views=len(run.train_ids), test_views=len(run.test_ids))
    out["wall_s"] = round(sum(r["wall_s"] for r in out["stages"].values()), 2)
    out["cpu_s"] = round(sum(r["cpu_s"] for r in out["stages"].values()), 2)
    out["peak_gib"] = max(r["peak_gib"] for r in out["stages"].values())
    out["process_peak_gib"] = max(out["peak_gib"], out["setup_peak_gib"])
    return out


def _setup_done(t0: float) -> dict:
    """Setup time, RSS after it and its peak (then the peak is reset for the stages)."""
    return {"setup_s": round(time.perf_counter() - t0, 2), "rss_setup_gib": round(_rss_now_gib(), 3),
            "setup_peak_gib": round(_rss_peak_gib(), 3)}


def cell_name(cell: dict) -> str:
    if cell["kind"] == "mvoa":
        return f"mvoa_n{int(cell['nodes'])}"
    sets = "".join(f"_{x.replace('segment.', '').replace('=', '')}" for x in cell.get("sets") or [])
    return f"seg_v{int(cell['views'])}_g{int(cell['gaussians'])}_s{int(cell['size'])}{sets}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_segment_scale"))
    ap.add_argument("--json", type=Path, default=Path("bench_segment_scale.json"))
    ap.add_argument("--views", default="60,300,1000", help="views axis (at --base-gaussians)")
    ap.add_argument("--gaussians", default="1e5,1e6,1e7", help="Gaussians axis (at --base-views)")
    ap.add_argument("--base-views", type=int, default=20)
    ap.add_argument("--base-gaussians", type=float, default=1e5)
    ap.add_argument("--nodes", default="1e4,1e5,1e6", help="MVOA alone")
    ap.add_argument("--size", type=int, default=64, help="image side (pixels)")
    ap.add_argument("--only", choices=("views", "gaussians", "mvoa"), action="append", default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="setting for the segment cells (e.g. segment.chunk_views=1); names the cells")
    ap.add_argument("--code", type=Path, default=None, help="run the cells against the pcf_gs of this checkout")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per cell")
    ap.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # internal: measure one cell, print JSON
    a = ap.parse_args(argv)
    if a.cell:
        print("CELL " + json.dumps(run_cell(json.loads(a.cell))))
        return 0
    from rich.console import Console
    from rich.table import Table

    only = set(a.only or ("views", "gaussians", "mvoa"))
    cells = []
    if "views" in only:
        cells += [{"kind": "segment", "views": int(v), "gaussians": int(a.base_gaussians), "size": a.size,
                   "sets": a.sets} for v in a.views.split(",")]
    if "gaussians" in only:
        cells += [{"kind": "segment", "views": a.base_views, "gaussians": int(float(g)), "size": a.size,
                   "sets": a.sets} for g in a.gaussians.split(",")]
    if "mvoa" in only:
        cells += [{"kind": "mvoa", "nodes": int(float(n))} for n in a.nodes.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = str((a.code or Path(__file__).resolve().parents[1]).resolve())
    console = Console(width=200)
    results = {}
    for cell in cells:
        name = cell_name(cell)
        if name in results:
            continue
        f = a.out / f"{name}.json"
        if f.is_file():
            results[name] = json.loads(f.read_text())
            continue
        console.print(f"[bold]{name}[/bold] ...")
        t = time.time()
        p = subprocess.run([sys.executable, __file__, "--cell", json.dumps(cell)], env=env, capture_output=True,
                           text=True, timeout=a.timeout)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("CELL ")]
        if p.returncode != 0 or not lines:
            console.print(f"[red]{name} failed[/red] (exit {p.returncode}):\n{p.stderr[-3000:]}")
            continue
        r = {"cell": cell, **json.loads(lines[-1][5:]), "process_s": round(time.time() - t, 1)}
        f.write_text(json.dumps(r, indent=1))
        results[name] = r

    for f in sorted(a.out.glob("*.json")):  # every cell measured into OUT, also by earlier invocations
        results.setdefault(f.stem, json.loads(f.read_text()))
    order = {"mvoa": 2}
    results = dict(sorted(results.items(), key=lambda kv: (
        order.get(kv[1]["cell"]["kind"], 0), kv[1]["cell"].get("size", 0), bool(kv[1]["cell"].get("sets")),
        kv[1]["cell"].get("gaussians", 0), kv[1]["cell"].get("views", 0), kv[1]["cell"].get("nodes", 0), kv[0])))
    seg = [r for r in results.values() if r["cell"]["kind"] == "segment"]
    if seg:
        short = {"classes": "classes", "render_nodes": "nodes", "clustering": "cluster", "label_views": "label views",
                 "label_gaussians": "votes", "export": "export"}
        t = Table(title="segment: CPU s per stage, wall s, peak RSS (GiB, max over stages); 1 thread")
        for c in ("views", "Gaussians", "px", "settings", "nodes", "protos", *[short[s] for s in STAGES], "CPU s", "wall s",
                  "CPU s / view", "peak GiB"):
            t.add_column(c, justify="right")
        for r in seg:
            c, st = r["cell"], r["stages"]
            t.add_row(str(c["views"]), f"{c['gaussians']:.0e}", str(c["size"]), " ".join(c.get("sets") or []), str(r["nodes"]),
                      str(r["prototypes"]), *[f"{st[s]['cpu_s']:.1f}" for s in STAGES], f"{r['cpu_s']:.0f}",
                      f"{r['wall_s']:.0f}", f"{r['cpu_s'] / c['views']:.2f}", f"{r['peak_gib']:.2f}")
        console.print(t)
    mv = [r for r in results.values() if r["cell"]["kind"] == "mvoa"]
    if mv:
        t = Table(title="MVOA alone (default settings): wall s (CPU s), peak RSS GiB")
        for c in ("nodes", "views", "prototypes", "associate + min_views", "refine", "total s", "peak GiB"):
            t.add_column(c, justify="right")
        for r in mv:
            st = r["stages"]
            t.add_row(f"{r['cell']['nodes']:.0e}", str(r["views"]), str(r["prototypes"]),
                      *[f"{st[s]['wall_s']:.1f} ({st[s]['cpu_s']:.1f})" for s in ("associate", "refine")],
                      f"{r['wall_s']:.1f} ({r['cpu_s']:.1f})", f"{r['peak_gib']:.2f}")
        console.print(t)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=env["PYTHONPATH"], capture_output=True,
                            text=True).stdout.strip()
    a.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "commit": commit, "cells": results},
                                 indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
