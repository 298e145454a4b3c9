"""Training: appearance + semantics warm-up, then the PCF instance losses, then cross-view.

One step renders one view (two in the cross-view stage, a camera and one of
its nearest neighbours): colour with geometry gradients, and semantic logits
plus instance embeddings (fast and slow) with the geometry detached by
default, so the semantic/instance losses move only their own attributes.

Loss (per step):
  L = L_app + w_sem L_sem
      + [step >= warmup]        (w_con L_contra + w_conc L_concen + w_reg L_reg)
      + [step >= cross_start]   w_cross L_cross
with the terms of :mod:`pcf_gs.lift.losses` (PCF-Lift Eqs. 2-6).
"""

from __future__ import annotations

import json
import logging
import random
import signal
from collections import deque
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pcf_gs.lift import losses
from pcf_gs.lift.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from pcf_gs.config import Config, config_from_dict, save_config
from pcf_gs.data.scene import Scene
from pcf_gs.errors import UserError
from pcf_gs.lift.run import scene_record
from pcf_gs.lift.model import ModelSpec, ema_update_slow, init_params, render_features, render_rgb
from pcf_gs.lift.densify import PcfStrategy

log = logging.getLogger("pcf_gs")

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


class TrainingDiverged(RuntimeError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return torch.device(name)


class Trainer:
    """Owns the model, optimisers, strategy and the data tensors of one run."""

    def __init__(self, scene: Scene, cfg: Config, run_dir: Path, device: torch.device, progress: bool = True):
        self.scene, self.cfg, self.run_dir, self.device, self.progress = scene, cfg, Path(run_dir), device, progress
        tc = cfg.train
        sizes = {(f.width, f.height) for f in scene.frames}
        if len(sizes) != 1:
            raise UserError(f"all frames must have the same size to train, got {sorted(sizes)}", scene.root)
        (self.W, self.H), = sizes
        if not scene.train_ids:
            raise UserError("the scene has no training frames", scene.root)
        self.spec = ModelSpec(
            num_classes=scene.classes.num_classes,
            embed_dim=cfg.model.embed_dim,
            sh_degree=cfg.model.sh_degree,
            embedding=cfg.model.embedding,
            var_floor=cfg.model.var_floor,
            deterministic_var=cfg.model.deterministic_var,
        )
        dev = device
        tr = scene.train_frames
        self.images = torch.stack([torch.from_numpy(f.rgb) for f in tr]).to(dev)  # [T,H,W,3] uint8
        self.sem = torch.stack([torch.from_numpy(f.semantics.astype(np.int64)) for f in tr]).to(dev)
        self.inst = torch.stack([torch.from_numpy(f.instances.astype(np.int64)) for f in tr]).to(dev)
        self.conf = (
            torch.stack([torch.from_numpy(f.confidence if f.confidence is not None else np.ones((self.H, self.W), np.float32)) for f in tr]).to(dev)
        )
        self.valid = torch.stack(
            [torch.from_numpy(f.valid if f.valid is not None else np.ones((self.H, self.W), bool)) for f in tr]
        ).to(dev)
        c2w = torch.from_numpy(np.stack([f.c2w for f in tr]).astype(np.float32))
        self.viewmats = torch.linalg.inv(c2w).to(dev)
        self.Ks = torch.from_numpy(np.stack([f.K for f in tr]).astype(np.float32)).to(dev)
        # thing pixels per view: candidates for the instance losses (instance 0 = none, as the official loader)
        self._index_thing_pixels()
        # nearest cameras for the cross-view pairs: centre distance plus viewing-direction difference
        pos = c2w[:, :3, 3]
        fwd = c2w[:, :3, 2]
        d = torch.cdist(pos, pos) + torch.cdist(fwd, fwd)
        d.fill_diagonal_(float("inf"))
        k = max(1, min(tc.cross_view_neighbours, len(tr) - 1))
        self.neighbours = torch.topk(d, k, largest=False).indices if len(tr) > 1 else torch.zeros(1, 1, dtype=torch.long)
        # held-out view for PSNR
        ev = scene.test_frames[0] if scene.test_ids else scene.train_frames[-1]
        self.eval_img = torch.from_numpy(ev.image_float()).to(dev)
        self.eval_view = torch.linalg.inv(torch.from_numpy(ev.c2w.astype(np.float32)))[None].to(dev)
        self.eval_K = torch.from_numpy(ev.K.astype(np.float32))[None].to(dev)
        self.scene_scale = float(torch.linalg.norm(pos - pos.mean(0), dim=1).max()) * 1.1 or 1.0
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.order: list[int] = []
        self.step = 0
        self.params = None
        self.optimizers: dict = {}
        if tc.strategy == "mcmc":
            if device.type != "cuda":
                raise UserError("train.strategy=mcmc needs a CUDA device (gsplat's relocation kernel); use default on CPU")
            from gsplat.strategy import MCMCStrategy

            self.strategy = MCMCStrategy(
                cap_max=tc.max_gaussians or 1_000_000,
                refine_start_iter=tc.densify_from,
                refine_stop_iter=tc.densify_until if tc.densify else 0,
                refine_every=tc.densify_every,
            )
        else:
            self.strategy = PcfStrategy(
                refine_start_iter=tc.densify_from,
                refine_stop_iter=tc.densify_until if tc.densify else 0,
                refine_every=tc.densify_every,
                reset_every=tc.opacity_reset_every,
                grow_grad2d=tc.grow_grad2d,
                max_gaussians=tc.max_gaussians,
            )
        self.strategy_state = (
            self.strategy.initialize_state()
            if tc.strategy == "mcmc"
            else self.strategy.initialize_state(scene_scale=self.scene_scale)
        )
        self._stop = False
        self.on_step = None  # optional callable(trainer) after every step (pcf-gs train --viewer)

    # ------------------------------------------------------------------ setup
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
            self.optimizers[name] = torch.optim.Adam([self.params[name]], lr=lr, eps=1e-15)

    def _means_lr(self, step: int) -> float:
        # exponential decay to 1% over the run, as 3DGS
        tc = self.cfg.train
        t = min(step / max(tc.iterations, 1), 1.0)
        return tc.lr_means * self.scene_scale * (0.01**t)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "spec": asdict(self.spec),
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in self.strategy_state.items()},
            "rng": {
                "gen": self.gen.get_state(),
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "order": list(self.order),
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
        self.strategy_state = {
            k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in ck["strategy_state"].items()
        }
        self.gen.set_state(ck["rng"]["gen"])
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        self.order = list(ck["order"])

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.state_dict())

    # ------------------------------------------------------------------ steps
    def _next_view(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.images), generator=self.gen).tolist()
        return self.order.pop()

    def _index_thing_pixels(self) -> None:
        """Per view: flat indices of valid thing pixels, and the same grouped by 2D instance (pixels sorted
        by id, start and count per instance) for balanced sampling."""
        self.thing_pixels, self.thing_groups = [], []
        for i in range(len(self.inst)):
            cand = torch.nonzero(((self.inst[i] > 0) & self.valid[i]).reshape(-1)).squeeze(1)
            lab = self.inst[i].reshape(-1)[cand]
            order = torch.argsort(lab, stable=True)
            _, cnt = torch.unique_consecutive(lab[order], return_counts=True)
            self.thing_pixels.append(cand)
            self.thing_groups.append((cand[order], torch.cumsum(cnt, 0) - cnt, cnt))

    def _sample_pixels(self, i: int, n: int) -> torch.Tensor:
        """n thing pixels of view i (flat indices, with replacement), in random order.

        A fraction ``train.balanced_sampling`` is drawn instance-balanced (a 2D instance uniformly, then a
        pixel inside it), the rest uniformly over thing pixels. Uniform sampling alone gives an object of
        a pixels in a view of A thing pixels n*a/A samples: a 30-pixel object among 4000 thing pixels
        gets ~2 of 512 and the contrastive loss barely separates it from its neighbours.
        """
        cand = self.thing_pixels[i]
        if len(cand) == 0:
            return cand
        nb = int(round(n * self.cfg.train.balanced_sampling))
        uni = cand[torch.randint(len(cand), (n - nb,), generator=self.gen).to(cand.device)]
        if nb == 0:
            return uni
        pix, start, cnt = self.thing_groups[i]
        g = torch.randint(len(cnt), (nb,), generator=self.gen).to(cand.device)
        off = (torch.rand(nb, generator=self.gen).to(cand.device) * cnt[g]).long().clamp_max(cnt[g] - 1)
        out = torch.cat([uni, pix[start[g] + off]])
        return out[torch.randperm(n, generator=self.gen).to(cand.device)]

    def compute_losses(self, step: int) -> tuple[dict[str, torch.Tensor], dict]:
        """Loss terms of one step (``total`` included) and the colour render's meta (for densification)."""
        tc = self.cfg.train
        instance_on = step >= tc.warmup_iterations
        cross_on = step >= tc.cross_view_start and len(self.images) > 1
        ids = [self._next_view()]
        if cross_on:
            nb = self.neighbours[ids[0]]
            ids.append(int(nb[torch.randint(len(nb), (1,), generator=self.gen)]))
        idx = torch.tensor(ids, device=self.device)
        vm, Ks = self.viewmats[idx], self.Ks[idx]
        sh_use = min(step // max(tc.sh_increase_every, 1), self.spec.sh_degree)
        be = self.cfg.render.backend
        rgb, _, _, meta = render_rgb(self.params, vm, Ks, self.W, self.H, sh_use, backend=be, eps2d=self.cfg.render.eps2d)
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, meta)
        gt = self.images[idx].float() / 255.0
        valid = self.valid[idx]
        out: dict[str, torch.Tensor] = {}
        vm3 = valid[..., None].float()
        out["appearance"] = sum(
            losses.appearance_loss(rgb[c] * vm3[c], gt[c] * vm3[c], tc.ssim_lambda) for c in range(len(ids))
        ) / len(ids)
        feats = render_features(
            self.params, self.spec, vm, Ks, self.W, self.H,
            detach_geometry=tc.detach_geometry, backend=be, slow=instance_on, eps2d=self.cfg.render.eps2d,
        )
        sem_logits = feats["semantics"][valid]
        conf = self.conf[idx][valid]
        out["semantic"] = losses.semantic_loss(sem_logits, self.sem[idx][valid], conf)
        total = out["appearance"] + tc.w_semantic * out["semantic"]
        if instance_on:
            con, conc, reg, cents = [], [], [], []
            n = tc.pixels_per_view
            for c, i in enumerate(ids):
                pix = self._sample_pixels(i, n)
                if len(pix) < 4:
                    continue
                mu = feats["mu"][c].reshape(-1, self.spec.embed_dim)[pix]
                var = feats["var"][c].reshape(-1, self.spec.embed_dim)[pix]
                mus = feats["mu_slow"][c].reshape(-1, self.spec.embed_dim)[pix]
                vars_ = feats["var_slow"][c].reshape(-1, self.spec.embed_dim)[pix]
                lab = self.inst[i].reshape(-1)[pix]
                cf = self.conf[i].reshape(-1)[pix]
                h = len(pix) // 2
                con.append(losses.pixel_contrastive_loss(mu[:h], var[:h], lab[:h], mus[h:], vars_[h:], lab[h:], tc.temperature))
                conc.append(losses.concentration_loss(mu[:h], var[:h], lab[:h], mus[h:], vars_[h:], lab[h:], cf[:h]))
                if self.spec.embedding == "probabilistic":
                    reg.append(losses.variance_regularizer(var))
                cents.append(losses.view_centroids(mu, var, lab, min_pixels=self.cfg.segment.min_pixels))
            if con:
                out["contrastive"] = torch.stack(con).mean()
                out["concentration"] = torch.stack(conc).mean()
                total = total + tc.w_contrastive * out["contrastive"] + tc.w_concentration * out["concentration"]
            if reg:
                out["var_reg"] = torch.stack(reg).mean()
                total = total + tc.w_reg * out["var_reg"]
            if cross_on and len(cents) == 2:
                out["cross_view"], out["cross_mined"] = losses.cross_view_loss(*cents[0], *cents[1], tau=tc.tau)
                total = total + tc.w_cross * out["cross_view"]
        out["total"] = total
        return out, meta

    def train_step(self, step: int) -> dict[str, float]:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        self.optimizers["means"].param_groups[0]["lr"] = self._means_lr(step)
        terms, meta = self.compute_losses(step)
        total = terms["total"]
        if not torch.isfinite(total):
            return {"nonfinite": 1.0, **{k: float(v.detach()) for k, v in terms.items()}}
        total.backward()
        if self.cfg.train.strategy == "mcmc":
            self.strategy.step_post_backward(
                self.params, self.optimizers, self.strategy_state, step, meta, lr=self._means_lr(step)
            )
        else:
            self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, meta, packed=False)
        for o in self.optimizers.values():
            o.step()
        if step >= self.cfg.train.warmup_iterations:
            ema_update_slow(self.params, self.cfg.train.ema_momentum)
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def eval_psnr(self) -> float:
        rgb, _, _, _ = render_rgb(
            self.params, self.eval_view, self.eval_K, self.W, self.H, self.spec.sh_degree,
            backend=self.cfg.render.backend, eps2d=self.cfg.render.eps2d,
        )
        return float(losses.psnr(rgb[0].clamp(0, 1), self.eval_img))

    # ------------------------------------------------------------------- loop
    def fit(self) -> dict:
        tc = self.cfg.train
        metrics_path = self.run_dir / "metrics.jsonl"
        _truncate_metrics(metrics_path, self.step)
        prev = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):  # finish the current step, save, exit
            self._stop = True

        try:
            signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not in the main thread
            prev = None
        nonfinite = 0
        t0 = time.time()
        last: dict[str, float] = {}
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = [
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} it/s"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
        ]
        try:
            with Progress(*columns, disable=not self.progress) as prog, open(metrics_path, "a") as mf:
                task = prog.add_task("train", total=tc.iterations, completed=self.step, rate="-", info="")
                step_times: deque[float] = deque(maxlen=50)  # it/s over the last 50 steps
                while self.step < tc.iterations:
                    if self._stop:
                        raise KeyboardInterrupt
                    ts = time.time()
                    step = self.step
                    terms = self.train_step(step)
                    if terms.get("nonfinite"):
                        nonfinite += 1
                        mf.write(json.dumps({"step": step, "nonfinite": True}) + "\n")
                        mf.flush()
                        log.warning("step %d: non-finite loss, step skipped", step)
                        if nonfinite >= tc.max_nonfinite_steps:
                            raise TrainingDiverged(
                                f"training diverged: non-finite loss for {nonfinite} consecutive steps at step {step}; "
                                f"the last good checkpoint is {self.run_dir / CHECKPOINT_NAME}"
                            )
                        self.step += 1
                        continue
                    nonfinite = 0
                    self.step += 1
                    last = terms
                    step_times.append(time.time() - ts)
                    if self.step % tc.log_every == 0 or self.step == tc.iterations:
                        rec = {"step": self.step, **{k: round(v, 6) for k, v in terms.items()}}
                        rec["num_gaussians"] = len(self.params["means"])
                        rec["psnr_heldout"] = round(self.eval_psnr(), 4)
                        rec["elapsed_s"] = round(time.time() - t0, 2)
                        mf.write(json.dumps(rec) + "\n")
                        mf.flush()
                    if self.step % tc.checkpoint_every == 0 and self.step < tc.iterations:
                        self.save()
                    if step_times:
                        rate = len(step_times) / max(sum(step_times), 1e-9)
                        info = f"loss {terms['total']:.4f}  #G {len(self.params['means'])}"
                        prog.update(task, completed=self.step, rate=f"{rate:.1f}", info=info)
                    if self.on_step is not None:
                        self.on_step(self)
            self.save()
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            if prev is not None:
                signal.signal(signal.SIGINT, prev)
        return {"steps": self.step, "num_gaussians": len(self.params["means"]), "last": last, "seconds": time.time() - t0}


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint's step."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(k + "\n" for k in keep))


def run_training(
    data: Path,
    run_dir: Path,
    preset: str | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step=None,
) -> dict:
    """`pcf-gs train`: load data, train (or resume), write RUN/{config.yaml, checkpoint.pt, metrics.jsonl}.

    A new run takes defaults < ``preset`` < ``overrides``. ``--resume`` takes
    the run's saved config < ``overrides`` (e.g. more iterations).
    ``on_step(trainer)``, if given, runs after every step (the live viewer).
    """
    from pcf_gs.config import apply_overrides, load_config
    from pcf_gs.data import load_scene

    run_dir = Path(run_dir)
    ck_path = run_dir / CHECKPOINT_NAME
    ck = None
    if resume:
        ck = load_checkpoint(ck_path)
        if preset:
            log.warning("--config is ignored with --resume (the run's saved config is used)")
        cfg = apply_overrides(config_from_dict(ck["config"]), overrides)
    else:
        if ck_path.exists():
            raise UserError("already holds a trained run; use --resume to continue it or choose another --out", run_dir)
        cfg = load_config(preset, overrides)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    scene = load_scene(data, cfg.data, progress=progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    tr = Trainer(scene, cfg, run_dir, device, progress=progress)
    if ck is not None:
        tr.load_state_dict(ck)
    else:
        tr.init_model()
    tr.on_step = on_step
    return tr.fit()
