"""The native compositing kernels (``cpu_native``) against the numba ones, and the fallback when they cannot build."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_gs.render import cpu_composite as K
from pcf_gs.render import cpu_native
from pcf_gs.render import cpu_projection as P
from pcf_gs.render import rasterize
from tests.render.test_render import make_scene

R = importlib.import_module("pcf_gs.render.rasterize")


def _builds() -> list:
    """Every instruction set this machine can build: native (AVX-512 where the CPU has it), and AVX2 alone."""
    out = []
    for flags in ((), ("-mno-avx512f",)):
        k = cpu_native.load(flags)
        if k is not None and k.isa not in [b.isa for b in out]:
            out.append(k)
    return out


BUILDS = _builds()
needs_native = pytest.mark.skipif(not BUILDS, reason="no C compiler or no AVX2 + FMA: the numba kernels run")


def _kernel_inputs(N, W, H, C, D, seed, size, bg):
    means, quats, scales, opac, colors, vm, Ks = make_scene(N, W, H, C=C, D=D, seed=seed, size=size)
    a = [t.contiguous().numpy() for t in (means, quats, scales, opac, vm, Ks)]
    radii, m2, dep, cn, _ = P.project_fwd(*a, W, H, 0.3, 0.01, 1e10)
    op = np.ascontiguousarray(np.broadcast_to(opac.numpy(), (C, N)))
    tx, ty, (to, fi, go, ge) = R._bin_tiles(m2, cn, op, torch.from_numpy(radii), torch.from_numpy(dep), W, H)
    col = np.ascontiguousarray(np.broadcast_to(colors.numpy(), (C, N, D)).reshape(C * N, D))
    bgs = np.random.default_rng(seed).random((C, D), dtype=np.float32)
    return (m2.reshape(-1, 2), cn.reshape(-1, 3), op.reshape(-1), col, bgs, bg, to, fi, C, W, H, tx, ty)


@needs_native
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(N=st.integers(0, 400), W=st.integers(1, 50), H=st.integers(1, 45), C=st.integers(1, 3),
       D=st.sampled_from([1, 2, 3, 4, 5, 8, 16, 19]),
       seed=st.integers(0, 1000), size=st.sampled_from([0.05, 0.12, 0.4]), bg=st.booleans(),
       build=st.integers(0, 1))
def test_native_matches_numba(N, W, H, C, D, seed, size, bg, build):
    nat = BUILDS[build % len(BUILDS)]
    args = _kernel_inputs(N, W, H, C, D, seed, size, bg)
    ec = K.EXP_C.astype(np.float32)
    o1, t1, l1 = K.composite_fwd(*args, ec)
    o2, t2, l2 = nat.fwd(*args)
    np.testing.assert_allclose(o2, o1, rtol=0, atol=2e-6)
    np.testing.assert_allclose(t2, t1, rtol=0, atol=2e-6)
    # the same Gaussians composite at the same pixels (sigma rounds differently: a threshold may flip, rarely)
    assert (l1 != l2).mean() <= 1e-3
    g = np.random.default_rng(seed)
    vo = g.standard_normal(o1.shape, dtype=np.float32)
    va = g.standard_normal(t1.shape, dtype=np.float32)
    for s1, s2 in zip(K.composite_bwd(*args, t1, l1, vo, va, ec), nat.bwd(*args, t1, l1, vo, va)):
        scale = max(float(np.abs(s1).max(initial=0.0)), 1e-3)
        np.testing.assert_allclose(s2, s1, rtol=0, atol=2e-5 * scale)


@needs_native
def test_rasterize_uses_native_for_the_colour_pass_and_matches_numba(monkeypatch):
    """End to end through ``rasterize`` (projection, compositing, reduction, autograd): the native path and the
    numba path give the same image and the same gradients, float32 rounding apart; float64 and absgrad stay numba."""
    W, H, C, N = 61, 47, 2, 700
    scene = make_scene(N, W, H, C=C, D=3, seed=11, size=0.2)
    bg = torch.rand(C, 3, generator=torch.Generator().manual_seed(3))

    def run():
        s = [t.clone().requires_grad_(k < 5) for k, t in enumerate(scene)]
        out, alpha, _ = rasterize(*s, W, H, backgrounds=bg, backend="cpu")
        w = torch.linspace(0.5, 1.5, out.numel()).reshape(out.shape)
        ((out * w).sum() + alpha.sum()).backward()
        return out.detach(), alpha.detach(), [t.grad for t in s[:5]]

    assert cpu_native.usable(np.zeros((1, 16), np.float32)) is not None  # the feature renders too
    assert cpu_native.usable(np.zeros((1, 3), np.float64)) is None  # float64 (gradchecks): numba
    assert cpu_native.usable(np.zeros((1, 3), np.float32), absgrad=True) is None
    calls = []
    orig = cpu_native.Kernels.fwd
    monkeypatch.setattr(cpu_native.Kernels, "fwd", lambda self, *a: calls.append(1) or orig(self, *a))
    native = run()
    assert calls, "the float32 RGB render did not use the native kernels"
    monkeypatch.setenv("PCF_GS_NATIVE", "0")
    reference = run()
    assert len(calls) == 1
    torch.testing.assert_close(native[0], reference[0], rtol=0, atol=2e-6)
    torch.testing.assert_close(native[1], reference[1], rtol=0, atol=2e-6)
    for gn, gr in zip(native[2], reference[2]):
        torch.testing.assert_close(gn, gr, rtol=1e-4, atol=1e-4 * float(gr.abs().max()))


def test_no_compiler_falls_back_to_numba(monkeypatch, tmp_path):
    """Without a working compiler nothing fails: ``load`` returns None (with one warning for a failed build) and
    ``rasterize`` renders with numba."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(cpu_native.shutil, "which", lambda name: None)
    assert cpu_native.load(directory=tmp_path / "cache") is None
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'error: broken compiler' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cpu_native.shutil, "which", lambda name: str(fake) if name == str(fake) else None)
    monkeypatch.setenv("CC", str(fake))
    with pytest.warns(RuntimeWarning, match="broken compiler"):
        assert cpu_native.load(directory=tmp_path / "cache2") is None
    assert not list((tmp_path / "cache2").glob("*.so"))  # no half-written library left behind
    monkeypatch.setattr(cpu_native, "kernels", lambda: None)
    W, H = 20, 17
    out, _, _ = rasterize(*make_scene(50, W, H), W, H, backend="cpu")
    assert out.shape == (1, H, W, 3) and torch.isfinite(out).all()


def test_other_architectures_use_numba_without_a_warning(monkeypatch, tmp_path):
    import warnings

    monkeypatch.setattr(cpu_native.platform, "machine", lambda: "aarch64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_native.load(directory=tmp_path) is None
    assert not list(tmp_path.glob("*"))


@needs_native
def test_build_is_cached(tmp_path):
    a = cpu_native.build(directory=tmp_path)
    mtime = a.stat().st_mtime_ns
    b = cpu_native.build(directory=tmp_path)
    assert a == b and b.stat().st_mtime_ns == mtime and len(list(tmp_path.glob("*.so"))) == 1


@needs_native
def test_unwritable_cache_falls_back_to_the_temp_dir(monkeypatch, tmp_path):
    """A cache directory that cannot be created (a read-only home) builds into the temp dir, without a warning."""
    import warnings

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PCF_GS_NATIVE_CACHE", str(blocker / "native"))
    monkeypatch.setattr(cpu_native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lib = cpu_native.build()
    assert lib is not None and lib.parent == cpu_native._temp_cache() and lib.exists()
    assert cpu_native.build() == lib  # found there the next time


@needs_native
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(N=st.integers(0, 400), W=st.integers(1, 50), H=st.integers(1, 45), C=st.integers(1, 3),
       seed=st.integers(0, 1000), size=st.sampled_from([0.05, 0.12, 0.4]), n_pix=st.integers(0, 300))
def test_native_pixel_weights_match_numba(N, W, H, C, seed, size, n_pix, monkeypatch):
    """The native walk of ``cpu_pixels.pixel_weights`` lists the same Gaussians, in the same order, with the same
    weights (float32 rounding apart) as the numba walk; repeated and unsorted pixels, several cameras."""
    from pcf_gs.render import cpu_pixels

    m2, cn, op, _, _, _, to, fi, _, _, _, tx, ty = _kernel_inputs(N, W, H, C, 3, seed, size, False)
    pix = np.random.default_rng(seed).integers(0, C * W * H, n_pix).astype(np.int64)
    ec = K.EXP_C.astype(np.float32)
    calls = []
    orig = cpu_native.Kernels.pixel_pass
    with monkeypatch.context() as mp:
        mp.setattr(cpu_native.Kernels, "pixel_pass", lambda self, *a: calls.append(1) or orig(self, *a))
        got = cpu_pixels.pixel_weights(m2, cn, op, to, fi, pix, W, H, tx, ty, ec)
    assert calls or n_pix == 0
    with monkeypatch.context() as mp:  # the fixture is shared by the examples: undo per example
        mp.setenv("PCF_GS_NATIVE", "0")
        ref = cpu_pixels.pixel_weights(m2, cn, op, to, fi, pix, W, H, tx, ty, ec)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[2], ref[2], rtol=0, atol=2e-6)
    np.testing.assert_allclose(got[3], ref[3], rtol=0, atol=2e-6)
