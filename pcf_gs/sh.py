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

Two evaluators: :func:`sh_colors` here (gsplat's torch implementation, differentiable,
one colour per camera and Gaussian: training and the CPU rasterizer) and
:func:`pcf_gs.render.cpu_sh.sh_to_rgb` (one camera, fused in one numba kernel: the
viewer's hot path).

It sits outside ``pcf_gs.render`` (whose package import loads torch) and imports neither
torch nor numba itself, so the DC-term helpers cost nothing to import: ``pcf-gs edit``
works on numpy arrays only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

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
    import torch
    from gsplat.cuda._torch_impl import _spherical_harmonics

    C = viewmats.shape[0]
    N = means.shape[0]
    campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C,3]
    dirs = means[None, :, :] - campos[:, None, :]  # [C,N,3]
    shs = coeffs if coeffs.dim() == 4 else coeffs[None].expand(C, N, -1, 3)
    return torch.clamp_min(_spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)
