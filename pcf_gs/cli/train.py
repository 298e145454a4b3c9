"""``pcf-gs train DATA --out RUN``: train a splat scene (optionally watched live in the browser viewer)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pcf_gs.cli.args import add_config_args, add_data_args, add_server_args, flag_overrides


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a splat scene with instance embeddings and semantics")
    p.add_argument("data", metavar="DATA", help="scene folder")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory (config.yaml, checkpoint.pt, metrics.jsonl)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to train (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--distributed", action="store_true",
                   help="one of N processes started by torchrun --nproc_per_node N -m pcf_gs train ... "
                        "(gloo on CPUs, NCCL on GPUs); train.views_per_step is split among them")
    p.add_argument("--viewer", action="store_true",
                   help="show the scene live in the browser viewer while it trains (stays up afterwards until Ctrl-C)")
    add_server_args(p, "the live viewer")
    add_data_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pcf_gs.lift.trainer import TrainingDiverged, run_training

    live = None
    if args.viewer and args.distributed:
        print("pcf-gs train: --viewer does not go with --distributed (watch a checkpoint with pcf-gs view instead)",
              file=sys.stderr)
        return 2
    try:  # whatever happens, the live viewer's server threads are stopped (or the process would not exit)
        trainer = []
        on_step = None
        if args.viewer:
            from pcf_gs.cli.args import exposure_warning
            from pcf_gs.viewer.live import LiveTrainingViewer

            warning = exposure_warning(args.host)  # the live viewer's export folder: ./viewer_exports
            if warning:
                print(f"pcf-gs train: {warning}", file=sys.stderr, flush=True)
            live = LiveTrainingViewer(args.host, args.port)
            print(f"pcf-gs train: live viewer at {live.url}", flush=True)

            def on_step(tr):
                if not trainer:
                    trainer.append(tr)
                live.on_step(tr)
        try:
            res = run_training(Path(args.data), Path(args.out), args.config, flag_overrides(args),
                               resume=args.resume, progress=not args.quiet, on_step=on_step,
                               distributed=args.distributed)
        except KeyboardInterrupt:
            print(f"interrupted: checkpoint saved in {args.out}; continue with --resume", file=sys.stderr)
            return 130
        except TrainingDiverged as e:
            print(f"pcf-gs train: {e}", file=sys.stderr)
            return 1
        if args.distributed and os.environ.get("RANK", "0") != "0":
            return 0  # the first process reports for all
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
