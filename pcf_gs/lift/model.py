"""The splat model: Gaussians with appearance, semantic logits and a probabilistic instance embedding.

Per Gaussian (conventions of docs/conventions.md; N Gaussians, K classes, E embedding dims):

=================  ===========  ===============================================
name               shape        meaning
=================  ===========  ===============================================
means              [N, 3]       centre, scene units
scales             [N, 3]       log of the std-devs along the principal axes
quats              [N, 4]       rotation, w x y z (normalised when used)
opacities          [N]          logit of opacity
sh0                [N, 1, 3]    SH DC term (colour = SH + 0.5)
shN                [N, S-1, 3]  higher SH bands, S = (sh_degree + 1)^2
semantics          [N, K]       semantic logits
inst_mu            [N, E]       instance embedding mean
inst_var           [N, E]       raw instance variance; var = ELU(raw) + 1 + floor
inst_mu_slow       [N, E]       EMA ("slow") copy of inst_mu, no gradient
inst_var_slow      [N, E]       EMA copy of inst_var, no gradient
=================  ===========  ===============================================

All of them live in one ``torch.nn.ParameterDict`` so gsplat's densification
strategies clone, split and prune every attribute together (the slow copies
have ``requires_grad=False`` and no optimiser).

Rendering: colours, logits and raw embeddings are alpha-blended with the same
weights (the paper's volume rendering of features); the variance activation is
applied per pixel *after* blending, as in the released code, so a pixel's
variance never drops below the floor where the splats' alpha is below 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pcf_gs.lift.pp_kernel import activate_var
from pcf_gs import sh
from pcf_gs.sh import rgb_to_sh0, sh0_to_rgb

FEATURE_KEYS = ("semantics", "inst_mu", "inst_var", "inst_mu_slow", "inst_var_slow")


@dataclass
class ModelSpec:
    """Static description of a model (what a checkpoint needs besides tensors)."""

    num_classes: int
    embed_dim: int = 8
    sh_degree: int = 3
    embedding: str = "probabilistic"  # or "deterministic"
    var_floor: float = 0.01
    deterministic_var: float = 0.5


def init_params(
    points: np.ndarray,
    colors: np.ndarray | None,
    spec: ModelSpec,
    init_opacity: float = 0.1,
    seed: int = 0,
) -> torch.nn.ParameterDict:
    """Gaussians at ``points`` [P, 3] (scene frame) with colours [P, 3] in [0, 1] (grey if None).

    Scales start at the mean distance to the 3 nearest neighbours (isotropic),
    embeddings at small random means (so instances can separate) and var = 1.
    """
    from scipy.spatial import cKDTree

    g = torch.Generator().manual_seed(seed)
    P = len(points)
    pts = torch.as_tensor(points, dtype=torch.float32)
    if P >= 4:
        d, _ = cKDTree(points).query(points, k=4)
        dist = np.sqrt(np.mean(d[:, 1:] ** 2, axis=1)).clip(1e-4, None)
    else:
        dist = np.full(P, 0.05)
    scales = torch.log(torch.as_tensor(dist, dtype=torch.float32))[:, None].repeat(1, 3)
    quats = torch.zeros(P, 4)
    quats[:, 0] = 1.0
    opac = torch.full((P,), math.log(init_opacity / (1 - init_opacity)))
    rgb = torch.full((P, 3), 0.5) if colors is None else torch.as_tensor(colors, dtype=torch.float32)
    S = (spec.sh_degree + 1) ** 2
    sh0 = rgb_to_sh0(rgb)[:, None, :]
    shN = torch.zeros(P, S - 1, 3)
    sem = torch.zeros(P, spec.num_classes)
    mu = torch.randn(P, spec.embed_dim, generator=g) * 0.5
    var = torch.zeros(P, spec.embed_dim)  # ELU(0) + 1 + floor = 1 + floor
    params = {
        "means": pts,
        "scales": scales,
        "quats": quats,
        "opacities": opac,
        "sh0": sh0,
        "shN": shN,
        "semantics": sem,
        "inst_mu": mu,
        "inst_var": var,
    }
    pd = torch.nn.ParameterDict({k: torch.nn.Parameter(v.contiguous()) for k, v in params.items()})
    pd["inst_mu_slow"] = torch.nn.Parameter(mu.clone(), requires_grad=False)
    pd["inst_var_slow"] = torch.nn.Parameter(var.clone(), requires_grad=False)
    return pd


@torch.no_grad()
def ema_update_slow(params: torch.nn.ParameterDict, momentum: float) -> None:
    """slow <- momentum * slow + (1 - momentum) * fast (Contrastive Lift's slow/fast scheme)."""
    params["inst_mu_slow"].mul_(momentum).add_(params["inst_mu"].detach(), alpha=1 - momentum)
    params["inst_var_slow"].mul_(momentum).add_(params["inst_var"].detach(), alpha=1 - momentum)


def sh_colors(params, viewmats: torch.Tensor, sh_degree_use: int) -> torch.Tensor:
    """View-dependent colours [C, N, 3] in [0, inf) from SH, as gsplat computes them (SH + 0.5, clamped at 0)."""
    C = viewmats.shape[0]
    if sh_degree_use == 0:  # base colour, the same for every camera
        return torch.clamp_min(sh0_to_rgb(params["sh0"][:, 0, :]), 0.0)[None].expand(C, -1, -1)
    S = (sh_degree_use + 1) ** 2
    coeffs = torch.cat([params["sh0"], params["shN"]], 1)[:, :S]  # [N, S, 3]
    return sh.sh_colors(coeffs, sh_degree_use, params["means"], viewmats)


def activated_geometry(params, detach: bool = False):
    """(means [N,3], quats [N,4] normalised, scales [N,3], opacities [N]) ready for the rasterizer."""
    means, quats, scales, opac = params["means"], params["quats"], params["scales"], params["opacities"]
    if detach:
        means, quats, scales, opac = means.detach(), quats.detach(), scales.detach(), opac.detach()
    return means, F.normalize(quats, dim=-1), torch.exp(scales), torch.sigmoid(opac)


def render_rgb(params, viewmats, Ks, width, height, sh_degree_use, *, background=None, backend="auto", with_depth=False, **kw):
    """Render colour (and expected depth): returns (rgb [C,H,W,3], alpha [C,H,W,1], depth [C,H,W,1] or None, meta)."""
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(params)
    colors = sh_colors(params, viewmats, sh_degree_use)
    C = viewmats.shape[0]
    bg = None if background is None else background.to(colors).expand(C, 3)
    out, alpha, meta = rasterize(
        means, quats, scales, opac, colors, viewmats, Ks, width, height,
        backgrounds=bg, render_mode="RGB+ED" if with_depth else "RGB", backend=backend, **kw,
    )
    depth = out[..., 3:4] if with_depth else None
    return out[..., :3], alpha, depth, meta


def render_features(
    params, spec: ModelSpec, viewmats, Ks, width, height, *, detach_geometry=True, backend="auto", slow=True,
    semantic_probs=False, track_means2d=False, pixels=None, reuse=None, **kw,
):
    """Render semantic logits and instance embeddings for C views.

    ``semantic_probs`` blends per-Gaussian softmax probabilities instead of
    logits (inference: a Gaussian with weak, near-zero logits then adds an
    uncertain vote instead of tipping the argmax; +4-5 mIoU points measured on
    the demo scene).

    Returns a dict of [C, H, W, *] tensors: ``semantics`` (K), ``mu``, ``var``
    (E each, var activated per pixel) and, with ``slow``, ``mu_slow``/``var_slow``
    (no gradient). In deterministic mode var is the fixed isotropic variance.

    ``track_means2d`` adds ``means2d`` [C, N, 2] (px), the render's projected centres with their gradient
    kept after backward, even with detached geometry: the means then enter as a fresh leaf whose
    gradient reaches nothing else, so the losses still move only their own attributes
    (``train.densify_feature_grad``).

    ``pixels`` [P] (flat indices c*H*W + y*W + x) renders only those pixels: every tensor is then [P, *]
    (:func:`pcf_gs.render.rasterize.rasterize_pixels`; ``reuse``: the colour render's meta of the same
    geometry and cameras). Not with ``track_means2d``.
    """
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(params, detach=detach_geometry)
    if track_means2d and not means.requires_grad:
        means = means.detach().requires_grad_(True)
    K, E = spec.num_classes, spec.embed_dim
    prob = spec.embedding == "probabilistic"
    sem = torch.softmax(params["semantics"], dim=1) if semantic_probs else params["semantics"]
    chans = [sem, params["inst_mu"]]
    if prob:
        chans.append(params["inst_var"])
    if slow:
        chans.append(params["inst_mu_slow"].detach())
        if prob:
            chans.append(params["inst_var_slow"].detach())
    feats = torch.cat(chans, dim=1)
    if pixels is not None:
        from pcf_gs.render.rasterize import rasterize_pixels

        if track_means2d:
            raise ValueError("track_means2d needs the dense render (pixels=None)")
        out, alpha = rasterize_pixels(means, quats, scales, opac, feats, viewmats, Ks, width, height, pixels,
                                      backend=backend, reuse=reuse, **kw)
        meta = None
    else:
        out, alpha, meta = rasterize(means, quats, scales, opac, feats, viewmats, Ks, width, height, backend=backend, **kw)
    res = {"semantics": out[..., :K], "alpha": alpha}
    if track_means2d:
        res["means2d"] = meta["means2d"]
        res["means2d"].retain_grad()  # gsplat's means2d is not a leaf
    o = K
    res["mu"] = out[..., o : o + E]
    o += E
    if prob:
        res["var"] = activate_var(out[..., o : o + E], spec.var_floor)
        o += E
    else:
        res["var"] = torch.full_like(res["mu"], spec.deterministic_var)
    if slow:
        res["mu_slow"] = out[..., o : o + E].detach()
        o += E
        if prob:
            res["var_slow"] = activate_var(out[..., o : o + E], spec.var_floor).detach()
        else:
            res["var_slow"] = torch.full_like(res["mu_slow"], spec.deterministic_var)
    return res
