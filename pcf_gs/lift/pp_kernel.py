r"""The probability-product (PP) kernel between diagonal Gaussian embeddings.

For F_i = N(mu_i, diag(var_i)) and F_j = N(mu_j, diag(var_j)) in R^N (PCF-Lift,
Eq. 1, in the form the released code computes — the Bhattacharyya coefficient):

.. math::

    \log K(F_i, F_j) = -\sum_d \frac{(\mu_{i,d}-\mu_{j,d})^2}{4(\sigma^2_{i,d}+\sigma^2_{j,d})}
                       - \frac12 \sum_d \log\frac{r_d + 1/r_d}{2},\qquad r_d = \sigma_{i,d}/\sigma_{j,d}

Since (r + 1/r)/2 = (var_i + var_j) / (2 sigma_i sigma_j), the second term is
-1/2 sum_d [log(var_i + var_j) - log 2 - (log var_i + log var_j)/2], which is
what we evaluate (no ratios, no overflow). Properties: K(p, p) = 1,
K in (0, 1], symmetric. With var fixed and isotropic (var_i = var_j = s) the
second term vanishes and K = exp(-||mu_i - mu_j||^2 / (8 s)), an RBF kernel
(the paper's Corollary 1): that is the deterministic (Contrastive Lift) mode.

Variances are produced from raw values by :func:`activate_var`
(ELU(x) + 1 + floor, as in the released code), so they are >= floor > 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)


def activate_var(raw: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """Raw variance parameter -> variance: ELU(raw) + 1 + floor (> floor, smooth, ~linear for raw > 0)."""
    return F.elu(raw) + 1.0 + floor


def pp_log_kernel(mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """Elementwise log PP kernel with broadcasting over leading dims.

    mu_*, var_*: [..., N] (var > 0). Returns [...]: log K in (-inf, 0].
    """
    s = var_a + var_b
    mahal = ((mu_a - mu_b) ** 2 / (4.0 * s)).sum(-1)
    log_ratio = 0.5 * (torch.log(s) - LOG2 - 0.5 * (torch.log(var_a) + torch.log(var_b))).sum(-1)
    return -mahal - log_ratio


def pp_kernel(mu_a, var_a, mu_b, var_b) -> torch.Tensor:
    """Elementwise PP kernel, K in (0, 1]; see :func:`pp_log_kernel`."""
    return torch.exp(pp_log_kernel(mu_a, var_a, mu_b, var_b))


def pairwise_pp_log_kernel(
    mu_a: torch.Tensor, var_a: torch.Tensor, mu_b: torch.Tensor, var_b: torch.Tensor, chunk: int = 4096
) -> torch.Tensor:
    """All pairs: mu_a, var_a [A, N]; mu_b, var_b [B, N] -> log K [A, B].

    Rows are processed ``chunk`` at a time so the [chunk, B, N] temporaries
    stay bounded (about chunk * B * N * 4 bytes * 4). Differentiable.
    """
    if mu_a.shape[0] <= chunk:
        return pp_log_kernel(mu_a[:, None, :], var_a[:, None, :], mu_b[None, :, :], var_b[None, :, :])
    out = [
        pp_log_kernel(mu_a[i : i + chunk, None, :], var_a[i : i + chunk, None, :], mu_b[None], var_b[None])
        for i in range(0, mu_a.shape[0], chunk)
    ]
    return torch.cat(out, 0)


def pairwise_pp_kernel(mu_a, var_a, mu_b, var_b, chunk: int = 4096) -> torch.Tensor:
    """All pairs PP kernel [A, B] in (0, 1]."""
    return torch.exp(pairwise_pp_log_kernel(mu_a, var_a, mu_b, var_b, chunk))


def rbf_kernel(mu_a: torch.Tensor, mu_b: torch.Tensor, var: float) -> torch.Tensor:
    """exp(-||mu_a - mu_b||^2 / (8 var)) elementwise: the PP kernel at fixed isotropic variance ``var``."""
    return torch.exp(-((mu_a - mu_b) ** 2).sum(-1) / (8.0 * var))
