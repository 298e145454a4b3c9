"""The loss of one training step, stage by stage: the mean over the step's ``train.views_per_step``
view groups g (a view; from ``cross_view_start`` a neighbouring pair) of

  L_g = L_app + w_sem L_sem
        + [step >= warmup]        (w_con L_contra + w_conc L_concen + w_reg L_reg)
        + [step >= cross_start]   w_cross L_cross

with the terms of :mod:`pcf_gs.lift.losses` (PCF-Lift Eqs. 2-6). Terms are
added in this order (float sums are not associative, and CPU runs are
compared bit for bit).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from pcf_gs.config import Config
from pcf_gs.lift import losses
from pcf_gs.lift.batches import TrainViews, ViewSampler
from pcf_gs.lift.model import ModelSpec, render_features, render_rgb


@dataclass(frozen=True)
class Stage:
    """Which parts of the loss are on at a step, and the SH degree rendered."""

    instance: bool  # the PCF instance losses (and the slow embeddings); after the warm-up
    cross_view: bool  # a second, neighbouring view and the cross-view loss
    sh_degree: int

    @classmethod
    def at(cls, step: int, cfg: Config, spec: ModelSpec, num_views: int) -> "Stage":
        tc = cfg.train
        return cls(
            instance=step >= tc.warmup_iterations,
            cross_view=step >= tc.cross_view_start and num_views > 1,
            sh_degree=min(step // max(tc.sh_increase_every, 1), spec.sh_degree),
        )


def step_losses(
    params, spec: ModelSpec, cfg: Config, views: TrainViews, sampler: ViewSampler, step: int,
    share: tuple[int, int] = (0, 1),
) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Loss terms of one step (scalars; ``total`` included, ``cross_mined`` a statistic) and, per rendered
    view group, the colour render's meta (for densification; with ``feature_means2d``, the feature
    render's 2D means, when ``train.densify_feature_grad`` is on).

    The step has ``train.views_per_step`` = G view groups (a view; in the cross-view stage with one of its
    neighbours) and its loss is the mean of the groups' losses. ``share`` = (rank, ranks): this process
    computes groups rank·G/ranks ... (rank+1)·G/ranks − 1 (:mod:`pcf_gs.lift.distributed`). All G groups'
    views and pixels are drawn from ``sampler`` whatever the share, so the random streams, and the run,
    do not depend on the number of processes. The terms are means over the share's groups that have them.
    """
    stage = Stage.at(step, cfg, spec, len(views))
    G = cfg.train.views_per_step
    draws = [_draw_group(cfg, views, sampler, stage, step) for _ in range(G)]
    rank, ranks = share
    per = G // ranks
    results = [_group_losses(params, spec, cfg, views, stage, d) for d in draws[rank * per : (rank + 1) * per]]
    if len(results) == 1:
        return results[0][0], [results[0][1]]
    terms: dict[str, torch.Tensor] = {}
    for key in dict.fromkeys(k for r, _ in results for k in r):
        vals = [r[key] for r, _ in results if key in r]
        terms[key] = sum(vals[1:], vals[0]) / len(vals)  # "total": every group has it, the mean over groups
    return terms, [m for _, m in results]


@dataclass
class _Draw:
    """One view group's random draws: view ids, per view its instance pixels [n] and (sparse feature
    render) its semantic pixels [n_sem], flat H*W indices."""

    ids: list[int]
    inst_pix: list[torch.Tensor]
    sem_pix: list[torch.Tensor] | None
    track: bool  # the dense feature render keeps its 2D means' gradient (``train.densify_feature_grad``)


def _draw_group(cfg: Config, views: TrainViews, sampler: ViewSampler, stage: Stage, step: int) -> _Draw:
    tc = cfg.train
    ids = sampler.step_views(stage.cross_view)
    # the instance pixels are drawn first, view by view, whichever render follows (the same random stream)
    n_inst = tc.pixels_per_view if stage.instance else 0
    none = torch.zeros(0, dtype=torch.long, device=views.device)
    inst_pix = [sampler.sample_pixels(i, n_inst) if n_inst else none for i in ids]
    track = tc.densify_feature_grad > 0 and tc.densify and tc.densify_from <= step < tc.densify_until
    # the sparse feature render composites only the sampled pixels; the dense one every pixel
    sparse = tc.semantic_pixels > 0 and not track
    sem_pix = [sampler.sample_valid(i, tc.semantic_pixels) for i in ids] if sparse else None
    return _Draw(ids, inst_pix, sem_pix, track)


def _group_losses(params, spec: ModelSpec, cfg: Config, views: TrainViews, stage: Stage, d: _Draw
                  ) -> tuple[dict[str, torch.Tensor], dict]:
    """The loss terms of one view group and its colour render's meta."""
    tc, rc = cfg.train, cfg.render
    ids, inst_pix = d.ids, d.inst_pix
    take = lambda x: views.take(x, ids)  # noqa: E731
    vm, Ks = take(views.viewmats), take(views.Ks)
    rgb, _, _, meta = render_rgb(params, vm, Ks, views.W, views.H, stage.sh_degree, backend=rc.backend,
                                 absgrad=tc.absgrad and tc.densify, **rc.kw())
    gt = take(views.images).float() / 255.0
    valid = take(views.valid)
    out: dict[str, torch.Tensor] = {}
    vm3 = valid[..., None].float()
    out["appearance"] = sum(
        losses.appearance_loss(rgb[c] * vm3[c], gt[c] * vm3[c], tc.ssim_lambda) for c in range(len(ids))
    ) / len(ids)
    fr = dict(detach_geometry=tc.detach_geometry, backend=rc.backend, slow=stage.instance, **rc.kw())
    if d.sem_pix is not None:
        # only the sampled pixels: semantic ones first, then the instance ones, camera by camera
        sem_pix = d.sem_pix
        HW = views.H * views.W
        flat = torch.cat([c * HW + p for c, p in enumerate(sem_pix)] + [c * HW + p for c, p in enumerate(inst_pix)])
        feats = render_features(params, spec, vm, Ks, views.W, views.H, pixels=flat, reuse=meta, **fr)
        n_sem = sum(len(p) for p in sem_pix)
        sem_logits = feats["semantics"][:n_sem]
        sem_lab = torch.cat([views.sem[i].reshape(-1)[p] for i, p in zip(ids, sem_pix)])
        conf = torch.cat([views.conf[i].reshape(-1)[p] for i, p in zip(ids, sem_pix)])
        bounds = list(itertools.accumulate([n_sem] + [len(p) for p in inst_pix]))
        rows = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        sampled = [(i, p, {k: feats[k][r] for k in _INSTANCE_KEYS if k in feats}) for i, p, r in zip(ids, inst_pix, rows)]
    else:
        track = d.track
        feats = render_features(params, spec, vm, Ks, views.W, views.H, track_means2d=track, **fr)
        if track:
            meta = {**meta, "feature_means2d": feats["means2d"]}
        sem_logits = feats["semantics"][valid]
        sem_lab = take(views.sem)[valid]  # boolean indexing: the dense mode reads a count back from a GPU
        conf = take(views.conf)[valid]
        sampled = [(i, p, {k: feats[k][c].reshape(-1, feats[k].shape[-1])[p] for k in _INSTANCE_KEYS if k in feats})
                   for c, (i, p) in enumerate(zip(ids, inst_pix))]
    out["semantic"] = losses.semantic_loss(sem_logits, sem_lab, conf)
    total = out["appearance"] + tc.w_semantic * out["semantic"]
    if stage.instance:
        total = _add_instance_terms(out, total, sampled, cfg, views, stage.cross_view, spec)
    out["total"] = total
    return out, meta


_INSTANCE_KEYS = ("mu", "var", "mu_slow", "var_slow")


def _add_instance_terms(out, total, sampled, cfg, views, cross_view, spec) -> torch.Tensor:
    """Put the instance terms into ``out``; return ``total`` plus them.

    ``sampled``: per rendered camera, (view id, its n sampled thing pixels [n] (flat H*W indices), the
    features there {mu, var, mu_slow, var_slow: [n, E]}). Per camera the first half's fast embeddings are
    compared with the second half's slow ones (contrastive, concentration). Cross-view: the two cameras'
    per-instance centroids."""
    tc = cfg.train
    con, conc, reg, cents = [], [], [], []
    for i, pix, f in sampled:
        if len(pix) < 4:
            continue
        mu, var, mus, vars_ = f["mu"], f["var"], f["mu_slow"], f["var_slow"]
        lab = views.inst[i].reshape(-1)[pix]
        cf = views.conf[i].reshape(-1)[pix]
        h = len(pix) // 2
        con.append(losses.pixel_contrastive_loss(mu[:h], var[:h], lab[:h], mus[h:], vars_[h:], lab[h:], tc.temperature,
                                                 balanced=tc.balanced_temperature))
        conc.append(losses.concentration_loss(mu[:h], var[:h], lab[:h], mus[h:], vars_[h:], lab[h:], cf[:h],
                                              num_labels=views.num_labels))
        if spec.embedding == "probabilistic":
            reg.append(losses.variance_regularizer(var))
        cents.append(losses.view_centroids(mu, var, lab, min_pixels=tc.cross_view_min_samples, num_labels=views.num_labels))
    if con:
        out["contrastive"] = torch.stack(con).mean()
        out["concentration"] = torch.stack(conc).mean()
        total = total + tc.w_contrastive * out["contrastive"] + tc.w_concentration * out["concentration"]
    if reg:
        out["var_reg"] = torch.stack(reg).mean()
        total = total + tc.w_reg * out["var_reg"]
    if cross_view and len(cents) == 2:
        out["cross_view"], out["cross_mined"] = losses.cross_view_loss(*cents[0], *cents[1], tau=tc.tau)
        total = total + tc.w_cross * out["cross_view"]
    return total
