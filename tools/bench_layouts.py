"""One synthetic scene in every layout: loaded-camera error against Messy Rooms, then PSNR and
PQ^scene after the same training.

Generates a scene (``pcf-gs synth``), writes it as COLMAP (binary and text), nerfstudio and
Panoptic Lifting, loads each and compares K and camera-to-world with the Messy Rooms loader's,
then trains, segments and evaluates each with the same settings. Every cell (layout) is cached in
OUT/<layout>/result.json, so a rerun continues where it stopped. Prints a table and writes JSON.

    python tools/bench_layouts.py --out /tmp/bench_layouts --json docs/bench_layouts.json

Splits differ by layout as each layout defines them: Messy Rooms the last 20% of frames,
COLMAP and nerfstudio every 8th image, Panoptic Lifting its splits.json (the sample: last 25%).
PQ is each layout's official protocol (Messy Rooms: background + objects; COLMAP / nerfstudio:
COCO, whose unlabelled class is void; Panoptic Lifting: faulty class 0 deleted), so numbers
compare across layouts only roughly; the layouts' equivalence is shown exactly by the
cameras and by tests/data/test_captures_e2e.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

LAYOUTS = ("messy_rooms", "colmap", "colmap-text", "nerfstudio", "panoptic_lifting")


def camera_error(mos: Path, scene: Path) -> tuple[float, float]:
    """Max |K - K_mos| (pixels) and max |c2w - c2w_mos| (normalised scene units) over frames."""
    from pcf_gs.config import DataConfig
    from pcf_gs.data import load_scene

    cfg = DataConfig(test_every=0, test_fraction=0.0)
    ref = load_scene(mos, cfg, progress=False)
    s = load_scene(scene, cfg, progress=False)
    by = {f.name: f for f in s.frames}
    ek = max(float(np.abs(by[f.name].K - f.K).max()) for f in ref.frames if f.name in by)
    ec = max(float(np.abs(by[f.name].c2w - f.c2w).max()) for f in ref.frames if f.name in by)
    return ek, ec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_layouts")
    ap.add_argument("--json", default="bench_layouts.json")
    ap.add_argument("--objects", type=int, default=15)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="cpu_fast")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "pcf_gs", "-q"]
    mos = out / "messy_rooms" / "scene"
    if not mos.is_dir():
        subprocess.run([*py, "synth", str(mos), "--objects", str(args.objects), "--frames", str(args.frames),
                        "--size", str(args.size), "--seed", str(args.seed)], check=True)
    sets = [x for o in args.overrides for x in ("--set", o)]
    rows = {}
    for layout in args.layouts.split(","):
        cell = out / layout
        res_path = cell / "result.json"
        if res_path.is_file():
            rows[layout] = json.loads(res_path.read_text())
            continue
        scene = cell / "scene"
        if layout == "panoptic_lifting" and not scene.is_dir():
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.data.panoptic_lifting_sample import write_panoptic_lifting_sample

            write_panoptic_lifting_sample(scene, mos)
        elif layout != "messy_rooms" and not scene.is_dir():
            from pcf_gs.synth.layouts import write_layout

            write_layout(mos, scene, layout)
        ek, ec = camera_error(mos, scene)
        run, seg = cell / "run", cell / "seg"
        t = time.time()
        subprocess.run([*py, "train", str(scene), "--out", str(run), "--config", args.config, *sets,
                        *(["--resume"] if run.is_dir() else [])], check=True)
        train_s = time.time() - t
        subprocess.run([*py, "segment", str(run), "--out", str(seg)], check=True)
        subprocess.run([*py, "eval", str(run), "--data", str(scene), "--pred", str(seg)], check=True)
        m = json.loads((seg / "metrics.json").read_text())
        rows[layout] = {"K_err_px": ek, "c2w_err": ec, "train_s": round(train_s, 1), "test_frames": m["frames"],
                        **{k: m.get(k) for k in ("psnr", "pq", "pq_things", "sq", "rq", "miou")}}
        res_path.write_text(json.dumps(rows[layout], indent=1))

    t = Table(title=f"layouts: {args.objects} objects, {args.frames} frames, {args.size}², seed {args.seed}, {args.config}")
    for c in ("layout", "K err (px)", "c2w err", "test views", "PSNR", "PQ^scene", "PQ things", "SQ", "RQ", "mIoU",
              "train s"):
        t.add_column(c, justify="right")
    for k, r in rows.items():
        t.add_row(k, f"{r['K_err_px']:.1e}", f"{r['c2w_err']:.1e}", str(r["test_frames"]), f"{r['psnr']:.2f}",
                  f"{r['pq']:.1f}", "—" if r.get("pq_things") is None else f"{r['pq_things']:.1f}", f"{r['sq']:.1f}", f"{r['rq']:.1f}", f"{r['miou']:.1f}", f"{r['train_s']:.0f}")
    Console().print(t)
    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
