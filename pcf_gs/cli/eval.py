"""``pcf-gs eval RUN --data DATA``: PQ^scene, SQ, RQ, mIoU and PSNR against ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PQ^scene, SQ, RQ, mIoU and PSNR against ground truth")
    p.add_argument("run", metavar="RUN", help="run directory (for PSNR and the data settings)")
    p.add_argument("--data", required=True, metavar="DATA", help="scene folder with ground truth")
    p.add_argument("--pred", metavar="DIR", help="segment output folder (default: RUN/segment)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcf_gs.evaluation.evaluate import run_eval
    from pcf_gs.cli.report import print_metrics

    pred = Path(args.pred) if args.pred else Path(args.run) / "segment"
    res = run_eval(Path(args.run), Path(args.data), pred, split=args.split, progress=not args.quiet)
    print_metrics(res, pred / "metrics.json")
    return 0
