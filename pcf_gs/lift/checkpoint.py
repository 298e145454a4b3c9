"""Run checkpoints: one ``checkpoint.pt`` per run, written atomically.

A checkpoint holds everything needed to continue bit for bit on CPU (params,
optimiser and strategy state, RNG states, the step) and everything later
commands need without the data folder (model spec, classes, normalisation,
cameras and frame names of every view, the resolved config).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pcf_gs.errors import UserError
from pcf_gs.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    payload = dict(payload, format_version=FORMAT_VERSION)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError("no checkpoint here (train first, or check the path)", path)
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read checkpoint ({type(e).__name__}: {e})", path) from None
    if not isinstance(ck, dict) or ck.get("format_version") != FORMAT_VERSION:
        raise UserError("not a pcf-gs checkpoint (or from an incompatible version)", path)
    return ck
