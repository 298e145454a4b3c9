"""Colours of SH for one camera, fused in one numba kernel (the viewer's hot path, where it
replaces ~15 separate torch ops over all Gaussians). The basis and constants are those of
:mod:`pcf_gs.sh`; ``tests/render/test_sh.py`` and ``tests/viewer/test_viewer.py`` check it
against gsplat's torch implementation.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from pcf_gs.sh import C0, C1, C2A, C2B, C2C, C2D, C3A, C3B, C3C, C3D, C3E


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
