"""Multi-process training benchmark: R processes (torchrun, gloo) against 1 process at the same total batch.

Trains the same scene for the same steps with ``train.views_per_step = G`` in three ways, interleaved per
repeat so machine noise hits all alike:

- ``1 proc x T threads``: one process with every core (the honest baseline on one machine);
- ``1 proc x 1 thread``: one process, one core;
- ``R procs x T/R threads``: ``torchrun --standalone --nproc_per_node R -m pcf_gs train ... --distributed``.

Time is the steady-state wall time per step, from the metrics log (``elapsed_s`` between the first and the
last log line), so process start and scene loading are not counted. The stages are compressed so every run
covers warm-up, instance and cross-view steps and some densification. Prints a table and writes JSON.

    python tools/bench_distributed.py --scene /path/to/o25_scene --steps 150 --json bench_distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

CLI = [sys.executable, "-m", "pcf_gs", "-q", "train"]


def thread_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def schedule(steps: int, log_every: int) -> list[str]:
    """Settings that put a third of ``steps`` in each stage, densify in the first two thirds, log often."""
    third = steps // 3
    sets = {"train.iterations": steps, "train.warmup_iterations": third, "train.cross_view_start": 2 * third,
            "train.densify_from": third // 2, "train.densify_every": max(1, third // 3),
            "train.densify_until": 2 * third, "train.log_every": log_every, "train.checkpoint_every": steps}
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


def seconds_per_step(run: Path) -> float:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    recs = [r for r in recs if "elapsed_s" in r]
    first, last = recs[0], recs[-1]
    return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", required=True, help="scene folder (e.g. the 25-object benchmark scene)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--views-per-step", type=int, default=2, help="G, the total batch of view groups per step")
    ap.add_argument("--procs", type=int, default=2, help="R, processes of the distributed run")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="T, threads of the one-process baseline")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--config", default="cpu_fast")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", default="bench_distributed.json")
    a = ap.parse_args()
    log_every = max(1, a.steps // 10)
    common = ["--config", a.config, *schedule(a.steps, log_every), "--set", f"train.views_per_step={a.views_per_step}"]
    for s in a.overrides:
        common += ["--set", s]
    per = max(1, a.cores // a.procs)
    cells = {
        f"1 proc x {a.cores} threads": (CLI, a.cores),
        "1 proc x 1 thread": (CLI, 1),
        f"{a.procs} procs x {per} threads": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                             f"--nproc_per_node={a.procs}", "-m", "pcf_gs", "-q", "train"], per),
    }
    times: dict[str, list[float]] = {k: [] for k in cells}
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        for rep in range(a.repeats):
            for name, (cmd, threads) in cells.items():
                run = Path(tmp) / f"{rep}_{len(times[name])}_{name.replace(' ', '_')}"
                extra = ["--distributed"] if "procs" in name else []
                subprocess.run(cmd + [a.scene, "--out", str(run), *extra, *common], check=True, env=thread_env(threads),
                               stdout=subprocess.DEVNULL)
                times[name].append(seconds_per_step(run))
                console.print(f"repeat {rep + 1}: {name}: {times[name][-1] * 1000:.0f} ms/step")
    base = f"1 proc x {a.cores} threads"
    table = Table(title=f"training, {a.steps} steps, views_per_step={a.views_per_step} (median of {a.repeats})")
    for col in ("run", "ms / step", f"x {base}"):
        table.add_column(col)
    res = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        ratio = med / statistics.median(times[base])
        res[name] = {"s_per_step": ts, "median_s_per_step": med, "ratio_to_baseline": ratio}
        table.add_row(name, f"{med * 1000:.0f}", f"{ratio:.2f}")
    console.print(table)
    Path(a.json).write_text(json.dumps({"scene": a.scene, "steps": a.steps, "views_per_step": a.views_per_step,
                                        "procs": a.procs, "cores": a.cores, "cells": res}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
