"""Losses against hand-computed values, edge cases and float64 gradcheck."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_gs.lift.losses import (
    appearance_loss,
    concentration_loss,
    cross_view_loss,
    pixel_contrastive_loss,
    psnr,
    semantic_loss,
    ssim,
    variance_regularizer,
    view_centroids,
)

T = lambda *a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


def test_contrastive_hand_value():
    # one fast pixel (mu 0, var 1, label 1); slow: (0, 1, label 1), (2, 1, label 2)
    # K = 1 and exp(-4/8); loss = -log(e^(1/t) / (e^(1/t) + e^(K2/t)))
    for t in (1.0, 0.5):
        loss = pixel_contrastive_loss(
            T(0.0)[:, None], T(1.0)[:, None], torch.tensor([1]),
            T(0.0, 2.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 2]), temperature=t,
        )
        k2 = math.exp(-0.5)
        ref = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(k2 / t)))
        assert math.isclose(loss.item(), ref, rel_tol=1e-12)


def test_contrastive_rows_without_positive_are_skipped():
    loss = pixel_contrastive_loss(
        T(0.0, 5.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 3]),
        T(0.0, 2.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 2]),
    )
    ref = -math.log(math.e / (math.e + math.exp(math.exp(-0.5))))
    assert math.isclose(loss.item(), ref, rel_tol=1e-12)
    none = pixel_contrastive_loss(T(0.0)[:, None], T(1.0)[:, None], torch.tensor([4]),
                                  T(0.0)[:, None], T(1.0)[:, None], torch.tensor([1]))
    assert none.item() == 0.0


def test_concentration_hand_value():
    # fast pixel mu 1, var 1, conf 0.5; slow pixels of the same label: (0, 1) and (2, 3) -> centroid (1, 2)
    loss = concentration_loss(
        T(1.0)[:, None], T(1.0)[:, None], torch.tensor([7]),
        T(0.0, 2.0)[:, None], T(1.0, 3.0)[:, None], torch.tensor([7, 7]),
        confidence_f=T(0.5),
    )
    r = 1 / math.sqrt(2)
    k = 1 / math.sqrt((r + 1 / r) / 2)
    assert math.isclose(loss.item(), -0.5 * k, rel_tol=1e-12)


def test_concentration_averages_over_labels():
    # two labels, one pixel each, perfect matches -> K = 1 for both -> -1
    loss = concentration_loss(
        T(0.0, 3.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 2]),
        T(0.0, 3.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 2]),
    )
    assert math.isclose(loss.item(), -1.0, rel_tol=1e-12)


def test_variance_regularizer():
    var = T(1.0, 2.0, 4.0)[None].repeat(2, 1)
    assert math.isclose(variance_regularizer(var).item(), math.log(8.0), rel_tol=1e-12)


def test_view_centroids_min_pixels():
    mu = torch.arange(12, dtype=torch.float64)[:, None]
    lab = torch.tensor([1] * 11 + [2])
    c_mu, c_var, keep = view_centroids(mu, torch.ones_like(mu), lab, min_pixels=10)
    assert keep.tolist() == [True, False] and math.isclose(c_mu[0].item(), 5.0)
    # with the label range given: one slot per label (0 and 2 unused), same centroid
    c_mu, c_var, keep = view_centroids(mu, torch.ones_like(mu), lab, min_pixels=10, num_labels=4)
    assert keep.tolist() == [False, True, False, False] and math.isclose(c_mu[1].item(), 5.0)
    assert torch.all(c_var[~keep] == 1)


def test_cross_view_mines_confident_matches():
    mu1 = T(0.0, 10.0)[:, None]
    mu2 = T(0.1, -10.0)[:, None]
    v = T(1.0, 1.0)[:, None]
    loss, frac = cross_view_loss(mu1, v, None, mu2, v, None, tau=0.9)
    k = math.exp(-0.01 / 8)
    assert math.isclose(frac.item(), 0.5)
    assert math.isclose(loss.item(), -math.log(k), rel_tol=1e-9)
    loss0, frac0 = cross_view_loss(mu1, v, None, mu2 + 100, v, None, tau=0.9)
    assert loss0.item() == 0.0 and frac0.item() == 0.0


def test_semantic_loss_confidence_weighting():
    logits = T(0.0, 0.0)[None].repeat(2, 1)
    lab = torch.tensor([0, 1])
    assert math.isclose(semantic_loss(logits, lab).item(), math.log(2), rel_tol=1e-12)
    assert math.isclose(semantic_loss(logits, lab, T(1.0, 0.0)).item(), math.log(2) / 2, rel_tol=1e-12)


def test_ssim_and_psnr():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 24, 3, generator=g)
    assert math.isclose(ssim(x, x).item(), 1.0, rel_tol=1e-5)
    assert ssim(x, torch.rand(20, 24, 3, generator=g)).item() < 0.2
    assert math.isclose(psnr(x, x + 0.1).item(), 20.0, rel_tol=1e-4)
    assert appearance_loss(x, x).item() < 1e-6


def test_gradcheck_instance_losses():
    g = torch.Generator().manual_seed(3)
    mu_f = torch.randn(6, 3, dtype=torch.float64, generator=g, requires_grad=True)
    var_f = (torch.rand(6, 3, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    mu_s = torch.randn(7, 3, dtype=torch.float64, generator=g)
    var_s = torch.rand(7, 3, dtype=torch.float64, generator=g) + 0.5
    lf = torch.tensor([0, 0, 1, 1, 2, 2])
    ls = torch.tensor([0, 1, 1, 2, 2, 2, 3])
    assert torch.autograd.gradcheck(lambda m, v: pixel_contrastive_loss(m, v, lf, mu_s, var_s, ls, 0.7), (mu_f, var_f))
    assert torch.autograd.gradcheck(lambda m, v: concentration_loss(m, v, lf, mu_s, var_s, ls), (mu_f, var_f))
    assert torch.autograd.gradcheck(lambda m, v: cross_view_loss(m, v, None, mu_s, var_s, None, tau=0.0)[0], (mu_f, var_f))


def test_ssim_matches_2d_window_formula():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 17, 19, 3, generator=g, dtype=torch.float64), torch.rand(1, 17, 19, 3, generator=g, dtype=torch.float64)
    k = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-(k**2) / (2 * 1.5**2))
    w1 = w1 / w1.sum()
    w = (w1[:, None] * w1[None, :]).expand(3, 1, 11, 11)
    a, b = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    f = lambda t: F.conv2d(t, w, padding=5, groups=3)  # noqa: E731
    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    ref = (((2 * mx * my + 1e-4) * (2 * sxy + 9e-4)) / ((mx**2 + my**2 + 1e-4) * (sxx + syy + 9e-4))).mean()
    assert torch.allclose(ssim(x, y), ref, atol=1e-12)


def test_balanced_temperature_gives_positives_half_the_mass_at_perfect_separation():
    # one anchor (label 1) against n+ positives at K = 1 and n- negatives at K ~ 0: loss = log 2 when n-/n+ >= e
    for n_pos, n_neg in ((1, 9), (3, 40), (2, 6)):
        mu_s = torch.cat([torch.zeros(n_pos), torch.full((n_neg,), 100.0)])[:, None].double()
        lab_s = torch.tensor([1] * n_pos + [2] * n_neg)
        loss = pixel_contrastive_loss(T(0.0)[:, None], T(1.0)[:, None], torch.tensor([1]),
                                      mu_s, torch.ones_like(mu_s), lab_s, balanced=True)
        assert math.isclose(loss.item(), math.log(2.0), rel_tol=1e-9)
    # n-/n+ < e: clamped to t = 1, the released code's loss
    mu_s = T(0.0, 100.0)[:, None]
    a = pixel_contrastive_loss(T(0.0)[:, None], T(1.0)[:, None], torch.tensor([1]), mu_s, torch.ones_like(mu_s),
                               torch.tensor([1, 2]), balanced=True)
    b = pixel_contrastive_loss(T(0.0)[:, None], T(1.0)[:, None], torch.tensor([1]), mu_s, torch.ones_like(mu_s),
                               torch.tensor([1, 2]), temperature=1.0)
    assert a.item() == b.item()


def test_balanced_temperature_gradcheck():
    g = torch.Generator().manual_seed(3)
    mu_f = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    var_f = (torch.rand(5, 3, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    mu_s, var_s = torch.randn(12, 3, dtype=torch.float64, generator=g), torch.rand(12, 3, dtype=torch.float64, generator=g) + 0.5
    lab_f, lab_s = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 0, 1])
    assert torch.autograd.gradcheck(
        lambda m, v: pixel_contrastive_loss(m, v, lab_f, mu_s, var_s, lab_s, balanced=True), (mu_f, var_f))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=12), st.lists(st.integers(0, 5), min_size=2, max_size=12),
       st.integers(0, 3))
def test_label_slots_give_the_same_losses_as_distinct_labels(lf, ls, min_pixels):
    # the sync-free form (labels used as slots 0..num_labels-1, masks instead of boolean indexing) against the
    # torch.unique form, on any labelling: rows without positives, labels only on one side, nothing kept
    g = torch.Generator().manual_seed(len(lf) * 13 + len(ls))
    mu_f, mu_s = torch.randn(len(lf), 3, generator=g, dtype=torch.float64), torch.randn(len(ls), 3, generator=g, dtype=torch.float64)
    var_f = torch.rand(len(lf), 3, generator=g, dtype=torch.float64) + 0.5
    var_s = torch.rand(len(ls), 3, generator=g, dtype=torch.float64) + 0.5
    lab_f, lab_s = torch.tensor(lf), torch.tensor(ls)
    a = concentration_loss(mu_f, var_f, lab_f, mu_s, var_s, lab_s)
    b = concentration_loss(mu_f, var_f, lab_f, mu_s, var_s, lab_s, num_labels=6)
    assert torch.allclose(a, b, atol=1e-12)
    # cross-view: slots with masks against the kept centroids alone
    c1, c2 = view_centroids(mu_f, var_f, lab_f, min_pixels, num_labels=6), view_centroids(mu_s, var_s, lab_s, min_pixels, num_labels=6)
    loss, frac = cross_view_loss(*c1, *c2, tau=0.5)
    k1, k2 = c1[2], c2[2]
    ref, ref_frac = cross_view_loss(c1[0][k1], c1[1][k1], None, c2[0][k2], c2[1][k2], None, tau=0.5)
    assert torch.allclose(loss, ref, atol=1e-12) and torch.allclose(frac, ref_frac)


def test_rows_without_positives_get_no_gradient():
    mu_f = T(0.0, 5.0)[:, None].requires_grad_()
    loss = pixel_contrastive_loss(mu_f, T(1.0, 1.0)[:, None], torch.tensor([1, 3]),
                                  T(0.0, 2.0)[:, None], T(1.0, 1.0)[:, None], torch.tensor([1, 2]), balanced=True)
    loss.backward()
    assert torch.isfinite(mu_f.grad).all() and mu_f.grad[1].item() == 0.0
