"""``rasterize``: one entry point, gsplat on CUDA, numba kernels on CPU.

The CPU path = torch EWA projection (``projection.py``, autograd) + tile binning and
compositing kernels (``cpu_binning.py``, ``cpu_composite.py``) wrapped in ``_Composite``, a
``torch.autograd.Function`` whose backward is the numba backward kernel. Float32 renders (without
``absgrad``) composite with the native kernels of ``cpu_native.py`` instead when this machine can build
them (same rules, float32 rounding apart).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from pcf_gs.render.constants import TILE
from pcf_gs.render.projection import project_gaussians, project_gaussians_fused
from pcf_gs.sh import sh_colors

_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
RASTERIZE_MODES = ("classic", "antialiased")


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Composite(torch.autograd.Function):
    """Alpha compositing of projected Gaussians (native or numba forward and backward).

    Inputs (per image i of I, N Gaussians): means2d [I,N,2], conics [I,N,3],
    opacities [I,N], colors [I,N,D], backgrounds [I,D] or None, plus the
    non-differentiable radii [I,N,2] int32 and depths [I,N].
    Outputs: colors [I,H,W,D], alphas [I,H,W,1].

    ``absgrad``: the backward also sets ``means2d.absgrad`` [I,N,2], the per-pixel absolute 2D-mean
    gradients summed per Gaussian (gsplat's ``absgrad=True``; read by its strategies' ``absgrad`` mode).
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, backgrounds, radii, depths, width, height, bins_out=None,
                absgrad=False):
        from pcf_gs.render import cpu_composite as K
        from pcf_gs.render import cpu_native

        I, N = opacities.shape
        D = colors.shape[-1]
        dtype = colors.dtype
        m2 = _np(means2d.to(dtype))
        cn = _np(conics.to(dtype))
        op = _np(opacities.to(dtype))
        col = _np(colors).reshape(I * N, D)
        tiles_x, tiles_y, (tile_off, flat_ids, g_off, g_ent) = _bin_tiles(m2, cn, op, radii, depths, width, height)
        if bins_out is not None:  # the tile lists, for a later render of the same projection (rasterize_pixels)
            bins_out.update(tile_offsets=tile_off, flat_ids=flat_ids, dtype=dtype)
        has_bg = backgrounds is not None
        bg = _np(backgrounds.to(dtype)) if has_bg else np.zeros((I, D), col.dtype)
        ec = K.EXP_C.astype(col.dtype)
        m2f, cnf, opf = m2.reshape(I * N, 2), cn.reshape(I * N, 3), op.reshape(I * N)
        native = cpu_native.usable(col, absgrad)
        fwd = native.fwd if native is not None else functools.partial(K.composite_fwd, ec=ec)
        out, t_final, last = fwd(m2f, cnf, opf, col, bg, has_bg, tile_off, flat_ids, I, width, height, tiles_x, tiles_y)
        ctx.native = native
        ctx.state = (m2f, cnf, opf, col, bg, has_bg, tile_off, flat_ids, g_off, g_ent, t_final, last, ec)
        ctx.dims = (I, N, D, width, height, tiles_x, tiles_y)
        ctx.bg_shape = None if backgrounds is None else backgrounds.shape
        ctx.n_isects = int(flat_ids.shape[0])
        ctx.absgrad = absgrad
        if absgrad:
            ctx.save_for_backward(means2d)  # unpacked in backward as this very tensor, to carry .absgrad
        alphas = 1.0 - torch.from_numpy(t_final)
        return torch.from_numpy(out), alphas[..., None]

    @staticmethod
    def backward(ctx, v_out, v_alpha):
        from pcf_gs.render import cpu_composite as K

        (m2f, cnf, opf, col, bg, has_bg, tile_off, flat_ids, g_off, g_ent, t_final, last, ec) = ctx.state
        I, N, D, width, height, tiles_x, tiles_y = ctx.dims
        dt = col.dtype
        vo = np.ascontiguousarray(v_out.detach().numpy(), dtype=dt) if v_out is not None else np.zeros((I, height, width, D), dt)
        va = (
            np.ascontiguousarray(v_alpha.detach().numpy()[..., 0], dtype=dt)
            if v_alpha is not None
            else np.zeros((I, height, width), dt)
        )
        if ctx.native is not None:
            bwd = ctx.native.bwd
        else:
            bwd = functools.partial(K.composite_bwd_absgrad if ctx.absgrad else K.composite_bwd, ec=ec)
        s_xy, s_conic, s_opac, s_col = bwd(
            m2f, cnf, opf, col, bg, has_bg, tile_off, flat_ids, I, width, height, tiles_x, tiles_y,
            t_final, last, vo, va,
        )
        g_xy, g_conic, g_opac, g_col = K.reduce_entries(s_xy, s_conic, s_opac, s_col, g_off, g_ent)
        if ctx.absgrad:
            (means2d,) = ctx.saved_tensors
            means2d.absgrad = torch.from_numpy(np.ascontiguousarray(g_col[:, D:])).reshape(I, N, 2)
            g_col = g_col[:, :D]
        v_bg = None
        if has_bg and ctx.needs_input_grad[4]:
            v_bg = torch.from_numpy((t_final[..., None] * vo).sum(axis=(1, 2)))
        return (
            torch.from_numpy(g_xy).reshape(I, N, 2),
            torch.from_numpy(g_conic).reshape(I, N, 3),
            torch.from_numpy(g_opac).reshape(I, N),
            torch.from_numpy(np.ascontiguousarray(g_col)).reshape(I, N, D),
            v_bg,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _bin_tiles(m2: np.ndarray, cn: np.ndarray, op: np.ndarray, radii: Tensor, depths: Tensor, width: int, height: int):
    """``cpu_binning.bin_tiles`` of projected Gaussians (numpy means2d [I,N,2], conics [I,N,3], opacities [I,N];
    radii [I,N,2], depths [I,N]): returns tiles_x, tiles_y and (tile_offsets, flat_ids, gauss_offsets, gauss_entries)."""
    from pcf_gs.render import cpu_binning

    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    # depth sort keys: order-preserving uint32 of float32 depths (gsplat sorts float32 bits)
    dk = _np(depths.float()).view(np.uint32)
    keys = np.where(dk >> 31 == 1, ~dk, dk | np.uint32(0x80000000)).astype(np.uint32)
    return tiles_x, tiles_y, cpu_binning.bin_tiles(m2, cn, op, _np(radii).astype(np.int32), keys, tiles_x, tiles_y)


def composite(means2d, conics, opacities, colors, backgrounds, radii, depths, width, height, bins_out=None,
              absgrad=False):
    """Differentiable CPU compositing (see ``_Composite``); all tensors per image [I, ...]."""
    return _Composite.apply(means2d, conics, opacities, colors, backgrounds, radii, depths, width, height, bins_out,
                            absgrad)


def _use_gsplat(backend: str, means: Tensor) -> bool:
    if backend == "gsplat":
        return True
    if backend == "cpu":
        return False
    if backend != "auto":
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'cpu', got {backend!r}")
    # never touch gsplat's CUDA loader unless a GPU is really there: on machines with
    # nvcc but no GPU importing it starts a JIT build that fails.
    return means.is_cuda and torch.cuda.is_available()


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    sh_degree: Optional[int] = None,
    backend: str = "auto",
    rasterize_mode: str = "classic",
    absgrad: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """Render N Gaussians into C cameras; same arguments and outputs as ``gsplat.rasterization``.

    Args:
        means [N,3] world positions; quats [N,4] wxyz (any norm); scales [N,3] activated
            (world units); opacities [N] activated, in [0,1].
        colors [N,D] or [C,N,D] features (any D >= 1); with ``sh_degree`` set,
            SH coefficients [N,K,3] or [C,N,K,3] evaluated as gsplat does.
        viewmats [C,4,4] world-to-camera (OpenCV); Ks [C,3,3] intrinsics in pixels.
        width, height: image size in pixels (any, not only multiples of 16).
        near_plane, far_plane: camera-z culling bounds (world units).
        eps2d: blur added to the 2D covariance (px^2).
        rasterize_mode: "classic", or "antialiased" (gsplat's mode, from Mip-Splatting): opacities
            times sqrt(det(S) / det(S + eps2d I)) for the 2D covariance S, so that the blur does not
            add weight to small Gaussians (the projection's ``compensations``).
        backgrounds [C,D] composited behind (weight = final transmittance).
        render_mode: "RGB" (features), "D" (accumulated z), "ED" (expected z =
            accumulated z / alpha), "RGB+D", "RGB+ED" (depth as the last channel).
        backend: "auto" (gsplat iff the tensors are on CUDA and CUDA is available),
            "gsplat", or "cpu" (numba kernels; float32, or float64 for checks).
        absgrad: after backward, ``meta["means2d"].absgrad`` [C,N,2] holds the per-pixel absolute 2D-mean
            gradients summed per Gaussian (AbsGS; gsplat's strategies read it with ``absgrad=True``).

    Returns:
        colors [C,H,W,X] (X = D, 1, or D+1 by mode), alphas [C,H,W,1], and meta:
        means2d [C,N,2] (``retain_grad`` set when it requires grad, so
        ``meta["means2d"].grad`` exists after backward, as gsplat's DefaultStrategy
        reads it), radii [C,N,2] int32, depths [C,N], conics [C,N,3], opacities [C,N] (times the
        compensation in antialiased mode, as gsplat's),
        width, height, n_cameras, n_batches, tile_size, tile_width, tile_height,
        gaussian_ids/camera_ids/batch_ids = None (unpacked layout), n_isects (CPU).
    """
    if render_mode not in _MODES:
        raise ValueError(f"render_mode must be one of {_MODES}, got {render_mode!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
    C = viewmats.shape[0]
    N = means.shape[0]
    if _use_gsplat(backend, means):
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backgrounds=backgrounds,
            render_mode=render_mode, sh_degree=sh_degree, rasterize_mode=rasterize_mode, absgrad=absgrad,
        )
    if means.is_cuda:
        raise ValueError("backend='cpu' needs CPU tensors")
    dtype = torch.float64 if means.dtype == torch.float64 else torch.float32
    means, quats, scales, opacities = (t.to(dtype) for t in (means, quats, scales, opacities))
    viewmats, Ks = viewmats.to(dtype), Ks.to(dtype)
    # fused numba projection unless camera gradients are wanted (torch autograd then)
    project = project_gaussians if (viewmats.requires_grad or Ks.requires_grad) else project_gaussians_fused
    antialiased = rasterize_mode == "antialiased"
    radii, means2d, depths, conics, *comp = project(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, compensations=antialiased,
    )
    if sh_degree is not None:
        colors = sh_colors(colors.to(dtype), sh_degree, means, viewmats)
    colors = colors.to(dtype)
    if colors.dim() == 2:
        colors = colors[None].expand(C, N, colors.shape[-1])
    if colors.shape[:2] != (C, N):
        raise ValueError(f"colors must be [N,D] or [C,N,D], got {tuple(colors.shape)}")
    if backgrounds is not None:
        backgrounds = backgrounds.to(dtype).expand(C, backgrounds.shape[-1])
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        backgrounds = None  # gsplat renders depth over a zero background
    opac = opacities[None].expand(C, N)
    if antialiased:
        opac = opac * comp[0]
    bins: dict = {}
    out, alphas = composite(means2d, conics, opac, colors, backgrounds, radii, depths.detach(), width, height, bins,
                            absgrad and means2d.requires_grad)
    if render_mode in ("ED", "RGB+ED"):
        out = torch.cat([out[..., :-1], out[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)
    if means2d.requires_grad:
        means2d.retain_grad()
    meta = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opac,
        "tile_width": (width + TILE - 1) // TILE,
        "tile_height": (height + TILE - 1) // TILE,
        "tile_size": TILE,
        "width": width,
        "height": height,
        "n_batches": 1,
        "n_cameras": C,
        "cpu_bins": bins,  # tile lists (rasterize_pixels reuses them)
    }
    return out, alphas, meta


def _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                      near_plane, far_plane, eps2d, backgrounds, render_mode, sh_degree, rasterize_mode="classic",
                      absgrad=False):
    from gsplat import rasterization

    D = colors.shape[-1] if sh_degree is None else 3
    n_ch = D + (1 if render_mode in ("RGB+D", "RGB+ED") else 0)
    return rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree,
        packed=False,  # [C,N,...] meta like the CPU path; DefaultStrategy(packed=False)
        backgrounds=backgrounds, render_mode=render_mode, rasterize_mode=rasterize_mode, absgrad=absgrad,
        channel_chunk=max(32, n_ch),  # one pass over all channels
    )


def rasterize_pixels(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    pixels: Tensor,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    backend: str = "auto",
    reuse: Optional[dict] = None,
    rasterize_mode: str = "classic",
) -> tuple[Tensor, Tensor]:
    """Features at listed pixels: ``rasterize(...)`` then ``out.reshape(C*H*W, D)[pixels]``, without the dense work.

    Args: as :func:`rasterize` (no background, ``render_mode`` "RGB"), plus
        pixels [P] int64: flat indices c*H*W + y*W + x into the C cameras' images.
        rasterize_mode: as :func:`rasterize`.
        reuse: the ``meta`` of a :func:`rasterize` call (CPU) with the same geometry, cameras, size,
            ``eps2d`` and ``rasterize_mode``: its projection and tile lists are used instead of projecting and binning again.
            The caller guarantees they match (the colour pass of the same step).

    Returns colors [P, D] and alphas [P, 1].

    On CPU with geometry that needs no gradient, only the listed pixels are composited
    (:mod:`pcf_gs.render.cpu_pixels`; the features' gradient through torch). Otherwise (gsplat, or a
    geometry gradient wanted) the images are rendered densely and gathered, so every gradient is kept.
    """
    C = viewmats.shape[0]
    geometry_grad = any(t.requires_grad for t in (means, quats, scales, opacities, viewmats, Ks))
    if geometry_grad or _use_gsplat(backend, means):
        out, alphas, _ = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                   near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backend=backend,
                                   rasterize_mode=rasterize_mode)
        return out.reshape(-1, out.shape[-1])[pixels], alphas.reshape(-1, 1)[pixels]
    offsets, gids, ws, t_final = pixel_contributions(
        means, quats, scales, opacities, viewmats, Ks, width, height, pixels,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, reuse=reuse, rasterize_mode=rasterize_mode,
    )
    dtype = torch.float64 if ws.dtype == np.float64 else torch.float32
    N = means.shape[0]
    cols = colors.to(dtype)
    cols = cols if cols.dim() == 2 else cols.reshape(C * N, cols.shape[-1])  # shared [N, D] or per camera
    out = _PixelBlend.apply(cols, offsets, gids, ws)
    return out, (1.0 - torch.from_numpy(t_final))[:, None]


def pixel_contributions(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    pixels: Tensor,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    reuse: Optional[dict] = None,
    rasterize_mode: str = "classic",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which Gaussians composite at listed pixels, and with which blending weights (CPU, no gradients).

    Args: as :func:`rasterize_pixels` (geometry on the CPU; its gradient is not kept).

    Returns numpy arrays: offsets [P+1] int64 (pixel p's contributions are slots offsets[p]:offsets[p+1],
    front to back), gids [S] int64 (c * N + g for camera c, Gaussian g), ws [S] (alpha * T, the weight
    the dense render gives Gaussian g at that pixel) and t_final [P] (final transmittance).
    """
    from pcf_gs.render import cpu_composite, cpu_pixels

    C = viewmats.shape[0]
    dtype = torch.float64 if means.dtype == torch.float64 else torch.float32
    N = means.shape[0]
    if reuse is not None:
        m2, cn, op = reuse["means2d"], reuse["conics"], reuse["opacities"]
        bins = reuse["cpu_bins"]
        tile_off, flat_ids = bins["tile_offsets"], bins["flat_ids"]
        dtype = bins["dtype"]
        m2, cn, op = (_np(t.detach().to(dtype)) for t in (m2, cn, op))
    else:
        with torch.no_grad():
            radii, m2t, depths, cnt, comp = project_gaussians_fused(
                means.detach().to(dtype), quats.detach().to(dtype), scales.detach().to(dtype),
                opacities.detach().to(dtype), viewmats.detach().to(dtype), Ks.detach().to(dtype), width, height,
                eps2d=eps2d, near_plane=near_plane, far_plane=far_plane, compensations=True,
            )
            opt = opacities.detach().to(dtype)[None].expand(C, N)
            if rasterize_mode == "antialiased":
                opt = opt * comp
        m2, cn = _np(m2t.to(dtype)), _np(cnt.to(dtype))
        op = np.ascontiguousarray(_np(opt))
        _, _, (tile_off, flat_ids, _, _) = _bin_tiles(m2, cn, op, radii, depths, width, height)
    tiles_x, tiles_y = (width + TILE - 1) // TILE, (height + TILE - 1) // TILE
    pix = np.ascontiguousarray(_np(pixels.to(torch.int64)))
    return cpu_pixels.pixel_weights(
        m2.reshape(C * N, 2), cn.reshape(C * N, 3), op.reshape(C * N), tile_off, flat_ids, pix, width, height,
        tiles_x, tiles_y, cpu_composite.EXP_C.astype(np.float64 if dtype == torch.float64 else np.float32),
    )


class _PixelBlend(torch.autograd.Function):
    """out [P, D] = sum_k w_k colors[g_k] over each pixel's slots (``cpu_pixels.pixel_weights``); colors [M, D]
    with g taken modulo M (M = N: one feature set for every camera). Differentiable in colors only."""

    @staticmethod
    def forward(ctx, colors, offsets, gids, ws):
        from pcf_gs.render import cpu_pixels

        col = np.ascontiguousarray(_np(colors))
        ctx.lists = (offsets, gids, ws, col.shape[0])
        return torch.from_numpy(cpu_pixels.blend_fwd(offsets, gids, ws, col, col.shape[0]))

    @staticmethod
    def backward(ctx, v_out):
        from pcf_gs.render import cpu_pixels

        offsets, gids, ws, M = ctx.lists
        vo = np.ascontiguousarray(v_out.detach().numpy(), dtype=ws.dtype)
        return torch.from_numpy(cpu_pixels.blend_bwd(offsets, gids, ws, vo, M)), None, None, None
