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


_NODE_FIELDS = ("mu", "var", "score", "view", "label", "size")


class NodeBuilder:
    """Nodes of a stream of views: :meth:`add` one view's mask pixels, keep only its node statistics
    (2E + 4 numbers per mask), :meth:`nodes` at the end. Memory grows with the number of masks, not pixels."""

    def __init__(self, min_pixels: int = 10):
        self.min_pixels = min_pixels
        self._parts: dict[str, list[torch.Tensor]] = {k: [] for k in _NODE_FIELDS}
        self._dim: int | None = None

    def add(self, view: int, mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor) -> None:
        """One view's pixels: mu, var [P_v, E] embeddings, labels [P_v] 2D instance ids (> 0); ``view``: its index."""
        if self._dim is None:
            self._dim = int(mu.shape[1])
        if len(labels) == 0:
            return
        uniq, inv, cnt = torch.unique(labels, return_inverse=True, return_counts=True)
        n = len(uniq)
        c_mu = torch.zeros(n, mu.shape[1], dtype=mu.dtype).index_add_(0, inv, mu) / cnt[:, None]
        c_var = torch.zeros(n, var.shape[1], dtype=var.dtype).index_add_(0, inv, var) / cnt[:, None]
        k = torch.exp(pp_log_kernel(mu, var, c_mu[inv], c_var[inv]))
        score = torch.zeros(n, dtype=mu.dtype).index_add_(0, inv, k) / cnt
        keep = cnt >= self.min_pixels
        self._parts["mu"].append(c_mu[keep])
        self._parts["var"].append(c_var[keep])
        self._parts["score"].append(score[keep])
        self._parts["view"].append(torch.full((int(keep.sum()),), view, dtype=torch.long))
        self._parts["label"].append(uniq[keep])
        self._parts["size"].append(cnt[keep])

    def absorb(self, other: "NodeBuilder") -> None:
        """Append another builder's nodes (views after this one's: another process's share)."""
        for k in _NODE_FIELDS:
            self._parts[k] += other._parts[k]
        if self._dim is None:
            self._dim = other._dim

    def nodes(self) -> Nodes:
        if not self._parts["mu"]:
            z = torch.zeros(0, self._dim if self._dim is not None else 3)
            e = torch.zeros(0, dtype=torch.long)
            return Nodes(z, z.clone(), torch.zeros(0), e, e.clone(), e.clone())
        return Nodes(**{k: torch.cat(v) for k, v in self._parts.items()})


def build_nodes(
    mus: list[torch.Tensor], vars_: list[torch.Tensor], labels: list[torch.Tensor], min_pixels: int = 10
) -> Nodes:
    """mus/vars_: per view [P_v, E] embeddings of the view's thing pixels; labels: per view [P_v] 2D ids (> 0)."""
    b = NodeBuilder(min_pixels)
    for v, (mu, var, lab) in enumerate(zip(mus, vars_, labels)):
        b.add(v, mu, var, lab)
    return b.nodes()


def _view_groups(view: torch.Tensor) -> list[torch.Tensor]:
    """Indices of the nodes of each view (ascending view id; node order kept): one sort instead of a mask per view."""
    order = torch.argsort(view, stable=True)
    counts = torch.unique_consecutive(view[order], return_counts=True)[1]
    return list(torch.split(order, counts.tolist()))


def adaptive_threshold(nodes: Nodes) -> float:
    """Mean over views of the mean over nodes of max_{other node, same view} K(., .) with mean differences halved."""
    per_view = []
    for sel in _view_groups(nodes.view):
        if len(sel) < 2:
            continue
        mu, var = nodes.mu[sel] * 0.5, nodes.var[sel]  # halving every mean halves every difference
        k = torch.exp(pairwise_pp_log_kernel(mu, var, mu, var))
        k.fill_diagonal_(-1.0)
        per_view.append(float(k.max(1).values.mean()))
    return float(np.mean(per_view)) if per_view else 0.9


_SLACK = 1e-4  # relative and absolute margin on log K bounds: covers float32 rounding of the kernel


def kernel_radius(log_k, var_sum):
    r"""Largest |mu_a - mu_b| (Euclidean) at which log K(a, b) >= ``log_k`` is possible (float or array).

    ``var_sum``: an upper bound of A_a + A_b, A = an embedding's largest variance over dimensions. With
    s_d = var_{a,d} + var_{b,d} >= 2 sigma_{a,d} sigma_{b,d} (AM-GM) the log term of the kernel is >= 0, so

    .. math::

        \log K \le -\sum_d \frac{\Delta_d^2}{4 s_d} \le -\frac{|\Delta|^2}{4 \max_d s_d}
               \le -\frac{|\Delta|^2}{4 (A_a + A_b)}

    hence log K >= lambda implies |Delta|^2 <= -4 lambda (A_a + A_b). Widened by ``_SLACK`` so that a
    pair whose float32 kernel rounds to >= lambda is never outside. A KD-tree ball query with this radius
    finds every candidate; the kernel then decides."""
    lam = log_k - _SLACK * (1.0 + np.abs(log_k))
    return np.sqrt(np.maximum(-4.0 * lam * var_sum, 0.0)) * (1.0 + _SLACK) + 1e-9


class _NodeBands:
    """Node means in KD-trees, one per octave of their largest variance A (octave = floor(log2 A)): a
    ball query takes each band's own largest A for its radius, so a few wide nodes do not widen the
    search for all. Memory O(M)."""

    def __init__(self, mu: torch.Tensor, var: torch.Tensor):
        from scipy.spatial import cKDTree

        a = var.max(1).values.double().numpy()
        octave = np.floor(np.log2(np.maximum(a, 1e-300)))
        order = np.argsort(octave, kind="stable")
        cuts = np.flatnonzero(np.diff(octave[order])) + 1
        x = mu.double().numpy()
        self.bands = [(ids, float(a[ids].max()), cKDTree(x[ids])) for ids in np.split(order, cuts) if len(ids)]

    def near(self, x: np.ndarray, a: float, log_k: float) -> np.ndarray:
        """Indices [C] of every node that may have log K >= ``log_k`` with an embedding of mean x [E] and
        largest variance ``a`` (and some that do not)."""
        found = [ids[np.asarray(tree.query_ball_point(x, kernel_radius(log_k, a + a_b)), dtype=np.int64)]
                 for ids, a_b, tree in self.bands]
        return np.concatenate(found) if found else np.zeros(0, np.int64)


def associate(
    nodes: Nodes, threshold: float | None = None, score_threshold: float = 0.0, min_views: int = 1
) -> tuple[torch.Tensor, float]:
    """Greedy suppression, then the ``min_views`` filter. Returns (prototype node indices [P] in pick order, the T used).

    Each pick suppresses the alive nodes with K >= T among the candidates of a ball query
    (:func:`kernel_radius`, :class:`_NodeBands`), not among all M nodes: the kernel is evaluated
    about once per node of the picked object instead of M times per prototype (O(M * P) before;
    10^6 nodes in seconds). Memory O(M).
    """
    T = adaptive_threshold(nodes) if threshold is None or threshold < 0 else float(threshold)
    M = len(nodes)
    if M == 0:
        return torch.zeros(0, dtype=torch.long), T
    order = torch.argsort(nodes.score, descending=True, stable=True).tolist()
    score = nodes.score.tolist()
    logT = np.log(max(T, 1e-12))
    bands = _NodeBands(nodes.mu, nodes.var)
    a = nodes.var.max(1).values.double().numpy()
    x = nodes.mu.double().numpy()
    alive = np.ones(M, dtype=bool)
    protos = []
    for idx in order:
        if not alive[idx]:
            continue
        if score[idx] < score_threshold:
            break  # sorted: every remaining node scores lower
        protos.append(idx)
        cand = bands.near(x[idx], float(a[idx]), float(logT))
        cand = cand[alive[cand]]
        ct = torch.from_numpy(cand)
        lk = pp_log_kernel(nodes.mu[ct], nodes.var[ct], nodes.mu[idx][None], nodes.var[idx][None])
        alive[cand[(lk >= logT).numpy()]] = False
        alive[idx] = False
    protos_t = torch.tensor(protos, dtype=torch.long)
    if min_views > 1 and len(protos_t):
        protos_t = _filter_by_views(nodes, protos_t, min_views)
    return protos_t, T


def _filter_by_views(nodes: Nodes, protos: torch.Tensor, min_views: int) -> torch.Tensor:
    """Keep prototypes whose member nodes (nodes of highest K to them) span >= ``min_views`` views."""
    best, _ = assign(nodes.mu, nodes.var, nodes.mu[protos], nodes.var[protos])  # [M]
    pairs = torch.unique(best * (int(nodes.view.max()) + 1) + nodes.view)  # distinct (prototype, view)
    n_views = torch.bincount(pairs // (int(nodes.view.max()) + 1), minlength=len(protos))
    return protos[n_views >= min_views]


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
        if prev is not None and len(mu) > _DENSE_PROTOS:  # last round's members start the search
            best, _ = PrototypeIndex(mu, var).assign(nodes.mu, nodes.var, hint=prev)
        else:
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


_DENSE_PROTOS = 16  # up to this many prototypes, assign evaluates every pair (no index to build)
_KNN = 8  # neighbours fetched per embedding by the first search of the indexed assign


def assign(mu: torch.Tensor, var: torch.Tensor, proto_mu: torch.Tensor, proto_var: torch.Tensor, chunk: int = 65536):
    """Argmax-K prototype for each embedding: mu, var [n, E] -> (index [n], K [n]); ties go to the lowest index.

    Up to ``_DENSE_PROTOS`` prototypes: every pair, ``chunk`` rows at a time. More: a
    :class:`PrototypeIndex` (KD-tree on the prototype means) evaluates only the prototypes that can beat
    the Euclidean-nearest one. Memory O(chunk * #protos) either way."""
    if proto_mu.shape[0] == 0:
        return torch.full((mu.shape[0],), -1, dtype=torch.long), torch.zeros(mu.shape[0])
    if proto_mu.shape[0] <= _DENSE_PROTOS:
        return _assign_dense(mu, var, proto_mu, proto_var, chunk)
    return PrototypeIndex(proto_mu, proto_var).assign(mu, var, chunk)


def assigner(proto_mu: torch.Tensor, proto_var: torch.Tensor):
    """``lambda mu, var: assign(mu, var, proto_mu, proto_var)`` with the index built once (label many views)."""
    if proto_mu.shape[0] <= _DENSE_PROTOS:
        return lambda mu, var: assign(mu, var, proto_mu, proto_var)
    return PrototypeIndex(proto_mu, proto_var).assign


def _assign_dense(mu, var, proto_mu, proto_var, chunk: int = 65536):
    """:func:`assign` by evaluating every pair (the reference)."""
    idx, val = [], []
    for i in range(0, mu.shape[0], chunk):
        lk = pairwise_pp_log_kernel(mu[i : i + chunk], var[i : i + chunk], proto_mu, proto_var)
        v, j = lk.max(1)
        idx.append(j)
        val.append(torch.exp(v))
    if not idx:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=mu.dtype)
    return torch.cat(idx), torch.cat(val)


class PrototypeIndex:
    """Prototypes (mu, var [P, E]) indexed by their means, for :meth:`assign` of many embeddings.

    For an embedding x, a first guess p1 (the Euclidean-nearest prototype, or a hint) gives
    log K* = log K(x, p1), a lower bound of the best; by :func:`kernel_radius` only prototypes p with
    |mu_x - mu_p| <= r(log K*, A_x + A_p) can reach it. Most embeddings lie close to their object's
    prototype: a bounded ``_KNN``-nearest query in a KD-tree on the prototype means (one per group of
    similar radii) finds all their candidates. The others (far from every prototype, so with wide
    radii) test every prototype's radius against distances from one matrix product, and take the
    kernel only where it can win. Exact duplicates among the prototypes are kept once (the first),
    and ties go to the lowest index, as in the dense argmax.
    """

    def __init__(self, mu: torch.Tensor, var: torch.Tensor):
        from scipy.spatial import cKDTree

        P = mu.shape[0]
        _, inv = torch.unique(torch.cat([mu, var], 1), dim=0, return_inverse=True)
        first = torch.full((int(inv.max()) + 1,), P, dtype=torch.long).scatter_reduce(0, inv, torch.arange(P), "amin")
        self.first = first.sort().values  # distinct prototypes in index order: ties -> lowest index
        rank = torch.empty(P, dtype=torch.long)
        rank[self.first] = torch.arange(len(self.first))
        self.row = rank[first[inv]]  # [P] prototype -> its row in the index (a duplicate -> its first copy's)
        self.mu, self.var = mu[self.first], var[self.first]
        self.a = self.var.max(1).values.double().numpy()  # [U] largest variance of each prototype
        self.a_max = float(self.a.max())
        self.x = self.mu.double().numpy()  # [U, E]
        self.x2 = (self.x**2).sum(1)
        self.tree = cKDTree(self.x)
        # distance from each prototype to its nearest other one: an embedding within r of p1 and farther than
        # r from every other prototype (sep - |x - p1| > r, triangle inequality) has p1 as its only candidate
        self.sep = self.tree.query(self.x, k=2)[0][:, 1] if len(self.x) > 1 else np.full(1, np.inf)

    def assign(self, mu: torch.Tensor, var: torch.Tensor, chunk: int = 65536,
               hint: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(prototype index [n], K [n]) of the highest-K prototype of each of mu, var [n, E].

        ``hint`` [n]: a likely prototype of each (e.g. last round's), used instead of the nearest mean as
        the first guess; the result does not depend on it."""
        idx, val = [], []
        for i in range(0, mu.shape[0], chunk):
            h = None if hint is None else self.row[hint[i : i + chunk]]
            j, v = self._best(mu[i : i + chunk], var[i : i + chunk], h)
            idx.append(self.first[j])
            val.append(torch.exp(v))
        if not idx:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=mu.dtype)
        return torch.cat(idx), torch.cat(val)

    def _best(self, mu: torch.Tensor, var: torch.Tensor, j1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(row of the best distinct prototype [n], its log K [n]) for one chunk; j1 [n]: first guesses."""
        n, U = mu.shape[0], len(self.first)
        x = mu.double().numpy()
        if j1 is None:
            j1 = torch.from_numpy(np.asarray(self.tree.query(x, k=1)[1], dtype=np.int64))
        lk1 = pp_log_kernel(mu, var, self.mu[j1], self.var[j1]).double().numpy()
        a = var.max(1).values.double().numpy()
        r = kernel_radius(lk1, a + self.a_max)
        best = torch.empty(n, dtype=torch.long)
        val = torch.empty(n, dtype=mu.dtype)
        j1n = j1.numpy()
        d1 = np.sqrt(((x - self.x[j1n]) ** 2).sum(1))
        alone = self.sep[j1n] - d1 > r * (1 + 1e-9) + 1e-12  # no other prototype within r: p1 wins
        best[torch.from_numpy(alone)] = j1[torch.from_numpy(alone)]
        val[torch.from_numpy(alone)] = torch.from_numpy(lk1[alone]).to(mu.dtype)
        rest = np.flatnonzero(~alone)
        if U > _KNN:
            rest = self._nearest(mu, var, x, r, rest, best, val)
        step = max(1, (1 << 22) // U)
        for k in range(0, len(rest), step):
            self._pruned(mu, var, x, a, lk1, j1n, rest[k : k + step], best, val)
        return best, val

    def _settle(self, mu, var, rows: torch.Tensor, jt: torch.Tensor, ok: torch.Tensor, best, val) -> None:
        """best/val of ``rows`` [m] from their candidate prototypes jt [m, c] (where ok [m, c]): the kernel on
        the candidates only, the maximum, ties to the lowest row."""
        ri, ci = torch.nonzero(ok, as_tuple=True)
        q, j = rows[ri], jt[ri, ci]
        lk = torch.full(jt.shape, float("-inf"), dtype=mu.dtype)
        lk[ri, ci] = pp_log_kernel(mu[q], var[q], self.mu[j], self.var[j])
        m = lk.max(1).values
        best[rows] = torch.where(ok & (lk == m[:, None]), jt, len(self.first)).min(1).values
        val[rows] = m

    def _nearest(self, mu, var, x, r, rows: np.ndarray, best, val) -> np.ndarray:
        """Settle the rows whose radius r holds fewer than ``_KNN`` prototypes: one bounded k-nearest query per
        group of rows whose radii are within a factor sqrt(2); fills best/val. Returns the rows left."""
        U = len(self.first)
        fin = np.isfinite(r[rows])
        left = [rows[~fin]]
        rows = rows[fin]
        rows = rows[np.argsort(r[rows], kind="stable")]
        band = np.floor(2 * np.log2(np.maximum(r[rows], 1e-12)))
        for grp in np.split(rows, np.flatnonzero(np.diff(band)) + 1):
            if len(grp) == 0:
                continue
            _, jj = self.tree.query(x[grp], k=_KNN, distance_upper_bound=float(r[grp[-1]]))
            jj = np.asarray(jj, dtype=np.int64).reshape(len(grp), _KNN)
            full = jj[:, -1] < U  # k found: maybe more inside
            left.append(grp[full])
            jj = jj[~full]
            if len(jj):
                self._settle(mu, var, torch.from_numpy(grp[~full]), torch.from_numpy(np.where(jj < U, jj, 0)),
                             torch.from_numpy(jj < U), best, val)
        return np.concatenate(left)

    def _pruned(self, mu, var, x, a, lk1, j1, rows: np.ndarray, best, val) -> None:
        """Settle ``rows`` by testing every prototype: distances from |x|^2 + |p|^2 - 2 x.p, each prototype's own
        radius r(log K*, A_x + A_p), the kernel where the distance is inside."""
        if len(rows) == 0:
            return
        xr = x[rows]
        d2 = (xr**2).sum(1)[:, None] + self.x2[None] - 2.0 * xr @ self.x.T  # [m, U] float64
        lam = lk1[rows] - _SLACK * (1.0 + np.abs(lk1[rows]))  # kernel_radius, squared, per prototype
        rad2 = np.maximum(-4.0 * lam[:, None] * (a[rows][:, None] + self.a[None]), 0.0) * (1.0 + _SLACK) ** 2
        ok = d2 <= rad2 + 1e-9 * (1.0 + d2)
        ok[np.arange(len(rows)), j1[rows]] = True  # the first guess always competes
        U = len(self.first)
        self._settle(mu, var, torch.from_numpy(rows), torch.arange(U).expand(len(rows), U), torch.from_numpy(ok), best, val)


class PixelSample:
    """A uniform random sample (without replacement) of at most ``size`` rows from a stream of (mu, var)
    batches, in O(size) memory: every row draws a uniform key, the sample is the rows of the smallest
    keys (in key order; all rows in arrival order while there are no more than ``size``). Batch v's keys
    come from a generator seeded by (``seed``, v), so the sample of a stream split among processes and
    merged (:meth:`absorb`, in stream order) is the sample of the whole stream."""

    def __init__(self, size: int, seed: int = 0):
        self.size = int(size)
        self.seed = int(seed)
        self._keys = torch.zeros(0, dtype=torch.float64)
        self._mu: torch.Tensor | None = None
        self._var: torch.Tensor | None = None

    def add(self, mu: torch.Tensor, var: torch.Tensor, batch: int) -> None:
        """Offer rows mu, var [n, E] as batch number ``batch`` of the stream (e.g. the view index)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + batch)
        self._take(torch.rand(mu.shape[0], generator=g, dtype=torch.float64), mu, var)

    def absorb(self, other: "PixelSample") -> None:
        """Merge another sample of the same size (of batches after this one's)."""
        if other._mu is not None:
            self._take(other._keys, other._mu, other._var)

    def _take(self, keys: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> None:
        if self._mu is None:
            self._mu, self._var = mu[:0], var[:0]
        keys = torch.cat([self._keys, keys])
        mu, var = torch.cat([self._mu, mu]), torch.cat([self._var, var])
        if len(keys) > self.size:
            keys, keep = torch.topk(keys, self.size, largest=False, sorted=True)
            mu, var = mu[keep], var[keep]
        self._keys, self._mu, self._var = keys, mu, var

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu [S, E], var [S, E]), S = min(size, rows offered); empty [0, 3] if nothing was offered."""
        if self._mu is None:
            return torch.zeros(0, 3), torch.zeros(0, 3)
        return self._mu, self._var


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
