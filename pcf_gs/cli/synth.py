"""``pcf-gs synth``: command-line flags generated from :class:`pcf_gs.synth.SynthOptions`.

Every SynthOptions field becomes a ``--field-name`` flag (underscores to
dashes), so a new generator option is on the command line without touching
this file. ``--size S`` or ``--size WxH`` sets width and height.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from pcf_gs.config import type_kind, typed_fields
from pcf_gs.errors import UserError

_SPECIAL = {"width", "height", "seed"}


def _flag_type(tp):
    """(argparse type or "bool", choices or None) for a field annotation; (None, None) = no flag."""
    kind, args = type_kind(tp)
    if kind == "literal":
        return str, [str(a) for a in args]
    if kind == "union":  # X | None: a flag of type X (None = not given)
        return _flag_type(args[0]) if args else (str, None)
    if tp is bool:
        return "bool", None
    if tp in (int, float, str):
        return tp, None
    return None, None


def add_parser(sub) -> None:
    from pcf_gs.synth import SynthOptions

    p = sub.add_parser("synth", help="generate a synthetic scene with exact ground truth (Messy Rooms, COLMAP or nerfstudio layout)")
    p.set_defaults(func=run)
    p.add_argument("out", metavar="OUT", help="output scene folder (Messy Rooms layout)")
    p.add_argument("--size", default=None, metavar="S|WxH", help="image size in pixels (square S, or WxH)")
    p.add_argument("--seed", type=int, default=None, help="random seed (the scene is deterministic per seed)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--layout", choices=["mos", "colmap", "colmap-text", "nerfstudio"], default="mos",
                   help="mos: Messy Rooms (default); colmap / colmap-text: images/ + sparse/0 (binary / text); "
                        "nerfstudio: transforms.json; the capture layouts hold the predictions as COCO panoptic")
    defaults = SynthOptions()
    for f, annotation in typed_fields(SynthOptions):
        if f.name in _SPECIAL or f.name.startswith("_"):
            continue
        tp, choices = _flag_type(annotation)
        if tp is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        helptext = (f.metadata.get("help", "") + f" (default: {default})").strip()
        if tp == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            p.add_argument(flag, dest=f.name, type=tp, choices=choices, default=None, metavar=None if choices else f.name.upper(), help=helptext)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pcf_gs.synth import SynthOptions, generate_scene
    from pcf_gs.synth.generator import parse_size

    values = {}
    for f in dataclasses.fields(SynthOptions):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("width", "height"):
            values[f.name] = v
    if args.size is not None:
        try:
            values["width"], values["height"] = parse_size(args.size)
        except ValueError as e:
            raise UserError(f"--size {args.size!r}: {e}") from None
    try:
        opts = SynthOptions(**values)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad option: {e}") from None
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UserError("exists and is not empty (use --overwrite to replace it)", out)
    if args.layout == "mos":
        summary = generate_scene(out, opts, progress=not args.quiet, overwrite=args.overwrite)
    else:
        import tempfile

        from pcf_gs.synth.layouts import write_layout

        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.mos-") as tmp:
            summary = generate_scene(Path(tmp) / "scene", opts, progress=not args.quiet)
            write_layout(Path(tmp) / "scene", out, args.layout, overwrite=args.overwrite)
    Console().print(f"[green]wrote[/green] {out}: {summary}")
    return 0
