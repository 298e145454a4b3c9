"""Where a training step's time goes: per-slice milliseconds per step in each training stage.

Loads a trained run (``--run``; by default it trains the benchmark scene of ``tools/bench_train.py``
once into ``--out``), then runs ``--steps`` real optimisation steps at three points of the schedule,
each from the checkpoint's state: the warm-up (appearance + semantics), the instance stage and the
cross-view stage. Library functions are wrapped with timers from the outside (nothing in the package
changes), so the slices are:

    batch draw            views and loss pixels (ViewSampler)
    colour / feature      projection fwd, raster fwd (binning + compositing), raster bwd
    feature pixels        the sampled-pixel feature render (train.semantic_pixels > 0): weights + blend, blend bwd
    projection bwd        both passes (the feature pass's only with train.densify_feature_grad)
    appearance loss       L1 + SSIM forward
    semantic / contrastive / concentration / var reg / cross-view loss   forward
    loss autograd bwd     the rest of backward: the losses' and SH's torch autograd
    densification         gsplat strategy (statistics every step, grow/prune every densify_every)
    optimizer, EMA        Adam steps, slow-embedding update
    other                 the step's remaining Python (the difference to the measured step)

A window of ``densify_every`` steps (the default) includes exactly one grow/prune. On CUDA every
timer synchronises, which itself costs time: compare slices, not the total, with an untimed run.

    python tools/profile_train.py --out /tmp/profile_train --json profile_train.json
    python tools/profile_train.py --run RUN --steps 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

SLICES = [
    "batch draw", "colour projection fwd", "colour raster fwd", "appearance loss", "feature projection fwd",
    "feature raster fwd", "feature pixels fwd", "semantic loss", "contrastive loss", "concentration loss", "var reg loss",
    "cross-view loss", "colour raster bwd", "feature raster bwd", "feature pixels bwd", "projection bwd", "loss autograd bwd",
    "densification", "optimizer", "EMA", "other",
]
PARTS = ["  colour binning", "  feature binning", "  raster bwd reduction", "  pixel weights"]  # inside the raster slices


class Timers:
    """Accumulated seconds per slice; ``wrap`` times a callable under a name (a function of its arguments)."""

    def __init__(self, cuda: bool, clock=time.perf_counter):
        self.s: dict[str, float] = defaultdict(float)
        self.cuda = cuda
        self.clock = clock
        self.render_pass = "colour"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def wrap(self, fn, name):
        def timed(*args, **kw):
            key = name(*args, **kw) if callable(name) else name
            self.sync()
            t = self.clock()
            try:
                return fn(*args, **kw)
            finally:
                self.sync()
                self.s[key] += self.clock() - t

        return timed


def instrument_library(timers: Timers) -> None:
    """Wrap the library's functions with ``timers``, in the namespaces they are called from (once per process)."""
    import importlib

    objective = importlib.import_module("pcf_gs.lift.objective")
    trainer = importlib.import_module("pcf_gs.lift.trainer")
    rasterize = importlib.import_module("pcf_gs.render.rasterize")  # the package attribute is the function
    losses = importlib.import_module("pcf_gs.lift.losses")
    projection = importlib.import_module("pcf_gs.render.projection")
    binning = importlib.import_module("pcf_gs.render.cpu_binning")
    composite = importlib.import_module("pcf_gs.render.cpu_composite")

    def in_pass(fn, name):
        def f(*a, **k):
            timers.render_pass = name
            return fn(*a, **k)

        return f

    objective.render_rgb = in_pass(objective.render_rgb, "colour")
    objective.render_features = in_pass(objective.render_features, "feature")
    for attr in ("project_gaussians_fused", "project_gaussians"):
        setattr(rasterize, attr, timers.wrap(getattr(rasterize, attr), lambda *a, **k: f"{timers.render_pass} projection fwd"))
    rasterize.composite = timers.wrap(rasterize.composite, lambda *a, **k: f"{timers.render_pass} raster fwd")
    pixels = importlib.import_module("pcf_gs.render.cpu_pixels")
    rasterize.rasterize_pixels = timers.wrap(rasterize.rasterize_pixels, "feature pixels fwd")
    blend_bwd = rasterize._PixelBlend.backward
    rasterize._PixelBlend.backward = staticmethod(timers.wrap(blend_bwd, "feature pixels bwd"))
    pixels.pixel_weights = timers.wrap(pixels.pixel_weights, "  pixel weights")
    # parts of the CPU raster slices (also counted in them)
    binning.bin_tiles = timers.wrap(binning.bin_tiles, lambda *a, **k: f"  {timers.render_pass} binning")
    composite.reduce_entries = timers.wrap(composite.reduce_entries, "  raster bwd reduction")
    # backward of the custom autograd functions: colour renders carry 3 channels in training
    comp_bwd = rasterize._Composite.backward
    rasterize._Composite.backward = staticmethod(
        timers.wrap(comp_bwd, lambda ctx, v_out, v_alpha: ("colour" if v_out.shape[-1] == 3 else "feature") + " raster bwd"))
    proj_bwd = projection._FusedProjection.backward
    projection._FusedProjection.backward = staticmethod(timers.wrap(proj_bwd, "projection bwd"))
    for fn, name in [("appearance_loss", "appearance loss"), ("semantic_loss", "semantic loss"),
                     ("pixel_contrastive_loss", "contrastive loss"), ("concentration_loss", "concentration loss"),
                     ("variance_regularizer", "var reg loss"), ("view_centroids", "cross-view loss"),
                     ("cross_view_loss", "cross-view loss")]:
        setattr(losses, fn, timers.wrap(getattr(losses, fn), name))
    trainer.ema_update_slow = timers.wrap(trainer.ema_update_slow, "EMA")


def instrument_trainer(tr, timers: Timers) -> None:
    """Wrap one trainer's sampler, optimisers and densifier with ``timers``."""
    tr.sampler.step_views = timers.wrap(tr.sampler.step_views, "batch draw")
    tr.sampler.sample_pixels = timers.wrap(tr.sampler.sample_pixels, "batch draw")
    for o in tr.optimizers.values():
        o.step = timers.wrap(o.step, "optimizer")
    # backward = from the end of pre_backward to the start of post_backward
    d = tr.densifier
    pre, post = d.pre_backward, d.post_backward
    mark = {}

    def pre_backward(*a, **k):
        timers.sync()
        t = timers.clock()
        pre(*a, **k)
        timers.sync()
        mark["t"] = timers.clock()
        timers.s["densification"] += mark["t"] - t

    def post_backward(*a, **k):
        timers.sync()
        t = timers.clock()
        timers.s["backward"] += t - mark.pop("t", t)
        post(*a, **k)
        timers.sync()
        timers.s["densification"] += timers.clock() - t

    d.pre_backward, d.post_backward = pre_backward, post_backward


def profile_stage(run_dir: Path, step0: int, steps: int, device: torch.device, timers: Timers,
                  overrides: list[str]) -> dict:
    """Milliseconds per step per slice over ``steps`` steps from ``step0``, the model as in the checkpoint."""
    from pcf_gs.config import apply_overrides, config_from_dict
    from pcf_gs.data import load_scene
    from pcf_gs.lift.checkpoint import load_checkpoint
    from pcf_gs.lift.trainer import Trainer

    ck = load_checkpoint(run_dir)
    cfg = apply_overrides(config_from_dict(ck["config"]), overrides)
    scene = load_scene(Path(ck["scene"]["root"]), cfg.data, progress=False)
    tr = Trainer(scene, cfg, run_dir / "profile_scratch", device, progress=False)
    tr.load_state_dict(ck)
    instrument_trainer(tr, timers)
    tr.train_step(step0)  # warm: numba kernels compiled, caches filled (not timed)
    timers.s.clear()
    total = 0.0
    for s in range(step0 + 1, step0 + 1 + steps):
        timers.sync()
        t = timers.clock()
        tr.train_step(s)
        timers.sync()
        total += timers.clock() - t
    sec = dict(timers.s)
    bwd = sec.pop("backward", 0.0)
    inner = sum(sec.get(k, 0.0) for k in ("colour raster bwd", "feature raster bwd", "feature pixels bwd", "projection bwd"))
    sec["loss autograd bwd"] = max(bwd - inner, 0.0)
    sec["other"] = max(total - sum(v for k, v in sec.items() if k not in PARTS), 0.0)
    return {"step": step0, "steps": steps, "num_gaussians": len(tr.params["means"]),
            "ms_per_step": round(1000 * total / steps, 2),
            "slices_ms": {k: round(1000 * sec.get(k, 0.0) / steps, 2) for k in SLICES + PARTS}}


def ensure_run(out: Path) -> Path:
    """The benchmark scene of tools/bench_train.py (25 objects, 60 frames, 128²) trained with cpu_fast, once."""
    cli = [sys.executable, "-m", "pcf_gs", "-q"]
    scene, run = out / "scene_o25_f60_s128_seed0", out / "run"
    if not (scene / "metadata.json").exists():
        subprocess.run(cli + ["synth", str(scene), "--objects", "25", "--frames", "60", "--size", "128", "--seed", "0"],
                       check=True)
    if not (run / "checkpoint.pt").exists():
        subprocess.run(cli + ["train", str(scene), "--out", str(run), "--config", "cpu_fast", "--device", "cpu"], check=True)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a trained run (default: train the benchmark scene once into --out)")
    ap.add_argument("--out", default="/tmp/profile_train")
    ap.add_argument("--steps", type=int, default=0, help="steps per stage (default: the run's densify_every)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", default="profile_train.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change a setting of the run's config for the profiled steps (repeatable)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or this process's CPU time (steadier on a busy machine)")
    a = ap.parse_args(argv)
    from pcf_gs.config import config_from_dict
    from pcf_gs.lift.checkpoint import load_checkpoint

    run = Path(a.run) if a.run else ensure_run(Path(a.out))
    tc = config_from_dict(load_checkpoint(run)["config"]).train
    steps = a.steps or tc.densify_every
    # one grow/prune inside each densifying window: start just after a multiple of densify_every
    points = {"warm-up": max(tc.warmup_iterations - steps - 1, 0),
              "instance": tc.warmup_iterations + tc.densify_every,
              "cross-view": tc.cross_view_start + 1}
    device = torch.device(a.device)
    timers = Timers(device.type == "cuda", time.perf_counter if a.clock == "wall" else time.process_time)
    instrument_library(timers)
    res = {name: profile_stage(run, s, steps, device, timers, a.overrides) for name, s in points.items() if s < tc.iterations}
    t = Table(title=f"training step profile ({run}, {a.device} {' '.join(a.overrides)}, {a.clock} ms per step over {steps} steps)")
    t.add_column("slice")
    for name, r in res.items():
        t.add_column(f"{name}\n(step {r['step']}, {r['num_gaussians']} G)", justify="right")
    for k in SLICES + PARTS:
        t.add_row(k, *[f"{r['slices_ms'][k]:.1f} ({100 * r['slices_ms'][k] / r['ms_per_step']:.0f}%)" for r in res.values()])
    t.add_row("[bold]step", *[f"[bold]{r['ms_per_step']:.1f}" for r in res.values()])
    Console().print(t)
    Path(a.json).write_text(json.dumps({"run": str(run), "device": a.device, "clock": a.clock, "overrides": a.overrides,
                                        "stages": res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
