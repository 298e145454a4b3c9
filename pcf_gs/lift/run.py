"""`pcf-gs render`: render a trained run with its cameras (colour, alpha, semantics, depth)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from pcf_gs.lift.checkpoint import load_checkpoint
from pcf_gs.data.scene import Normalization, Scene
from pcf_gs.errors import UserError
from pcf_gs.atomic import atomic_dir, write_json_atomic
from pcf_gs.lift.model import ModelSpec, render_features, render_rgb
from pcf_gs.progress import progress_bar


def load_run(run: Path, device: torch.device | str = "cpu"):
    """(params ParameterDict, ModelSpec, scene record, config dict) of a run directory."""
    ck = load_checkpoint(Path(run))
    params = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.to(device), requires_grad=False) for k, v in ck["params"].items()}
    )
    return params, ModelSpec(**ck["spec"]), ck["scene"], ck["config"]


def view_of(rec: dict, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(viewmats [1,4,4], Ks [1,3,3]) of frame i of a run's scene record."""
    return torch.linalg.inv(rec["c2w"][i])[None], rec["K"][i][None]


def split_ids(rec: dict, split: str) -> list[int]:
    if split == "train":
        return list(rec["train_ids"])
    if split == "test":
        return list(rec["test_ids"])
    if split == "all":
        return list(range(len(rec["frames"])))
    raise UserError(f"unknown split {split!r} (train|test|all)")


def splats_to_params(s, norm: Normalization) -> dict:
    """World-frame :class:`~pcf_gs.splats.ply.Splats` -> render params (torch, the run's scene frame):
    means (x - c) * scale, log-scales + log scale; rotations, opacities and SH unchanged."""
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return {
        "means": f(norm.world_to_scene_points(s.means)),
        "scales": f(s.scales.astype(np.float64) + np.log(norm.scale)),
        "quats": f(s.quats), "opacities": f(s.opacities), "sh0": f(s.sh0), "shN": f(s.shN),
    }


def scene_record(scene: Scene) -> dict:
    """What later commands need from the scene, without re-reading the data folder."""
    return {
        "root": str(Path(scene.root).resolve()),
        "format": scene.format,
        "classes": scene.classes.to_list(),
        "normalization": scene.normalization.to_dict(),
        "frames": [f.name for f in scene.frames],
        "train_ids": list(scene.train_ids),
        "test_ids": list(scene.test_ids),
        "c2w": torch.from_numpy(scene.c2w_array()),
        "K": torch.from_numpy(np.stack([f.K for f in scene.frames]).astype(np.float32)),
        "width": scene.frames[0].width,
        "height": scene.frames[0].height,
    }
