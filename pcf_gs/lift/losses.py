r"""Training losses (PCF-Lift Eqs. 2-6, and 3DGS appearance), as small pure functions.

Notation: P pixels sampled from one view, N embedding dims. Each pixel p has a
rendered embedding F_p = N(mu_p, diag(var_p)) from the *fast* Gaussians and,
for the slow/fast scheme of Contrastive Lift and the released PCF-Lift code,
a rendered embedding from the *slow* Gaussians (an EMA copy, no gradient).
I(p) is the pixel's 2D instance id in that view (ids are per view). K is the
PP kernel of :mod:`pcf_gs.lift.pp_kernel`.

Pixels are split in two disjoint halves, fast (f) and slow (s), so that a
pixel is never compared with itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pcf_gs.lift.pp_kernel import pairwise_pp_log_kernel, pp_log_kernel


def _segment_means(x: torch.Tensor, labels: torch.Tensor, num: int, cnt: torch.Tensor | None = None) -> torch.Tensor:
    """x [P, D], labels [P] in 0..num-1 -> per-label means [num, D] (0 where empty); ``cnt``: the labels'
    :func:`_counts`, when the caller has them already."""
    sums = torch.zeros(num, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    cnt = _counts(labels, num, x.dtype) if cnt is None else cnt.to(x.dtype)
    return sums / cnt.clamp_min(1)[:, None]


def _counts(labels: torch.Tensor, num: int, dtype=torch.float32, weights: torch.Tensor | None = None) -> torch.Tensor:
    """[num] occurrences (or summed ``weights`` [P]) of each label 0..num-1 in ``labels`` [P]. ``index_add_``
    rather than ``bincount``: on CUDA bincount reads the largest label back to the host to size its output."""
    w = torch.ones_like(labels, dtype=dtype) if weights is None else weights.to(dtype)
    return torch.zeros(num, dtype=dtype, device=labels.device).index_add_(0, labels, w)


def _label_slots(labels: torch.Tensor, num_labels: int | None) -> tuple[torch.Tensor, int]:
    """Labels as slot indices and the slot count: the labels themselves with ``num_labels`` (ids known to lie in
    0..num_labels-1: nothing is read back from the device), else ranks of the distinct labels (``torch.unique``,
    which synchronises on CUDA)."""
    if num_labels is not None:
        return labels, int(num_labels)
    uniq, inv = torch.unique(labels, return_inverse=True)
    return inv, len(uniq)


def pixel_contrastive_loss(
    mu_f: torch.Tensor,
    var_f: torch.Tensor,
    lab_f: torch.Tensor,
    mu_s: torch.Tensor,
    var_s: torch.Tensor,
    lab_s: torch.Tensor,
    temperature: float = 1.0,
    balanced: bool = False,
) -> torch.Tensor:
    r"""Eq. 2, the PP-kernel pixel contrastive loss (softmax over similarities).

    .. math:: L = -\frac{1}{|P_f|}\sum_{p \in P_f} \log
              \frac{\sum_{q \in P_s, I(q)=I(p)} \exp(K(F_p, F_q)/t)}{\sum_{q \in P_s} \exp(K(F_p, F_q)/t)}

    mu_f, var_f [Pf, N], lab_f [Pf]; mu_s, var_s [Ps, N], lab_s [Ps] (slow,
    treated as constants). Rows with no positive are left out. ``t`` is the
    temperature (the released code uses t = 1).

    ``balanced``: a temperature per row p instead, from its own counts of positives n+ and negatives n-:

    .. math:: 1/t_p = \max(1, \log(n^-_p / n^+_p))

    Since K is in (0, 1], a fixed t caps how far the loss can fall: with every positive at K = 1 and every
    negative at K = 0 the positives hold n+ e^{1/t} / (n+ e^{1/t} + n-) of the softmax mass, which shrinks
    as a view shows more objects (n-/n+ grows). The balanced t makes that perfect-separation share 1/2 for
    every row, whatever the object count or object size (and never flatter than t = 1). Returns a scalar.
    """
    if mu_f.shape[0] == 0 or mu_s.shape[0] == 0:
        return mu_f.sum() * 0.0
    pos = lab_f[:, None] == lab_s[None, :]
    has_pos = pos.any(1)
    k = torch.exp(pairwise_pp_log_kernel(mu_f, var_f, mu_s, var_s))  # [Pf, Ps]
    if balanced:
        n_pos = pos.sum(1).clamp_min(1).to(k.dtype)
        inv_t = torch.log((pos.shape[1] - n_pos) / n_pos).clamp_min(1.0)  # no negatives: -inf -> 1
        logits = k * inv_t[:, None]
    else:
        logits = k / temperature
    log_all = torch.logsumexp(logits, dim=1)
    # rows without a positive take every column as positive (a finite 0 with a finite gradient) and are then
    # weighted out: masks rather than boolean indexing, which would read the row count back from a GPU
    log_pos = torch.logsumexp(logits.masked_fill(~(pos | ~has_pos[:, None]), float("-inf")), dim=1)
    w = has_pos.to(k.dtype)
    return ((log_all - log_pos) * w).sum() / w.sum().clamp_min(1)


def concentration_loss(
    mu_f: torch.Tensor,
    var_f: torch.Tensor,
    lab_f: torch.Tensor,
    mu_s: torch.Tensor,
    var_s: torch.Tensor,
    lab_s: torch.Tensor,
    confidence_f: torch.Tensor | None = None,
    num_labels: int | None = None,
) -> torch.Tensor:
    r"""Eq. 3, pull each fast pixel towards its instance's slow centroid.

    The centroid of instance l is the mean slow embedding of the slow-half
    pixels labelled l: :math:`\bar C_l = (\mathrm{mean}\,\mu_s, \mathrm{mean}\,\sigma^2_s)`. Then

    .. math:: L = -\frac{1}{|L|} \sum_{l \in L} \frac{1}{|P_f^l|}\sum_{p \in P_f^l} c_p\, K(F_p, \bar C_l)

    over the labels L present in both halves; c_p is the 2D model's
    confidence (1 if not given). Returns a scalar in [-1, 0]. ``num_labels``: labels lie in
    0..num_labels-1 (then nothing is read back from the device; else found with ``torch.unique``).
    """
    if mu_f.shape[0] == 0 or mu_s.shape[0] == 0:
        return mu_f.sum() * 0.0
    inv, L = _label_slots(torch.cat([lab_f, lab_s]), num_labels)
    inv_f, inv_s = inv[: len(lab_f)], inv[len(lab_f) :]
    n_s = _counts(inv_s, L, mu_s.dtype)
    in_s = n_s > 0
    c_mu = _segment_means(mu_s, inv_s, L, n_s)
    c_var = _segment_means(var_s, inv_s, L, n_s).masked_fill(~in_s[:, None], 1.0)  # empty slots: any var > 0
    keep = in_s[inv_f].to(mu_f.dtype)  # fast pixels whose label has a slow centroid
    k = torch.exp(pp_log_kernel(mu_f, var_f, c_mu[inv_f], c_var[inv_f]))
    if confidence_f is not None:
        k = k * confidence_f
    n_f = _counts(inv_f, L, k.dtype, keep)
    per_label = torch.zeros(L, dtype=k.dtype, device=k.device).index_add_(0, inv_f, k * keep) / n_f.clamp_min(1)
    present = (n_f > 0).to(k.dtype)
    return -(per_label * present).sum() / present.sum().clamp_min(1)


def variance_regularizer(var: torch.Tensor) -> torch.Tensor:
    r"""Eq. 6: :math:`L_{reg} = \mathrm{mean}_p \log \prod_d \sigma^2_{p,d}`; keeps variances from growing
    without bound (the contrastive terms alone reward large variances on ambiguous pixels).
    var [P, N] -> scalar."""
    if var.shape[0] == 0:
        return var.sum() * 0.0
    return torch.log(var).sum(-1).mean()


def view_centroids(
    mu: torch.Tensor, var: torch.Tensor, labels: torch.Tensor, min_pixels: int = 10, num_labels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-instance mean embedding of one view: mu, var [P, N], labels [P] -> (c_mu [L, N], c_var [L, N],
    keep [L] bool), keep marking the instances with more than ``min_pixels`` sampled pixels. L slots: one per
    label 0..num_labels-1 with ``num_labels`` (nothing read back from the device), else one per distinct label.
    Slots that are not kept hold mu 0, var 1."""
    inv, L = _label_slots(labels, num_labels)
    cnt = _counts(inv, L, mu.dtype)
    keep = cnt > min_pixels
    c_var = _segment_means(var, inv, L, cnt).masked_fill(~keep[:, None], 1.0)
    return _segment_means(mu, inv, L, cnt) * keep[:, None], c_var, keep


def cross_view_loss(
    mu_1: torch.Tensor,
    var_1: torch.Tensor,
    keep_1: torch.Tensor | None,
    mu_2: torch.Tensor,
    var_2: torch.Tensor,
    keep_2: torch.Tensor | None,
    tau: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Eq. 5, the cross-view constraint on two views' instance centroids.

    Centroids C^1 [L1, N] of view 1 and C^2 [L2, N] of view 2 (2D ids do
    not correspond across views; ``keep_*`` [L*] bool marks the centroids that take part, None = all, as
    :func:`view_centroids` returns them). Each kept C^1_a is matched to its most similar kept
    C^2_b; confident matches (K > tau) are mined as positives and pulled
    together:

    .. math:: L = -\frac{1}{|M|} \sum_{a \in M} \log \max_b K(C^1_a, C^2_b),\quad M = \{a : \max_b K > \tau\}

    Returns (loss, fraction of the kept centroids of view 1 mined); 0 when none is mined. Masks throughout,
    so nothing is read back from the device.
    """
    if mu_1.shape[0] == 0 or mu_2.shape[0] == 0:
        z = mu_1.sum() * 0.0 + mu_2.sum() * 0.0
        return z, z.detach()
    k1 = torch.ones(len(mu_1), dtype=torch.bool, device=mu_1.device) if keep_1 is None else keep_1
    k2 = torch.ones(len(mu_2), dtype=torch.bool, device=mu_2.device) if keep_2 is None else keep_2
    logk = pairwise_pp_log_kernel(mu_1, var_1, mu_2, var_2).masked_fill(~k2[None, :], float("-inf"))
    best = logk.max(dim=1).values
    mined = (best > (math.log(tau) if tau > 0 else -math.inf)) & k1
    w = mined.to(best.dtype)
    frac = (w.sum() / k1.sum().clamp_min(1)).detach()
    return -torch.where(mined, best, 0.0).sum() / w.sum().clamp_min(1), frac


def semantic_loss(
    logits: torch.Tensor, labels: torch.Tensor, confidence: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of rendered logits [P, K] against 2D labels [P], weighted by the
    2D model's per-pixel confidence [P] when given. Scalar."""
    ce = F.cross_entropy(logits, labels.long(), reduction="none")
    if confidence is not None:
        ce = ce * confidence
    return ce.mean() if ce.numel() else logits.sum() * 0.0


def _gaussian_1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of x [B, C, H, W] with zero padding (same result as the 2D window, 2k vs k^2 MACs)."""
    C, k = x.shape[1], g.numel()
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(C, 1, 1, k), padding=(0, k // 2), groups=C)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(C, 1, k, 1), padding=(k // 2, 0), groups=C)


def ssim(img1: torch.Tensor, img2: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two images [H, W, C] or [B, H, W, C] in [0, 1] (Gaussian window, 3DGS' settings)."""
    if img1.dim() == 3:
        img1, img2 = img1[None], img2[None]
    x, y = img1.permute(0, 3, 1, 2), img2.permute(0, 3, 1, 2)
    g = _gaussian_1d(window, sigma, x.dtype, x.device)
    # one blur pass over the 5 stacked maps
    st = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), g)
    C = x.shape[1]
    mu_x, mu_y, exx, eyy, exy = st.split(C, 1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return m.mean()


def appearance_loss(pred: torch.Tensor, target: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    r"""3DGS photometric loss: :math:`(1-\lambda) L_1 + \lambda (1 - \mathrm{SSIM})`, images [H, W, 3]."""
    l1 = (pred - target).abs().mean()
    return (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim(pred, target))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1]."""
    mse = ((pred - target) ** 2).mean().clamp_min(1e-12)
    return -10.0 * torch.log10(mse)
