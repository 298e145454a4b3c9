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
from pcf_gs.atomic import write_json_atomic
from pcf_gs.lift.pp_kernel import activate_var
from pcf_gs.lift.model import ModelSpec
from pcf_gs.splats.ply import Splats, write_ply


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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


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
    for c, name in enumerate(class_names):
        if is_thing[c]:
            continue
        m = (semantic_ids == c) & (instance_ids == 0) & vis
        if m.any():
            write_ply(out / "stuff" / f"{_safe(name)}.ply", splats.subset(m), extra=False)
    write_json_atomic(out / "objects.json", {"objects": table})
    return table
