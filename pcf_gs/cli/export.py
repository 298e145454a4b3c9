"""``pcf-gs export SOURCE --format FMT[,FMT] --out DIR``: splat files in other formats (SPZ, SOG, glTF, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    from pcf_gs.splats.formats import FORMATS

    p = sub.add_parser("export", help="write a segment export, a run or a splat file as PLY, compressed PLY, .splat, SPZ, SOG, glb or a gsplat checkpoint",
                       description="Convert splats to other formats (docs/formats.md). SOURCE is a `segment --export-ply` "
                       "folder (objects.json: the whole tree is converted and objects.json rewritten), a training run "
                       "(checkpoint.pt: the scene) or any single splat file.")
    p.add_argument("source", metavar="SOURCE", help="segment export folder, run directory or splat file")
    p.add_argument("--format", "-f", dest="format", required=True, metavar="FMT[,FMT]",
                   help=f"one or more of: {', '.join(FORMATS)}")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (may be SOURCE itself)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcf_gs.splats.export import export_formats

    res = export_formats(Path(args.source), Path(args.out), args.format.split(","), progress=not args.quiet)
    for fmt, info in res["exports"].items():
        drop = f" (dropped: {', '.join(info['dropped'])})" if info.get("dropped") else ""
        print(f"  {fmt}: {len(res['files'][fmt])} files{drop}")
    what = f"{res['objects']} objects + scene" if res["kind"] == "segment" else res["kind"]
    print(f"exported {res['source']} ({what}) as {', '.join(res['formats'])} -> {res['out']}")
    return 0
