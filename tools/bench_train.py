"""Training benchmark: the default CPU preset on a synthetic scene, end to end.

Generates a scene with the synthetic generator (25 objects, 60 frames, 128x128
by default), trains with ``pcf-gs train`` in a subprocess (so its peak RSS is
the child's own), segments the test views with MVOA, evaluates, and scores
the raw 2D predictions the same way for reference. Prints a table and writes
JSON.

    python tools/bench_train.py --out /tmp/bench_train --json bench_train.json
    python tools/bench_train.py --device cuda --json bench_train_cuda.json   # a GPU machine: the GPU recipe

``--device cuda`` trains on the GPU with the preset ``pcf-gs train`` picks there (no ``--config``: the full
recipe; ``--config`` overrides), in the sync-free step of :class:`pcf_gs.lift.trainer.Trainer`; segmentation
and evaluation stay on the CPU. Peak RSS is then the host's only (GPU memory is not measured).

Targets (issue 4, 2 cores): test PSNR >= 28 dB, wall time <= 15 min, peak RSS <= 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def run(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS of that child in GiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far, KiB
    return wall, max(peak, before) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_train", help="work folder (scene, run, segmentation)")
    ap.add_argument("--json", default="bench_train.json")
    ap.add_argument("--objects", type=int, default=25)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="preset (default: cpu_fast on cpu; on cuda what pcf-gs train picks)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "pcf_gs", "-q"]
    scene = out / f"scene_o{args.objects}_f{args.frames}_s{args.size}_seed{args.seed}"
    if not (scene / "metadata.json").exists():
        subprocess.run(cli + ["synth", str(scene), "--objects", str(args.objects), "--frames", str(args.frames),
                              "--size", str(args.size), "--seed", str(args.seed)], check=True)
    run_dir = out / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    sets = sum((["--set", s] for s in args.overrides), [])
    if args.config is None and args.device == "cpu":
        args.config = "cpu_fast"
    preset = ["--config", args.config] if args.config else []
    train_s, peak_gib = run(cli + ["train", str(scene), "--out", str(run_dir), *preset, "--device", args.device, *sets])
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in recs if "num_gaussians" in r][-1]
    seg = run_dir / "segment"
    seg_s, _ = run(cli + ["segment", str(run_dir), "--out", str(seg), "--export-ply"])
    subprocess.run(cli + ["eval", str(run_dir), "--data", str(scene), "--pred", str(seg)], check=True)
    m = json.loads((seg / "metrics.json").read_text())
    from pcf_gs.data import load_scene
    from pcf_gs.evaluation.evaluate import evaluate_predictions, write_raw_predictions

    sc = load_scene(scene, progress=False)
    write_raw_predictions(sc, out / "raw2d")
    raw = evaluate_predictions(sc, out / "raw2d")
    res = {
        "scene": {"objects": args.objects, "frames": args.frames, "size": args.size, "seed": args.seed},
        "config": args.config or "(device preset)", "device": args.device, "overrides": args.overrides,
        "train_wall_s": round(train_s, 1), "iterations": last["step"], "it_per_s": round(last["step"] / train_s, 2),
        "peak_rss_gib": round(peak_gib, 3), "num_gaussians": last["num_gaussians"],
        "test_psnr": round(m["psnr"], 2), "pq": round(m["pq"], 2), "sq": round(m["sq"], 2), "rq": round(m["rq"], 2),
        "miou": round(m["miou"], 2), "segment_wall_s": round(seg_s, 1),
        "raw2d": {k: round(raw[k], 2) for k in ("pq", "sq", "rq", "miou")},
    }
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    t = Table(title=f"training benchmark ({args.config or 'device preset'} on {args.device}, {args.objects} objects, {args.frames} frames, {args.size}²)")
    for k in ("wall s", "it/s", "peak RSS GiB", "#Gaussians", "test PSNR", "PQ^scene", "SQ", "RQ", "mIoU", "raw-2D PQ"):
        t.add_column(k, justify="right")
    t.add_row(str(res["train_wall_s"]), str(res["it_per_s"]), str(res["peak_rss_gib"]), str(res["num_gaussians"]),
              str(res["test_psnr"]), str(res["pq"]), str(res["sq"]), str(res["rq"]), str(res["miou"]), str(res["raw2d"]["pq"]))
    Console().print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
