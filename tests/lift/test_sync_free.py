"""The GPU training step reads nothing back from the device (issue 17, item 5).

On CUDA the trainer runs in ``sync_free`` mode. Here it is forced on a CPU Trainer, and every way our
training code could make a GPU wait for the host is counted while steps of every stage run: scalar
reads (bool / float / int / item / tolist), ``torch.unique`` / ``nonzero``, ``bincount`` and boolean-mask
indexing, from the files of ``pcf_gs/lift`` (the CPU rasterizer itself is host code and not counted;
on CUDA gsplat's kernels take its place). The CUDA test checks the same with torch's own sync detector.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

LIFT = str(Path(__file__).resolve().parents[2] / "pcf_gs" / "lift")
# functions that work on host tensors on every device (the view order and the camera neighbours: the CPU
# generator ``ViewSampler.gen``), so their reads are not GPU waits
HOST_SIDE = {"step_views", "next_view"}

SETS = [
    "model.init_points=300", "model.sh_degree=1", "data.max_size=32", "train.warmup_iterations=2",
    "train.cross_view_start=4", "train.densify_from=1", "train.densify_every=3", "train.densify_until=8",
    "train.pixels_per_view=64", "train.semantic_pixels=128", "train.cross_view_min_samples=2",
]


def _trainer(root, sync_free: bool, extra=()):
    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.trainer import Trainer

    cfg = load_config(None, SETS + list(extra))
    torch.manual_seed(0)
    tr = Trainer(load_scene(root, cfg.data, progress=False), cfg, root.parent / f"run{sync_free}", torch.device("cpu"),
                 progress=False)
    tr.sync_free = sync_free  # before the optimisers are made: fused Adam
    tr.init_model()
    return tr


READS = {"__bool__", "__float__", "__int__", "__index__", "item", "tolist", "unique", "unique_consecutive", "nonzero",
         "argwhere", "bincount", "masked_select"}
TORCH_DIR = str(Path(torch.__file__).parent)


class _HostReads(TorchFunctionMode):
    """While active, records every host read of a tensor (READS, and indexing with a boolean mask) whose
    nearest caller outside torch is a file of pcf_gs/lift. A torch function mode sees these calls without
    patching ``torch.Tensor`` (patching its ``__getitem__`` cannot be undone in CPython)."""

    def __init__(self):
        super().__init__()
        self.hits: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS or (name in ("__getitem__", "__setitem__") and _has_mask(args[1] if len(args) > 1 else None)):
            f = sys._getframe(1)
            while f is not None and f.f_code.co_filename.startswith(TORCH_DIR):
                f = f.f_back
            if f is not None and f.f_code.co_filename.startswith(LIFT) and f.f_code.co_name not in HOST_SIDE:
                self.hits.append(f"{name} at {Path(f.f_code.co_filename).name}:{f.f_lineno}")
        return func(*args, **(kwargs or {}))


def _has_mask(idx) -> bool:
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(torch.is_tensor(i) and i.dtype == torch.bool for i in items)


def test_sync_free_steps_read_nothing_back(tiny_mr):
    root, _ = tiny_mr
    tr = _trainer(root, sync_free=True)
    reads = _HostReads()
    for step in range(10):  # warm-up, instance, cross-view stages and three densification steps
        with reads:
            terms = tr.train_step(step)
        assert all(torch.is_tensor(v) and v.dim() == 0 for v in terms.values())
    assert "cross_view" in terms
    assert reads.hits == [], reads.hits
    assert float(tr.nonfinite_new) == 0


def test_sync_free_step_gives_the_same_losses(tiny_mr):
    # same draws, same render, same losses; only the optimiser differs (fused Adam: equal up to rounding)
    root, _ = tiny_mr
    a, b = _trainer(root, sync_free=False), _trainer(root, sync_free=True)
    for step in range(6):
        ta, tb = a.train_step(step), b.train_step(step)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert math.isclose(float(ta[k]), float(tb[k]), rel_tol=1e-3, abs_tol=1e-5), (step, k)


def test_sync_free_nonfinite_step_is_skipped_on_the_device(tiny_mr, monkeypatch):
    from pcf_gs.lift import losses

    root, _ = tiny_mr
    tr = _trainer(root, sync_free=True)
    for step in range(4):
        tr.train_step(step)
    before = {k: v.detach().clone() for k, v in tr.params.items()}
    adam_steps = float(tr.optimizers["means"].state[tr.params["means"]]["step"])
    stat = tr.densifier.state["grad2d"].clone()
    orig = losses.appearance_loss
    monkeypatch.setattr(losses, "appearance_loss", lambda *a, **k: orig(*a, **k) * float("nan"))
    terms = tr.train_step(4)  # not a densification step (every 3)
    assert not math.isfinite(float(terms["total"]))
    for k in ("means", "scales", "sh0", "inst_mu", "inst_var", "semantics"):
        assert torch.equal(tr.params[k], before[k]), k  # skipped: no update, no momentum step
    assert float(tr.optimizers["means"].state[tr.params["means"]]["step"]) == adam_steps
    assert torch.isfinite(tr.densifier.state["grad2d"]).all() and torch.equal(tr.densifier.state["grad2d"], stat)
    assert float(tr.nonfinite_new) == 1 and float(tr.nonfinite_run) == 1
    monkeypatch.setattr(losses, "appearance_loss", orig)
    tr.train_step(5)
    assert float(tr.nonfinite_run) == 0 and float(tr.nonfinite_new) == 1  # the run resets, the log count stays


def test_sync_free_divergence_ends_the_run_at_a_log_step(tiny_mr, tmp_path, monkeypatch, capsys):
    import json

    from pcf_gs.lift import losses, trainer as trainer_mod

    orig_init = trainer_mod.Trainer.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self.sync_free = True

    monkeypatch.setattr(trainer_mod.Trainer, "__init__", init)
    orig = losses.appearance_loss
    calls = {"n": 0}

    def bad(*a, **k):
        calls["n"] += 1
        v = orig(*a, **k)
        return v * float("nan") if calls["n"] > 10 else v

    monkeypatch.setattr(losses, "appearance_loss", bad)
    from pcf_gs.cli import main

    root, _ = tiny_mr
    run = tmp_path / "run"
    rc = main(["-q", "train", str(root), "--out", str(run), "--device", "cpu", "--set", "train.iterations=40",
               "--set", "train.log_every=5", "--set", "train.checkpoint_every=100", "--set", "train.max_nonfinite_steps=3",
               *[x for s in SETS for x in ("--set", s)]])
    assert rc == 1 and "diverged" in capsys.readouterr().err
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["nonfinite_steps"] >= 3  # the steps from the 11th on, counted on the device, read at the log step


def test_densify_statistic_matches_gsplat_bit_for_bit():
    from gsplat.strategy import DefaultStrategy

    from pcf_gs.lift.densify import PcfStrategy

    g = torch.Generator().manual_seed(0)
    for C in (1, 2, 3):
        N = 500
        m2 = torch.randn(C, N, 2, generator=g).requires_grad_()
        m2.grad = torch.randn(C, N, 2, generator=g)
        radii = (torch.rand(C, N, 2, generator=g) * 3).floor().int()
        info = {"width": 37, "height": 29, "n_cameras": C, "radii": radii, "gaussian_ids": None, "means2d": m2}
        params = {"means": torch.zeros(N, 3)}
        ours, ref = PcfStrategy(), DefaultStrategy()
        so, sr = ours.initialize_state(), ref.initialize_state()
        for _ in range(2):
            ours._update_state(params, so, info)
            ref._update_state(params, sr, info)
        assert torch.equal(so["grad2d"], sr["grad2d"]) and torch.equal(so["count"], sr["count"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_make_no_sync_from_our_code(tiny_mr):
    import warnings

    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.trainer import Trainer

    root, _ = tiny_mr
    cfg = load_config(None, SETS)
    tr = Trainer(load_scene(root, cfg.data, progress=False), cfg, root.parent / "runcuda", torch.device("cuda"),
                 progress=False)
    assert tr.sync_free
    tr.init_model()
    tr.train_step(0)  # first-use work (allocations, kernel loads) before counting
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(1, 10):
                tr.train_step(step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    ours = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if w.filename.startswith(LIFT)]
    assert ours == [], ours  # gsplat's own rasterizer synchronises (tile intersection counts); ours must not
