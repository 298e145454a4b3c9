"""Quality benchmark: PCF-Lift's ablation on splats across scene size and 2D mask noise.

For every scene of the grid (``pcf-gs synth`` with N objects and boundary-noise
window W, plus the generator's miss / merge / split noise) it trains three
models with one fixed preset and scores six methods on the test views:

    (a) raw 2D predictions                 (no training)
    (b) deterministic + HDBSCAN            training "det":  model.embedding=deterministic, train.w_cross=0
    (c) deterministic + MVOA               training "det"
    (d) probabilistic + HDBSCAN            training "prob": train.w_cross=0
    (e) probabilistic + MVOA               training "prob"
    (f) probabilistic + cross-view + MVOA  training "full": the preset as is (the full method)

Reported per method: PQ^scene, SQ, RQ, mIoU (percent), test PSNR (dB) and
training wall time; per probabilistic training, the rendered variance on
ground-truth instance boundaries against object interiors (the paper's
Fig. 5; :func:`pcf_gs.evaluation.diagnostics.boundary_uncertainty`). Hyper-parameters are the
preset's for every scene; nothing is tuned per scene.

    python tools/bench_quality.py --quick                  # one scene, half the steps: ~8 min on 2 cores
    python tools/bench_quality.py --out /work/bq --jobs 2  # the full grid (hours), resumable

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
}
SHORT = {"a": "raw 2D", "b": "det + HDBSCAN", "c": "det + MVOA", "d": "prob + HDBSCAN", "e": "prob + MVOA", "f": "full"}
TRAININGS = {
    "det": ["model.embedding=deterministic", "train.w_cross=0"],
    "prob": ["train.w_cross=0"],
    "full": [],
}
# HDBSCAN sees this many sampled pixel embeddings (the preset's cpu_fast value, 5000, would starve the
# smaller of 100 objects below min_cluster_size; the baseline gets the default's 20000)
SEGMENT_SETS = {"hdbscan": ["segment.hdbscan_samples=20000"], "mvoa": []}
# schedule keys scaled with --iterations (fractions of the preset's own iteration count)
SCHEDULE_KEYS = ("warmup_iterations", "cross_view_start", "densify_from", "densify_until", "opacity_reset_every",
                 "sh_increase_every", "checkpoint_every")

CLI = [sys.executable, "-m", "pcf_gs", "-q"]


def scene_name(objects: int, window: int, a) -> str:
    return f"o{objects}_w{window}_f{a.frames}_s{a.size}_seed{a.seed}"


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


def make_scene(path: Path, objects: int, window: int, a) -> None:
    if (path / "metadata.json").exists():
        return
    subprocess.run(CLI + ["synth", str(path), "--overwrite", "--objects", str(objects), "--boundary-window", str(window),
                          "--frames", str(a.frames), "--size", str(a.size), "--seed", str(a.seed),
                          "--split-rate", str(a.split_rate), "--merge-rate", str(a.merge_rate),
                          "--miss-rate", str(a.miss_rate)], check=True, stdout=subprocess.DEVNULL)


def train_and_measure(scene: Path, kind: str, a, threads: int, log: Console) -> dict:
    """Train one model (skipped when done), then segment it both ways and measure; cached in RESULT.json."""
    cell = Path(a.out) / "runs" / scene.name / kind
    result = cell / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    run_dir = cell / "run"
    sets = TRAININGS[kind] + schedule_overrides(a.config, a.iterations) + a.overrides
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


def segment_defaults() -> list[str]:
    """Today's ``segment`` defaults as overrides: a run saves the settings it was trained with, and cells
    trained before a change of segmentation defaults are measured with the new ones."""
    import dataclasses

    from pcf_gs.config import SegmentConfig

    return [f"segment.{k}={v}" for k, v in dataclasses.asdict(SegmentConfig()).items() if k != "clustering"]


def measure(run_dir: Path, scene_dir: Path, cell: Path, kind: str) -> None:
    """(child process) segment with MVOA and HDBSCAN, evaluate, and measure boundary uncertainty."""
    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.diagnostics import boundary_uncertainty
    from pcf_gs.evaluation.evaluate import evaluate_predictions, split_psnr
    from pcf_gs.lift.run import Run
    from pcf_gs.segment.pipeline import run_segment

    run = Run.load(run_dir)
    scene = load_scene(scene_dir, run.config.data, progress=False)
    res: dict = {"psnr": round(split_psnr(run, scene), 2)}
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    res["num_gaussians"] = [r for r in recs if "num_gaussians" in r][-1]["num_gaussians"]
    for clustering in ("mvoa", "hdbscan"):
        seg = cell / f"segment_{clustering}"
        t = time.time()
        info = run_segment(run_dir, seg, clustering=clustering, gaussian_labels="direct",
                           overrides=segment_defaults() + SEGMENT_SETS[clustering], progress=False)
        m = evaluate_predictions(scene, seg)
        res[clustering] = {k: round(m[k], 2) for k in ("pq", "sq", "rq", "miou")}
        res[clustering].update(prototypes=info["prototypes"], segment_wall_s=round(time.time() - t, 1))
    if kind != "det":  # a deterministic model's variance is a constant
        u = boundary_uncertainty(run, scene)
        res["uncertainty"] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in u.items()}
    (cell / "measure.json").write_text(json.dumps(res, indent=2) + "\n")


def raw_2d(scene_dir: Path, a) -> dict:
    out = Path(a.out) / "runs" / scene_dir.name / "raw2d.json"
    if out.exists():
        return json.loads(out.read_text())
    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.evaluate import evaluate_predictions, write_raw_predictions

    sc = load_scene(scene_dir, progress=False)
    pred = out.parent / "raw2d"
    write_raw_predictions(sc, pred)
    m = evaluate_predictions(sc, pred)
    res = {k: round(m[k], 2) for k in ("pq", "sq", "rq", "miou")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res) + "\n")
    return res


def method_row(trainings: dict, raw: dict, m: str) -> dict:
    _, kind, clustering = METHODS[m]
    if kind is None:
        return {**raw, "psnr": None, "train_wall_s": None}
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


def report(results: list[dict], a, console: Console) -> dict:
    """Aggregate cells into per-method averages; print tables; return the JSON document."""
    avg = {}
    for m in METHODS:
        rows = [r["methods"][m] for r in results]
        avg[m] = {k: mean([r[k] for r in rows]) for k in ("pq", "sq", "rq", "miou", "psnr", "train_wall_s")}
    t = Table(title="PQ^scene per scene (objects / W), and the grid average")
    t.add_column("method")
    for r in results:
        t.add_column(f"{r['objects']}/{r['window']}", justify="right")
    for k in ("avg PQ", "SQ", "RQ", "mIoU", "PSNR", "train s"):
        t.add_column(k, justify="right")
    for m in METHODS:
        row = [f"({m}) {SHORT[m]}"] + [f"{r['methods'][m]['pq']:.1f}" for r in results]
        row += [str(avg[m][k]) if avg[m][k] is not None else "—" for k in ("pq", "sq", "rq", "miou", "psnr", "train_wall_s")]
        t.add_row(*row)
    console.print(t)
    ratios = {f"{r['objects']}/{r['window']}": {k: r["uncertainty"][k]["ratio"] for k in r["uncertainty"]} for r in results}
    per_object = {f"{r['objects']}/{r['window']}": {k: r["uncertainty"][k].get("object_ratio_median", float("nan"))
                                                     for k in r["uncertainty"]} for r in results}
    u = Table(title="rendered variance, boundary / interior (> 1: less certain where objects meet)")
    u.add_column("scene")
    for c in ("prob (d, e), pixels", "full (f), pixels", "prob, per-object median", "full, per-object median"):
        u.add_column(c, justify="right")
    for s, v in ratios.items():
        po = per_object[s]
        u.add_row(s, *(f"{d.get(k, float('nan')):.2f}" for d in (v, po) for k in ("prob", "full")))
    console.print(u)
    checks = {
        "f_minus_b": round(avg["f"]["pq"] - avg["b"]["pq"], 2),
        "f_ge_e_ge_c": bool(avg["f"]["pq"] >= avg["e"]["pq"] >= avg["c"]["pq"]),
    }
    for r in results:
        if (r["objects"], r["window"]) in ((25, 9), (100, 9)):
            checks[f"f_at_{r['objects']}_w{r['window']}"] = r["methods"]["f"]["pq"]
    console.print(f"targets: (f) - (b) = {checks['f_minus_b']:+.2f} PQ (want >= +3); "
                  f"(f) >= (e) >= (c): {checks['f_ge_e_ge_c']}; "
                  + ", ".join(f"{k} = {v}" for k, v in checks.items() if k.startswith("f_at")))
    return {"settings": {k: v for k, v in vars(a).items() if k not in ("cmd",)}, "methods": {m: n for m, (n, _, _) in METHODS.items()},
            "average": avg, "checks": checks, "uncertainty_ratio": ratios, "uncertainty_object_median": per_object,
            "scenes": results}


def markdown(doc: dict) -> str:
    res = doc["scenes"]
    head = "| method | " + " | ".join(f"{r['objects']} obj, W={r['window']}" for r in res) + " | **average** | SQ | RQ | mIoU | PSNR | train s |"
    lines = [head, "|" + "---|" * (len(res) + 7)]
    for m, name in doc["methods"].items():
        avg = doc["average"][m]
        cells = [f"{r['methods'][m]['pq']:.1f}" for r in res]
        tail = [f"**{avg['pq']:.1f}**"] + [("—" if avg[k] is None else f"{avg[k]:.1f}") for k in ("sq", "rq", "miou", "psnr")]
        tail.append("—" if avg["train_wall_s"] is None else f"{avg['train_wall_s']:.0f}")
        lines.append(f"| ({m}) {name} | " + " | ".join(cells + tail) + " |")
    lines.append("")
    lines.append("| rendered variance, boundary / interior | " + " | ".join(f"{r['objects']} obj, W={r['window']}" for r in res) + " |")
    lines.append("|" + "---|" * (len(res) + 1))
    for k, name in (("prob", "probabilistic (d, e)"), ("full", "full (f)")):
        lines.append(f"| {name}, pooled over pixels | " + " | ".join(f"{r['uncertainty'][k]['ratio']:.2f}" for r in res) + " |")
    for k, name in (("prob", "probabilistic (d, e)"), ("full", "full (f)")):
        lines.append(f"| {name}, median over objects | "
                     + " | ".join(f"{r['uncertainty'][k].get('object_ratio_median', float('nan')):.2f}" for r in res) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_measure":
        measure(Path(argv[1]), Path(argv[2]), Path(argv[3]), json.loads(argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="one scene (25 objects, W=9, seed 2) with half the preset's steps: ~8 min on 2 cores")
    ap.add_argument("--out", default="/tmp/bench_quality", help="work folder (scenes, runs, cached results)")
    ap.add_argument("--json", default="bench_quality.json")
    ap.add_argument("--md", default=None, help="also write the tables as Markdown here")
    ap.add_argument("--figure", default=None, help="save an uncertainty map of the first scene's full model here (PNG)")
    ap.add_argument("--figure-cell", default="25/9", metavar="N/W", help="scene of the figure (default: 25/9, else the first)")
    ap.add_argument("--objects", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 9, 17])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1, help="generator seed of every scene")
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
        a.objects, a.windows, a.seed = [25], [9], 2
        a.iterations = a.iterations or 1500
    console = Console()
    out = Path(a.out)
    t0 = time.time()
    scenes = [(n, w, out / "scenes" / scene_name(n, w, a)) for n in a.objects for w in a.windows]
    for n, w, p in scenes:
        if not a.report_only:
            make_scene(p, n, w, a)
    cores = os.cpu_count() or 1
    threads = a.threads or max(1, cores // max(1, a.jobs))
    jobs = [(p, kind) for _, _, p in scenes for kind in TRAININGS if kind in a.trainings]
    if a.report_only:
        def run_job(job):
            f = out / "runs" / job[0].name / job[1] / "result.json"
            return json.loads(f.read_text()) if f.exists() else None
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
    for n, w, p in scenes:
        tr = by_scene.get(p, {})
        if set(tr) != set(TRAININGS):
            console.print(f"[yellow]{p.name}: not all trainings done yet; left out of the tables[/yellow]")
            continue
        raw = raw_2d(p, a)
        results.append({
            "objects": n, "window": w, "scene": p.name,
            "methods": {m: method_row(tr, raw, m) for m in METHODS},
            "uncertainty": {k: tr[k]["uncertainty"] for k in ("prob", "full") if "uncertainty" in tr[k]},
            "num_gaussians": {k: tr[k]["num_gaussians"] for k in tr},
        })
    if not results:
        console.print("no scene has all three trainings done yet")
        return 1
    doc = report(results, a, console)
    doc["wall_s"] = round(time.time() - t0, 1)
    doc["cores"] = cores
    Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    if a.md:
        Path(a.md).write_text(markdown(doc))
    if a.figure:
        fig = next((p for n, w, p in scenes if f"{n}/{w}" == a.figure_cell), scenes[0][2])
        uncertainty_figure(out / "runs" / fig.name / "full" / "run", fig, Path(a.figure))
    console.print(f"wall time {doc['wall_s']:.0f} s; wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
