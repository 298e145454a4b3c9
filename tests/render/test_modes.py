"""gsplat's two optional rasterizer modes on the CPU path: ``rasterize_mode="antialiased"`` and ``absgrad``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_gs.render import rasterize
from pcf_gs.render.projection import project_gaussians, project_gaussians_fused
from pcf_gs.render.rasterize import pixel_contributions, rasterize_pixels
from pcf_gs.render.reference import render_reference
from tests.render.test_render import TOL, TOL_STOP, make_scene, strategy_round


# ----------------------------------------------------------------------------- antialiased


def test_compensation_matches_gsplat_torch_projection():
    """Both projections' compensations against gsplat's own float64 reference projection, and the
    float32 fused kernel against float64 (it computes in float64, so small footprints stay exact)."""
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    W, H, C, N = 64, 48, 2, 400
    means, quats, scales, opac, _, vm, Ks = make_scene(N, W, H, C=C, seed=3, size=0.05, dtype=torch.float64)
    scales = scales * torch.logspace(-3, 0, N, dtype=torch.float64)[:, None]  # down to sub-pixel footprints
    for eps in (0.3, 0.1, 1.0):
        covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
        radii, _, _, _, comp = _fully_fused_projection(means, covars, vm, Ks, W, H, eps2d=eps,
                                                       calc_compensations=True)
        args = (means, quats, scales, opac, vm, Ks, W, H)
        r_t, *_, c_t = project_gaussians(*args, eps2d=eps, compensations=True)
        r_f, *_, c_f = project_gaussians_fused(*args, eps2d=eps, compensations=True)
        r_32, *_, c_32 = project_gaussians_fused(*(t.float() for t in args[:6]), W, H, eps2d=eps, compensations=True)
        ok = (r_t > 0).all(-1) & (radii > 0).all(-1)
        assert ok.sum() > N
        assert torch.equal(r_t, r_f)
        assert torch.allclose(c_t[ok], comp[ok], rtol=1e-9, atol=1e-12)
        assert torch.allclose(c_f[ok], comp[ok], rtol=1e-9, atol=1e-12)
        assert torch.allclose(c_32[ok].double(), comp[ok], rtol=1e-6, atol=1e-7)
        assert (c_f[~(r_f > 0).all(-1)] == 1).all()
        assert (comp[ok] < 0.01).any() and (comp[ok] > 0.5).any()  # small and large footprints both tested


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(0, 80), W=st.integers(1, 40), H=st.integers(1, 40), C=st.integers(1, 2),
       seed=st.integers(0, 10_000), eps=st.sampled_from([0.3, 1.0]), tiny=st.booleans())
def test_antialiased_forward_matches_brute_force(N, W, H, C, seed, eps, tiny):
    """Forward against the float64 brute-force renderer, whose compensation comes from the two
    covariance determinants (not from the conic identity)."""
    scene = make_scene(N, W, H, C=C, seed=seed, size=0.02 if tiny else 0.12)
    out, alpha, meta = rasterize(*scene, W, H, backend="cpu", rasterize_mode="antialiased", eps2d=eps)
    ro, ra, near = render_reference(*scene, W, H, rasterize_mode="antialiased", eps2d=eps)
    tol = np.where(near, TOL_STOP, TOL)
    assert (np.abs(out.double().numpy() - ro).max(-1) <= tol).all()
    assert (np.abs(alpha.double().numpy() - ra)[..., 0] <= tol).all()
    if N:  # gsplat's meta carries the compensated opacities
        *_, comp = project_gaussians_fused(*scene[:4], scene[5], scene[6], W, H, eps2d=eps, compensations=True)
        assert torch.allclose(meta["opacities"], scene[3][None] * comp)


def test_antialiased_differs_from_classic_on_small_gaussians():
    W, H, N = 32, 32, 60
    scene = make_scene(N, W, H, seed=4, size=0.01)
    classic, a_c, _ = rasterize(*scene, W, H, backend="cpu")
    anti, a_a, _ = rasterize(*scene, W, H, backend="cpu", rasterize_mode="antialiased")
    assert a_a.sum() < 0.8 * a_c.sum()  # sub-pixel Gaussians lose the weight the blur added
    with pytest.raises(ValueError, match="rasterize_mode"):
        rasterize(*scene, W, H, backend="cpu", rasterize_mode="mip")


@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_gradcheck_antialiased_float64(mode):
    W, H, C = 20, 18, 2
    means, quats, scales, opac, colors, vm, Ks = make_scene(6, W, H, C=C, D=2, seed=12, size=0.25, spread=0.4,
                                                            dtype=torch.float64)
    vm[1, 0, 3] = 0.2
    bg = torch.rand(C, 2, dtype=torch.float64)

    def f(means, quats, scales, opac, colors):
        o, a, _ = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backgrounds=bg, render_mode=mode,
                            backend="cpu", rasterize_mode="antialiased")
        return o, a

    ins = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("fused", [True, False])
def test_compensation_gradient_float64(fused):
    """gradcheck of the compensation through either projection, including a flat Gaussian (ratio 0)."""
    W, H, C, N = 20, 18, 2, 5
    means, quats, scales, opac, _, vm, Ks = make_scene(N, W, H, C=C, seed=8, size=0.1, spread=0.4,
                                                       dtype=torch.float64)
    scales[0, 2] = 0.0  # flat along z: degenerate 2D covariance in a camera looking down z
    scales[1] = 1e-3  # sub-pixel
    project = project_gaussians_fused if fused else project_gaussians

    def f(means, quats, scales):
        return project(means, quats, scales, opac, vm, Ks, W, H, compensations=True)[4]

    ins = [t.clone().requires_grad_() for t in (means, quats, scales[1:])]
    assert torch.autograd.gradcheck(lambda m, q, s: f(m, q, torch.cat([scales[:1], s])), ins, eps=1e-7,
                                    atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("reuse", [False, True])
def test_antialiased_pixel_render_equals_dense(reuse):
    W, H, C, N, D = 40, 30, 2, 150, 4
    means, quats, scales, opac, colors, vm, Ks = make_scene(N, W, H, C=C, D=D, seed=5, size=0.04)
    out, _, meta = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backend="cpu",
                             rasterize_mode="antialiased")
    pix = torch.randperm(C * H * W, generator=torch.Generator().manual_seed(0))[:300]
    got, _ = rasterize_pixels(means, quats, scales, opac, colors, vm, Ks, W, H, pix, backend="cpu",
                              rasterize_mode="antialiased", reuse=meta if reuse else None)
    assert torch.allclose(got, out.reshape(-1, D)[pix], atol=1e-5)
    offsets, _, ws, _ = pixel_contributions(means, quats, scales, opac, vm, Ks, W, H, pix,
                                            rasterize_mode="antialiased", reuse=meta if reuse else None)
    classic = pixel_contributions(means, quats, scales, opac, vm, Ks, W, H, pix)
    assert ws.sum() < classic[2].sum()  # the compensated weights are smaller


# ----------------------------------------------------------------------------- absgrad


def _per_pixel_abs_grads(scene, W, H, wts, mode):
    """Brute force: back-propagate every pixel's loss on its own and sum |d loss_p / d means2d|."""
    C = scene[5].shape[0]
    total = None
    for c in range(C):
        for y in range(H):
            for x in range(W):
                ins = [t.clone().requires_grad_() for t in scene[:5]]
                o, a, meta = rasterize(*ins, scene[5], scene[6], W, H, backend="cpu", rasterize_mode=mode)
                ((o[c, y, x] * wts[0][c, y, x]).sum() + a[c, y, x, 0] * wts[1][c, y, x]).backward()
                g = meta["means2d"].grad.abs()
                total = g if total is None else total + g
    return total


@pytest.mark.parametrize("mode", ["classic", "antialiased"])
def test_absgrad_is_the_sum_of_per_pixel_absolute_gradients(mode):
    W, H, C, N, D = 13, 11, 2, 25, 3
    scene = make_scene(N, W, H, C=C, D=D, seed=6, size=0.2, spread=0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    wts = (torch.randn(C, H, W, D, generator=g, dtype=torch.float64),
           torch.randn(C, H, W, generator=g, dtype=torch.float64))  # signed: per-pixel gradients cancel in .grad
    ins = [t.clone().requires_grad_() for t in scene[:5]]
    o, a, meta = rasterize(*ins, scene[5], scene[6], W, H, backend="cpu", rasterize_mode=mode, absgrad=True)
    ((o * wts[0]).sum() + (a[..., 0] * wts[1]).sum()).backward()
    m2 = meta["means2d"]
    assert m2.absgrad.shape == (C, N, 2)
    expected = _per_pixel_abs_grads(scene, W, H, wts, mode)
    assert torch.allclose(m2.absgrad, expected, rtol=1e-9, atol=1e-12)
    assert (m2.absgrad >= m2.grad.abs() - 1e-12).all()
    assert (m2.absgrad > m2.grad.abs() + 1e-6).any()  # the signs really cancel somewhere
    # every other gradient is unchanged by the mode
    ins2 = [t.clone().requires_grad_() for t in scene[:5]]
    o2, a2, _ = rasterize(*ins2, scene[5], scene[6], W, H, backend="cpu", rasterize_mode=mode)
    ((o2 * wts[0]).sum() + (a2[..., 0] * wts[1]).sum()).backward()
    for p, q in zip(ins, ins2):
        assert torch.allclose(p.grad, q.grad, rtol=1e-12, atol=1e-15)  # another compiled kernel: summation order


def test_absgrad_drives_gsplat_default_strategy():
    """gsplat's DefaultStrategy(absgrad=True) reads meta["means2d"].absgrad, as on CUDA."""
    W, H = 32, 24
    state, info = strategy_round(W, H, 40, absgrad=True, loss=lambda out: (out - 0.5).abs().sum())
    expected = (info["means2d"].absgrad[0] * torch.tensor([W / 2, H / 2])).norm(dim=-1)
    assert torch.allclose(state["grad2d"], torch.where((info["radii"] > 0).all(-1)[0], expected, 0.0))


# ----------------------------------------------------------------------------- CUDA parity


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gsplat_parity_antialiased_absgrad():
    W, H, N, C, D = 67, 45, 500, 2, 5
    scene = make_scene(N, W, H, C=C, D=D, seed=16, size=0.05)
    wts = torch.randn(C, H, W, D)

    def run(backend, device):
        ins = [t.to(device).clone().requires_grad_() for t in scene[:5]]
        o, a, meta = rasterize(*ins, scene[5].to(device), scene[6].to(device), W, H, backend=backend,
                               rasterize_mode="antialiased", absgrad=True)
        ((o * wts.to(device)).sum() + a.sum()).backward()
        return o.cpu(), meta["means2d"].absgrad.cpu(), [t.grad.cpu() for t in ins]

    oc, ac, gc = run("cpu", "cpu")
    og, ag, gg = run("gsplat", "cuda")
    assert (oc - og).abs().max() < 1e-4
    assert (ac - ag).norm() / ag.norm() < 1e-2
    for a, b in zip(gc, gg):
        assert (a - b).norm() / b.norm().clamp(min=1e-12) < 1e-2
