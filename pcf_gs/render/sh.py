"""Spherical-harmonics colours of Gaussians: the SH constants, rgb <-> DC term, colour per view.

colour_c = max(0.5 + sum_k Y_k(d) * coeff[k, c], 0) with d = (mean - camera centre) / |.|,
the real SH basis of degree <= 3 in the 3DGS / gsplat convention (k = 0..15):

    Y0 = C0
    Y1..3  = -C1 y, C1 z, -C1 x
    Y4..8  = C2a xy, C2b yz, C2c (2z^2 - x^2 - y^2), C2b xz, C2d (x^2 - y^2)
    Y9..15 = C3a y(3x^2 - y^2), C3b xyz, C3c y(4z^2 - x^2 - y^2), C3d z(2z^2 - 3x^2 - 3y^2),
             C3c x(4z^2 - x^2 - y^2), C3e z(x^2 - y^2), C3a x(x^2 - 3y^2)

The DC term alone gives the view-independent base colour ``rgb = C0 * sh0 + 0.5``
(:func:`sh0_to_rgb`, :func:`rgb_to_sh0`; numpy arrays, torch tensors or floats).

Two evaluators: :func:`sh_colors` (gsplat's torch implementation, differentiable, one
colour per camera and Gaussian: training and the CPU rasterizer) and :func:`sh_to_rgb`
(one camera, fused in one numba kernel on CPU: the viewer's hot path, where it replaces
~15 separate torch ops over all Gaussians; ``tests/viewer/test_viewer.py`` checks it
against gsplat's torch implementation).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

C0 = 0.28209479177387814  # band-0 basis value: rgb = C0 * sh0 + 0.5
C1 = 0.4886025119029199
C2A, C2B, C2C, C2D = 1.0925484305920792, -1.0925484305920792, 0.31539156525252005, 0.5462742152960396
C3A, C3B, C3C, C3D, C3E = -0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, 1.445305721320277


def rgb_to_sh0(rgb):
    """Base colour [..., 3] -> SH DC coefficients [..., 3] (inverse of :func:`sh0_to_rgb`)."""
    return (rgb - 0.5) / C0


def sh0_to_rgb(sh0):
    """SH DC coefficients [..., 3] -> base colour [..., 3] = C0 * sh0 + 0.5 (not clamped)."""
    return sh0 * C0 + 0.5


def sh_colors(coeffs: torch.Tensor, degree: int, means: torch.Tensor, viewmats: torch.Tensor) -> torch.Tensor:
    """Colours [C,N,3] = max(SH(dir) + 0.5, 0) as gsplat computes them (its pure-torch
    implementation: differentiable, CPU or CUDA).

    coeffs [N,K,3] (shared by all cameras) or [C,N,K,3], K >= (degree+1)^2 (all K enter
    the sum, zero-weighted above the degree); means [N,3] world; viewmats [C,4,4]
    world-to-camera; dir = mean - camera centre.
    """
    from gsplat.cuda._torch_impl import _spherical_harmonics

    C = viewmats.shape[0]
    N = means.shape[0]
    campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C,3]
    dirs = means[None, :, :] - campos[:, None, :]  # [C,N,3]
    shs = coeffs if coeffs.dim() == 4 else coeffs[None].expand(C, N, -1, 3)
    return torch.clamp_min(_spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)


@njit(cache=True, parallel=True, fastmath=True)
def _sh_rgb(means, coeffs, campos, degree, out):  # pragma: no cover - compiled
    n = means.shape[0]
    for i in prange(n):
        x = means[i, 0] - campos[0]
        y = means[i, 1] - campos[1]
        z = means[i, 2] - campos[2]
        norm = np.sqrt(x * x + y * y + z * z)
        if norm > 1e-12:
            x /= norm
            y /= norm
            z /= norm
        b = np.empty(16, np.float32)
        b[0] = C0
        if degree > 0:
            b[1] = -C1 * y
            b[2] = C1 * z
            b[3] = -C1 * x
        if degree > 1:
            xx, yy, zz = x * x, y * y, z * z
            b[4] = C2A * x * y
            b[5] = C2B * y * z
            b[6] = C2C * (2.0 * zz - xx - yy)
            b[7] = C2B * x * z
            b[8] = C2D * (xx - yy)
            if degree > 2:
                b[9] = C3A * y * (3.0 * xx - yy)
                b[10] = C3B * x * y * z
                b[11] = C3C * y * (4.0 * zz - xx - yy)
                b[12] = C3D * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
                b[13] = C3C * x * (4.0 * zz - xx - yy)
                b[14] = C3E * z * (xx - yy)
                b[15] = C3A * x * (xx - 3.0 * yy)
        nb = (degree + 1) * (degree + 1)
        for c in range(3):
            acc = 0.5
            for k in range(nb):
                acc += b[k] * coeffs[i, k, c]
            out[i, c] = acc if acc > 0.0 else 0.0


def sh_to_rgb(means: torch.Tensor, coeffs: torch.Tensor, campos: torch.Tensor, degree: int) -> torch.Tensor:
    """[N,3] colours in [0, inf) for Gaussians at ``means`` [N,3] with SH ``coeffs`` [N,S,3]
    (S >= (degree+1)^2, degree <= 3) seen from ``campos`` [3]. CPU float32 tensors; CUDA
    tensors go through gsplat's torch implementation."""
    if degree > 3:
        raise ValueError(f"SH degree {degree} > 3")
    if means.is_cuda:
        from gsplat.cuda._torch_impl import _spherical_harmonics

        S = (degree + 1) ** 2
        return (_spherical_harmonics(degree, means - campos, coeffs[:, :S]) + 0.5).clamp_min(0)
    m = np.ascontiguousarray(means.detach().numpy(), dtype=np.float32)
    c = np.ascontiguousarray(coeffs.detach().numpy(), dtype=np.float32)
    out = np.empty((m.shape[0], 3), np.float32)
    if len(m):
        _sh_rgb(m, c, np.asarray(campos.detach().numpy(), dtype=np.float32), int(degree), out)
    return torch.from_numpy(out)
