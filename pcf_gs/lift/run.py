"""A trained run as one typed object: the model and everything later stages need of its scene.

``Run.load(run_dir)`` reads ``checkpoint.pt``; ``Run.from_params`` wraps an in-memory model (the
viewer's live training). The checkpoint stores the scene part as the plain dict of
:func:`scene_record`; that dict's layout is the checkpoint format and does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pcf_gs.config import Config, config_from_dict
from pcf_gs.data.scene import ClassTable, Normalization, Scene
from pcf_gs.errors import UserError
from pcf_gs.lift.checkpoint import load_checkpoint
from pcf_gs.lift.model import ModelSpec

SPLITS = ("train", "test", "all")


@dataclass
class Run:
    """A trained model with its cameras, classes and settings.

    Everything geometric is in the normalised scene frame (x_scene = (x_world - c) * s, see
    :class:`~pcf_gs.data.scene.Normalization`); ``normalization`` maps back to the world frame.
    """

    params: torch.nn.ParameterDict  # Gaussians: means [N,3], scales [N,3] (log), quats [N,4], ...
    spec: ModelSpec
    c2w: torch.Tensor  # [F, 4, 4] float32 camera-to-world of every frame, scene frame
    K: torch.Tensor  # [F, 3, 3] float32 intrinsics in pixels (at width x height)
    width: int  # pixels, the same for every frame
    height: int
    frames: list[str]  # frame names, index = frame id
    train_ids: list[int]
    test_ids: list[int]
    normalization: Normalization
    classes: ClassTable
    root: Path  # the data folder it was trained on (absolute, as it was then)
    format: str  # the data format ("synth", "messy_rooms", ...)
    config: Config  # the resolved settings it was trained with

    @classmethod
    def load(cls, run_dir: str | Path, device: torch.device | str = "cpu") -> "Run":
        """Read ``run_dir/checkpoint.pt`` (or that file itself); params go to ``device``, cameras stay on CPU."""
        ck = load_checkpoint(Path(run_dir))
        params = torch.nn.ParameterDict(
            {k: torch.nn.Parameter(v.to(device), requires_grad=False) for k, v in ck["params"].items()}
        )
        config = config_from_dict(ck["config"]) if isinstance(ck.get("config"), dict) else None
        if config is None:
            raise UserError("damaged checkpoint: no settings", Path(run_dir))
        try:
            return cls.from_params(params, ModelSpec(**ck["spec"]), ck["scene"], config)
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # classes or normalisation malformed
            raise UserError(f"damaged checkpoint: scene record ({type(e).__name__}: {e})", Path(run_dir)) from None

    @classmethod
    def from_params(cls, params, spec: ModelSpec, record: dict, config: Config) -> "Run":
        """A run from in-memory params (scene frame) and a :func:`scene_record` dict."""
        return cls(
            params=params, spec=spec, c2w=record["c2w"], K=record["K"],
            width=record["width"], height=record["height"], frames=list(record["frames"]),
            train_ids=list(record["train_ids"]), test_ids=list(record["test_ids"]),
            normalization=Normalization.from_dict(record["normalization"]),
            classes=ClassTable.from_list(record["classes"]), root=Path(record["root"]),
            format=record["format"], config=config,
        )

    def view(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(viewmats [1,4,4] world-to-camera, Ks [1,3,3]) of frame i, as the renderers take them."""
        return torch.linalg.inv(self.c2w[i])[None], self.K[i][None]

    def split_ids(self, split: str) -> list[int]:
        """Frame ids of ``split``: "train", "test" or "all"."""
        if split == "train":
            return list(self.train_ids)
        if split == "test":
            return list(self.test_ids)
        if split == "all":
            return list(range(len(self.frames)))
        raise UserError(f"unknown split {split!r} (train|test|all)")


def scene_record(scene: Scene) -> dict:
    """What later commands need from the scene, without re-reading the data folder.

    This dict is stored as a checkpoint's ``"scene"``; its keys and types are the checkpoint format.
    """
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
