"""The viewer's "Export" buttons: the selection or the visible Gaussians as a PLY file.

What you see is what you export: hidden objects are left out and recoloured
objects get their new colour (SH band 0 set to it, higher bands zeroed).
Files are written with :func:`pcf_gs.splats.ply.write_ply` in the original world
frame, like ``segment --export-ply``: the selection in the plain 3DGS layout
(as ``objects/<id>_<class>.ply``), the visible set in the labelled layout of
``scene_labeled.ply`` so that ``pcf-gs view`` reopens it with its labels.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pcf_gs.sh import rgb_to_sh0
from pcf_gs.splats.export import _safe
from pcf_gs.splats.ply import Splats, write_ply
from pcf_gs.viewer.view_renderer import DisplayState
from pcf_gs.viewer.target import ViewScene


def visible_mask(scene: ViewScene, state: DisplayState) -> np.ndarray:
    """[N] bool: the Gaussians the viewer draws under ``state`` (all of them without labels)."""
    if scene.instance_ids is None or not state.hidden:
        return np.ones(len(scene), bool)
    return ~np.isin(scene.instance_ids, np.array(sorted(state.hidden), dtype=np.int64))


def _with_labels(scene: ViewScene) -> Splats:
    s = scene.splats
    extra = dict(s.extra)
    if scene.instance_ids is not None:
        extra["instance_id"] = scene.instance_ids.astype(np.int32)
    if scene.semantic_ids is not None:
        extra["semantic_id"] = scene.semantic_ids.astype(np.int32)
    return Splats(s.means, s.scales, s.quats, s.opacities, s.sh0, s.shN, extra)


def bake_recolors(splats: Splats, instance_ids: np.ndarray | None, recolors) -> Splats:
    """Copy of ``splats`` whose recoloured objects have flat colours (sh0 = colour, shN = 0)."""
    if instance_ids is None or not recolors:
        return splats
    sh0, shN = splats.sh0.copy(), splats.shN.copy()
    for oid, rgb in recolors:
        m = instance_ids == int(oid)
        sh0[m, 0, :] = rgb_to_sh0(np.asarray(rgb, np.float32) / 255.0)
        shN[m] = 0.0
    return Splats(splats.means, splats.scales, splats.quats, splats.opacities, sh0, shN, splats.extra)


def export_view(scene: ViewScene, state: DisplayState, selected: int | None, out_dir: str | Path) -> Path:
    """Write object ``selected`` (plain 3DGS) or, with ``selected=None``, every visible
    Gaussian (labelled layout) to ``out_dir``; returns the file's path."""
    out_dir = Path(out_dir)
    full = _with_labels(scene)
    if selected is not None:
        if scene.instance_ids is None:
            raise ValueError("this scene has no object labels to select from")
        if selected <= 0:
            raise ValueError("select an object first (click it in the image)")
        mask = scene.instance_ids == selected
        if not mask.any():
            raise ValueError(f"object #{selected} has no Gaussians")
        o = scene.object(selected)
        path = out_dir / f"{selected}_{_safe(o.cls if o else 'object')}.ply"
        extra = False
    else:
        mask = visible_mask(scene, state)
        if not mask.any():
            raise ValueError("nothing is visible")
        path = out_dir / f"visible_{time.strftime('%Y%m%d-%H%M%S')}.ply"
        extra = True
    if path.parent != out_dir or path.name in ("", ".", ".."):  # _safe guarantees it; never write elsewhere
        raise ValueError(f"refusing to export outside {out_dir}: {path.name!r}")
    ids = None if scene.instance_ids is None else scene.instance_ids[mask]
    sub = bake_recolors(full.subset(mask), ids, state.recolors)
    write_ply(path, sub, extra=extra)
    return path
