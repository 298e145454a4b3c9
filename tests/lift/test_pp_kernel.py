"""PP kernel: closed form, K(p,p)=1, symmetry, range, RBF limit (Corollary 1), gradients."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_gs.lift.pp_kernel import activate_var, pairwise_pp_kernel, pairwise_pp_log_kernel, pp_kernel, pp_log_kernel, rbf_kernel


def closed_form(mu1, v1, mu2, v2):
    """Bhattacharyya coefficient of two diagonal Gaussians, from the textbook formula."""
    s1, s2 = np.sqrt(v1), np.sqrt(v2)
    out = 1.0
    for d in range(len(mu1)):
        r = s1[d] / s2[d]
        out *= math.exp(-((mu1[d] - mu2[d]) ** 2) / (4 * (v1[d] + v2[d]))) / math.sqrt((r + 1 / r) / 2)
    return out


def test_hand_computed_value():
    # 1D: mu 0 vs 1, var 1 vs 4 -> exp(-1/20) / sqrt((0.5 + 2) / 2)
    k = pp_kernel(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([4.0]))
    assert math.isclose(k.item(), math.exp(-1 / 20) / math.sqrt(1.25), rel_tol=1e-6)


def test_bhattacharyya_integral_1d():
    # K = integral sqrt(p q) dx, checked numerically
    x = np.linspace(-30, 30, 200001)
    p = np.exp(-((x - 0.3) ** 2) / (2 * 0.7)) / np.sqrt(2 * np.pi * 0.7)
    q = np.exp(-((x + 1.1) ** 2) / (2 * 2.5)) / np.sqrt(2 * np.pi * 2.5)
    ref = np.trapezoid(np.sqrt(p * q), x)
    k = pp_kernel(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64),
                  torch.tensor([-1.1], dtype=torch.float64), torch.tensor([2.5], dtype=torch.float64))
    assert abs(k.item() - ref) < 1e-6


vec = st.lists(st.floats(-5, 5), min_size=3, max_size=3)
pos = st.lists(st.floats(0.01, 10), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(vec, pos, vec, pos)
def test_matches_closed_form_and_properties(m1, v1, m2, v2):
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    k = pp_kernel(t(m1), t(v1), t(m2), t(v2)).item()
    assert math.isclose(k, closed_form(np.array(m1), np.array(v1), np.array(m2), np.array(v2)), rel_tol=1e-9, abs_tol=1e-300)
    assert 0.0 <= k <= 1.0 + 1e-12
    assert math.isclose(k, pp_kernel(t(m2), t(v2), t(m1), t(v1)).item(), rel_tol=1e-12, abs_tol=1e-300)
    assert math.isclose(pp_kernel(t(m1), t(v1), t(m1), t(v1)).item(), 1.0, rel_tol=1e-12)


def test_rbf_limit_corollary_1():
    g = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(50, 3, generator=g), torch.randn(50, 3, generator=g)
    s = 0.37
    var = torch.full((50, 3), s)
    assert torch.allclose(pp_kernel(mu_a, var, mu_b, var), rbf_kernel(mu_a, mu_b, s), atol=1e-6)


def test_pairwise_matches_elementwise_and_chunks():
    g = torch.Generator().manual_seed(1)
    A, B = 37, 23
    mu_a, mu_b = torch.randn(A, 3, generator=g), torch.randn(B, 3, generator=g)
    va, vb = activate_var(torch.randn(A, 3, generator=g)), activate_var(torch.randn(B, 3, generator=g))
    full = pairwise_pp_log_kernel(mu_a, va, mu_b, vb)
    chunked = pairwise_pp_log_kernel(mu_a, va, mu_b, vb, chunk=5)
    assert full.shape == (A, B) and torch.allclose(full, chunked)
    i, j = 11, 17
    assert torch.allclose(full[i, j], pp_log_kernel(mu_a[i], va[i], mu_b[j], vb[j]))
    assert torch.allclose(pairwise_pp_kernel(mu_a, va, mu_b, vb), full.exp())


def test_activate_var_floor():
    x = torch.tensor([-1e6, -3.0, 0.0, 2.0])
    v = activate_var(x, floor=0.01)
    assert torch.all(v > 0.01 - 1e-9) and math.isclose(v[2].item(), 1.01, rel_tol=1e-6)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    mu_a = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    mu_b = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    ra = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    rb = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    f = lambda a, b, c, d: pairwise_pp_log_kernel(a, activate_var(c), b, activate_var(d))  # noqa: E731
    assert torch.autograd.gradcheck(f, (mu_a, mu_b, ra, rb))


def test_log_space_is_stable_far_apart():
    k = pp_log_kernel(torch.tensor([0.0]), torch.tensor([0.01]), torch.tensor([1e3]), torch.tensor([0.01]))
    assert torch.isfinite(k) and k.item() < -1e6
