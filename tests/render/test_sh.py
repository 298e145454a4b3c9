"""pcf_gs.sh: the DC-term conversions and the per-camera SH colours."""

from __future__ import annotations

import numpy as np
import torch

from pcf_gs import sh
from pcf_gs.render import cpu_sh


def test_dc_term_round_trip_numpy_and_torch():
    rgb = np.random.default_rng(0).uniform(0, 1, (50, 3))
    assert np.allclose(sh.sh0_to_rgb(sh.rgb_to_sh0(rgb)), rgb, atol=1e-15)
    t = torch.as_tensor(rgb, dtype=torch.float32)
    assert torch.allclose(sh.sh0_to_rgb(sh.rgb_to_sh0(t)), t, atol=1e-6)
    assert sh.sh0_to_rgb(0.0) == 0.5 and sh.sh0_to_rgb(1.0) == sh.C0 + 0.5


def test_sh_colors_shared_and_per_camera_coefficients():
    g = torch.Generator().manual_seed(0)
    N, C = 40, 3
    coeffs = torch.randn(N, 16, 3, generator=g, dtype=torch.float64)
    means = torch.randn(N, 3, generator=g, dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64).repeat(C, 1, 1)
    c2w[:, :3, 3] = torch.randn(C, 3, generator=g, dtype=torch.float64) * 3
    viewmats = torch.linalg.inv(c2w)
    out = sh.sh_colors(coeffs, 3, means, viewmats)
    assert out.shape == (C, N, 3) and (out >= 0).all()
    per_cam = sh.sh_colors(coeffs[None].expand(C, N, 16, 3), 3, means, viewmats)
    assert torch.equal(out, per_cam)
    # the CPU viewer's fused kernel gives the same colours for one camera
    for c in range(C):
        fused = cpu_sh.sh_to_rgb(means.float(), coeffs.float(), c2w[c, :3, 3].float(), 3)
        assert torch.allclose(fused.double(), out[c], atol=2e-5)
    # degree 0 is the base colour, whatever the direction
    dc = sh.sh_colors(coeffs, 0, means, viewmats)
    assert torch.allclose(dc, sh.sh0_to_rgb(coeffs[:, 0]).clamp_min(0).expand(C, N, 3), atol=1e-12)
