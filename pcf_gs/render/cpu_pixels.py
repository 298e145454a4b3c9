"""Compositing at a list of pixels (CPU): the blending weights of each listed pixel, from the same tile
lists and the same per-pixel rules as the dense kernels (:mod:`pcf_gs.render.cpu_composite`).

Training needs the instance features at a few hundred sampled pixels per view, not at every pixel.
With the geometry detached (the feature losses move only the features), a pixel's value is linear in
the features:

    out[p] = sum_k w_pk c[g_pk] (+ T_p bg),   w_pk = alpha_pk T_pk

so the numba kernel only walks each listed pixel's tile front to back and records the Gaussians that
composite there and their weights (``pixel_weights``); the sum over features is then plain torch,
whose autograd gives the feature gradient dL/dc_g = sum_p w_pg dL/dout_p with no custom backward.
Gradients for the geometry are not available here (the caller renders densely when it needs them).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from pcf_gs.render.constants import ALPHA_MAX, ALPHA_THRESHOLD, T_STOP, TILE
from pcf_gs.render.cpu_composite import _FM, _exp_neg_v, _sigma


@njit(cache=True, fastmath=_FM)  # a call, not inlined: inlining the exp overload into a prange body trips numba's SSA check
def _walk(start, end, flat_ids, means2d, conics, opac, reach, px, py, ec, gids, ws, k, write):
    """One pixel at centre (px, py): visit the entries [start, end) front to back by the rules of
    ``composite_fwd``; with ``write``, store contributing Gaussian ids and weights from slot k.
    Returns the next free slot and the final transmittance.

    ``reach`` [G] bounds sigma: beyond it alpha < 1/255 for sure, so most entries cost a quadratic
    form and no exp (the dense kernel culls rows instead)."""
    dt = ec.dtype.type
    one = dt(1.0)
    zero = dt(0.0)
    half = dt(0.5)
    athr = dt(ALPHA_THRESHOLD)
    amax = dt(ALPHA_MAX)
    tstop = dt(T_STOP)
    trans = one
    for e in range(start, end):
        g = flat_ids[e]
        sigma = _sigma(conics[g, 0], conics[g, 1], conics[g, 2], means2d[g, 0] - px, means2d[g, 1] - py, half)
        if sigma < zero or sigma > reach[g]:
            continue
        alpha = min(amax, opac[g] * _exp_neg_v(sigma, ec))
        if alpha < athr:
            continue
        next_t = trans * (one - alpha)
        if next_t <= tstop:
            break
        if write:
            gids[k] = g
            ws[k] = alpha * trans
        k += 1
        trans = next_t
    return k, trans


@njit(cache=True, parallel=True, fastmath=_FM)
def pixel_weights(means2d, conics, opac, tile_offsets, flat_ids, pixels, width, height, tiles_x, tiles_y, ec):
    """Blending weights at listed pixels.

    Args:
        means2d [G,2], conics [G,3], opac [G]: projected Gaussians flattened over images (G = I*N).
        tile_offsets [I*T+1], flat_ids [M]: from ``cpu_binning.bin_tiles``.
        pixels [P] int64: flat indices i*H*W + y*W + x.
        width, height (px); tiles_x, tiles_y: tile grid; ec: ``EXP_C`` in the working dtype.

    Returns:
        offsets [P+1] int64: pixel p's contributions are slots offsets[p]:offsets[p+1],
        gids [K] int64 (into G) and weights [K] (alpha T), front to back,
        t_final [P] transmittance after the last contribution.
    """
    P = pixels.shape[0]
    T = tiles_x * tiles_y
    HW = height * width
    dt = ec.dtype.type
    half = dt(0.5)
    counts = np.zeros(P + 1, np.int64)
    t_final = np.ones(P, ec.dtype)
    dummy_g = np.zeros(0, np.int64)
    dummy_w = np.zeros(0, ec.dtype)
    # alpha >= 1/255 needs sigma <= ln(255 o); the margin covers the fast exp's rounding (the exact test follows)
    reach = np.empty(opac.shape[0], ec.dtype)
    for g in prange(opac.shape[0]):
        lvl = math.log(max(np.float64(opac[g]) * 255.0, 1e-30))
        reach[g] = lvl + 1e-3 + 1e-3 * abs(lvl)
    starts = np.empty(P, np.int64)
    ends = np.empty(P, np.int64)
    for p in prange(P):
        q = pixels[p]
        i = q // HW
        r = q - i * HW
        y = r // width
        x = r - y * width
        job = i * T + (y // TILE) * tiles_x + x // TILE
        starts[p] = tile_offsets[job]
        ends[p] = tile_offsets[job + 1]
        n, tf = _walk(starts[p], ends[p], flat_ids, means2d, conics, opac, reach, dt(x) + half, dt(y) + half, ec,
                      dummy_g, dummy_w, 0, False)
        counts[p + 1] = n
        t_final[p] = tf
    offsets = np.cumsum(counts)
    gids = np.empty(offsets[P], np.int64)
    ws = np.empty(offsets[P], ec.dtype)
    for p in prange(P):
        q = pixels[p]
        r = q - (q // HW) * HW
        y = r // width
        x = r - y * width
        _walk(starts[p], ends[p], flat_ids, means2d, conics, opac, reach, dt(x) + half, dt(y) + half, ec,
              gids, ws, offsets[p], True)
    return offsets, gids, ws, t_final


@njit(cache=True, parallel=True)
def blend_fwd(offsets, gids, ws, colors, modulus):
    """out [P, D] = sum over pixel p's slots of w_k colors[gids_k % modulus] (colors [M, D])."""
    P = offsets.shape[0] - 1
    D = colors.shape[1]
    out = np.zeros((P, D), colors.dtype)
    for p in prange(P):
        for k in range(offsets[p], offsets[p + 1]):
            g = gids[k] % modulus
            w = ws[k]
            for d in range(D):
                out[p, d] += w * colors[g, d]
    return out


@njit(cache=True)
def blend_bwd(offsets, gids, ws, v_out, modulus):
    """dL/dcolors [M, D] = sum over slots k of w_k v_out[p(k)] at gids_k % modulus (serial: no write races)."""
    P = offsets.shape[0] - 1
    D = v_out.shape[1]
    v_col = np.zeros((modulus, D), v_out.dtype)
    for p in range(P):
        for k in range(offsets[p], offsets[p + 1]):
            g = gids[k] % modulus
            w = ws[k]
            for d in range(D):
                v_col[g, d] += w * v_out[p, d]
    return v_col
