"""Quality benchmark (version 2): PCF-Lift's ablation on splats across scene size and 2D mask noise.

For every cell of the grid (``pcf-gs synth`` with N objects, boundary-noise window W and noise
model, plus the generator's miss / merge / split noise) and every generator seed, it trains
three models with one fixed preset and scores seven methods on the test views with the official
scorer of the layout (:mod:`pcf_gs.evaluation.metrics`):

    (a) raw 2D predictions                 (no training)
    (b) deterministic + HDBSCAN            training "det":  model.embedding=deterministic, train.w_cross=0
    (c) deterministic + MVOA               training "det"
    (d) probabilistic + HDBSCAN            training "prob": train.w_cross=0
    (e) probabilistic + MVOA               training "prob"
    (f) probabilistic + cross-view + MVOA  training "full": the preset as is (the full method)
    (g) (f) with the paper's plain MVOA    no score threshold, no view-count filter, no refinement

Version 2 (issue 16): the paper's boundary noise (``--noise paper``: 100 anchors per 512² image
at random pixels, instance ids only) at 256², three seeds per cell reported as mean ± std, and
the old harsh model as a named stress setting at W = 9 (``--stress-windows``). Cells are cached
per (scene, training); measurements carry the scorer's version and are re-measured (not
retrained) when it changes. The cache key is the --out folder, not the settings: a cached training whose
saved settings differ from today's (a default changed since) is reused with a warning naming them, so keep
one --out per setting.

Reported per method: PQ^scene (official), PQ things (objects only), SQ, RQ, mIoU (percent),
test PSNR (dB) and training wall time; per probabilistic training, the rendered variance on
ground-truth instance boundaries against object interiors (the paper's
Fig. 5; :func:`pcf_gs.evaluation.diagnostics.boundary_uncertainty`). Hyper-parameters are the
preset's for every scene; nothing is tuned per scene.

    python tools/bench_quality.py --quick                  # one scene, half the steps: ~8 min on 2 cores
    python tools/bench_quality.py --out /work/bq --objects 25 --windows 9 --seeds 1 2 3   # targets first
    python tools/bench_quality.py --out /work/bq --jobs 2  # the full grid (many hours), resumable
    python tools/bench_quality.py --out /work/bq500 --objects 500 --windows 9 --seeds 1 --stress-windows \
        --trainings full --threads 1                        # one 500-object cell, (f) only: ~30 min

Every training and every evaluated cell is kept under ``--out``; a rerun skips
what is done, so the grid can be run in pieces (``--objects 25 --windows 9``).
Prints a table and writes JSON (``--json``) and a Markdown table (``--md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table

METHODS = {
    "a": ("raw 2D predictions", None, None),
    "b": ("deterministic + HDBSCAN (Contrastive Lift)", "det", "hdbscan"),
    "c": ("deterministic + MVOA", "det", "mvoa"),
    "d": ("probabilistic + HDBSCAN", "prob", "hdbscan"),
    "e": ("probabilistic + MVOA", "prob", "mvoa"),
    "f": ("probabilistic + cross-view + MVOA (full)", "full", "mvoa"),
    "g": ("full, the paper's plain MVOA", "full", "mvoa_plain"),
}
SHORT = {"a": "raw 2D", "b": "det + HDBSCAN", "c": "det + MVOA", "d": "prob + HDBSCAN", "e": "prob + MVOA", "f": "full",
         "g": "full, plain MVOA"}
# measurements made with another scorer are re-measured (segment and eval, no training). "official-2026-12b":
# ground truth at its size on disk (before: at the training size) and label maps at the views' native size (c: with
# the 2D blur scaled to that size; d: segment.vote_rule=majority, each Gaussian's voted class one-hot)
SCORER = "official-2026-12d"
TRAININGS = {
    "det": ["model.embedding=deterministic", "train.w_cross=0"],
    "prob": ["train.w_cross=0"],
    "full": [],
}
# HDBSCAN sees this many sampled pixel embeddings (the preset's cpu_fast value, 5000, would starve the
# smaller of 100 objects below min_cluster_size; the baseline gets the default's 20000, and from 100 objects
# on HDBSCAN_SAMPLES_PER_OBJECT per object: at 500 objects 20000 would leave the average object ~40 samples,
# under min_cluster_size 50)
HDBSCAN_SAMPLES_PER_OBJECT = 200
SEGMENT_SETS = {"hdbscan": ["segment.hdbscan_samples=20000"], "mvoa": [],
                "mvoa_plain": ["segment.score_threshold=0", "segment.min_views=1", "segment.refine_rounds=0"]}
CLUSTERINGS = {"det": ("mvoa", "hdbscan"), "prob": ("mvoa", "hdbscan"), "full": ("mvoa", "hdbscan", "mvoa_plain")}
# schedule keys scaled with --iterations (fractions of the preset's own iteration count)
SCHEDULE_KEYS = ("warmup_iterations", "cross_view_start", "densify_from", "densify_until", "opacity_reset_every",
                 "sh_increase_every", "checkpoint_every")

CLI = [sys.executable, "-m", "pcf_gs", "-q"]
# PQ^scene the PCF-Lift paper reports on Messy Rooms' old room (real renders, Detic's 2D masks), by object
# count: for context only, the scenes and the 2D model differ from ours
PAPER = {25: 80.9, 50: 78.3, 100: 74.8, 500: 60.3}


def scene_name(objects: int, window: int, noise: str, seed: int, a) -> str:
    tag = "" if noise == "stress" else f"_{noise}"  # stress cells keep version 1's names
    return f"o{objects}_w{window}{tag}_f{a.frames}_s{a.size}_seed{seed}"


def schedule_overrides(preset: str, iterations: int | None) -> list[str]:
    """--set lines that shrink or stretch the preset's schedule to ``iterations`` steps."""
    if not iterations:
        return []
    from pcf_gs.config import load_config

    tc = load_config(preset).train
    f = iterations / tc.iterations
    sets = [f"train.iterations={iterations}"]
    for k in SCHEDULE_KEYS:
        sets.append(f"train.{k}={max(1, round(getattr(tc, k) * f))}")
    return sets


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def make_scene(path: Path, objects: int, window: int, noise: str, seed: int, a) -> None:
    if (path / "metadata.json").exists():
        return
    subprocess.run(CLI + ["synth", str(path), "--overwrite", "--objects", str(objects), "--boundary-window", str(window),
                          "--boundary-model", noise,
                          "--frames", str(a.frames), "--size", str(a.size), "--seed", str(seed),
                          "--split-rate", str(a.split_rate), "--merge-rate", str(a.merge_rate),
                          "--miss-rate", str(a.miss_rate)], check=True, stdout=subprocess.DEVNULL)


def train_and_measure(scene: Path, kind: str, a, threads: int, log: Console) -> dict:
    """Train one model (skipped when done), then segment it both ways and measure; cached in RESULT.json."""
    cell = Path(a.out) / "runs" / scene.name / kind
    result = cell / "result.json"
    run_dir = cell / "run"
    sets = TRAININGS[kind] + schedule_overrides(a.config, a.iterations) + a.overrides
    stale = stale_settings(run_dir, a.config, sets)
    if stale:  # kept (the cache is the point), but a table must not mix defaults silently
        log.print(f"[yellow]warning: {scene.name} {kind} was trained with other settings than today's: "
                  f"{', '.join(stale)}; its numbers are reused (another --out retrains)[/]")
    if result.exists():
        done = json.loads(result.read_text())
        if done.get("scorer") == SCORER:
            return done
    env = thread_env(threads)
    train_s = None
    timing = cell / "train_time.json"
    if timing.exists() and (run_dir / "checkpoint.pt").exists():
        train_s = json.loads(timing.read_text())["train_wall_s"]
    else:
        before = 0.0
        if (run_dir / "checkpoint.pt").exists():  # an interrupted earlier run of this bench: continue it
            recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
            before = max([r.get("elapsed_s", 0.0) for r in recs], default=0.0)
            cmd = CLI + ["train", str(scene), "--out", str(run_dir), "--resume", "--device", "cpu"]
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cmd = CLI + ["train", str(scene), "--out", str(run_dir), "--config", a.config, "--device", "cpu",
                         *sum((["--set", s] for s in sets), [])]
        cell.mkdir(parents=True, exist_ok=True)
        log.print(f"train {scene.name} {kind}" + (" (resumed)" if before else ""))
        t = time.time()
        with open(cell / "train.log", "a") as lf:
            subprocess.run(cmd, check=True, env=env, stdout=lf, stderr=lf)
        train_s = before + time.time() - t
        timing.write_text(json.dumps({"train_wall_s": train_s, "threads": threads}) + "\n")
    log.print(f"measure {scene.name} {kind} (trained in {train_s:.0f} s)")
    subprocess.run([sys.executable, __file__, "_measure", str(run_dir), str(scene), str(cell), json.dumps(kind)],
                   check=True, env=env)
    res = json.loads((cell / "measure.json").read_text())
    res.update(train_wall_s=round(train_s, 1), threads=threads, overrides=sets)
    result.write_text(json.dumps(res, indent=2) + "\n")
    return res


# settings that do not change what a training learns
_NO_EFFECT = {"checkpoint_every", "log_every", "max_nonfinite_steps"}


def stale_settings(run_dir: Path, preset: str, sets: list[str]) -> list[str]:
    """The model / train settings whose value in a cached run's ``config.yaml`` differs from what this bench
    would train today (the preset's defaults plus ``sets``), as "section.key: then -> now"; [] when there is no
    cached run (no checkpoint: the bench then trains afresh). A changed default otherwise goes unnoticed: the cache
    key is the --out folder, not the settings."""
    saved = run_dir / "config.yaml"
    if not (saved.exists() and (run_dir / "checkpoint.pt").exists()):
        return []
    import yaml

    from pcf_gs.config import load_config

    then = yaml.safe_load(saved.read_text()) or {}
    now = load_config(preset, sets)
    out = []
    for section in ("model", "train"):
        cur = getattr(now, section)
        for k, v in (then.get(section) or {}).items():
            if k in _NO_EFFECT or not hasattr(cur, k):
                continue
            if getattr(cur, k) != v:
                out.append(f"{section}.{k}: {v} -> {getattr(cur, k)}")
    return out


def segment_defaults() -> list[str]:
    """Today's ``segment`` defaults as overrides: a run saves the settings it was trained with, and cells
    trained before a change of segmentation defaults are measured with the new ones."""
    import dataclasses

    from pcf_gs.config import SegmentConfig

    return [f"segment.{k}={v}" for k, v in dataclasses.asdict(SegmentConfig()).items() if k != "clustering"]


def segment_sets(clustering: str, n_objects: int) -> list[str]:
    """The bench's segment overrides for ``clustering`` on a scene of ``n_objects`` objects."""
    sets = list(SEGMENT_SETS[clustering])
    if clustering == "hdbscan" and n_objects * HDBSCAN_SAMPLES_PER_OBJECT > 20000:
        sets.append(f"segment.hdbscan_samples={n_objects * HDBSCAN_SAMPLES_PER_OBJECT}")
    return sets


def measure(run_dir: Path, scene_dir: Path, cell: Path, kind: str) -> None:
    """(child process) segment with MVOA and HDBSCAN, evaluate, and measure boundary uncertainty."""
    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.diagnostics import boundary_uncertainty
    from pcf_gs.evaluation.evaluate import evaluate_predictions, scoring_scene, split_psnr
    from pcf_gs.lift.run import Run
    from pcf_gs.segment.pipeline import run_segment

    run = Run.load(run_dir)
    scene = load_scene(scene_dir, run.config.data, progress=False)  # the training size: PSNR, uncertainty
    truth = scoring_scene(scene_dir, run.config.data, progress=False)  # ground truth as on disk
    res: dict = {"psnr": round(split_psnr(run, scene), 2)}
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    res["num_gaussians"] = [r for r in recs if "num_gaussians" in r][-1]["num_gaussians"]
    n_objects = int(json.loads((scene_dir / "metadata.json").read_text())["metadata"].get("num_instances", 0))
    for clustering in CLUSTERINGS[kind]:
        seg = cell / f"segment_{clustering}"
        t = time.time()
        info = run_segment(run_dir, seg, clustering=clustering.split("_")[0], gaussian_labels="direct",
                           overrides=segment_defaults() + segment_sets(clustering, n_objects), progress=False)
        m = evaluate_predictions(truth, seg)
        res[clustering] = {k: round(m[k], 2) for k in ("pq", "pq_things", "sq", "rq", "miou")}
        res[clustering].update(prototypes=info["prototypes"], segment_wall_s=round(time.time() - t, 1))
    if kind != "det":  # a deterministic model's variance is a constant
        u = boundary_uncertainty(run, scene)
        res["uncertainty"] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in u.items()}
    res["scorer"] = SCORER
    (cell / "measure.json").write_text(json.dumps(res, indent=2) + "\n")


def raw_2d(scene_dir: Path, a) -> dict:
    out = Path(a.out) / "runs" / scene_dir.name / "raw2d.json"
    if out.exists() and json.loads(out.read_text()).get("scorer") == SCORER:
        return json.loads(out.read_text())
    from pcf_gs.evaluation.evaluate import evaluate_predictions, scoring_scene, write_raw_predictions

    sc = scoring_scene(scene_dir, progress=False)
    pred = out.parent / "raw2d"
    write_raw_predictions(sc, pred)
    m = evaluate_predictions(sc, pred)
    res = {k: round(m[k], 2) for k in ("pq", "pq_things", "sq", "rq", "miou")} | {"scorer": SCORER}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res) + "\n")
    return res


def method_row(trainings: dict, raw: dict, m: str) -> dict:
    """One method's metrics on one scene; every value None when its training is not done yet."""
    _, kind, clustering = METHODS[m]
    if kind is None:
        return {**raw, "psnr": None, "train_wall_s": None}
    if kind not in trainings:
        return dict.fromkeys(("pq", "pq_things", "sq", "rq", "miou", "psnr", "train_wall_s"))
    t = trainings[kind]
    return {**t[clustering], "psnr": t["psnr"], "train_wall_s": t["train_wall_s"]}


def uncertainty_figure(run_dir: Path, scene_dir: Path, path: Path) -> None:
    """RGB | ground-truth instances | rendered variance on objects (log scale; room grey) | the same with
    ground-truth boundaries, first test view."""
    import cv2
    import numpy as np
    import torch

    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.diagnostics import instance_boundaries
    from pcf_gs.lift.model import render_features
    from pcf_gs.lift.run import Run
    from pcf_gs.splats.export import distinct_colors

    run = Run.load(run_dir)
    scene = load_scene(scene_dir, run.config.data, progress=False)
    f = scene.split("test")[0]
    vm = torch.linalg.inv(torch.from_numpy(f.c2w.astype(np.float32)))[None]
    K = torch.from_numpy(f.K.astype(np.float32))[None]
    with torch.no_grad():
        var = render_features(run.params, run.spec, vm, K, f.width, f.height, backend=run.config.render.backend, slow=False,
                              eps2d=run.config.render.eps2d)["var"][0].mean(-1).numpy()
    lv = np.log(np.maximum(var, 1e-6))
    thing = f.gt_instances > 0  # the room's Gaussians get no instance loss: its variance means nothing
    lo, hi = np.percentile(lv[thing] if thing.any() else lv, [2, 98])
    heat = cv2.applyColorMap((np.clip((lv - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    heat[~thing] = 60
    pal = (distinct_colors(int(f.gt_instances.max()) + 1) * 255).astype(np.uint8)[:, ::-1]
    inst = pal[f.gt_instances]
    inst[f.gt_instances == 0] = 40
    b, _ = instance_boundaries(f.gt_instances, f.gt_semantics)
    heat_b = heat.copy()
    heat_b[b] = (0.5 * heat_b[b] + 0.5 * np.array([255, 255, 255])).astype(np.uint8)
    rgb = (f.image_float()[:, :, ::-1] * 255).astype(np.uint8)
    s = max(1, 256 // f.height)
    panels = [cv2.resize(p, (f.width * s, f.height * s), interpolation=cv2.INTER_NEAREST) for p in (rgb, inst, heat, heat_b)]
    gap = np.full((f.height * s, 4, 3), 255, np.uint8)
    img = np.concatenate(sum(([p, gap] for p in panels), [])[:-1], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    cv2.imwrite(str(tmp), img)
    tmp.replace(path)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 2) if xs else None


def spread(xs) -> tuple[float | None, float | None, int]:
    """(mean, sample std, n) of the non-None values; std is None with fewer than two."""
    xs = [float(x) for x in xs if x is not None]
    if not xs:
        return None, None, 0
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else None
    return round(m, 2), (None if sd is None else round(sd, 2)), len(xs)


def fmt(ms) -> str:
    m, sd, n = ms
    if m is None:
        return "—"
    return f"{m:.1f}" + ("" if sd is None else f" ± {sd:.1f}") + ("" if n == 3 else f" (n={n})")


def group_key(r: dict) -> str:
    return f"{r['objects']}/{r['window']} {r['noise']}"


def aggregate(results: list[dict]) -> dict:
    """Per cell (objects / W / noise): every method's metrics as (mean, std, seeds) over seeds."""
    groups: dict = {}
    for r in results:
        groups.setdefault(group_key(r), []).append(r)
    out = {}
    for g, rs in groups.items():
        out[g] = {"objects": rs[0]["objects"], "window": rs[0]["window"], "noise": rs[0]["noise"],
                  "seeds": sorted(r["seed"] for r in rs),
                  "methods": {m: {k: spread([r["methods"][m].get(k) for r in rs])
                                  for k in ("pq", "pq_things", "sq", "rq", "miou", "psnr", "train_wall_s")}
                              for m in METHODS},
                  "uncertainty": {k: mean([r["uncertainty"][k]["ratio"] for r in rs if k in r["uncertainty"]])
                                  for k in ("prob", "full")}}
    return out


def report(results: list[dict], a, console: Console) -> dict:
    """Aggregate cells over seeds and into grid averages; print tables; return the JSON document."""
    from pcf_gs.config import SegmentConfig

    cells = aggregate(results)
    avg = {m: {k: mean([c["methods"][m][k][0] for c in cells.values()])
               for k in ("pq", "pq_things", "sq", "rq", "miou", "psnr", "train_wall_s")} for m in METHODS}
    sc = SegmentConfig()
    t = Table(title="PQ^scene (official) per cell: objects / W noise, mean ± std over seeds; grid average",
              caption=f"MVOA defaults in (c, e, f): score >= {sc.score_threshold}, prototype seen from >= "
                      f"{sc.min_views} views, {sc.refine_rounds} refinement rounds; (g) is the paper's plain MVOA "
                      "(none of them). PQ things: thing classes only.")
    t.add_column("method")
    for g in cells:
        t.add_column(g, justify="right")
    for k in ("avg PQ", "PQ things", "SQ", "RQ", "mIoU", "PSNR", "train s"):
        t.add_column(k, justify="right")
    for m in METHODS:
        row = [f"({m}) {SHORT[m]}"] + [fmt(c["methods"][m]["pq"]) for c in cells.values()]
        row += [str(avg[m][k]) if avg[m][k] is not None else "—"
                for k in ("pq", "pq_things", "sq", "rq", "miou", "psnr", "train_wall_s")]
        t.add_row(*row)
    console.print(t)
    u = Table(title="rendered variance, boundary / interior (> 1: less certain where objects meet), mean over seeds")
    u.add_column("cell")
    u.add_column("prob (d, e)", justify="right")
    u.add_column("full (f)", justify="right")
    for g, c in cells.items():
        u.add_row(g, *(("—" if c["uncertainty"][k] is None else f"{c['uncertainty'][k]:.2f}") for k in ("prob", "full")))
    console.print(u)
    # (f) - (b) on the grid average, per seed, so the seed-to-seed spread is stated beside it
    per_seed: dict = {}
    for r in results:
        f, b = r["methods"]["f"]["pq"], r["methods"]["b"]["pq"]
        if f is not None and b is not None:
            per_seed.setdefault(r["seed"], []).append(f - b)
    diff = spread([sum(v) / len(v) for v in per_seed.values()])
    checks = {"f_minus_b": diff, "f_ge_e_ge_c": bool((avg["f"]["pq"] or 0) >= (avg["e"]["pq"] or 0) >= (avg["c"]["pq"] or 0))}
    for g, c in cells.items():
        if c["window"] == 9:
            checks[f"f_at_{c['objects']}_w9_{c['noise']}"] = c["methods"]["f"]["pq"]
    targets = {25: 85, 50: 80, 75: 75, 100: 75}
    lines = [f"(f) - (b), grid average, mean ± std over seeds = {fmt(diff)} PQ (want >= +3)"]
    for g, c in cells.items():
        if c["window"] == 9 and c["noise"] == "paper":
            want = targets.get(c["objects"])
            paper = PAPER.get(c["objects"])
            lines.append(f"(f) at {g}: {fmt(c['methods']['f']['pq'])}" + (f" (target >= {want})" if want else "")
                         + (f" [PCF-Lift paper, real rooms: {paper}]" if paper else "")
                         + f", things only {fmt(c['methods']['f']['pq_things'])}")
    console.print("targets: " + "; ".join(lines))
    return {"version": 2, "scorer": SCORER,
            "settings": {k: v for k, v in vars(a).items() if k not in ("cmd",)},
            "methods": {m: n for m, (n, _, _) in METHODS.items()},
            "mvoa_defaults": {"score_threshold": sc.score_threshold, "min_views": sc.min_views,
                              "refine_rounds": sc.refine_rounds},
            "average": avg, "checks": checks, "cells": cells, "scenes": results}


def markdown(doc: dict) -> str:
    cells = doc["cells"]
    head = ("| method | " + " | ".join(cells) + " | **average** | PQ things | SQ | RQ | mIoU | PSNR | train s |")
    lines = ["PQ^scene (official scorer), mean ± std over generator seeds (n = 3 unless stated).", "",
             head, "|" + "---|" * (len(cells) + 8)]
    for m, name in doc["methods"].items():
        avg = doc["average"][m]
        row = [fmt(tuple(c["methods"][m]["pq"])) for c in cells.values()]
        tail = [f"**{avg['pq']:.1f}**" if avg["pq"] is not None else "—"]
        tail += [("—" if avg[k] is None else f"{avg[k]:.1f}") for k in ("pq_things", "sq", "rq", "miou", "psnr")]
        tail.append("—" if avg["train_wall_s"] is None else f"{avg['train_wall_s']:.0f}")
        lines.append(f"| ({m}) {name} | " + " | ".join(row + tail) + " |")
    lines.append("| PCF-Lift paper, real Messy Rooms (context) | "
                 + " | ".join(str(PAPER.get(c["objects"], "—")) for c in cells.values()) + " |" + " |" * 7)
    lines += ["", "| PQ things (objects only) | " + " | ".join(cells) + " |", "|" + "---|" * (len(cells) + 1)]
    for m, name in doc["methods"].items():
        lines.append(f"| ({m}) {name} | " + " | ".join(fmt(tuple(c["methods"][m]["pq_things"])) for c in cells.values()) + " |")
    d = doc["defaults"] if "defaults" in doc else doc["mvoa_defaults"]
    lines += ["", f"MVOA defaults in (c, e, f): score threshold {d['score_threshold']}, min views {d['min_views']}, "
                  f"{d['refine_rounds']} refinement rounds; (g) the paper's plain MVOA.",
              f"(f) - (b), grid average over seeds: {fmt(tuple(doc['checks']['f_minus_b']))}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":
        measure(Path(argv[1]), Path(argv[2]), Path(argv[3]), json.loads(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one scene (25 objects, W=9, paper noise, seed 2, 128²) with half the preset's steps: ~8 min on 2 cores")
    ap.add_argument("--out", default="/tmp/bench_quality", help="work folder (scenes, runs, cached results)")
    ap.add_argument("--json", default="bench_quality.json")
    ap.add_argument("--md", default=None, help="also write the tables as Markdown here")
    ap.add_argument("--figure", default=None, help="save an uncertainty map of the first scene's full model here (PNG)")
    ap.add_argument("--figure-cell", default="25/9", metavar="N/W", help="scene of the figure (default: 25/9, else the first)")
    ap.add_argument("--objects", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 9, 17])
    ap.add_argument("--noise", nargs="+", choices=["paper", "stress"], default=["paper"],
                    help="boundary-noise model(s) of the grid (pcf-gs synth --boundary-model)")
    ap.add_argument("--stress-windows", type=int, nargs="*", default=[9],
                    help="also run the stress noise model at these windows (default: 9)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="generator seeds; every cell is run per seed")
    ap.add_argument("--miss-rate", type=float, default=0.1)
    ap.add_argument("--merge-rate", type=float, default=0.1)
    ap.add_argument("--split-rate", type=float, default=0.1)
    ap.add_argument("--config", default="cpu_fast")
    ap.add_argument("--iterations", type=int, default=None, help="training steps (the preset's schedule is scaled to fit)")
    ap.add_argument("--jobs", type=int, default=1, help="trainings at once")
    ap.add_argument("--threads", type=int, default=None, help="threads per training (default: cores / jobs)")
    ap.add_argument("--trainings", nargs="+", choices=list(TRAININGS), default=list(TRAININGS),
                    help="train only these (experiments; the tables need all three)")
    ap.add_argument("--report-only", action="store_true", help="tabulate the cells already done under --out; train nothing")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra training override (all trainings)")
    a = ap.parse_args(argv)
    if a.quick:
        a.objects, a.windows, a.seeds, a.noise, a.stress_windows, a.size = [25], [9], [2], ["paper"], [], 128
        a.iterations = a.iterations or 1500
    console = Console()
    out = Path(a.out)
    t0 = time.time()
    combos = [(n, w, z) for n in a.objects for w in a.windows for z in a.noise]
    combos += [(n, w, "stress") for n in a.objects for w in a.stress_windows if (n, w, "stress") not in combos]
    # the seeds go where the targets are first: every W = 9 cell with all its seeds, then the rest seed by seed
    order = [(sd, c) for c in combos if c[1] == 9 for sd in a.seeds]
    order += [(sd, c) for sd in a.seeds for c in combos if c[1] != 9]
    scenes = [(n, w, z, sd, out / "scenes" / scene_name(n, w, z, sd, a)) for sd, (n, w, z) in order]
    for n, w, z, sd, p in scenes:
        if not a.report_only:
            make_scene(p, n, w, z, sd, a)
    cores = os.cpu_count() or 1
    threads = a.threads or max(1, cores // max(1, a.jobs))
    jobs = [(p, kind) for *_, p in scenes for kind in TRAININGS if kind in a.trainings]
    if a.report_only:
        def run_job(job):
            f = out / "runs" / job[0].name / job[1] / "result.json"
            r = json.loads(f.read_text()) if f.exists() else None
            if r is not None and r.get("scorer") != SCORER:
                console.print(f"[yellow]{job[0].name} {job[1]}: measured with scorer {r.get('scorer')}, not "
                              f"{SCORER}; a run without --report-only re-measures it (no training)[/yellow]")
            return r
    else:
        def run_job(job):
            return train_and_measure(job[0], job[1], a, threads, console)
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        done = list(pool.map(run_job, jobs))
    by_scene: dict = {}
    for (p, kind), r in zip(jobs, done):
        if r is not None:
            by_scene.setdefault(p, {})[kind] = r
    results = []
    for n, w, z, sd, p in scenes:
        tr = by_scene.get(p, {})
        if not tr:
            console.print(f"[yellow]{p.name}: no training done yet; left out of the tables[/yellow]")
            continue
        if set(tr) != set(TRAININGS):
            console.print(f"[yellow]{p.name}: only {', '.join(sorted(tr))} trained; the other methods are blank[/yellow]")
        raw = raw_2d(p, a)
        results.append({
            "objects": n, "window": w, "noise": z, "seed": sd, "scene": p.name,
            "methods": {m: method_row(tr, raw, m) for m in METHODS},
            "uncertainty": {k: tr[k]["uncertainty"] for k in ("prob", "full") if k in tr and "uncertainty" in tr[k]},
            "num_gaussians": {k: tr[k]["num_gaussians"] for k in tr},
        })
    if not results:
        console.print("no scene has a training done yet")
        return 1
    doc = report(results, a, console)
    doc["wall_s"] = round(time.time() - t0, 1)
    doc["cores"] = cores
    Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    if a.md:
        Path(a.md).write_text(markdown(doc))
    if a.figure:
        fig = next((p for n, w, _, _, p in scenes if f"{n}/{w}" == a.figure_cell), scenes[0][-1])
        uncertainty_figure(out / "runs" / fig.name / "full" / "run", fig, Path(a.figure))
    console.print(f"wall time {doc['wall_s']:.0f} s; wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
