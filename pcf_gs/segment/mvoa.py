r"""Multi-view object association (MVOA, PCF-Lift Algorithm 1) and the HDBSCAN baseline.

Nodes. For every training view v and every 2D instance mask m of that view
with at least ``min_pixels`` pixels, the rendered embeddings of its pixels
give a node C_{v,m} = (mean mu, mean var) and a concentration score
S_{v,m} = mean_p K(C_{v,m}, F_p) (how tightly the mask's pixels agree).

Greedy association. Sort nodes by S; take the best remaining node as a
prototype, suppress every remaining node with K(node, prototype) >= T, repeat
until no node is left. Each prototype is one object.

Prototype filters (ours; both configurable, both off in the paper):

- ``score_threshold``: a node whose concentration score is below it cannot
  become a prototype. Low-scoring nodes are masks whose pixels disagree in
  3D — merged masks and boundary slivers from the noisy 2D model — and left
  in, each becomes a spurious object (measured: on a 25-object scene every
  prototype with S < 0.9 was one, and they were half the prototypes). Their
  pixels still get labelled, by the prototype of highest K.
- ``min_views``: every node is given to its most similar prototype; a
  prototype backed by nodes from fewer than ``min_views`` distinct training
  views is dropped — an object has to be seen consistently, not once.

Threshold T. Fixed at ``segment.threshold`` (0.5 by default), or, when
that is < 0, adaptive as in the released code: per view, for each node, the
largest kernel value to another node of the *same* view computed with mean
differences halved — two masks of one view are different objects, so this
measures how close distinct objects get — averaged over nodes, then over
views. The adaptive T grows with object density (measured 0.71 at 25
objects, 0.85 at 100) and then fails to suppress one object's nodes from
other views: 131–138 prototypes for 100 objects. A fixed 0.5 measured better
at both densities and with both embeddings (docs/results.md).

Refinement (ours; ``segment.refine_rounds``, 0 = the paper). A greedy
prototype is one view's mask mean. Each prototype is then moved to the
pixel-weighted mean of the nodes whose highest-K prototype it is, k-means
style until no node changes prototype: the centre of the object over all
the views that see it, not of the one view that scored best.

Labelling. Every thing pixel (or Gaussian) takes the prototype with the
highest K; stuff gets instance 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pcf_gs.lift.pp_kernel import pairwise_pp_log_kernel, pp_log_kernel


@dataclass
class Nodes:
    mu: torch.Tensor  # [M, E]
    var: torch.Tensor  # [M, E]
    score: torch.Tensor  # [M] concentration score in (0, 1]
    view: torch.Tensor  # [M] view index
    label: torch.Tensor  # [M] 2D instance id within its view
    size: torch.Tensor  # [M] pixels

    def __len__(self) -> int:
        return int(self.mu.shape[0])


def build_nodes(
    mus: list[torch.Tensor], vars_: list[torch.Tensor], labels: list[torch.Tensor], min_pixels: int = 10
) -> Nodes:
    """mus/vars_: per view [P_v, E] embeddings of the view's thing pixels; labels: per view [P_v] 2D ids (> 0)."""
    out = {k: [] for k in ("mu", "var", "score", "view", "label", "size")}
    for v, (mu, var, lab) in enumerate(zip(mus, vars_, labels)):
        if len(lab) == 0:
            continue
        uniq, inv, cnt = torch.unique(lab, return_inverse=True, return_counts=True)
        n = len(uniq)
        c_mu = torch.zeros(n, mu.shape[1], dtype=mu.dtype).index_add_(0, inv, mu) / cnt[:, None]
        c_var = torch.zeros(n, var.shape[1], dtype=var.dtype).index_add_(0, inv, var) / cnt[:, None]
        k = torch.exp(pp_log_kernel(mu, var, c_mu[inv], c_var[inv]))
        score = torch.zeros(n, dtype=mu.dtype).index_add_(0, inv, k) / cnt
        keep = cnt >= min_pixels
        out["mu"].append(c_mu[keep])
        out["var"].append(c_var[keep])
        out["score"].append(score[keep])
        out["view"].append(torch.full((int(keep.sum()),), v, dtype=torch.long))
        out["label"].append(uniq[keep])
        out["size"].append(cnt[keep])
    if not out["mu"]:
        E = mus[0].shape[1] if mus else 3
        z = torch.zeros(0, E)
        return Nodes(z, z.clone(), torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    return Nodes(**{k: torch.cat(v) for k, v in out.items()})


def adaptive_threshold(nodes: Nodes) -> float:
    """Mean over views of the mean over nodes of max_{other node, same view} K(., .) with mean differences halved."""
    per_view = []
    for v in torch.unique(nodes.view):
        sel = nodes.view == v
        if int(sel.sum()) < 2:
            continue
        mu, var = nodes.mu[sel] * 0.5, nodes.var[sel]  # halving every mean halves every difference
        k = torch.exp(pairwise_pp_log_kernel(mu, var, mu, var))
        k.fill_diagonal_(-1.0)
        per_view.append(float(k.max(1).values.mean()))
    return float(np.mean(per_view)) if per_view else 0.9


def associate(
    nodes: Nodes, threshold: float | None = None, score_threshold: float = 0.0, min_views: int = 1
) -> tuple[torch.Tensor, float]:
    """Greedy suppression, then the ``min_views`` filter. Returns (prototype node indices [P] in pick order, the T used).

    Cost O(M * P) kernel evaluations (M nodes, P prototypes); memory O(M).
    """
    T = adaptive_threshold(nodes) if threshold is None or threshold < 0 else float(threshold)
    M = len(nodes)
    if M == 0:
        return torch.zeros(0, dtype=torch.long), T
    order = torch.argsort(nodes.score, descending=True, stable=True)
    alive = torch.ones(M, dtype=torch.bool)
    logT = np.log(max(T, 1e-12))
    protos = []
    for idx in order.tolist():
        if not alive[idx]:
            continue
        if float(nodes.score[idx]) < score_threshold:
            break  # sorted: every remaining node scores lower
        protos.append(idx)
        rest = torch.nonzero(alive).squeeze(1)
        lk = pp_log_kernel(nodes.mu[rest], nodes.var[rest], nodes.mu[idx][None], nodes.var[idx][None])
        alive[rest[lk >= logT]] = False
        alive[idx] = False
    protos_t = torch.tensor(protos, dtype=torch.long)
    if min_views > 1 and len(protos_t):
        protos_t = _filter_by_views(nodes, protos_t, min_views)
    return protos_t, T


def _filter_by_views(nodes: Nodes, protos: torch.Tensor, min_views: int) -> torch.Tensor:
    """Keep prototypes whose member nodes (nodes of highest K to them) span >= ``min_views`` views."""
    best, _ = assign(nodes.mu, nodes.var, nodes.mu[protos], nodes.var[protos])  # [M], chunked
    P = len(protos)
    seen = torch.zeros(P, int(nodes.view.max()) + 1, dtype=torch.bool)
    seen[best, nodes.view] = True
    return protos[seen.sum(1) >= min_views]


def refine_prototypes(nodes: Nodes, protos: torch.Tensor, rounds: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each prototype to the pixel-weighted mean of the nodes whose highest-K prototype it is.

    A greedy prototype is a single view's mask; averaging its members (the same object seen from
    other views) gives a centre less tied to one view. Up to ``rounds`` alternations of assign /
    average (k-means with the PP kernel), stopping early once no node changes prototype. The number of
    prototypes does not change; no prototypes or ``rounds=0`` return them as they are. Returns (mu [P, E], var [P, E]).
    """
    mu, var = nodes.mu[protos].clone(), nodes.var[protos].clone()
    w = nodes.size.to(mu.dtype)
    prev = None
    for _ in range(rounds if len(protos) else 0):
        best, _ = assign(nodes.mu, nodes.var, mu, var)
        if prev is not None and bool((best == prev).all()):
            break  # converged: the same members as last round
        prev = best
        tot = torch.zeros(len(mu), dtype=mu.dtype).index_add_(0, best, w)
        ok = tot > 0
        mu_new = torch.zeros_like(mu).index_add_(0, best, nodes.mu * w[:, None])
        var_new = torch.zeros_like(var).index_add_(0, best, nodes.var * w[:, None])
        mu[ok] = mu_new[ok] / tot[ok, None]
        var[ok] = var_new[ok] / tot[ok, None]
    return mu, var


def assign(mu: torch.Tensor, var: torch.Tensor, proto_mu: torch.Tensor, proto_var: torch.Tensor, chunk: int = 65536):
    """Argmax-K prototype for each embedding: mu, var [P, E] -> (index [P], K [P]); chunked, O(chunk * #protos) memory."""
    if proto_mu.shape[0] == 0:
        return torch.full((mu.shape[0],), -1, dtype=torch.long), torch.zeros(mu.shape[0])
    idx, val = [], []
    for i in range(0, mu.shape[0], chunk):
        lk = pairwise_pp_log_kernel(mu[i : i + chunk], var[i : i + chunk], proto_mu, proto_var)
        v, j = lk.max(1)
        idx.append(j)
        val.append(torch.exp(v))
    return torch.cat(idx), torch.cat(val)


def hdbscan_prototypes(
    mu: torch.Tensor, var: torch.Tensor, n_samples: int = 20000, min_cluster_size: int = 50, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contrastive Lift's clustering: HDBSCAN (scikit-learn) on sampled embedding means.

    Returns prototype (mu [P, E], var [P, E]) as the cluster means; noise points are ignored.
    """
    from sklearn.cluster import HDBSCAN

    g = torch.Generator().manual_seed(seed)
    n = mu.shape[0]
    sel = torch.randperm(n, generator=g)[: min(n, n_samples)]
    x = mu[sel].double().numpy()
    if len(x) < max(min_cluster_size, 2):
        return mu[:0], var[:0]
    lab = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(x)
    labs = [c for c in np.unique(lab) if c >= 0]
    if not labs:
        return mu[:0], var[:0]
    lab_t = torch.from_numpy(lab)
    pm = torch.stack([mu[sel][lab_t == c].mean(0) for c in labs])
    pv = torch.stack([var[sel][lab_t == c].mean(0) for c in labs])
    return pm, pv
