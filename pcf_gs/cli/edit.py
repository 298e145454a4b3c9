"""``pcf-gs edit IN.ply --out OUT.ply ...``: object edits on a splat file, in command-line order."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("edit", help="remove, extract, recolour, move, rotate, scale or duplicate objects of a splat PLY",
                       description="Apply edits to a 3DGS PLY, in command-line order, and write a new PLY. "
                       "ID = an object ID (objects.json / the instance_id property), IDs (3,5), or 'box' "
                       "(the Gaussians inside the last --box; works on unlabelled files). Any format of docs/formats.md is read; "
                       "OUT's extension picks the format written (labels survive only in .ply, .glb and .pt). "
                       "The input is never modified. See docs/editing.md.")
    p.add_argument("input", metavar="IN", help="splat file in any format of docs/formats.md (labelled scene_labeled.ply or any 3DGS PLY, .spz, .sog, .glb, ...)")
    p.add_argument("--out", required=True, metavar="OUT", help="edited file (written atomically), format by extension; without a splat extension, IN's format")
    add = lambda flag, metavar, help: p.add_argument(  # noqa: E731
        f"--{flag}", dest=f"edit_{flag}", action=_OrderedEdit, metavar=metavar, help=help)
    add("remove", "ID", "delete the object's Gaussians (repeatable)")
    add("extract", "ID", "keep only these Gaussians (repeatable; later edits see only them)")
    add("recolor", "ID=#rrggbb", "new base colour; view-dependent shading is kept")
    add("translate", "ID=dx,dy,dz", "move by an offset (world units)")
    add("rotate", "ID=ax,ay,az,deg", "rotate about the object's centre by deg degrees about axis (ax,ay,az)")
    add("scale", "ID=s", "scale about the object's centre by s > 0")
    add("duplicate", "ID=dx,dy,dz", "add a copy moved by an offset; the copy gets a new ID (max + 1)")
    add("box", "X0,Y0,Z0,X1,Y1,Z1", "axis-aligned box that the target 'box' stands for in later edits (write --box=-1,... when the first value is negative)")
    add("script", "EDITS.yaml", "edits from a YAML file, applied here in order (format: docs/editing.md)")
    p.add_argument("--objects", metavar="JSON", help="objects table of IN (default: <IN stem>.objects.json or objects.json beside IN)")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to be IN (replaced atomically)")
    p.set_defaults(func=run, edits=[])


class _OrderedEdit(argparse.Action):
    """Collect every edit flag into one list, in command-line order: args.edits = [(kind, value), ...]."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "edits", None) or [])
        items.append((self.dest.removeprefix("edit_"), values))
        namespace.edits = items


def run(args: argparse.Namespace) -> int:
    from pcf_gs.splats.edit_script import parse_ops, run_edit

    ops = parse_ops(args.edits or [])  # every value is checked before the PLY is read
    res = run_edit(Path(args.input), Path(args.out), ops, overwrite=args.overwrite,
                   objects=Path(args.objects) if args.objects else None)
    for line in res["edits"]:
        print(f"  {line}")
    extra = f" (+ {res['objects_json']})" if "objects_json" in res else ""
    print(f"edited {res['input']} ({res['gaussians_in']} Gaussians) -> {res['output']} ({res['gaussians_out']}){extra}")
    return 0
