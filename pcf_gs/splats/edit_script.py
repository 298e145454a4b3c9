"""`pcf-gs edit`: parse edit operations (flags or a YAML script), apply them in order, write the result.

Operations, as flags (repeatable, applied in command-line order) or script entries::

    --remove T                  remove: T
    --extract T                 extract: T
    --recolor T=#rrggbb         recolor: {id: T, rgb: "#rrggbb", view_dependent: true, texture: false}
    --translate T=dx,dy,dz      translate: {id: T, offset: [dx, dy, dz]}
    --rotate T=ax,ay,az,deg     rotate: {id: T, axis: [ax, ay, az], degrees: deg, pivot: [x, y, z]}
    --scale T=s                 scale: {id: T, factor: s, pivot: [x, y, z]}
    --duplicate T=dx,dy,dz      duplicate: {id: T, offset: [dx, dy, dz]}
    --box x0,y0,z0,x1,y1,z1     (sets the box that the target ``box`` means from here on)

A target T is an object ID of ``objects.json`` / the ``instance_id`` property,
a comma-separated list of IDs, or ``box``. In a script the value may also be
the flag's string (``translate: "3=0.1,0,0"``), a target may be given as
``box: [x0, y0, z0, x1, y1, z1]`` or ``obb: {center, half_extents, axis,
degrees}`` instead of ``id``, and ``{box: [...]}`` alone as an entry sets the
current box. A script is a list of entries or a mapping with an ``edits`` list.

Nothing is written unless every operation parses and applies; the input file
is never written (OUT may only be IN with ``--overwrite``, and then it is
replaced atomically).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcf_gs.splats import edit as E
from pcf_gs.errors import UserError
from pcf_gs.atomic import write_json_atomic
from pcf_gs.splats.formats import FORMATS, format_of, read_splats, write_splats
from pcf_gs.splats.ply import Splats

OPS = ("remove", "extract", "recolor", "translate", "rotate", "scale", "duplicate")


@dataclass
class Box:
    """A box selection: an axis-aligned box (6 numbers) or an oriented one (center, half extents, rotation)."""

    aabb: np.ndarray | None = None
    obb: tuple | None = None

    def mask(self, s: Splats) -> np.ndarray:
        return E.select_box(s, self.aabb, obb=self.obb)


@dataclass
class Op:
    kind: str  # one of OPS
    target: list  # object IDs (int) and/or Box selections; the selection is their union
    params: dict = field(default_factory=dict)
    text: str = ""  # as the user wrote it (messages, provenance)


# --------------------------------------------------------------------------- #
# parsing


def _numbers(text: str, n: int | None, what: str, where: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise UserError(f"{where}: {what} must be numbers, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise UserError(f"{where}: {what} needs {n} comma-separated numbers, got {len(vals)} in {text!r}")
    if not all(np.isfinite(vals)):
        raise UserError(f"{where}: {what} must be finite, got {text!r}")
    return vals


def parse_rgb(text: str, where: str) -> list[float]:
    """'#rrggbb' or 'rrggbb' -> 3 floats in [0, 1]."""
    m = re.fullmatch(r"#?([0-9a-fA-F]{6})", str(text).strip())
    if not m:
        raise UserError(f"{where}: colour must be #rrggbb, got {text!r}")
    h = m.group(1)
    return [int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4)]


def parse_box(text, where: str) -> Box:
    vals = _numbers(text, 6, "box", where) if isinstance(text, str) else _num_list(text, 6, "box", where)
    lo, hi = np.array(vals[:3]), np.array(vals[3:])
    if np.any(lo > hi):
        raise UserError(f"{where}: box min {lo.tolist()} is above its max {hi.tolist()} (xmin,ymin,zmin,xmax,ymax,zmax)")
    return Box(aabb=np.array(vals))


def _num_list(v, n: int | None, what: str, where: str) -> list[float]:
    if isinstance(v, str):
        return _numbers(v, n, what, where)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise UserError(f"{where}: {what} must be a list of numbers, got {v!r}")
    if n is not None and len(v) != n:
        raise UserError(f"{where}: {what} needs {n} numbers, got {len(v)}")
    if not all(np.isfinite(v)):
        raise UserError(f"{where}: {what} must be finite")
    return [float(x) for x in v]


def parse_target(text, box: Box | None, where: str) -> list:
    """'3', '3,5' or 'box' (the current --box) -> [3], [3, 5] or [box]."""
    if isinstance(text, bool):
        raise UserError(f"{where}: expected an object ID, got {text!r}")
    if isinstance(text, int):
        return [text]
    if isinstance(text, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in text) and text:
        return list(text)
    t = str(text).strip()
    if t == "box":
        if box is None:
            raise UserError(f"{where}: target 'box' used before any --box x0,y0,z0,x1,y1,z1")
        return [box]
    if not re.fullmatch(r"\d+(\s*,\s*\d+)*", t):
        raise UserError(f"{where}: expected an object ID (e.g. 3), IDs (3,5) or 'box', got {t!r}")
    return [int(p) for p in t.split(",")]


def parse_flag(kind: str, value: str, box: Box | None, where: str | None = None) -> Op:
    """One ``--KIND VALUE`` flag -> :class:`Op` (target 'box' = ``box``); ``where`` names it in errors."""
    where = where or f"--{kind} {value}"
    if kind in ("remove", "extract"):
        return Op(kind, parse_target(value, box, where), {}, where)
    if "=" not in value:
        fmt = {"recolor": "ID=#rrggbb", "translate": "ID=dx,dy,dz", "rotate": "ID=ax,ay,az,deg",
               "scale": "ID=s", "duplicate": "ID=dx,dy,dz"}[kind]
        raise UserError(f"{where}: expected {fmt}")
    t, v = value.split("=", 1)
    target = parse_target(t, box, where)
    if kind == "recolor":
        params = {"rgb": parse_rgb(v, where)}
    elif kind in ("translate", "duplicate"):
        params = {"offset": _numbers(v, 3, "offset dx,dy,dz", where)}
    elif kind == "rotate":
        a = _numbers(v, 4, "rotation ax,ay,az,deg", where)
        if not any(a[:3]):
            raise UserError(f"{where}: rotation axis must not be zero")
        params = {"axis": a[:3], "degrees": a[3]}
    elif kind == "scale":
        (f,) = _numbers(v, 1, "scale factor", where)
        if f <= 0:
            raise UserError(f"{where}: scale factor must be > 0, got {f:g}")
        params = {"factor": f}
    else:  # pragma: no cover - argparse limits the kinds
        raise UserError(f"unknown edit {kind!r}")
    return Op(kind, target, params, where)


_SCRIPT_KEYS = {
    "remove": set(), "extract": set(),
    "recolor": {"rgb", "view_dependent", "texture"},
    "translate": {"offset"}, "duplicate": {"offset"},
    "rotate": {"axis", "degrees", "pivot"},
    "scale": {"factor", "pivot"},
}


def _script_target(d: dict, box: Box | None, where: str) -> list:
    given = [k for k in ("id", "box", "obb") if k in d]
    if len(given) != 1:
        raise UserError(f"{where}: give exactly one of id, box, obb")
    if "id" in d:
        return parse_target(d["id"], box, where)
    if "box" in d:
        return [parse_box(d["box"], where)]
    o = d["obb"]
    if not isinstance(o, dict) or not {"center", "half_extents"} <= set(o) or set(o) - {"center", "half_extents", "axis", "degrees"}:
        raise UserError(f"{where}: obb needs center, half_extents and optionally axis, degrees")
    c = _num_list(o["center"], 3, "obb center", where)
    h = _num_list(o["half_extents"], 3, "obb half_extents", where)
    if any(x < 0 for x in h):
        raise UserError(f"{where}: obb half_extents must be >= 0")
    R = np.eye(3)
    if "axis" in o or "degrees" in o:
        R = E.axis_angle_matrix(_num_list(o.get("axis"), 3, "obb axis", where), float(_num_list(o.get("degrees"), 1, "obb degrees", where)[0]))
    return [Box(obb=(np.array(c), np.array(h), R))]


def parse_script(path: Path, box: Box | None = None) -> tuple[list[Op], Box | None]:
    """Operations of a YAML edit script (see the module docstring); returns (ops, the box current at its end)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError("edit script not found", path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"not a valid YAML file ({first})", path) from None
    if isinstance(doc, dict) and set(doc) == {"edits"}:
        doc = doc["edits"]
    if not isinstance(doc, list):
        raise UserError("an edit script is a list of edits (or a mapping with an 'edits' list)", path)
    ops: list[Op] = []
    for n, entry in enumerate(doc, 1):
        where = f"{path}: edit {n}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UserError(f"{where}: each edit is one 'operation: value' entry, got {entry!r}")
        (kind, val), = entry.items()
        if kind == "box":
            box = parse_box(val, where)
            continue
        if kind not in OPS:
            raise UserError(f"{where}: unknown operation {kind!r} (one of {', '.join(OPS)}, box)")
        if isinstance(val, str) and kind not in ("remove", "extract"):
            op = parse_flag(kind, val, box, where)
        elif not isinstance(val, dict):
            if kind not in ("remove", "extract"):
                raise UserError(f"{where}: {kind} needs a mapping (id: ..., ...) or the flag's 'ID=...' string")
            op = Op(kind, parse_target(val, box, where), {})
        else:
            unknown = set(val) - _SCRIPT_KEYS[kind] - {"id", "box", "obb"}
            if unknown:
                raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} for {kind} "
                                f"(allowed: id|box|obb, {', '.join(sorted(_SCRIPT_KEYS[kind])) or 'nothing else'})")
            target = _script_target(val, box, where)
            params = _script_params(kind, val, where)
            op = Op(kind, target, params)
        op.text = f"{kind}: {json.dumps(val, default=str)}" if not isinstance(val, str) else f"{kind}: {val}"
        ops.append(op)
    return ops, box


def _script_params(kind: str, d: dict, where: str) -> dict:
    def need(k):
        if k not in d:
            raise UserError(f"{where}: {kind} needs '{k}'")
        return d[k]

    p: dict = {}
    if kind == "recolor":
        rgb = need("rgb")
        if rgb is None:
            raise UserError(f"{where}: rgb is empty (in YAML quote colours: rgb: '#rrggbb')")
        p["rgb"] = parse_rgb(rgb, where) if isinstance(rgb, str) else _num_list(rgb, 3, "rgb", where)
        if any(not 0 <= x <= 1 for x in p["rgb"]):
            raise UserError(f"{where}: rgb numbers must be in [0, 1] (or use '#rrggbb')")
        for k in ("view_dependent", "texture"):
            if k in d:
                if not isinstance(d[k], bool):
                    raise UserError(f"{where}: {k} must be true or false")
                p[k] = d[k]
    elif kind in ("translate", "duplicate"):
        p["offset"] = _num_list(need("offset"), 3, "offset", where)
    elif kind == "rotate":
        p["axis"] = _num_list(need("axis"), 3, "axis", where)
        if not any(p["axis"]):
            raise UserError(f"{where}: rotation axis must not be zero")
        p["degrees"] = _num_list(need("degrees"), 1, "degrees", where)[0]
    elif kind == "scale":
        p["factor"] = _num_list(need("factor"), 1, "factor", where)[0]
        if p["factor"] <= 0:
            raise UserError(f"{where}: scale factor must be > 0")
    if "pivot" in d:
        p["pivot"] = _num_list(d["pivot"], 3, "pivot", where)
    return p


def parse_ops(items: list[tuple[str, str]]) -> list[Op]:
    """(flag kind, value) pairs in command-line order (kinds: OPS, 'box', 'script') -> operations.

    Consecutive extracts merge into one that keeps the union (``--extract 1 --extract 2``
    keeps both objects)."""
    ops: list[Op] = []
    box: Box | None = None
    for kind, value in items:
        if kind == "box":
            box = parse_box(value, f"--box {value}")
        elif kind == "script":
            more, box = parse_script(Path(value), box)
            ops += more
        else:
            ops.append(parse_flag(kind, value, box))
    merged: list[Op] = []
    for op in ops:
        if merged and op.kind == "extract" and merged[-1].kind == "extract":
            prev = merged[-1]
            merged[-1] = Op("extract", prev.target + op.target, {}, f"{prev.text}; {op.text}")
        else:
            merged.append(op)
    return merged


# --------------------------------------------------------------------------- #
# applying


def apply_op(s: Splats, op: Op) -> tuple[Splats, str, dict[int, int]]:
    """Apply one operation; returns (new set, a line saying what happened, {source ID: new ID} of duplicates)."""
    where = op.text or op.kind
    try:
        ids = [t for t in op.target if not isinstance(t, Box)]
        sel = E.select(s, ids) if ids else np.zeros(len(s), bool)
        for b in op.target:
            if isinstance(b, Box):
                sel |= b.mask(s)
        n = int(sel.sum())
        if n == 0:
            raise UserError("the selection contains no Gaussians")
        parts = ([f"object{'s' if len(ids) > 1 else ''} {','.join(map(str, ids))}"] if ids else [])
        parts += ["box"] if len(ids) < len(op.target) else []
        what = f"{n} Gaussians ({' + '.join(parts)})"
        p = op.params
        dup: dict[int, int] = {}
        if op.kind == "remove":
            s = E.remove(s, sel)
        elif op.kind == "extract":
            s = E.extract(s, sel)
        elif op.kind == "recolor":
            s = E.recolor(s, sel, p["rgb"], view_dependent=p.get("view_dependent", True), texture=p.get("texture", False))
        elif op.kind == "translate":
            s = E.translate(s, sel, p["offset"])
        elif op.kind == "rotate":
            s = E.rotate(s, sel, p["axis"], p["degrees"], pivot=p.get("pivot"))
        elif op.kind == "scale":
            s = E.scale(s, sel, p["factor"], pivot=p.get("pivot"))
        elif op.kind == "duplicate":
            dup = E.duplicate_ids(s, sel)
            s = E.duplicate(s, sel, p["offset"])
            if dup:
                what += " as " + ", ".join(f"{b}" for b in dup.values())
            else:
                what += " (no instance IDs: the copy is unlabelled)" if "instance_id" not in s.extra else ""
        else:  # pragma: no cover
            raise UserError(f"unknown edit {op.kind!r}")
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    verb = {"remove": "removed", "extract": "extracted", "recolor": "recoloured", "translate": "moved",
            "rotate": "rotated", "scale": "scaled", "duplicate": "duplicated"}[op.kind]
    return s, f"{verb} {what}", dup


def find_objects_json(ply: Path) -> Path | None:
    """The objects table of a labelled PLY: ``<stem>.objects.json`` beside it, else ``objects.json`` beside it."""
    for cand in (ply.with_name(ply.stem + ".objects.json"), ply.with_name("objects.json")):
        if cand.is_file():
            return cand
    return None


def updated_objects_table(table: dict, s: Splats, dup_of: dict[int, int], source: str, edits: list[str]) -> dict:
    """objects.json content for the edited set: kept objects with fresh counts and boxes, duplicates added
    (``duplicate_of``), removed ones dropped; per-object ``file`` entries (which describe the unedited
    export) are left out; ``source`` and ``edits`` record the history."""
    by_id = {int(o["id"]): o for o in table.get("objects", []) if isinstance(o, dict) and "id" in o}
    inst = s.extra.get("instance_id")
    rows = []
    for i in E.object_ids(s):
        src = dup_of.get(i, i)
        while src not in by_id and src in dup_of and dup_of[src] != src:  # a copy of a copy
            src = dup_of[src]
        if src not in by_id:
            continue
        m = inst == i
        o = {k: v for k, v in by_id[src].items() if k != "file"}
        o["id"] = i
        o["num_gaussians"] = int(m.sum())
        o["bbox_min"] = s.means[m].min(0).round(5).tolist()
        o["bbox_max"] = s.means[m].max(0).round(5).tolist()
        if i != src:
            o["duplicate_of"] = src
        rows.append(o)
    return {"objects": rows, "source": table.get("source", source), "edits": list(table.get("edits", [])) + edits}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def output_path(inp: Path, out: Path) -> Path:
    """``out``, or, when its name has no splat extension, ``out`` + IN's extension (an edited SPZ stays an SPZ)."""
    try:
        format_of(out)
        return out
    except UserError:
        pass
    try:
        f = format_of(inp, reading=True)
    except UserError:
        f = FORMATS["ply"]
    return out.with_name(out.name + f.ext)


def run_edit(inp: Path, out: Path, ops: list[Op], overwrite: bool = False, objects: Path | None = None) -> dict:
    """Read IN, apply ``ops`` in order, write OUT (atomically) and, when IN had an objects table,
    ``<OUT stem>.objects.json``. Returns a summary (lines, counts, paths)."""
    inp, out = Path(inp), Path(out)
    if not ops:
        raise UserError("no edits given (use --remove, --extract, --recolor, --translate, --rotate, --scale, --duplicate or --script)")
    if out.is_dir():
        raise UserError("is a folder; --out must be a splat file path", out)
    out = output_path(inp, out)
    if inp.is_file() and _same_file(inp, out) and not overwrite:
        raise UserError("--out is the input file; pass --overwrite to replace it", out)
    s = read_splats(inp)
    table_path = objects if objects is not None else (find_objects_json(inp) if "instance_id" in s.extra else None)
    table = None
    if table_path is not None:
        try:
            table = json.loads(Path(table_path).read_text())
            if not isinstance(table, dict) or not isinstance(table.get("objects"), list):
                raise ValueError("no 'objects' list")
        except FileNotFoundError:
            raise UserError("objects table not found", table_path) from None
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"not a valid objects.json ({e})", table_path) from None
    n0 = len(s)
    lines, dup_of = [], {}
    for op in ops:
        s, line, dup = apply_op(s, op)
        dup_of.update({new: src for src, new in dup.items()})
        lines.append(line)
    if len(s) == 0:
        raise UserError("the edits leave no Gaussians; nothing written")
    write_splats(out, s, extra=True)
    res = {"input": str(inp), "output": str(out), "gaussians_in": n0, "gaussians_out": len(s), "edits": lines}
    if table is not None:
        side = out.with_name(out.stem + ".objects.json")
        write_json_atomic(side, updated_objects_table(table, s, dup_of, str(inp), [op.text for op in ops]))
        res["objects_json"] = str(side)
    return res
