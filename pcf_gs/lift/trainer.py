"""Training: appearance + semantics warm-up, then the PCF instance losses, then cross-view.

One step renders one view (two in the cross-view stage, a camera and one of
its nearest neighbours): colour with geometry gradients, and semantic logits
plus instance embeddings (fast and slow) with the geometry detached by
default, so the semantic/instance losses move only their own attributes.

The parts: the training frames and the random draws over them
(:mod:`pcf_gs.lift.batches`), the loss of one step (:mod:`pcf_gs.lift.objective`),
densification (:mod:`pcf_gs.lift.densify`), the loop (:mod:`pcf_gs.lift.fit`).
:class:`Trainer` holds the run's state (model, optimisers, strategy state,
RNG, step), does one optimisation step and saves/restores checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import random
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pcf_gs.config import Config, config_from_dict, save_config
from pcf_gs.data.scene import Scene
from pcf_gs.errors import UserError
from pcf_gs.lift.batches import TrainViews, ViewSampler
from pcf_gs.lift.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_stale_temporaries, save_checkpoint
from pcf_gs.lift.densify import Densifier
from pcf_gs.lift.distributed import Dist
from pcf_gs.lift.fit import TrainingDiverged, fit
from pcf_gs.lift.model import ModelSpec, ema_update_slow, init_params, render_rgb
from pcf_gs.lift import losses
from pcf_gs.lift.objective import step_losses
from pcf_gs.lift.run import scene_record

__all__ = ["LR_KEYS", "Trainer", "TrainingDiverged", "device_preset", "resolve_device", "run_training"]

log = logging.getLogger("pcf_gs")

# trained attribute -> its learning-rate setting in TrainConfig (the slow embedding copies are not trained)
LR_KEYS = {
    "means": "lr_means",
    "scales": "lr_scales",
    "quats": "lr_quats",
    "opacities": "lr_opacities",
    "sh0": "lr_sh0",
    "shN": "lr_shN",
    "semantics": "lr_semantic",
    "inst_mu": "lr_embedding",
    "inst_var": "lr_embedding",
}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


class Trainer:
    """The state of one run: model ``params`` (after :meth:`init_model` or :meth:`load_state_dict`),
    ``optimizers``, ``densifier``, the training ``views`` and their ``sampler``, and ``step``.

    ``on_step(trainer)``, if set, runs after every step (pcf-gs train --viewer). ``dist``: this process's
    place among several (:mod:`pcf_gs.lift.distributed`; default one process).
    """

    def __init__(self, scene: Scene, cfg: Config, run_dir: Path, device: torch.device, progress: bool = True,
                 dist: Dist | None = None):
        self.scene, self.cfg, self.run_dir, self.device, self.progress = scene, cfg, Path(run_dir), device, progress
        self.dist = dist or Dist()
        if cfg.train.views_per_step % self.dist.world:
            raise UserError(f"train.views_per_step={cfg.train.views_per_step} does not divide among {self.dist.world} "
                            "processes; set it to a multiple (--set train.views_per_step=N)")
        self.views = TrainViews(scene, device, cfg.train.cross_view_neighbours)
        self.W, self.H = self.views.W, self.views.H
        self.scene_scale = self.views.scene_scale
        self.spec = ModelSpec(
            num_classes=scene.classes.num_classes,
            embed_dim=cfg.model.embed_dim,
            sh_degree=cfg.model.sh_degree,
            embedding=cfg.model.embedding,
            var_floor=cfg.model.var_floor,
            deterministic_var=cfg.model.deterministic_var,
        )
        self.sampler = ViewSampler(self.views, cfg.seed, cfg.train.balanced_sampling)
        self.step = 0
        self.params = None
        self.optimizers: dict = {}
        self.densifier = Densifier(cfg.train, device, self.scene_scale)
        if hasattr(self.densifier.strategy, "dist"):
            self.densifier.strategy.dist = self.dist
        self.on_step = None
        # CUDA: a step reads nothing back from the device (see train_step); the CPU keeps the plain checks
        self.sync_free = device.type == "cuda"
        self.nonfinite_run = torch.zeros((), device=device)  # consecutive non-finite steps (sync-free mode)
        self.nonfinite_new = torch.zeros((), device=device)  # non-finite steps since the last log line

    # ------------------------------------------------------------------ model
    def init_model(self) -> None:
        from pcf_gs.lift.initial_points import initial_points

        pts, col, source = initial_points(self.scene, self.cfg.model.init_points, self.cfg.seed)
        log.info("initialising %d Gaussians from %s", len(pts), source)
        self.params = init_params(pts, col, self.spec, self.cfg.model.init_opacity, self.cfg.seed).to(self.device)
        self._make_optimizers()

    def _make_optimizers(self) -> None:
        tc = self.cfg.train
        self.optimizers = {}
        for name, key in LR_KEYS.items():
            lr = getattr(tc, key) * (self.scene_scale if name == "means" else 1.0)
            # sync-free: the fused Adam, which skips a step on the device when its found_inf is set
            self.optimizers[name] = torch.optim.Adam([self.params[name]], lr=lr, eps=1e-15,
                                                     **({"fused": True} if self.sync_free else {}))

    def _means_lr(self, step: int) -> float:
        # exponential decay to 1% over the run, as 3DGS
        tc = self.cfg.train
        t = min(step / max(tc.iterations, 1), 1.0)
        return tc.lr_means * self.scene_scale * (0.01**t)

    # ------------------------------------------------------------------ steps
    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns the loss terms as detached 0-dim tensors (``nonfinite`` 1 if the step
        was skipped for a non-finite loss).

        On the CPU a non-finite loss is seen at once and the step returns before ``backward``. In
        ``sync_free`` mode (CUDA) nothing is read back from the device: the check is a device flag, the fused
        Adam skips its update on it (``found_inf``), the densification statistic gets the zeroed gradients,
        and :attr:`nonfinite_run` / :attr:`nonfinite_new` count on the device for :func:`~pcf_gs.lift.fit.fit`
        to read every ``log_every`` steps."""
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        self.optimizers["means"].param_groups[0]["lr"] = self._means_lr(step)
        dist = self.dist
        terms, metas = step_losses(self.params, self.spec, self.cfg, self.views, self.sampler, step,
                                   share=(dist.rank, dist.world))
        self.densifier.pre_backward(self.params, self.optimizers, step, metas)
        total = terms["total"]
        bad = ~torch.isfinite(total)
        if self.sync_free:
            bad = dist.any_tensor(bad)  # every process skips the step if any saw a non-finite loss
        elif dist.any(bool(bad)):
            return {"nonfinite": torch.ones(()), **{k: v.detach() for k, v in terms.items()}}
        total.backward()
        dist.average_gradients(self.params)
        if self.sync_free:
            self._guard_nonfinite(bad, metas)
        self.densifier.post_backward(self.params, self.optimizers, step, metas, self._means_lr(step))
        for o in self.optimizers.values():
            o.step()
        if step >= self.cfg.train.warmup_iterations:
            ema_update_slow(self.params, self.cfg.train.ema_momentum)
        return {k: v.detach() for k, v in terms.items()}

    def _guard_nonfinite(self, bad: torch.Tensor, metas: list[dict]) -> None:
        """Sync-free mode: zero every gradient of a non-finite step (the densification statistic reads the
        2D means' one), tell the fused Adam to skip it, count it."""
        rendered = [m.get(k) for m in metas for k in ("means2d", "feature_means2d")]
        for t in [*self.params.values(), *rendered]:
            if t is not None and t.grad is not None:
                t.grad = torch.where(bad, 0.0, t.grad)
            if getattr(t, "absgrad", None) is not None:
                t.absgrad = torch.where(bad, 0.0, t.absgrad)
        flag = bad.float()
        for o in self.optimizers.values():
            o.found_inf = flag
        self.nonfinite_run = (self.nonfinite_run + 1) * bad
        self.nonfinite_new = self.nonfinite_new + bad

    @torch.no_grad()
    def eval_psnr(self) -> float:
        """PSNR (dB) of the held-out view at full SH degree."""
        v = self.views
        rgb, _, _, _ = render_rgb(
            self.params, v.eval_view, v.eval_K, self.W, self.H, self.spec.sh_degree,
            backend=self.cfg.render.backend, **self.cfg.render.kw(),
        )
        return float(losses.psnr(rgb[0].clamp(0, 1), v.eval_img))

    def fit(self) -> dict:
        """Train to ``train.iterations`` (see :func:`pcf_gs.lift.fit.fit`)."""
        return fit(self)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "spec": asdict(self.spec),
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in self.densifier.state.items()},
            "rng": {
                "gen": self.sampler.gen.get_state(),
                "sem_gen": self.sampler.sem_gen.get_state(),
                "pix_gen": self.sampler.pix_gen.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "order": list(self.sampler.order),
            "config": self.cfg.to_dict(),
            "scene": scene_record(self.scene),
        }

    def load_state_dict(self, ck: dict) -> None:
        self.step = int(ck["step"])
        pd = torch.nn.ParameterDict()
        for k, v in ck["params"].items():
            pd[k] = torch.nn.Parameter(v.to(self.device), requires_grad=k in LR_KEYS)
        self.params = pd
        self._make_optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        self.densifier.state = {
            k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in ck["strategy_state"].items()
        }
        self.sampler.gen.set_state(ck["rng"]["gen"])
        if "sem_gen" in ck["rng"]:  # older checkpoints: the stream starts afresh
            self.sampler.sem_gen.set_state(ck["rng"]["sem_gen"])
        if "pix_gen" in ck["rng"] and self.sampler.pix_gen is not self.sampler.gen:
            self.sampler.pix_gen.set_state(ck["rng"]["pix_gen"])
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        self.sampler.order = list(ck["order"])

    def save(self) -> None:
        """Write RUN/checkpoint.pt atomically (the first process only: every process holds the same state)."""
        if self.dist.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.state_dict())


DEVICE_PRESETS = {"cpu": "cpu_fast", "cuda": "default"}


def device_preset(device: torch.device, announce: bool = True) -> str:
    """The preset `pcf-gs train` uses without ``--config``: the short CPU schedule on a CPU (the 30,000-step
    GPU recipe would take hours there), the full recipe on CUDA. ``announce`` prints one line saying so."""
    name = DEVICE_PRESETS.get(device.type, "default")
    if announce:
        what = "the short CPU schedule" if name == "cpu_fast" else "the full GPU recipe"
        other = "default" if name == "cpu_fast" else "cpu_fast"
        print(f"pcf-gs train: no --config given, training on {device.type} with {what} '{name}' "
              f"(--config {other} or a YAML file to choose another)", file=sys.stderr, flush=True)
    return name


LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive ``flock`` on ``RUN/.lock`` while inside: a second ``pcf-gs train`` on the same
    folder gets a one-line UserError instead of two writers interleaving checkpoints. The kernel drops
    the lock when the process ends, however it ends, so a killed run never leaves a stale lock.

    On the way out the lock file is removed (while still held), and so is RUN/ itself when this call
    created it and nothing else was written (a run that failed to start leaves no trace). Removing a lock
    file is safe because the taker checks that the file it locked is still the one at the path, and takes
    the new one otherwise."""
    import fcntl
    import os

    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise UserError(f"another pcf-gs train{' (pid ' + other + ')' if other.isdigit() else ''} is using this "
                            "run folder; wait for it or choose another --out", run_dir) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it on the way out: lock the file now at the path
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
        yield
    finally:
        try:
            os.unlink(path)
            if created:
                run_dir.rmdir()  # only if empty: a run that wrote anything keeps its folder
        except OSError:
            pass
        os.close(fd)  # releases the lock


def run_training(
    data: Path,
    run_dir: Path,
    preset: str | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step=None,
    distributed: bool = False,
) -> dict:
    """`pcf-gs train`: load data, train (or resume), write RUN/{config.yaml, checkpoint.pt, metrics.jsonl}.

    A new run takes defaults < ``preset`` < ``overrides``; with no ``preset``, the device's
    (:func:`device_preset`). ``--resume`` takes
    the run's saved config < ``overrides`` (e.g. more iterations); a run killed before its first
    checkpoint (config.yaml written, no checkpoint.pt) starts over from its saved config.
    ``on_step(trainer)``, if given, runs after every step (the live viewer).
    The run folder is locked (:func:`run_lock`) while training.

    ``distributed``: this is one of the processes that ``torchrun`` started (:mod:`pcf_gs.lift.distributed`);
    the first one holds the lock, writes and shows progress, all of them train. A setup error on any
    process (bad data, no checkpoint, a locked folder) stops all of them before the first step.
    """
    run_dir = Path(run_dir)
    if resume and not run_dir.is_dir():
        load_checkpoint(run_dir / CHECKPOINT_NAME)  # the usual "no checkpoint here", without creating RUN/
    dist = Dist.from_env(_device_setting(overrides)) if distributed else Dist()
    if not dist.is_main:
        progress = False
        log.setLevel(logging.ERROR)  # the first process speaks for all
    try:
        with contextlib.ExitStack() as stack:
            err = None
            try:
                if dist.is_main:
                    stack.enter_context(run_lock(run_dir))
                tr = _setup(data, run_dir, preset, overrides, resume, progress, dist)
            except Exception as e:  # noqa: BLE001 - raised below, on every process alike
                err = e
            if dist.any(err is not None):
                if err is None:
                    raise UserError(f"rank {dist.rank}: another process failed to start (its message says why)")
                raise err
            tr.on_step = on_step
            return tr.fit()
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # the run folder cannot take more
            raise UserError(f"cannot write to the run folder ({e.strerror}); the last good checkpoint, "
                            "if any, is kept", run_dir) from None
        raise
    finally:
        dist.close()


def _device_setting(overrides: list[str] | None) -> str:
    """The ``device`` the overrides ask for ("auto" without one), before the run's config is resolved."""
    from pcf_gs.config import load_config

    return load_config(None, overrides).device


def _setup(data, run_dir: Path, preset, overrides, resume: bool, progress: bool, dist: Dist) -> Trainer:
    """The run's config, scene and trainer (from the checkpoint with ``resume``); only the first process writes."""
    from pcf_gs.config import apply_overrides, load_config
    from pcf_gs.data import load_scene

    ck_path = run_dir / CHECKPOINT_NAME
    if dist.is_main:
        remove_stale_temporaries(run_dir)  # a killed writer's: safe, the lock says no one else writes here
    ck = None
    if resume and not ck_path.exists() and (run_dir / "config.yaml").is_file():
        # killed before the first checkpoint: nothing trained yet, so start over with the run's config
        log.warning("%s has no checkpoint yet; starting the run over from its config.yaml", run_dir)
        if preset:
            log.warning("--config is ignored with --resume (the run's saved config is used)")
        cfg = apply_overrides(load_config(str(run_dir / "config.yaml")), overrides)
    elif resume:
        ck = load_checkpoint(ck_path)
        if preset:
            log.warning("--config is ignored with --resume (the run's saved config is used)")
        cfg = apply_overrides(config_from_dict(ck["config"]), overrides)
    else:
        if ck_path.exists():
            raise UserError("already holds a trained run; use --resume to continue it or choose another --out", run_dir)
        if preset is None:
            preset = device_preset(resolve_device(load_config(None, overrides).device), announce=progress)
        cfg = load_config(preset, overrides)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    scene = load_scene(data, cfg.data, progress=progress)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    tr = Trainer(scene, cfg, run_dir, device, progress=progress, dist=dist)
    if ck is not None:
        tr.load_state_dict(ck)
    else:
        tr.init_model()
    return tr
