"""Labels per Gaussian: instance and class of each Gaussian of a run.

Two ways to an instance (``segment --gaussian-labels``):

- ``direct`` (:func:`gaussian_labels_direct`): the prototype of highest PP kernel against the
  Gaussian's own N(mu, var);
- ``vote`` (:func:`gaussian_labels_vote`): label maps of the training views voted back onto the
  Gaussians with their blending weights (:func:`blend_votes`).

Classes (``segment.semantics=vote``): :func:`gaussian_semantics_vote` votes the training views' 2D
classes the same way; :func:`render_semantics` blends the result into a view.
"""

from __future__ import annotations

import numpy as np
import torch

from pcf_gs.lift.model import activated_geometry
from pcf_gs.lift.pp_kernel import activate_var
from pcf_gs.lift.run import Run
from pcf_gs.segment.mvoa import assign


def gaussian_labels_direct(params, spec, proto_mu, proto_var) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian (prototype index [N], K [N]) from the Gaussian's own embedding.

    proto_mu, proto_var: [P, E] prototype means and variances.
    """
    mu = params["inst_mu"].detach()
    var = (
        activate_var(params["inst_var"].detach(), spec.var_floor)
        if spec.embedding == "probabilistic"
        else torch.full_like(mu, spec.deterministic_var)
    )
    idx, k = assign(mu, var, proto_mu, proto_var)
    return idx.numpy(), k.numpy()


def blend_votes(run: Run, view_labels: dict[int, torch.Tensor], num_labels: int, backend, eps2d) -> torch.Tensor:
    """votes [N, L]: votes[g, l] = sum over pixels labelled l (label maps [H, W] per frame id, -1 = no vote)
    of g's blending weight T_g * alpha_g there.

    The blending weights are the gradient of a rendered map w.r.t. per-Gaussian colours, so one
    forward and backward per view collects them for every Gaussian at once.
    """
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(run.params, detach=True)
    N = means.shape[0]
    votes = torch.zeros(N, num_labels)
    W, H = run.width, run.height
    for i, lab in view_labels.items():
        vm, K = run.view(i)
        colors = torch.zeros(N, num_labels, requires_grad=True)
        with torch.enable_grad():
            img, _, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H, backend=backend, eps2d=eps2d)
            onehot = torch.zeros(H, W, num_labels)
            valid = lab >= 0
            onehot[valid] = torch.nn.functional.one_hot(lab[valid], num_labels).float()
            (img[0] * onehot).sum().backward()
        votes += colors.grad
    return votes


def gaussian_labels_vote(run: Run, view_labels: dict[int, torch.Tensor], num_labels: int, backend, eps2d) -> np.ndarray:
    """Blending-weight vote (:func:`blend_votes`) of label maps. Returns [N] argmax (-1: no votes)."""
    votes = blend_votes(run, view_labels, num_labels, backend, eps2d)
    best = votes.argmax(1)
    best[votes.max(1).values <= 0] = -1
    return best.numpy()


def gaussian_semantics_vote(run: Run, scene, backend, eps2d) -> torch.Tensor:
    """Per-Gaussian class probabilities [N, C] from the training views' 2D classes (``segment.semantics=vote``).

    Each Gaussian takes the distribution of the classes of the pixels it blends into, weighted by
    blending weight: a multi-view majority of the noisy 2D labels, in closed form. Gaussians no pixel
    sees keep the semantic head's softmax. The 2D confidences are not used: weighting by them cost
    13 points of foreground IoU on a synthetic scene (confidence is lower on thing pixels than on the
    room, so it tilts mixed Gaussians towards stuff).
    """
    C = scene.classes.num_classes
    labels = {}
    for i in run.train_ids:
        fr = scene.frames[i]
        lab = torch.from_numpy(fr.semantics.astype(np.int64))
        if fr.valid is not None:
            lab[~torch.from_numpy(fr.valid)] = -1
        labels[i] = lab
    votes = blend_votes(run, labels, C, backend, eps2d)
    total = votes.sum(1, keepdim=True)
    probs = torch.softmax(run.params["semantics"].detach(), 1)
    seen = total[:, 0] > 0
    probs[seen] = votes[seen] / total[seen]
    return probs


def render_semantics(run: Run, i: int, probs_g: torch.Tensor, backend, eps2d) -> torch.Tensor:
    """[H, W, C] blended per-Gaussian class probabilities (probs_g [N, C]) in view i."""
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(run.params, detach=True)
    vm, K = run.view(i)
    return rasterize(means, quats, scales, opac, probs_g, vm, K, run.width, run.height, backend=backend, eps2d=eps2d)[0][0]
