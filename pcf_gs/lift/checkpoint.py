"""Run checkpoints: one ``checkpoint.pt`` per run, written atomically.

A checkpoint holds everything needed to continue bit for bit on CPU (params,
optimiser and strategy state, RNG states, the step) and everything later
commands need without the data folder (model spec, classes, normalisation,
cameras and frame names of every view, the resolved config).

Loading never runs code from the file: ``torch.load(weights_only=True)`` with only numpy's array
types allowed besides tensors, containers and numbers (the numpy RNG state is an array), so a
checkpoint from someone else cannot execute anything when ``pcf-gs segment``/``view``/``train --resume``
opens it.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

import numpy as np
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


def _numpy_globals() -> list:
    """The numpy pickle globals a checkpoint may hold (arrays and their dtypes), for ``weights_only`` loading."""
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2 / numpy 1
        try:
            rec = importlib.import_module(mod)._reconstruct
            break
        except (ImportError, AttributeError):
            continue
    dtypes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGUSV"]  # numpy 2 pickles per-dtype classes
    return [rec, np.ndarray, np.dtype, *dtypes]


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise UserError("no checkpoint here (train first, or check the path)", path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise UserError(f"cannot read checkpoint (UnpicklingError: {str(e).splitlines()[0]})", path) from None
        raise UserError("refusing to load: damaged, or holding Python objects other than tensors, arrays and "
                        "numbers, which a pcf-gs checkpoint never does (loading it could run code)", path) from None
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read checkpoint ({type(e).__name__}: {e})", path) from None
    if not isinstance(ck, dict) or ck.get("format_version") != FORMAT_VERSION:
        raise UserError("not a pcf-gs checkpoint (or from an incompatible version)", path)
    why = checkpoint_problem(ck)
    if why:
        raise UserError(f"damaged checkpoint: {why}", path)
    return ck


# trained attributes -> their shape after the Gaussian axis N, by the spec (E embed_dim, C classes, S = (d+1)^2)
_PARAM_SHAPES = {
    "means": lambda sp: (3,), "scales": lambda sp: (3,), "quats": lambda sp: (4,), "opacities": lambda sp: (),
    "sh0": lambda sp: (1, 3), "shN": lambda sp: ((sp["sh_degree"] + 1) ** 2 - 1, 3),
    "semantics": lambda sp: (sp["num_classes"],), "inst_mu": lambda sp: (sp["embed_dim"],),
    "inst_var": lambda sp: (sp["embed_dim"],), "inst_mu_slow": lambda sp: (sp["embed_dim"],),
    "inst_var_slow": lambda sp: (sp["embed_dim"],),
}
_SPEC_TYPES = {"num_classes": int, "embed_dim": int, "sh_degree": int, "embedding": str, "var_floor": float,
               "deterministic_var": float}
_SCENE_TYPES = {"root": str, "format": str, "classes": list, "normalization": dict, "frames": list, "train_ids": list,
                "test_ids": list, "c2w": torch.Tensor, "K": torch.Tensor, "width": int, "height": int}


def checkpoint_problem(ck: dict) -> str | None:
    """What is wrong with a loaded checkpoint's model, spec and scene record (None if nothing): the parts every
    later command reads. Shapes follow the spec, every value is finite, cameras are [F,4,4] / [F,3,3] for the
    F frames, split ids index them."""
    spec, params, scene = ck.get("spec"), ck.get("params"), ck.get("scene")
    if not isinstance(spec, dict) or set(spec) != set(_SPEC_TYPES):
        return "model spec missing or with unknown entries"
    for k, tp in _SPEC_TYPES.items():
        v = spec[k]
        ok = isinstance(v, (int, float)) if tp is float else isinstance(v, tp)
        if not ok or isinstance(v, bool) or v != v:
            return f"model spec {k}={v!r} is not a {tp.__name__}"
    if spec["num_classes"] < 1 or spec["embed_dim"] < 1 or not 0 <= spec["sh_degree"] <= 4:
        return "model spec out of range"
    if not isinstance(params, dict) or set(params) != set(_PARAM_SHAPES):
        return "Gaussian attributes missing or unknown"
    n = None
    for k, shape in _PARAM_SHAPES.items():
        v = params[k]
        if not torch.is_tensor(v) or v.dtype != torch.float32:
            return f"Gaussian attribute {k} is not a float32 tensor"
        n = v.shape[0] if n is None and v.ndim else n
        if tuple(v.shape) != (n, *shape(spec)):
            return f"Gaussian attribute {k} has shape {tuple(v.shape)}, not {(n, *shape(spec))}"
        if not bool(torch.isfinite(v).all()):
            return f"Gaussian attribute {k} holds NaN or infinite values"
    if not isinstance(scene, dict) or set(scene) != set(_SCENE_TYPES):
        return "scene record missing or with unknown entries"
    for k, tp in _SCENE_TYPES.items():
        if not isinstance(scene[k], tp):
            return f"scene record {k} is not a {tp.__name__}"
    F = len(scene["frames"])
    if tuple(scene["c2w"].shape) != (F, 4, 4) or tuple(scene["K"].shape) != (F, 3, 3):
        return f"cameras are not [{F},4,4] poses and [{F},3,3] intrinsics for the {F} frames"
    if not (bool(torch.isfinite(scene["c2w"]).all()) and bool(torch.isfinite(scene["K"]).all())):
        return "cameras hold NaN or infinite values"
    if scene["width"] < 1 or scene["height"] < 1:
        return "image size is not positive"
    ids = scene["train_ids"] + scene["test_ids"]
    if not all(isinstance(i, int) and 0 <= i < F for i in ids):
        return "split ids do not index the frames"
    return None
