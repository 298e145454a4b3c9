"""``pcf-gs view TARGET``: the interactive browser viewer."""

from __future__ import annotations

import argparse
import os

from pcf_gs.cli.args import add_server_args


def add_parser(sub) -> None:
    p = sub.add_parser("view", help="interactive browser viewer for a run, a segment output or any 3DGS PLY")
    p.add_argument("target", metavar="TARGET",
                   help="run directory, segment output (scene_labeled.ply + objects.json) or a 3DGS .ply file")
    add_server_args(p, "the viewer")
    p.add_argument("--mode", choices=["rgb", "semantic", "instance", "uncertainty", "depth"], default="rgb",
                   help="initial render mode (default: rgb)")
    p.add_argument("--render", choices=["server", "browser"], default="server",
                   help="server: images rendered here and streamed (every mode); browser: the splats are sent "
                        "to the browser and drawn there with WebGL (RGB without view-dependent colour, semantic, "
                        "instance; depth, uncertainty and the overlay switch back to server). Default: server")
    p.add_argument("--max-res", type=int, default=1024, metavar="PX",
                   help="long side of the image when the camera rests (default: 1024)")
    p.add_argument("--export-dir", default="viewer_exports", metavar="DIR",
                   help="where the Export buttons write PLY files (default: ./viewer_exports)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="render device (default: cuda if available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # idle OpenMP threads sleep instead of spinning: numba's and torch's pools otherwise take
    # turns spinning on the cores the other needs (a 256² frame: 0.55 s -> 0.24 s on 2 cores).
    # Read when the OpenMP runtimes load, i.e. before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import sys

    from pcf_gs.cli.args import exposure_warning
    from pcf_gs.viewer.app import serve

    warning = exposure_warning(args.host, args.export_dir)
    if warning:
        print(f"pcf-gs view: {warning}", file=sys.stderr, flush=True)

    serve(args.target, args.host, args.port, mode=args.mode, device=_view_device(args.device),
          export_dir=args.export_dir, max_side=args.max_res, render=args.render)
    return 0


def _view_device(name: str | None):
    if name in (None, "auto"):
        return None
    from pcf_gs.lift.trainer import resolve_device

    return resolve_device(name)
