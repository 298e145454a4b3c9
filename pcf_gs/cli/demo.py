"""``pcf-gs demo``: the whole pipeline on the scene shipped in ``assets/demo``.

train (preset ``cpu_fast`` unless ``--config`` says otherwise) -> segment the
test views with MVOA and export one PLY per object -> evaluate PQ^scene, SQ,
RQ, mIoU and PSNR against the scene's ground truth. Everything lands in OUT:
``OUT/run`` (checkpoint, config, metrics), ``OUT/segment`` (label maps,
overlays, objects/, metrics.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pcf_gs.cli.args import add_config_args
from pcf_gs.errors import UserError
from pcf_gs.atomic import write_json_atomic
from pcf_gs.resources import demo_scene_dir


def run_demo(
    out: Path, preset: str | None, overrides: list[str], data: Path | None = None, quiet: bool = False, resume: bool = False
) -> int:
    from pcf_gs.data import load_scene
    from pcf_gs.config import load_config
    from pcf_gs.evaluation.evaluate import run_eval
    from pcf_gs.cli.report import print_metrics, print_scene_summary
    from pcf_gs.segment.pipeline import run_segment
    from pcf_gs.lift.trainer import run_training

    data = data or demo_scene_dir()
    preset = preset or "cpu_fast"
    cfg = load_config(preset, overrides)  # validates the preset and overrides before any work
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a folder", out)
    run = out / "run"
    if (run / "checkpoint.pt").exists() and not resume:
        raise UserError("already holds a demo run; use --resume to continue it or choose another --out", out)
    scene = load_scene(data, cfg.data, progress=not quiet)
    print_scene_summary(scene.summary())
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "scene_summary.json", scene.summary())
    res = run_training(data, run, preset, overrides, resume=resume, progress=not quiet)
    print(f"demo: trained {res['steps']} steps in {res['seconds']:.0f} s ({res['num_gaussians']} Gaussians)")
    seg = out / "segment"
    info = run_segment(run, seg, split="test", export_ply=True, data=data, progress=not quiet)
    print(f"demo: {info['prototypes']} objects found; per-object PLYs in {seg / 'objects'}")
    metrics = run_eval(run, data, seg, split="test", progress=not quiet)
    print_metrics(metrics, seg / "metrics.json")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train, segment, export and evaluate on the demo scene shipped with pcf-gs (preset cpu_fast)")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    p.add_argument("--data", metavar="DATA", help="use this scene instead of the shipped demo")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run in OUT")
    add_config_args(p)
    p.set_defaults(func=run, format=None, downscale=None)


def run(args: argparse.Namespace) -> int:
    return run_demo(Path(args.out), args.config, args.overrides, data=Path(args.data) if args.data else None,
                    quiet=args.quiet, resume=args.resume)
