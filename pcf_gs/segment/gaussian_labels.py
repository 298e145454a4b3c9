"""Labels per Gaussian: instance and class of each Gaussian of a run.

Two ways to an instance (``segment --gaussian-labels``):

- ``direct`` (:func:`gaussian_labels_direct`): the prototype of highest PP kernel against the
  Gaussian's own N(mu, var);
- ``vote`` (:func:`gaussian_labels_vote`): label maps of the training views voted back onto the
  Gaussians with their blending weights (:func:`blend_votes` sums them densely, [N, L];
  :class:`VoteTable` keeps only the (Gaussian, label) pairs that get a vote, which is what scales:
  at 10^7 Gaussians and hundreds of labels a dense table alone would not fit in memory).

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


def gaussian_labels_direct(params, spec, proto_mu, proto_var, subset: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian (prototype index [N], K [N]) from the Gaussian's own embedding.

    proto_mu, proto_var: [P, E] prototype means and variances; ``subset`` [N] bool: only those
    Gaussians (the outputs are then [subset.sum()]).
    """
    mu = params["inst_mu"].detach()
    raw = params["inst_var"].detach() if spec.embedding == "probabilistic" else None
    if subset is not None:
        mu = mu[subset]
        raw = None if raw is None else raw[subset]
    var = activate_var(raw, spec.var_floor) if raw is not None else torch.full_like(mu, spec.deterministic_var)
    idx, k = assign(mu, var, proto_mu, proto_var)
    return idx.numpy(), k.numpy()


def blend_votes(run: Run, view_labels, num_labels: int, backend, raster: dict) -> torch.Tensor:
    """votes [N, L]: votes[g, l] = sum over pixels labelled l of g's blending weight T_g * alpha_g there.

    ``view_labels``: label maps [H, W] (-1 = no vote) by frame id, a dict or an iterable of (id, map)
    pairs (a generator keeps one map in memory at a time). Memory O(N * L): for few labels (classes).
    ``raster``: the run's rasterizer keywords (``cfg.render.kw()``: eps2d, rasterize_mode), here and below.

    The blending weights are the gradient of a rendered map w.r.t. per-Gaussian colours, so one
    forward and backward per view collects them for every Gaussian at once.
    """
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(run.params, detach=True)
    N = means.shape[0]
    votes = torch.zeros(N, num_labels)
    W, H = run.width, run.height
    items = view_labels.items() if isinstance(view_labels, dict) else view_labels
    for i, lab in items:
        vm, K = run.view(i)
        colors = torch.zeros(N, num_labels, requires_grad=True)
        with torch.enable_grad():
            img, _, _ = rasterize(means, quats, scales, opac, colors, vm, K, W, H, backend=backend, **raster)
            onehot = torch.zeros(H, W, num_labels)
            valid = lab >= 0
            onehot[valid] = torch.nn.functional.one_hot(lab[valid], num_labels).float()
            (img[0] * onehot).sum().backward()
        votes += colors.grad
    return votes


class VoteTable:
    """Sparse blending-weight votes: the sum of weights for each (Gaussian, label) pair that got any.

    :meth:`add` buffers (Gaussian, label, weight) triples; :meth:`fold` merges the buffer into the
    table (sorted unique keys g * L + l and their sums). Memory: the table, about N x (labels a
    Gaussian is seen with, 1-2 typically) x 12 bytes, plus whatever is buffered between folds.
    """

    def __init__(self, num_gaussians: int, num_labels: int):
        self.N, self.L = int(num_gaussians), int(num_labels)
        self.keys = torch.zeros(0, dtype=torch.long)  # [T] g * L + l, sorted, unique
        self.vals = torch.zeros(0)  # [T] summed weights
        self._keys: list[torch.Tensor] = []
        self._vals: list[torch.Tensor] = []

    def add(self, gaussians: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> None:
        """Buffer votes: gaussians [S] ids, labels [S] in [0, L), weights [S] (float32)."""
        self._keys.append(gaussians.long() * self.L + labels.long())
        self._vals.append(weights.float())

    def absorb(self, other: "VoteTable") -> None:
        """Buffer another table's sums (a table of the same Gaussians and labels, e.g. another process's)."""
        other.fold()
        self._keys.append(other.keys)
        self._vals.append(other.vals)

    def buffered(self) -> int:
        """Triples waiting for :meth:`fold`."""
        return sum(len(k) for k in self._keys)

    def fold(self) -> None:
        """Merge the buffered votes into the table (one sort of table + buffer)."""
        if not self._keys:
            return
        keys = torch.cat([self.keys, *self._keys])
        vals = torch.cat([self.vals, *self._vals])
        self._keys, self._vals = [], []
        self.keys, inv = torch.unique(keys, sorted=True, return_inverse=True)
        self.vals = torch.zeros(len(self.keys)).index_add_(0, inv, vals)

    def argmax(self) -> np.ndarray:
        """[N] the label with the most weight for each Gaussian (ties: the lowest label), -1 with no positive vote."""
        self.fold()
        g, lab = self.keys // self.L, self.keys % self.L
        top = torch.full((self.N,), float("-inf")).scatter_reduce(0, g, self.vals, "amax")
        at_top = self.vals == top[g]
        best = torch.full((self.N,), self.L, dtype=torch.long).scatter_reduce(0, g[at_top], lab[at_top], "amin")
        best[~(top > 0)] = -1
        return best.numpy()


def add_view_votes(table: VoteTable, run: Run, i: int, labels: torch.Tensor, backend, raster: dict,
                   reuse: dict | None = None) -> None:
    """Add view i's votes to ``table``: every pixel with a label (labels [H, W] in [0, L), -1 = none)
    gives each Gaussian that composites there its blending weight.

    CPU: the weights come straight from the pixels' contribution lists
    (:func:`pcf_gs.render.rasterize.pixel_contributions`; ``reuse``: the meta of a CPU render of this
    view, to skip projection and binning). gsplat: the backward of a render of one-hot label colours
    (as :func:`blend_votes`), over the labels present in the view, a few at a time so that the
    per-Gaussian colour gradient stays under ~128 MB.
    """
    from pcf_gs.render.rasterize import _use_gsplat

    means, quats, scales, opac = activated_geometry(run.params, detach=True)
    vm, K = run.view(i)
    W, H = run.width, run.height
    flat = labels.reshape(-1)
    pix = torch.nonzero(flat >= 0).squeeze(1)
    if len(pix) == 0:
        return
    if not _use_gsplat(backend, means):
        from pcf_gs.render.rasterize import pixel_contributions

        offsets, gids, ws, _ = pixel_contributions(means, quats, scales, opac, vm, K, W, H, pix, reuse=reuse, **raster)
        counts = torch.from_numpy(np.diff(offsets))
        table.add(torch.from_numpy(gids), torch.repeat_interleave(flat[pix], counts), torch.from_numpy(ws))
        return
    _add_view_votes_grad(table, means, quats, scales, opac, vm, K, W, H, labels, backend, raster)


def _add_view_votes_grad(table: VoteTable, means, quats, scales, opac, vm, K, W, H, labels, backend, raster: dict,
                         budget: int = 1 << 25) -> None:
    """:func:`add_view_votes` by rendering one-hot colours and taking their gradient (any backend)."""
    from pcf_gs.render import rasterize

    N, dev = means.shape[0], means.device
    labels = labels.to(dev)
    present = torch.unique(labels[labels >= 0])
    step = max(1, budget // max(N, 1))
    for c0 in range(0, len(present), step):
        chunk = present[c0 : c0 + step]
        local = torch.full((int(present.max()) + 1,), -1, dtype=torch.long, device=dev)
        local[chunk] = torch.arange(len(chunk), device=dev)
        lab = torch.where(labels >= 0, local[labels.clamp_min(0)], -1)
        colors = torch.zeros(N, len(chunk), device=dev, requires_grad=True)
        with torch.enable_grad():
            img, _, _ = rasterize(means, quats, scales, opac, colors, vm.to(dev), K.to(dev), W, H,
                                  backend=backend, **raster)
            onehot = torch.zeros(H, W, len(chunk), device=dev)
            valid = lab >= 0
            onehot[valid] = torch.nn.functional.one_hot(lab[valid], len(chunk)).float()
            (img[0] * onehot).sum().backward()
        g, c = torch.nonzero(colors.grad > 0, as_tuple=True)
        table.add(g.cpu(), chunk[c].cpu(), colors.grad[g, c].cpu())


def gaussian_labels_vote(run: Run, view_labels, num_labels: int, backend, raster: dict) -> np.ndarray:
    """Blending-weight vote of label maps (``view_labels`` as :func:`blend_votes` takes them), one view at a
    time into a :class:`VoteTable`. Returns [N] argmax (-1: no votes)."""
    table = VoteTable(run.params["means"].shape[0], num_labels)
    for i, lab in view_labels.items() if isinstance(view_labels, dict) else view_labels:
        add_view_votes(table, run, i, lab, backend, raster)
        table.fold()
    return table.argmax()


def gaussian_semantics_vote(run: Run, scene, backend, raster: dict, views: list[int] | None = None,
                            reduce=None) -> torch.Tensor:
    """Per-Gaussian class shares [N, C] from the training views' 2D classes (``segment.semantics=vote``).

    Each Gaussian's vote is the distribution of the classes of the pixels it blends into, weighted by
    blending weight: share_g(c) = sum_{pixels labelled c} T*alpha_g / sum_{all pixels} T*alpha_g, a
    multi-view majority of the noisy 2D labels in closed form (``segment.vote_rule=share`` blends these;
    ``majority``, the default, blends :func:`majority` of them). Gaussians no pixel sees keep the semantic
    head's softmax. The 2D confidences are not used: weighting by them cost 13 points of foreground IoU on a
    synthetic scene (confidence is lower on thing pixels than on the room, so it tilts mixed Gaussians
    towards stuff).

    ``views``: the frame ids to vote from (default: the training views); ``reduce``: applied to the
    votes [N, C] before they are normalised (the sum over processes of a distributed ``segment``).
    """
    C = scene.classes.num_classes

    def labels():  # one view's map at a time
        for i in run.train_ids if views is None else views:
            fr = scene.frames[i]
            lab = torch.from_numpy(fr.semantics.astype(np.int64))
            if fr.valid is not None:
                lab[~torch.from_numpy(fr.valid)] = -1
            yield i, lab

    votes = blend_votes(run, labels(), C, backend, raster)
    if reduce is not None:
        votes = reduce(votes)
    total = votes.sum(1, keepdim=True)
    probs = torch.softmax(run.params["semantics"].detach(), 1)
    seen = total[:, 0] > 0
    probs[seen] = votes[seen] / total[seen]
    return probs


def majority(probs: torch.Tensor) -> torch.Tensor:
    """[N, C] one-hot of each row's most probable class (``segment.vote_rule=majority``).

    A Gaussian belongs to one object: a view then blends decided Gaussians, so a small object whose
    Gaussians the 2D model missed in some views (thing share 0.7-0.9) is not pulled under 0.5 by the room's
    Gaussians it blends with."""
    return torch.nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)


def render_semantics(run: Run, i: int, probs_g: torch.Tensor, backend, raster: dict) -> torch.Tensor:
    """[H, W, C] blended per-Gaussian class probabilities (probs_g [N, C]) in view i."""
    from pcf_gs.render import rasterize

    means, quats, scales, opac = activated_geometry(run.params, detach=True)
    vm, K = run.view(i)
    return rasterize(means, quats, scales, opac, probs_g, vm, K, run.width, run.height, backend=backend, **raster)[0][0]
