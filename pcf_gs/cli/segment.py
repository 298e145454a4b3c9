"""``pcf-gs segment RUN --out DIR``: consistent panoptic masks, per-Gaussian labels, per-object export."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="consistent panoptic masks, per-Gaussian labels, per-object PLY export")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--split", choices=["test", "train", "all"], default="test", help="views to label (default: test)")
    p.add_argument("--clustering", choices=["mvoa", "hdbscan"], help="instance association (default: mvoa)")
    p.add_argument("--gaussian-labels", choices=["direct", "vote"], default="vote",
                   help="per-Gaussian instance: blending-weight vote over the training views (default, cleaner objects), or kernel against the prototypes (faster)")
    p.add_argument("--export-ply", action="store_true", help="write objects/, stuff/, scene_labeled.ply, objects.json")
    p.add_argument("--export", metavar="FMT[,FMT]",
                   help="--export-ply plus the same tree in these formats (spz, sog, glb, ply-compressed, splat, gsplat-ckpt; docs/formats.md)")
    p.add_argument("--data", metavar="DATA", help="scene folder, if it moved since training")
    p.add_argument("--distributed", action="store_true",
                   help="one of N processes over the views: torchrun --nproc_per_node N -m pcf_gs segment ... --distributed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcf_gs.segment.pipeline import run_segment

    info = run_segment(Path(args.run), Path(args.out), split=args.split, clustering=args.clustering,
                       export_ply=args.export_ply, data=Path(args.data) if args.data else None,
                       overrides=args.overrides, gaussian_labels=args.gaussian_labels, progress=not args.quiet,
                       export_formats=args.export.split(",") if args.export else None, distributed=args.distributed)
    if info is None:  # not rank 0 of a distributed run
        return 0
    extra = f", {info['objects_exported']} objects exported" if "objects_exported" in info else ""
    print(f"segmented {info['frames']} {info['split']} views: {info['prototypes']} objects ({info['clustering']}){extra} -> {args.out}")
    return 0
