"""From a trained model to splat files: the full labelled scene, one file per object, stuff files;
and back (:func:`splats_to_params`, to render any splat file with a run's cameras).

Model tensors live in the normalised scene frame (x_s = (x_w - c) * s); files
are written back in the original world frame: means / s + c, log-scales
- log s; rotations and SH are unchanged (the normalisation has no rotation).
"""

from __future__ import annotations

import colorsys
import re
from pathlib import Path

import numpy as np
import torch

from pcf_gs.data.scene import Normalization
from pcf_gs.atomic import atomic_dir, write_json_atomic
from pcf_gs.errors import UserError
from pcf_gs.lift.pp_kernel import activate_var
from pcf_gs.lift.model import ModelSpec
from pcf_gs.splats.ply import LABEL_BASES, Splats, write_ply


def params_to_splats(params, spec: ModelSpec, norm: Normalization) -> Splats:
    """Model params (scene frame) -> world-frame :class:`Splats` with inst_mu/inst_var extras."""
    g = lambda k: params[k].detach().cpu().numpy().astype(np.float32)  # noqa: E731
    means = norm.scene_to_world_points(g("means")).astype(np.float32)
    scales = g("scales") - np.log(norm.scale).astype(np.float32)
    var = (
        activate_var(params["inst_var"].detach().cpu(), spec.var_floor).numpy()
        if spec.embedding == "probabilistic"
        else np.full_like(g("inst_mu"), spec.deterministic_var)
    )
    return Splats(means, scales, g("quats"), g("opacities"), g("sh0"), g("shN"), {"inst_mu": g("inst_mu"), "inst_var": var})


def splats_to_params(s, norm: Normalization) -> dict:
    """World-frame :class:`~pcf_gs.splats.ply.Splats` -> render params (torch, the run's scene frame):
    means (x - c) * scale, log-scales + log scale; rotations, opacities and SH unchanged."""
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        "means": f(norm.world_to_scene_points(s.means)),
        "scales": f(s.scales.astype(np.float64) + np.log(norm.scale)),
        "quats": f(s.quats), "opacities": f(s.opacities), "sh0": f(s.sh0), "shN": f(s.shN),
    }


def distinct_colors(n: int, seed: int = 0) -> np.ndarray:
    """[n, 3] uint8 well-separated colours (golden-ratio hues, alternating lightness)."""
    out = np.zeros((n, 3), np.uint8)
    h = (seed * 0.137) % 1.0
    for i in range(n):
        h = (h + 0.618033988749895) % 1.0
        light = 0.5 if i % 2 == 0 else 0.65
        out[i] = np.array(colorsys.hls_to_rgb(h, light, 0.75)) * 255
    return out


_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def _safe(name: str, limit: int = 64) -> str:
    """A label as a file-name part: [A-Za-z0-9_.-] only (no separators, NUL or control characters),
    no leading dot or dash (no ``..``, hidden files or options), no Windows device name, at most
    ``limit`` characters (a long label keeps its start plus a hash, so distinct labels stay distinct)."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).lstrip(".-") or "class"
    if safe.split(".")[0].upper() in _RESERVED:
        safe = "_" + safe
    if len(safe) > limit:
        safe = safe[: limit - 9] + "_" + hashlib.sha1(str(name).encode("utf-8", "replace")).hexdigest()[:8]
    return safe


def export_objects(
    out: Path,
    splats: Splats,
    instance_ids: np.ndarray,
    semantic_ids: np.ndarray,
    class_names: list[str],
    is_thing: np.ndarray,
    scores: dict[int, float] | None = None,
    colors: dict[int, list[int]] | None = None,
    min_opacity: float = 0.0,
) -> list[dict]:
    """Write OUT/scene_labeled.ply, OUT/objects/<id>_<class>.ply, OUT/stuff/<class>.ply, OUT/objects.json.

    File names are the labels made safe (:func:`_safe`); a stuff class whose safe name another already took
    (ignoring case) gets its class id appended. objects.json lists the objects (``objects``) and the stuff
    files (``stuff``: class, semantic_id, num_gaussians, file).

    instance_ids [N] (0 = stuff / none), semantic_ids [N]. Gaussians whose
    opacity is below ``min_opacity`` are left out of the per-object files
    (they are invisible anyway). Returns the objects table.
    """
    out = Path(out)
    (out / "objects").mkdir(parents=True, exist_ok=True)
    (out / "stuff").mkdir(parents=True, exist_ok=True)
    full = Splats(splats.means, splats.scales, splats.quats, splats.opacities, splats.sh0, splats.shN,
                  dict(splats.extra, instance_id=instance_ids.astype(np.int32), semantic_id=semantic_ids.astype(np.int32)))
    write_ply(out / "scene_labeled.ply", full, extra=True)
    vis = 1 / (1 + np.exp(-splats.opacities)) >= min_opacity
    table = []
    ids = sorted(int(i) for i in np.unique(instance_ids) if i > 0)
    palette = distinct_colors(max(ids, default=0) + 1)
    for i in ids:
        m = (instance_ids == i) & vis
        if not m.any():
            continue
        sem = np.bincount(semantic_ids[instance_ids == i]).argmax()
        name = class_names[sem] if sem < len(class_names) else str(sem)
        write_ply(out / "objects" / f"{i}_{_safe(name)}.ply", splats.subset(m), extra=False)
        lo, hi = splats.means[m].min(0), splats.means[m].max(0)
        table.append({
            "id": i, "class": name, "semantic_id": int(sem), "num_gaussians": int(m.sum()),
            "bbox_min": lo.round(5).tolist(), "bbox_max": hi.round(5).tolist(),
            "score": None if not scores or i not in scores else round(float(scores[i]), 5),
            "color": (colors or {}).get(i, palette[i].tolist()),
            "file": f"objects/{i}_{_safe(name)}.ply",
        })
    stuff, taken = [], set()
    for c, name in enumerate(class_names):
        if is_thing[c]:
            continue
        m = (semantic_ids == c) & (instance_ids == 0) & vis
        if m.any():
            stem = _safe(name)
            if stem.lower() in taken:  # "a/b" and "a_b", or "Wall" and "wall" on a case-blind disk
                stem = f"{stem}_{c}"
            taken.add(stem.lower())
            write_ply(out / "stuff" / f"{stem}.ply", splats.subset(m), extra=False)
            stuff.append({"class": name, "semantic_id": c, "num_gaussians": int(m.sum()), "file": f"stuff/{stem}.ply"})
    write_json_atomic(out / "objects.json", {"objects": table, "stuff": stuff})
    return table


# ----------------------------------------------------------------------------- other formats


def _label_keys(s: Splats) -> list[str]:
    return [k for k in LABEL_BASES if k in s.extra]


def _source_kind(source: Path) -> str:
    if source.is_dir():
        if (source / "objects.json").is_file():
            return "segment"
        if (source / "checkpoint.pt").is_file():
            return "run"
        if (source / "meta.json").is_file():
            return "file"  # an unbundled SOG
        raise UserError("not a segment export (no objects.json), a training run (no checkpoint.pt) or a splat file", source)
    if not source.exists():
        raise UserError("not found", source)
    return "file"


def _load_table(path: Path) -> dict:
    import json

    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict) or not isinstance(table.get("objects"), list):
            raise ValueError("no 'objects' list")
        for o in table["objects"]:
            if not isinstance(o, dict) or "id" not in o or not isinstance(o.get("file"), str):
                raise ValueError("an object without 'id' or 'file'")
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"not a valid objects.json ({e})", path) from None
    return table


def export_formats(source: Path, out: Path, formats, progress: bool = True) -> dict:
    """Write ``source`` (a segment export folder, a training run or one splat file) in each of
    ``formats`` (:class:`pcf_gs.splats.formats.Format` or names) under ``out``.

    Segment export -> the same tree per format: ``objects/<id>_<class><ext>``, ``stuff/<class><ext>``,
    ``scene_labeled<ext>`` (formats that carry our labels) or ``scene<ext>`` (others: the labels are
    dropped and objects.json says so), and ``objects.json`` with each object's ``file`` naming the
    first format's file and ``files`` every format's (other fields kept). A run -> ``scene<ext>``
    (world frame, with inst_mu / inst_var where the format carries them); a single file ->
    ``<stem><ext>``. Every input is read (and checked) before anything is written; the outputs are
    written to a temporary copy of ``out`` that replaces it in one step at the end, so a failure or a
    kill leaves ``out`` as it was or with every file, never some. Returns a summary.
    """
    from pcf_gs.splats.formats import parse_formats, read_splats, strip_ext

    source, out = Path(source), Path(out)
    fmts = parse_formats(",".join(f if isinstance(f, str) else f.name for f in formats))
    kind = _source_kind(source)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a folder", out)
    # items: (output path without extension, relative to out; splats; carries labels)
    items: list[tuple[str, Splats, bool]] = []
    table = None
    if kind == "segment":
        table = _load_table(source / "objects.json")
        from pcf_gs.splats.formats import FORMATS

        cands = [source / (stem + f.ext) for stem in ("scene_labeled", "scene") for f in FORMATS.values()]
        scene_path = next((p for p in cands if p.is_file()), None)
        if scene_path is None:
            raise UserError("segment export without scene_labeled.ply (or a scene file of another format)", source)
        items.append(("scene_labeled", read_splats(scene_path), True))
        for o in table["objects"]:
            files = o.get("files") if isinstance(o.get("files"), dict) else {}
            rel = files.get("ply", o["file"])
            p = source / rel
            if not p.exists():
                raise UserError(f"object {o['id']}'s file is missing ({rel})", source / "objects.json")
            items.append((str(Path(rel).parent / strip_ext(Path(rel).name)), read_splats(p), False))
        stuff = {}
        for p in sorted((source / "stuff").glob("*")) if (source / "stuff").is_dir() else []:
            stem = strip_ext(p.name)
            if p.is_file() and not p.name.startswith(".") and (stem not in stuff or p.suffix == ".ply"):
                try:
                    from pcf_gs.splats.formats import format_of

                    format_of(p)
                except UserError:
                    continue
                stuff[stem] = p
        for stem, p in stuff.items():
            items.append((f"stuff/{stem}", read_splats(p), False))
    elif kind == "run":
        from pcf_gs.lift.run import Run

        try:
            run = Run.load(source)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001
            raise UserError(f"not a readable training run ({type(e).__name__})", source) from None
        items.append(("scene", params_to_splats(run.params, run.spec, run.normalization), True))
    else:
        items.append((strip_ext(source.name) if source.name != "meta.json" else source.parent.name, read_splats(source), True))
    for rel, s, _ in items:
        if len(s) == 0:
            raise UserError(f"{rel}: has no Gaussians to export", source)

    written: dict[str, list[str]] = {f.name: [] for f in fmts}
    exports: dict[str, dict] = {}
    # the new tree is built beside OUT (starting from OUT's files, hard-linked) and swapped in at the end:
    # a kill or a failure leaves OUT as it was or complete, never with some formats written
    with atomic_dir(out, add=True) as tmp:
        _write_exports(items, fmts, kind, tmp, written, exports, table, progress)
    return {"source": str(source), "kind": kind, "out": str(out), "formats": [f.name for f in fmts],
            "files": written, "exports": exports, "objects": len(table["objects"]) if table else 0}


def _write_exports(items, fmts, kind: str, out: Path, written: dict, exports: dict, table, progress: bool) -> None:
    """The files of :func:`export_formats`, written under ``out`` (its temporary folder)."""
    from pcf_gs.atomic import write_json_atomic
    from pcf_gs.progress import progress_bar
    from pcf_gs.splats.formats import strip_ext

    with progress_bar("export", len(items) * len(fmts), enabled=progress) as advance:
        for f in fmts:
            info = {"extension": f.ext, "library": f.library, "tolerance": f.tolerance}
            for rel, s, labelled in items:
                name = rel
                if labelled and kind == "segment" and not f.extras:
                    name = "scene"
                dropped = _label_keys(s) if labelled and not f.extras else []
                path = out / (name + f.ext)
                f.write(path, s, extra=labelled)
                written[f.name].append(str(path.relative_to(out)))
                if labelled:
                    info["scene"] = str(path.relative_to(out))
                    info["dropped"] = dropped
                advance()
            exports[f.name] = info
    if kind == "segment":
        first = fmts[0]
        stuff = [x for x in table.get("stuff") or [] if isinstance(x, dict) and isinstance(x.get("file"), str)]
        for o in table["objects"] + stuff:
            files = o.get("files") if isinstance(o.get("files"), dict) else {}
            rel = files.get("ply", o["file"])
            stem = str(Path(rel).parent / strip_ext(Path(rel).name))
            new = dict(files)
            new.update({f.name: stem + f.ext for f in fmts})
            o["file"] = stem + first.ext
            o["files"] = new
        table["exports"] = {**(table.get("exports") or {}), **exports}
        write_json_atomic(out / "objects.json", table)
