"""Tests of pcf_gs.render: forward vs a brute-force float64 reference, gradients
(gradcheck of the numba kernels in float64, finite differences, float32 vs float64),
meta / DefaultStrategy compatibility, and gsplat parity on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_gs.render import composite, rasterize
from pcf_gs.render.projection import project_gaussians
from pcf_gs.render.reference import rasterize_dense, render_reference

TOL = 1e-5  # forward vs float64 reference
TOL_STOP = 2e-4  # pixels whose transmittance crosses the 1e-4 stop threshold


def make_scene(N, W, H, C=1, D=3, seed=0, per_camera_colors=False, spread=1.0, size=0.12,
               dtype=torch.float32):
    """Random Gaussians in front of C cameras looking down +z (small camera offsets)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N, 3, generator=g) * torch.tensor([spread, spread * H / W, 0.6]) + torch.tensor([0, 0, 4.0])
    quats = torch.randn(N, 4, generator=g)
    scales = torch.rand(N, 3, generator=g) * size + 0.01
    opac = torch.rand(N, generator=g) * 0.98 + 0.01
    colors = torch.rand((C, N, D) if per_camera_colors else (N, D), generator=g)
    vm = torch.eye(4)[None].repeat(C, 1, 1)
    vm[:, :3, 3] = torch.randn(C, 3, generator=g) * 0.1
    f = 1.2 * max(W, H)
    Ks = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])[None].repeat(C, 1, 1)
    Ks[:, 0, 2] += torch.randn(C, generator=g)
    out = [means, quats, scales, opac, colors, vm, Ks]
    return [t.to(dtype) for t in out]


def check_forward(scene, W, H, backgrounds=None, render_mode="RGB", **kw):
    out, alpha, meta = rasterize(*scene, W, H, backgrounds=backgrounds, render_mode=render_mode,
                                 backend="cpu", **kw)
    ro, ra, near = render_reference(*scene, W, H, backgrounds=backgrounds, render_mode=render_mode, **kw)
    C = scene[5].shape[0]
    Xd = ro.shape[-1]
    assert out.shape == (C, H, W, Xd) and alpha.shape == (C, H, W, 1)
    o = out.double().numpy()
    a = alpha.double().numpy()
    if render_mode in ("ED", "RGB+ED"):  # compare accumulated depth: ED = D / alpha amplifies rounding
        o[..., -1] *= np.maximum(a[..., 0], 1e-10)
        ro[..., -1] *= np.maximum(ra[..., 0], 1e-10)
    scale = np.ones(Xd)
    if render_mode != "RGB":
        scale[-1] = max(1.0, float(np.abs(ro[..., -1]).max()))  # depth channel in world units
    tol = np.where(near, TOL_STOP, TOL)
    err = (np.abs(o - ro) / scale).max(-1)
    assert (err <= tol).all(), f"max err {err.max():.3g} (outside stop pixels {np.where(near, 0, err).max():.3g})"
    assert (np.abs(a - ra)[..., 0] <= tol).all()
    return out, alpha, meta, near


# ----------------------------------------------------------------------------- forward


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    N=st.integers(0, 120),
    W=st.integers(1, 50),
    H=st.integers(1, 50),
    C=st.integers(1, 2),
    D=st.sampled_from([1, 3, 5]),
    seed=st.integers(0, 10_000),
    bg=st.booleans(),
    per_cam=st.booleans(),
    mode=st.sampled_from(["RGB", "RGB+ED", "ED", "D"]),
)
def test_forward_matches_reference_random(N, W, H, C, D, seed, bg, per_cam, mode):
    scene = make_scene(N, W, H, C, D, seed, per_camera_colors=per_cam)
    backgrounds = torch.rand(C, D) if bg else None
    check_forward(scene, W, H, backgrounds, mode)


def test_forward_odd_size_many_channels_cameras():
    W, H = 17, 33
    scene = make_scene(150, W, H, C=3, D=64, seed=1, per_camera_colors=True)
    check_forward(scene, W, H, backgrounds=torch.rand(3, 64))
    scene = make_scene(150, W, H, C=1, D=1, seed=2)
    check_forward(scene, W, H)


def test_forward_early_stop_dense_scene():
    # many large, nearly opaque Gaussians: most pixels reach T <= 1e-4 and stop
    W, H = 40, 24
    scene = make_scene(400, W, H, seed=3, size=0.4)
    scene[3] = torch.full((400,), 0.95)
    out, alpha, meta, near = check_forward(scene, W, H, backgrounds=torch.rand(1, 3))
    assert (alpha > 0.9998).float().mean() > 0.5  # the stop rule was really exercised


def test_forward_empty_and_culled():
    W, H = 20, 12
    bg = torch.tensor([[0.2, 0.4, 0.6]])
    # N = 0
    scene = make_scene(0, W, H)
    out, alpha, meta = rasterize(*scene, W, H, backgrounds=bg, backend="cpu")
    assert torch.allclose(out, bg.view(1, 1, 1, 3).expand(1, H, W, 3)) and (alpha == 0).all()
    assert meta["radii"].shape == (1, 0, 2) and meta["means2d"].shape == (1, 0, 2)
    # all behind the camera
    scene = make_scene(50, W, H, seed=4)
    scene[0] = scene[0] * torch.tensor([1.0, 1.0, -1.0])
    out, alpha, meta = rasterize(*scene, W, H, backend="cpu")
    assert (out == 0).all() and (alpha == 0).all() and (meta["radii"] == 0).all()
    check_forward(scene, W, H)
    # all off-screen (and some straddling the border)
    scene = make_scene(60, W, H, seed=5)
    scene[0][:, 0] += torch.where(torch.arange(60) % 2 == 0, 2.0, -2.0) * torch.linspace(0.3, 1.5, 60)
    check_forward(scene, W, H, backgrounds=bg)
    # near / far planes
    scene = make_scene(80, W, H, seed=6)
    check_forward(scene, W, H, near_plane=3.8, far_plane=4.4)


def test_colors_per_camera_equal_shared():
    W, H = 24, 20
    scene = make_scene(60, W, H, C=2, D=4, seed=7)
    a, _, _ = rasterize(*scene, W, H, backend="cpu")
    scene2 = list(scene)
    scene2[4] = scene[4][None].expand(2, -1, -1).contiguous()
    b, _, _ = rasterize(*scene2, W, H, backend="cpu")
    assert torch.equal(a, b)


def test_sh_degree_matches_gsplat_torch_path():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    W, H = 24, 20
    scene = make_scene(60, W, H, seed=8)
    sh = torch.randn(60, 9, 3) * 0.3
    out, _, _ = rasterize(*scene[:4], sh, *scene[5:], W, H, sh_degree=2, backend="cpu")
    campos = torch.inverse(scene[5])[:, :3, 3]
    cols = torch.clamp_min(_spherical_harmonics(2, scene[0][None] - campos[:, None], sh[None]) + 0.5, 0)
    ref, _, _ = rasterize(*scene[:4], cols, *scene[5:], W, H, backend="cpu")
    assert torch.allclose(out, ref, atol=1e-6)


def test_dense_baseline_agrees():
    W, H = 40, 36
    scene = make_scene(200, W, H, seed=9, D=4)
    out, alpha, _ = rasterize(*scene, W, H, backend="cpu")
    do, da = rasterize_dense(*scene, W, H)
    ro, ra, near = render_reference(*scene, W, H)
    # the dense baseline uses a cumulative product for T: agrees up to float rounding
    assert np.abs(do.detach().numpy() - ro)[~near].max() < 1e-5
    assert (do - out).abs().max() < 2e-4


def test_projection_matches_float64_reference():
    from pcf_gs.render.reference import project_reference

    W, H = 64, 48
    scene = make_scene(300, W, H, seed=10, C=2)
    radii, m2, depths, conics = project_gaussians(*scene[:4], scene[5], scene[6], W, H)
    for c in range(2):
        pr = project_reference(*[t.numpy() for t in scene[:4]], scene[5][c].numpy(), scene[6][c].numpy(), W, H)
        v = pr["valid"] & (radii[c] > 0).all(-1).numpy()
        assert np.allclose(m2[c].numpy()[v], pr["means2d"][v], rtol=1e-5, atol=1e-4)
        assert np.allclose(conics[c].numpy()[v], pr["conics"][v], rtol=1e-4, atol=1e-6)
        assert np.allclose(depths[c].numpy(), pr["depths"], rtol=1e-6)
        # radius culling never drops a Gaussian that is valid and on screen
        assert not ((radii[c] == 0).all(-1).numpy() & pr["valid"]
                    & (pr["means2d"][:, 0] > 0) & (pr["means2d"][:, 0] < W)
                    & (pr["means2d"][:, 1] > 0) & (pr["means2d"][:, 1] < H)).any()


def test_fused_projection_matches_torch_projection():
    """numba projection (forward + hand-written backward) == torch autograd projection."""
    from pcf_gs.render.projection import project_gaussians_fused

    W, H, C = 48, 40, 3
    scene = make_scene(200, W, H, C=C, seed=17, dtype=torch.float64)
    vm = scene[5].clone()
    for c in range(1, C):  # rotated cameras
        ang = torch.tensor(0.15 * c, dtype=torch.float64)
        ca, sa = torch.cos(ang), torch.sin(ang)
        vm[c, :3, :3] = torch.tensor([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]], dtype=torch.float64) @ vm[c, :3, :3]
    res = []
    for fn in (project_gaussians, project_gaussians_fused):
        ins = [t.clone().requires_grad_() for t in scene[:3]]
        r, m, d, cn = fn(*ins, scene[3], vm, scene[6], W, H)
        ok = (r > 0).all(-1)
        w = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
             for i, t in enumerate((m, d, cn))]
        (((m * w[0]).sum(-1) + d * w[1] + (cn * w[2]).sum(-1)) * ok).sum().backward()
        res.append((r, m, d, cn, ok, [t.grad for t in ins]))
    (r0, m0, d0, c0, ok0, g0), (r1, m1, d1, c1, ok1, g1) = res
    assert torch.equal(r0, r1) and ok0.any()
    assert torch.allclose(m0[ok0], m1[ok0], atol=1e-9) and torch.allclose(c0[ok0], c1[ok0], rtol=1e-9, atol=1e-12)
    assert torch.allclose(d0, d1)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


# ----------------------------------------------------------------------------- gradients


def _tiny_scene(seed=0, N=6, W=20, H=18, C=2, D=2):
    s = make_scene(N, W, H, C=C, D=D, seed=seed, size=0.25, spread=0.4, dtype=torch.float64)
    s[5][1, 0, 3] = 0.2
    return s


@pytest.mark.parametrize("D", [3, 6])  # the kernels' dense (D <= 4) and sparse per-row colour passes
def test_gradcheck_composite_kernels_float64(D):
    """gradcheck of the numba compositing Function alone (precise exp path)."""
    W, H, C, N = 21, 19, 2, 8
    s = _tiny_scene(seed=11, N=N, W=W, H=H, C=C, D=D)
    radii, m2, depths, conics = project_gaussians(*s[:4], s[5], s[6], W, H)
    assert (radii > 0).all(-1).sum() >= N  # the Gaussians are really drawn
    opac = s[3][None].expand(C, N).contiguous()
    cols = torch.rand(C, N, D, dtype=torch.float64)
    bg = torch.rand(C, D, dtype=torch.float64)
    ins = [t.detach().clone().requires_grad_() for t in (m2, conics, opac, cols, bg)]

    def f(m2, cn, op, col, bg):
        return composite(m2, cn, op, col, bg, radii, depths.detach(), W, H)

    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_gradcheck_full_pipeline_float64(mode):
    W, H = 20, 18
    s = _tiny_scene(seed=12, W=W, H=H)
    bg = torch.rand(2, 2, dtype=torch.float64)
    means, quats, scales, opac, colors, vm, Ks = s

    def f(means, quats, scales, opac, colors):
        o, a, _ = rasterize(means, quats, scales, opac, colors, vm, Ks, W, H, backgrounds=bg,
                            render_mode=mode, backend="cpu")
        return o, a

    ins = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
    assert torch.autograd.gradcheck(f, ins, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def _loss_and_grads(scene, W, H, weights, dtype):
    ins = [t.to(dtype).clone().requires_grad_() for t in scene[:5]]
    o, a, _ = rasterize(*ins, scene[5].to(dtype), scene[6].to(dtype), W, H, backend="cpu",
                        render_mode="RGB+ED", backgrounds=torch.full((1, 3), 0.3, dtype=dtype))
    loss = (o * weights[0].to(dtype)).sum() + (a * weights[1].to(dtype)).sum()
    loss.backward()
    return loss.item(), [t.grad for t in ins]


def test_gradients_larger_scene_fd_and_float32():
    """Larger scene: float64 analytic gradients vs central differences at random entries,
    and float32 (fast exp, float32 kernels) vs float64 gradients."""
    W, H, N = 64, 48, 300
    scene = make_scene(N, W, H, seed=13, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    weights = (torch.rand(1, H, W, 4, generator=g, dtype=torch.float64),
               torch.rand(1, H, W, 1, generator=g, dtype=torch.float64))
    _, g64 = _loss_and_grads(scene, W, H, weights, torch.float64)
    _, g32 = _loss_and_grads(scene, W, H, weights, torch.float32)
    for a, b in zip(g32, g64):
        rel = (a.double() - b).norm() / b.norm()
        assert rel < 2e-3, rel
    rng = np.random.default_rng(0)
    for k in range(5):
        for _ in range(4):
            idx = tuple(rng.integers(0, n) for n in scene[k].shape)
            h = 1e-5 * max(1.0, abs(scene[k][idx].item()))
            sp = [t.clone() for t in scene]
            sm = [t.clone() for t in scene]
            sp[k][idx] += h
            sm[k][idx] -= h
            with torch.no_grad():
                lp = _loss_and_grads_nograd(sp, W, H, weights)
                lm = _loss_and_grads_nograd(sm, W, H, weights)
            fd = (lp - lm) / (2 * h)
            an = g64[k][idx].item()
            assert abs(fd - an) <= 1e-4 + 1e-3 * abs(an), (k, idx, fd, an)


def _loss_and_grads_nograd(scene, W, H, weights):
    o, a, _ = rasterize(*scene, W, H, backend="cpu", render_mode="RGB+ED",
                        backgrounds=torch.full((1, 3), 0.3, dtype=torch.float64))
    return ((o * weights[0]).sum() + (a * weights[1]).sum()).item()


# ----------------------------------------------------------------------------- meta / strategy


def test_meta_and_means2d_grad():
    W, H, C, N = 33, 17, 2, 50
    scene = make_scene(N, W, H, C=C, seed=14)
    params = [t.clone().requires_grad_() for t in scene[:5]]
    out, alpha, meta = rasterize(*params, scene[5], scene[6], W, H, backend="cpu")
    for key in ("means2d", "radii", "depths", "conics", "width", "height", "n_cameras", "gaussian_ids"):
        assert key in meta
    assert meta["means2d"].shape == (C, N, 2) and meta["depths"].shape == (C, N)
    assert meta["radii"].shape == (C, N, 2) and meta["radii"].dtype == torch.int32
    assert meta["gaussian_ids"] is None and meta["n_cameras"] == C
    assert (meta["width"], meta["height"]) == (W, H)
    out.sum().backward()
    g = meta["means2d"].grad
    assert g is not None and g.shape == (C, N, 2)
    visible = (meta["radii"] > 0).all(-1)
    assert (g[~visible] == 0).all() and (g[visible].abs().sum(-1) > 0).any()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def strategy_round(W, H, N, absgrad=False, loss=lambda out: out.sum()):
    """One gsplat DefaultStrategy pre/post-backward round around a CPU render of ``make_scene(N, W, H, seed=15)``
    (no refinement yet): returns (state, render meta)."""
    from gsplat.strategy import DefaultStrategy

    scene = make_scene(N, W, H, seed=15)
    params = torch.nn.ParameterDict({
        "means": scene[0], "scales": torch.log(scene[2]), "quats": scene[1],
        "opacities": torch.logit(scene[3]), "colors": scene[4],
    })
    opts = {k: torch.optim.Adam([v], lr=1e-3) for k, v in params.items()}
    strat = DefaultStrategy(refine_start_iter=10_000, absgrad=absgrad)
    strat.check_sanity(params, opts)
    state = strat.initialize_state()
    out, _, info = rasterize(params["means"], params["quats"], torch.exp(params["scales"]),
                             torch.sigmoid(params["opacities"]), params["colors"], scene[5], scene[6],
                             W, H, backend="cpu", absgrad=absgrad)
    strat.step_pre_backward(params, opts, state, 1, info)
    loss(out).backward()
    strat.step_post_backward(params, opts, state, 1, info, packed=False)
    return state, info


def test_default_strategy_update_state():
    N = 40
    state, info = strategy_round(32, 24, N)
    assert state["grad2d"].shape == (N,) and (state["grad2d"] > 0).any()
    assert torch.equal(state["count"] > 0, (info["radii"] > 0).all(-1)[0])


def test_backend_validation():
    scene = make_scene(5, 8, 8)
    with pytest.raises(ValueError):
        rasterize(*scene, 8, 8, backend="nope")
    with pytest.raises(ValueError):
        rasterize(*scene, 8, 8, render_mode="XYZ")


# ----------------------------------------------------------------------------- CUDA parity


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["RGB", "RGB+ED"])
def test_gsplat_parity(mode):
    W, H, N, C, D = 67, 45, 500, 2, 5
    scene = make_scene(N, W, H, C=C, D=D, seed=16)
    bg = torch.rand(C, D)
    wts = torch.rand(C, H, W, D + (1 if mode != "RGB" else 0))

    def run(backend, device):
        ins = [t.to(device).clone().requires_grad_() for t in scene[:5]]
        o, a, meta = rasterize(*ins, scene[5].to(device), scene[6].to(device), W, H,
                               backgrounds=bg.to(device), render_mode=mode, backend=backend)
        ((o * wts.to(device)).sum() + a.sum()).backward()
        return o.cpu(), a.cpu(), meta["radii"].cpu(), [t.grad.cpu() for t in ins]

    oc, ac, rc, gc = run("cpu", "cpu")
    og, ag, rg, gg = run("gsplat", "cuda")
    assert (oc[..., :D] - og[..., :D]).abs().max() < 1e-4
    assert (ac - ag).abs().max() < 1e-4
    assert ((rc > 0).all(-1) == (rg > 0).all(-1)).float().mean() > 0.999
    for a, b in zip(gc, gg):
        assert (a - b).norm() / b.norm().clamp(min=1e-12) < 1e-2
