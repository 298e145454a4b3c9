"""rasterize_pixels: the dense render gathered at listed pixels, exactly, and its feature gradient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_gs.render import rasterize
from pcf_gs.render.rasterize import rasterize_pixels
from tests.render.test_render import make_scene


def _pixels(C, W, H, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, C * W * H, (n,), generator=g)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    N=st.integers(0, 300), W=st.integers(1, 45), H=st.integers(1, 40), C=st.integers(1, 3), D=st.integers(1, 9),
    seed=st.integers(0, 1000), per_cam=st.booleans(), dense=st.booleans(),
)
def test_matches_dense_render_float64(N, W, H, C, D, seed, per_cam, dense):
    scene = make_scene(N, W, H, C=C, D=D, seed=seed, per_camera_colors=per_cam, size=0.4 if dense else 0.12,
                       dtype=torch.float64)
    if dense:  # nearly opaque: most pixels hit the T <= 1e-4 stop
        scene[3] = torch.full((N,), 0.95, dtype=torch.float64)
    out, alpha, _ = rasterize(*scene, W, H)
    pix = _pixels(C, W, H, 200, seed)
    got, got_a = rasterize_pixels(*scene, W, H, pix)
    torch.testing.assert_close(got, out.reshape(-1, D)[pix], rtol=0, atol=1e-12)
    torch.testing.assert_close(got_a, alpha.reshape(-1, 1)[pix], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reuse_of_the_colour_pass_and_feature_gradient(dtype):
    W, H, C, N = 53, 37, 2, 400
    means, quats, scales, opac, _, vm, Ks = make_scene(N, W, H, C=C, D=3, seed=4, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(N, 3, dtype=dtype, generator=g)
    feats = torch.rand(N, 7, dtype=dtype, generator=g)
    means_g = means.clone().requires_grad_(True)  # the colour pass with geometry gradients, as in training
    _, _, meta = rasterize(means_g, quats, scales, opac, rgb, vm, Ks, W, H)
    pix = _pixels(C, W, H, 300, 2)
    weights = torch.rand(300, 7, dtype=dtype, generator=g)

    f1 = feats.clone().requires_grad_(True)
    dense, _, _ = rasterize(means, quats, scales, opac, f1, vm, Ks, W, H)
    (dense.reshape(-1, 7)[pix] * weights).sum().backward()
    f2 = feats.clone().requires_grad_(True)
    got, _ = rasterize_pixels(means, quats, scales, opac, f2, vm, Ks, W, H, pix, reuse=meta)
    (got * weights).sum().backward()
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(got, dense.reshape(-1, 7)[pix].detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(f2.grad, f1.grad, rtol=tol, atol=tol)


def test_geometry_gradient_falls_back_to_the_dense_render():
    W, H, C, N = 24, 20, 1, 60
    scene = make_scene(N, W, H, C=C, D=4, seed=7, dtype=torch.float64)
    pix = _pixels(C, W, H, 50, 0)
    for k in range(4):  # each geometry input alone
        s1 = [t.clone() for t in scene]
        s1[k].requires_grad_(True)
        out, _, _ = rasterize(*s1, W, H)
        out.reshape(-1, 4)[pix].sum().backward()
        s2 = [t.clone() for t in scene]
        s2[k].requires_grad_(True)
        got, _ = rasterize_pixels(*s2, W, H, pix)
        got.sum().backward()
        torch.testing.assert_close(s2[k].grad, s1[k].grad)


@pytest.mark.parametrize("scratch_slots", [1, 700])
def test_small_scratch_batches_give_the_same_lists(scratch_slots, monkeypatch):
    """The single pass writes into scratch space batch by batch; any batch size gives the same lists,
    in the caller's pixel order (repeats and several cameras included)."""
    import numpy as np

    from pcf_gs.render import cpu_pixels
    from pcf_gs.render.rasterize import pixel_contributions

    W, H, C, N = 45, 38, 2, 300
    means, quats, scales, opac, _, vm, Ks = make_scene(N, W, H, C=C, D=3, seed=3, size=0.3)
    pix = _pixels(C, W, H, 400, 5)
    pix[:30] = pix[0]
    ref = pixel_contributions(means, quats, scales, opac, vm, Ks, W, H, pix)
    assert ref[0][-1] > 1000  # enough contributions for several batches
    orig = cpu_pixels.pixel_weights
    calls = []

    def small(*args):
        calls.append(1)
        return orig(*args, scratch_slots)

    monkeypatch.setattr(cpu_pixels, "pixel_weights", small)
    got = pixel_contributions(means, quats, scales, opac, vm, Ks, W, H, pix)
    assert calls == [1]
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a, b)
