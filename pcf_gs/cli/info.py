"""``pcf-gs info DATA``: load a scene folder and report what it contains."""

from __future__ import annotations

import argparse

from pcf_gs.cli.args import add_config_args, add_data_args, resolve_config


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="load a scene folder and report what it contains")
    p.add_argument("data", metavar="DATA", help="scene folder")
    add_data_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcf_gs.data import load_scene
    from pcf_gs.cli.report import print_scene_summary

    cfg = resolve_config(args)
    scene = load_scene(args.data, cfg.data, progress=not args.quiet)
    print_scene_summary(scene.summary())
    return 0
