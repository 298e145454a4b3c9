"""The ``pcf-gs`` command line.

Every subcommand is a small function taking parsed arguments. User mistakes
raise :class:`~pcf_gs.errors.UserError`: one line on stderr, exit code 2, no
traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from pcf_gs import __version__
from pcf_gs.errors import UserError

log = logging.getLogger("pcf_gs")

# --------------------------------------------------------------------------- #
# shared argument groups


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="NAME|PATH", help="YAML preset from configs/ (e.g. default, cpu_fast) or a file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting (repeatable), e.g. --set train.iterations=2000",
    )


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["auto", "messy_rooms"], help="scene layout (default: detect)")
    p.add_argument("--downscale", type=int, help="shrink images by this integer factor on load")


def _add_server_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help=f"address {what} listens on (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    p.add_argument("--port", type=int, default=8080, help=f"port of {what} (default: 8080; the next free one if taken)")


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides followed by the ones the data/device flags stand for (flags win)."""
    out = list(args.overrides)
    if getattr(args, "format", None):
        out.append(f"data.format={args.format}")
    if getattr(args, "downscale", None):
        if args.downscale < 1:
            raise UserError(f"--downscale must be >= 1, got {args.downscale}")
        out.append(f"data.downscale={args.downscale}")
    if getattr(args, "device", None):
        out.append(f"device={args.device}")
    return out


def _resolve_config(args: argparse.Namespace):
    from pcf_gs.config import load_config

    return load_config(args.config, _flag_overrides(args))


# --------------------------------------------------------------------------- #
# commands


def cmd_info(args: argparse.Namespace) -> int:
    from pcf_gs.data import load_scene
    from pcf_gs.report import print_scene_summary

    cfg = _resolve_config(args)
    scene = load_scene(args.data, cfg.data, progress=not args.quiet)
    print_scene_summary(scene.summary())
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from pcf_gs.synth_cli import run_synth

    return run_synth(args)


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pcf_gs.train import TrainingDiverged, run_training

    live = None
    try:  # whatever happens, the live viewer's server threads are stopped (or the process would not exit)
        trainer = []
        on_step = None
        if args.viewer:
            from pcf_gs.viewer.app import LiveTrainingViewer

            live = LiveTrainingViewer(args.host, args.port)
            print(f"pcf-gs train: live viewer at {live.url}", flush=True)

            def on_step(tr):
                if not trainer:
                    trainer.append(tr)
                live.on_step(tr)
        try:
            res = run_training(Path(args.data), Path(args.out), args.config, _flag_overrides(args),
                               resume=args.resume, progress=not args.quiet, on_step=on_step)
        except KeyboardInterrupt:
            print(f"interrupted: checkpoint saved in {args.out}; continue with --resume", file=sys.stderr)
            return 130
        except TrainingDiverged as e:
            print(f"pcf-gs train: {e}", file=sys.stderr)
            return 1
        Console().print(
            f"[green]trained[/green] {res['steps']} steps in {res['seconds']:.0f} s, {res['num_gaussians']} Gaussians -> {args.out}"
        )
        if live is not None:
            try:
                live.finish(trainer[0] if trainer else None)
                print(f"pcf-gs train: the viewer stays up at {live.url}; Ctrl-C to quit", flush=True)
                while True:  # short sleeps: a Ctrl-C delivered to a server thread is seen within 0.2 s
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        if live is not None:
            live.stop()


def cmd_render(args: argparse.Namespace) -> int:
    from pcf_gs.render_views import render_run

    ply = Path(args.ply) if args.ply else None
    res = render_run(Path(args.run), Path(args.out), split=args.split, progress=not args.quiet, ply=ply)
    psnr = f", PSNR {res['psnr']:.2f} dB" if res["psnr"] is not None else ""
    what = f" of {ply}" if ply else ""
    print(f"rendered {res['frames']} {args.split} views{what} to {args.out}{psnr}")
    return 0


class _OrderedEdit(argparse.Action):
    """Collect every edit flag into one list, in command-line order: args.edits = [(kind, value), ...]."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "edits", None) or [])
        items.append((self.dest.removeprefix("edit_"), values))
        namespace.edits = items


def cmd_edit(args: argparse.Namespace) -> int:
    from pcf_gs.edit_cli import parse_ops, run_edit

    ops = parse_ops(args.edits or [])  # every value is checked before the PLY is read
    res = run_edit(Path(args.input), Path(args.out), ops, overwrite=args.overwrite,
                   objects=Path(args.objects) if args.objects else None)
    for line in res["edits"]:
        print(f"  {line}")
    extra = f" (+ {res['objects_json']})" if "objects_json" in res else ""
    print(f"edited {res['input']} ({res['gaussians_in']} Gaussians) -> {res['output']} ({res['gaussians_out']}){extra}")
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from pcf_gs.segment import run_segment

    info = run_segment(Path(args.run), Path(args.out), split=args.split, clustering=args.clustering,
                       export_ply=args.export_ply, data=Path(args.data) if args.data else None,
                       overrides=args.overrides, gaussian_labels=args.gaussian_labels, progress=not args.quiet)
    extra = f", {info['objects_exported']} objects exported" if "objects_exported" in info else ""
    print(f"segmented {info['frames']} {info['split']} views: {info['prototypes']} objects ({info['clustering']}){extra} -> {args.out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pcf_gs.evaluate import run_eval
    from pcf_gs.report import print_metrics

    pred = Path(args.pred) if args.pred else Path(args.run) / "segment"
    res = run_eval(Path(args.run), Path(args.data), pred, split=args.split, progress=not args.quiet)
    print_metrics(res, pred / "metrics.json")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    # idle OpenMP threads sleep instead of spinning: numba's and torch's pools otherwise take
    # turns spinning on the cores the other needs (a 256² frame: 0.55 s -> 0.24 s on 2 cores).
    # Read when the OpenMP runtimes load, i.e. before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from pcf_gs.viewer.app import serve

    serve(args.target, args.host, args.port, mode=args.mode, device=_view_device(args.device),
          export_dir=args.export_dir, max_side=args.max_res)
    return 0


def _view_device(name: str | None):
    if name in (None, "auto"):
        return None
    from pcf_gs.train import resolve_device

    return resolve_device(name)


def cmd_demo(args: argparse.Namespace) -> int:
    from pcf_gs.demo import run_demo

    return run_demo(Path(args.out), args.config, args.overrides, data=Path(args.data) if args.data else None,
                    quiet=args.quiet, resume=args.resume)


# --------------------------------------------------------------------------- #


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcf-gs",
        description="Lift noisy 2D panoptic segmentations into a 3D Gaussian-splatting scene "
        "with consistent object identities (PCF-Lift on splats).",
    )
    parser.add_argument("--version", action="version", version=f"pcf-gs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a synthetic scene with exact ground truth (Messy Rooms layout)")
    from pcf_gs.synth_cli import add_synth_args

    add_synth_args(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("info", help="load a scene folder and report what it contains")
    p.add_argument("data", metavar="DATA", help="scene folder")
    _add_data_args(p)
    _add_config_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a splat scene with instance embeddings and semantics")
    p.add_argument("data", metavar="DATA", help="scene folder")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory (config.yaml, checkpoint.pt, metrics.jsonl)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--viewer", action="store_true",
                   help="show the scene live in the browser viewer while it trains (stays up afterwards until Ctrl-C)")
    _add_server_args(p, "the live viewer")
    _add_data_args(p)
    _add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("render", help="render a trained run, or any splat PLY, with the run's cameras")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rgb/, alpha/, depth/, and semantics/ without --ply)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.add_argument("--ply", metavar="FILE", help="render this 3DGS PLY (world frame, e.g. an edited scene) instead of the run's model")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("edit", help="remove, extract, recolour, move, rotate, scale or duplicate objects of a splat PLY",
                       description="Apply edits to a 3DGS PLY, in command-line order, and write a new PLY. "
                       "ID = an object ID (objects.json / the instance_id property), IDs (3,5), or 'box' "
                       "(the Gaussians inside the last --box; works on unlabelled PLYs). "
                       "The input is never modified. See docs/editing.md.")
    p.add_argument("input", metavar="IN.ply", help="splat file (labelled scene_labeled.ply or any 3DGS PLY)")
    p.add_argument("--out", required=True, metavar="OUT.ply", help="edited file (written atomically)")
    add = lambda flag, metavar, help: p.add_argument(  # noqa: E731
        f"--{flag}", dest=f"edit_{flag}", action=_OrderedEdit, metavar=metavar, help=help)
    add("remove", "ID", "delete the object's Gaussians (repeatable)")
    add("extract", "ID", "keep only these Gaussians (repeatable; later edits see only them)")
    add("recolor", "ID=#rrggbb", "new base colour; view-dependent shading is kept")
    add("translate", "ID=dx,dy,dz", "move by an offset (world units)")
    add("rotate", "ID=ax,ay,az,deg", "rotate about the object's centre by deg degrees about axis (ax,ay,az)")
    add("scale", "ID=s", "scale about the object's centre by s > 0")
    add("duplicate", "ID=dx,dy,dz", "add a copy moved by an offset; the copy gets a new ID (max + 1)")
    add("box", "X0,Y0,Z0,X1,Y1,Z1", "axis-aligned box that the target 'box' stands for in later edits")
    add("script", "EDITS.yaml", "edits from a YAML file, applied here in order (format: docs/editing.md)")
    p.add_argument("--objects", metavar="JSON", help="objects table of IN (default: <IN stem>.objects.json or objects.json beside IN)")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to be IN (replaced atomically)")
    p.set_defaults(func=cmd_edit, edits=[])

    p = sub.add_parser("segment", help="consistent panoptic masks, per-Gaussian labels, per-object PLY export")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--split", choices=["test", "train", "all"], default="test", help="views to label (default: test)")
    p.add_argument("--clustering", choices=["mvoa", "hdbscan"], help="instance association (default: mvoa)")
    p.add_argument("--gaussian-labels", choices=["direct", "vote"], default="vote",
                   help="per-Gaussian instance: blending-weight vote over the training views (default, cleaner objects), or kernel against the prototypes (faster)")
    p.add_argument("--export-ply", action="store_true", help="write objects/, stuff/, scene_labeled.ply, objects.json")
    p.add_argument("--data", metavar="DATA", help="scene folder, if it moved since training")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("eval", help="PQ^scene, SQ, RQ, mIoU and PSNR against ground truth")
    p.add_argument("run", metavar="RUN", help="run directory (for PSNR and the data settings)")
    p.add_argument("--data", required=True, metavar="DATA", help="scene folder with ground truth")
    p.add_argument("--pred", metavar="DIR", help="segment output folder (default: RUN/segment)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("view", help="interactive browser viewer for a run, a segment output or any 3DGS PLY")
    p.add_argument("target", metavar="TARGET",
                   help="run directory, segment output (scene_labeled.ply + objects.json) or a 3DGS .ply file")
    _add_server_args(p, "the viewer")
    p.add_argument("--mode", choices=["rgb", "semantic", "instance", "uncertainty", "depth"], default="rgb",
                   help="initial render mode (default: rgb)")
    p.add_argument("--max-res", type=int, default=1024, metavar="PX",
                   help="long side of the image when the camera rests (default: 1024)")
    p.add_argument("--export-dir", default="viewer_exports", metavar="DIR",
                   help="where the Export buttons write PLY files (default: ./viewer_exports)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="render device (default: cuda if available)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("demo", help="train, segment, export and evaluate on the demo scene shipped in assets/ (preset cpu_fast)")
    p.add_argument("--out", default="demo_out", metavar="DIR", help="output folder (default: demo_out)")
    p.add_argument("--data", metavar="DATA", help="use this scene instead of the shipped demo")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo run in OUT")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo, format=None, downscale=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        print(f"pcf-gs {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
