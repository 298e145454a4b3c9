"""Model attributes, SH colours, EMA, initialisation, densification carrying every attribute."""

from __future__ import annotations

import numpy as np
import torch

from pcf_gs.lift.model import ModelSpec, ema_update_slow, init_params, sh_colors
from pcf_gs.sh import C0, rgb_to_sh0


def test_init_params_shapes_and_values():
    pts = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    spec = ModelSpec(num_classes=4, embed_dim=3, sh_degree=2)
    p = init_params(pts, np.full((40, 3), 0.25, np.float32), spec, init_opacity=0.2)
    assert p["shN"].shape == (40, 8, 3) and p["semantics"].shape == (40, 4)
    assert torch.allclose(torch.sigmoid(p["opacities"]), torch.tensor(0.2))
    assert torch.allclose(p["sh0"][:, 0] * C0 + 0.5, torch.tensor(0.25))
    assert not p["inst_mu_slow"].requires_grad and p["inst_mu"].requires_grad


def test_sh_colors_match_gsplat_convention():
    from gsplat.cuda._torch_impl import _spherical_harmonics

    pts = np.random.default_rng(1).normal(size=(30, 3)).astype(np.float32)
    p = init_params(pts, None, ModelSpec(num_classes=2, sh_degree=3))
    with torch.no_grad():
        p["shN"].normal_(0, 0.3)
        p["sh0"].copy_(rgb_to_sh0(torch.rand(30, 1, 3)))
    vm = torch.eye(4)[None]
    vm[0, 2, 3] = 4.0
    c = sh_colors(p, vm, 3)
    campos = torch.linalg.inv(vm)[0, :3, 3]
    ref = torch.clamp_min(_spherical_harmonics(3, p["means"] - campos, torch.cat([p["sh0"], p["shN"]], 1)) + 0.5, 0)
    assert torch.allclose(c[0], ref, atol=1e-6)
    c0 = sh_colors(p, vm, 0)
    assert torch.allclose(c0[0], torch.clamp_min(p["sh0"][:, 0] * C0 + 0.5, 0))


def test_ema_update():
    p = init_params(np.zeros((5, 3), np.float32), None, ModelSpec(num_classes=2, sh_degree=0))
    with torch.no_grad():
        p["inst_mu"].fill_(1.0)
        p["inst_mu_slow"].fill_(0.0)
    ema_update_slow(p, 0.9)
    assert torch.allclose(p["inst_mu_slow"], torch.tensor(0.1))


def test_random_init_points_are_seen_by_two_views(tiny_mr):
    from pcf_gs.data import load_scene
    from pcf_gs.lift.initial_points import project, random_points_in_view

    root, _ = tiny_mr
    scene = load_scene(root, progress=False)
    pts, col = random_points_in_view(scene, 500, seed=0)
    assert pts.shape == (500, 3) and col.min() >= 0 and col.max() <= 1
    seen = sum(project(pts.astype(np.float64), f.K, f.c2w, f.width, f.height)[3] for f in scene.train_frames)
    assert (seen >= 2).mean() > 0.95


def test_densification_ops_carry_all_attributes():
    from gsplat.strategy.ops import duplicate, remove, split

    p = init_params(np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32), None, ModelSpec(num_classes=3, sh_degree=1))
    opts = {k: torch.optim.Adam([v]) for k, v in p.items() if v.requires_grad}
    state = {"grad2d": torch.zeros(10), "count": torch.zeros(10)}
    duplicate(p, opts, state, torch.tensor([True] * 3 + [False] * 7))
    split(p, opts, state, torch.tensor([True] * 2 + [False] * 11))
    remove(p, opts, state, torch.tensor([False] * 14 + [True]))
    n = len(p["means"])
    assert n == 14 and all(len(v) == n for v in p.values())
    assert not p["inst_var_slow"].requires_grad
