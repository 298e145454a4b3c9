"""Densification: the run's strategy chosen in one place, and gsplat's DefaultStrategy with two fixes.

:class:`Densifier` builds ``train.strategy`` (``default``: :class:`PcfStrategy`;
``mcmc``: gsplat's MCMCStrategy, CUDA only) and holds its state, so the
trainer calls one interface whichever it is.

:class:`PcfStrategy` fixes, for our use:

- gsplat 1.5.3 writes ``step % reset_every == 0 & step > 0``, which Python
  reads as ``(step % reset_every == 0) and (0 > 0)``: the opacity reset never
  fires. We reset after gsplat's own step with the intended condition
  (reset_opa is idempotent, so a fixed gsplat would not double-reset).
- ``max_gaussians`` caps growth (CPU memory and time): no clone/split is done
  while the model is at the cap; pruning still runs.
- The per-step statistic (:meth:`PcfStrategy._update_state`) is accumulated
  with masks over all Gaussians instead of gathering the visible ones with
  ``torch.where(sel)``, which reads the count back from a GPU every step.
  Camera by camera, in gsplat's order: the same sums, bit for bit.

Every attribute in the ParameterDict (semantics, embeddings and their slow
copies included) follows each clone, split and prune, since gsplat's ops
iterate over all params.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa

from pcf_gs.config import TrainConfig
from pcf_gs.errors import UserError


@dataclass
class PcfStrategy(DefaultStrategy):
    max_gaussians: int = 0  # 0 = no cap
    dist: object = None  # a :class:`~pcf_gs.lift.distributed.Dist` over several processes: the statistic is summed over them

    def _grow_gs(self, params, optimizers, state, step):
        if self.max_gaussians and len(params["means"]) >= self.max_gaussians:
            return 0, 0
        return super()._grow_gs(params, optimizers, state, step)

    def _update_state(self, params, state, info, packed=False):
        if packed:
            return super()._update_state(params, state, info, packed=packed)
        # grads [C, N, 2] in pixels -> [-1, 1] screen units, as gsplat; absgrad: the per-pixel absolute sums
        rendered = info[self.key_for_gradient]
        g = rendered.absgrad if self.absgrad else rendered.grad
        scale = torch.tensor([info["width"] / 2.0 * info["n_cameras"], info["height"] / 2.0 * info["n_cameras"]],
                             dtype=g.dtype, device=g.device)
        n = len(params["means"])
        for key in ("grad2d", "count") + (("radii",) if self.refine_scale2d_stop_iter > 0 else ()):
            if state[key] is None:
                state[key] = torch.zeros(n, device=g.device)
        sel = (info["radii"] > 0.0).all(dim=-1)  # [C, N] visible in camera c
        norms = torch.where(sel, (g * scale).norm(dim=-1), 0.0)
        if self.dist is not None and self.dist.enabled:
            self._update_state_reduced(state, info, sel, norms)
            return
        for c in range(len(sel)):
            state["grad2d"] += norms[c]
            state["count"] += sel[c]
            if self.refine_scale2d_stop_iter > 0:
                r = info["radii"][c].max(dim=-1).values / float(max(info["width"], info["height"]))
                state["radii"] = torch.maximum(state["radii"], torch.where(sel[c], r, 0.0))

    def _update_state_reduced(self, state, info, sel, norms) -> None:
        """The same statistic with every process's cameras: this process's sums, summed (max for the radii)
        over processes, so each makes the same decisions. Equal to one process's camera-by-camera sums up to
        the order of float additions."""
        grad2d, count = norms.sum(0), sel.sum(0).to(state["count"].dtype)
        both = self.dist.sum_(torch.stack([grad2d.to(state["grad2d"].dtype), count]))
        state["grad2d"] += both[0]
        state["count"] += both[1]
        if self.refine_scale2d_stop_iter > 0:
            r = info["radii"].max(dim=-1).values / float(max(info["width"], info["height"]))
            r = self.dist.max_(torch.where(sel, r, 0.0).amax(0))
            state["radii"] = torch.maximum(state["radii"], r)

    def step_post_backward(self, params, optimizers, state, step, info, packed=False):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)


class Densifier:
    """The densification strategy of ``train.strategy`` and its state (``state``, saved in checkpoints)."""

    def __init__(self, tc: TrainConfig, device: torch.device, scene_scale: float):
        self.mcmc = tc.strategy == "mcmc"
        self.feature_weight = 0.0
        refine = dict(
            refine_start_iter=tc.densify_from,
            refine_stop_iter=tc.densify_until if tc.densify else 0,
            refine_every=tc.densify_every,
        )
        if self.mcmc:
            if device.type != "cuda":
                raise UserError("train.strategy=mcmc needs a CUDA device (gsplat's relocation kernel); use default on CPU")
            from gsplat.strategy import MCMCStrategy

            self.strategy = MCMCStrategy(cap_max=tc.max_gaussians or 1_000_000, **refine)
            self.state = self.strategy.initialize_state()
        else:
            self.feature_weight = tc.densify_feature_grad
            self.strategy = PcfStrategy(
                **refine, reset_every=tc.opacity_reset_every, grow_grad2d=tc.grow_grad2d, max_gaussians=tc.max_gaussians,
                absgrad=tc.absgrad,
            )
            self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def pre_backward(self, params, optimizers: dict, step: int, metas: list[dict]) -> None:
        """Before ``backward``: keep the colour renders' 2D-mean gradients (``metas``: render_rgb's meta of
        each view group of the step)."""
        for meta in metas:
            self.strategy.step_pre_backward(params, optimizers, self.state, step, meta)

    def post_backward(self, params, optimizers: dict, step: int, metas: list[dict], means_lr: float) -> None:
        """After ``backward``, before the optimiser step: grow, prune, reset (default) or relocate and
        add noise scaled by the current means learning rate ``means_lr`` (mcmc)."""
        for meta in metas:
            self._add_feature_grad(meta)
        info = merge_metas(metas)
        if self.mcmc:
            self.strategy.step_post_backward(params, optimizers, self.state, step, info, lr=means_lr)
        else:
            self.strategy.step_post_backward(params, optimizers, self.state, step, info, packed=False)

    def _add_feature_grad(self, meta: dict) -> None:
        """Add ``feature_weight`` x the feature render's 2D-mean gradient [C, N, 2] to the colour render's, which
        gsplat's statistic reads (both renders are unpacked [C, N, 2] over the same cameras and Gaussians)."""
        feat = meta.get("feature_means2d")
        if not self.feature_weight or feat is None or feat.grad is None:
            return
        rgb = meta["means2d"]
        add = self.feature_weight * feat.grad.to(rgb.dtype)
        rgb.grad = add if rgb.grad is None else rgb.grad + add
        if getattr(rgb, "absgrad", None) is not None:  # train.absgrad: the feature render's total, made absolute
            rgb.absgrad = rgb.absgrad + add.abs()


class _Grad:
    """Stands in for a rendered tensor whose gradient (and absgrad) is all the strategy reads."""

    def __init__(self, grad, absgrad=None):
        self.grad = grad
        self.absgrad = absgrad


def merge_metas(metas: list[dict]) -> dict:
    """One render meta for the strategy from the step's view groups' (each unpacked, [C_g, N, ...]): the cameras
    concatenated. The step's loss is the mean over the groups of each group's mean over its C_g cameras, so a
    camera's 2D-mean gradient carries 1 / (groups x C_g) = 1 / n_cameras of its own loss' gradient: gsplat's
    scaling by ``n_cameras`` undoes it as for one batch (every group of a step has the same C_g)."""
    if len(metas) == 1:
        return metas[0]
    grads = [m["means2d"].grad for m in metas]
    absgrads = [getattr(m["means2d"], "absgrad", None) for m in metas]
    cat = lambda ts: None if any(t is None for t in ts) else torch.cat(ts)  # noqa: E731
    return {
        **metas[0],
        "means2d": _Grad(cat(grads), cat(absgrads)),
        "radii": torch.cat([m["radii"] for m in metas]),
        "n_cameras": sum(m["n_cameras"] for m in metas),
    }
