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
    """Write ``payload`` to a temporary sibling, flush it to the disk, rename it onto ``path``: a kill at
    any moment leaves the previous checkpoint or the new one, never a partial file. A full disk is a
    UserError (the previous checkpoint stays)."""
    payload = dict(payload, format_version=FORMAT_VERSION)
    try:
        with atomic_path(path) as tmp:
            # a Python file object, not a path: torch's own writer reports a full disk as an opaque
            # RuntimeError ("unexpected pos"), Python's write raises OSError(ENOSPC)
            with open(tmp, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())  # the rename must not overtake the data on a power cut
    except (OSError, RuntimeError) as e:
        # torch's zip writer turns a failed write into a RuntimeError raised while handling the OSError
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise UserError(f"cannot write the checkpoint ({cause.strerror or cause}); the previous checkpoint, "
                        "if any, is kept", path) from None


def remove_stale_temporaries(run_dir: str | os.PathLike) -> None:
    """Delete temporary checkpoints a killed writer left in ``run_dir`` (``.checkpoint.*.tmp.pt``, from
    :func:`~pcf_gs.atomic.atomic_path`). Call it only while holding the run's lock."""
    for p in Path(run_dir).glob(f".{Path(CHECKPOINT_NAME).stem}.*.tmp{Path(CHECKPOINT_NAME).suffix}"):
        p.unlink(missing_ok=True)


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
