"""Numba tile binning of the CPU rasterizer: which 16x16 tiles each projected
Gaussian can reach, and each tile's depth-ordered list of Gaussians.

Follows gsplat's ``isect_tiles`` / ``isect_offset_encode`` (tile rectangle from the
pixel radii, depth order within a tile, ties by Gaussian index); the rectangle is
then tightened by an exact ellipse-vs-tile test (see ``docs/rendering.md``).

Layout of the result (``I`` images of ``N`` Gaussians, ``T`` tiles per image,
``M`` intersections): tile (i, t) owns ``flat_ids[tile_offsets[i*T+t] :
tile_offsets[i*T+t+1]]``, front to back; a stable counting sort over (image, tile)
of Gaussians already radix-sorted by depth builds it. ``gauss_offsets`` /
``gauss_entries`` are the transposed (per-Gaussian) CSR that the gradient
reduction (``cpu_composite.reduce_entries``) walks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from pcf_gs.render.constants import TILE


@njit(cache=True)
def _radix_argsort_u32(keys):
    """Stable argsort of uint32 keys (LSD radix, two 16-bit passes)."""
    n = keys.shape[0]
    idx = np.arange(n).astype(np.int64)
    tmp = np.empty(n, np.int64)
    for shift in (0, 16):
        cnt = np.zeros(65537, np.int64)
        for k in range(n):
            cnt[((keys[idx[k]] >> shift) & 0xFFFF) + 1] += 1
        for b in range(65536):
            cnt[b + 1] += cnt[b]
        for k in range(n):
            d = (keys[idx[k]] >> shift) & 0xFFFF
            tmp[cnt[d]] = idx[k]
            cnt[d] += 1
        idx, tmp = tmp, idx
    return idx


@njit(cache=True, parallel=True)
def bin_tiles(means2d, conics, opac, radii, keys, tiles_x, tiles_y):
    """Intersect Gaussians with 16x16 tiles and sort each tile's list by depth.

    Args:
        means2d [I,N,2], conics [I,N,3], opac [I,N]: projected Gaussians.
        radii [I,N,2] int32: gsplat's pixel radii; a Gaussian takes part iff both > 0.
        keys [I,N] uint32: order-preserving bits of the float32 depths.
        tiles_x, tiles_y: tile grid size.

    Tile range: gsplat's rectangle ``floor((m - r)/16) .. ceil((m + r)/16)``, then
    tiles that the alpha >= 1/255 ellipse cannot reach are dropped (exact
    ellipse-vs-rectangle test; no pixel of a dropped tile could composite it).

    Returns:
        tile_offsets [I*T+1] int64: entries of tile (i, t) are
            flat_ids[tile_offsets[i*T+t] : tile_offsets[i*T+t+1]], front to back.
        flat_ids [M] int32: flattened Gaussian index i*N + g.
        gauss_offsets [I*N+1] int64, gauss_entries [M] int64: per-Gaussian CSR
            of its entry positions (for the gradient reduction).
    """
    I = radii.shape[0]
    N = radii.shape[1]
    T = tiles_x * tiles_y
    G = I * N
    rect = np.zeros((G, 4), np.int32)
    ntiles = np.zeros(G, np.int64)
    # which tiles of its rectangle a Gaussian reaches, as bits (row-major in the rectangle) when the rectangle
    # has at most 64 tiles (nearly all): the exact test then runs once per (Gaussian, tile), not three times
    hits = np.zeros(G, np.uint64)
    # pass 1: tile rectangles and exact counts (parallel over Gaussians)
    for ig in prange(G):
        i = ig // N
        g = ig - i * N
        rx = radii[i, g, 0]
        ry = radii[i, g, 1]
        if rx <= 0 or ry <= 0:
            continue
        mx = np.float64(means2d[i, g, 0])
        my = np.float64(means2d[i, g, 1])
        x0 = min(max(int(math.floor((mx - rx) / TILE)), 0), tiles_x)
        x1 = min(max(int(math.ceil((mx + rx) / TILE)), 0), tiles_x)
        y0 = min(max(int(math.floor((my - ry) / TILE)), 0), tiles_y)
        y1 = min(max(int(math.ceil((my + ry) / TILE)), 0), tiles_y)
        rect[ig, 0] = x0
        rect[ig, 1] = x1
        rect[ig, 2] = y0
        rect[ig, 3] = y1
        small = (x1 - x0) * (y1 - y0) <= 64
        cnt = 0
        bits = np.uint64(0)
        k = 0
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if _tile_hit(means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1],
                             conics[i, g, 2], opac[i, g], tx, ty):
                    cnt += 1
                    if small:
                        bits |= np.uint64(1) << np.uint64(k)
                k += 1
        ntiles[ig] = cnt
        hits[ig] = bits
    gauss_offsets = np.zeros(G + 1, np.int64)
    for ig in range(G):
        gauss_offsets[ig + 1] = gauss_offsets[ig] + ntiles[ig]
    M = gauss_offsets[G]
    # per-tile counts -> offsets
    tile_cnt = np.zeros(I * T + 1, np.int64)
    for ig in range(G):
        if ntiles[ig] == 0:
            continue
        i = ig // N
        g = ig - i * N
        k = 0
        for ty in range(rect[ig, 2], rect[ig, 3]):
            for tx in range(rect[ig, 0], rect[ig, 1]):
                if _hit_again(hits[ig], k, rect[ig], means2d, conics, opac, i, g, tx, ty):
                    tile_cnt[i * T + ty * tiles_x + tx + 1] += 1
                k += 1
    for k in range(I * T):
        tile_cnt[k + 1] += tile_cnt[k]
    tile_offsets = tile_cnt
    flat_ids = np.empty(M, np.int32)
    gauss_entries = np.empty(M, np.int64)
    # pass 2: fill in depth order, per image in parallel (stable => depth-ordered tiles)
    for i in prange(I):
        nv = 0
        for g in range(N):
            if ntiles[i * N + g] > 0:
                nv += 1
        vidx = np.empty(nv, np.int64)
        vkey = np.empty(nv, np.uint32)
        k = 0
        for g in range(N):
            if ntiles[i * N + g] > 0:
                vidx[k] = g
                vkey[k] = keys[i, g]
                k += 1
        order = _radix_argsort_u32(vkey)
        cursor = tile_offsets[i * T:(i + 1) * T].copy()
        for k in range(nv):
            g = vidx[order[k]]
            ig = i * N + g
            w = gauss_offsets[ig]
            kk = 0
            for ty in range(rect[ig, 2], rect[ig, 3]):
                for tx in range(rect[ig, 0], rect[ig, 1]):
                    if _hit_again(hits[ig], kk, rect[ig], means2d, conics, opac, i, g, tx, ty):
                        t = ty * tiles_x + tx
                        pos = cursor[t]
                        cursor[t] = pos + 1
                        flat_ids[pos] = ig
                        gauss_entries[w] = pos
                        w += 1
                    kk += 1
    return tile_offsets, flat_ids, gauss_offsets, gauss_entries


@njit(inline="always")
def _hit_again(bits, k, rect, means2d, conics, opac, i, g, tx, ty):
    """Pass 1's verdict for the k-th tile (tx, ty) of Gaussian (i, g)'s rectangle: its bit when the rectangle has
    at most 64 tiles, else the exact test again."""
    if (rect[1] - rect[0]) * (rect[3] - rect[2]) <= 64:
        return (bits >> np.uint64(k)) & np.uint64(1) != np.uint64(0)
    return _tile_hit(means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1], conics[i, g, 2], opac[i, g],
                     tx, ty)


@njit(inline="always")
def _tile_hit(mx, my, a, b, c, o, tx, ty):
    """Can the ellipse {sigma <= ln(255 o)} reach a pixel centre of tile (tx, ty)?

    Exact test in float64 with a 1 px safety margin: minimise the quadratic form
    over the tile's pixel-centre rectangle (grown by 1 px). The minimum of a
    convex quadratic over a box is at the centre if inside, else on an edge,
    where it is a 1D clamped minimisation.
    """
    a = np.float64(a)
    b = np.float64(b)
    c = np.float64(c)
    lvl = math.log(np.float64(o) * 255.0)  # alpha >= 1/255  <=>  sigma <= lvl
    if lvl < 0.0:
        return False
    x0 = tx * TILE + 0.5 - 1.0 - np.float64(mx)
    x1 = tx * TILE + TILE - 0.5 + 1.0 - np.float64(mx)
    y0 = ty * TILE + 0.5 - 1.0 - np.float64(my)
    y1 = ty * TILE + TILE - 0.5 + 1.0 - np.float64(my)
    if x0 <= 0.0 <= x1 and y0 <= 0.0 <= y1:
        return True
    best = 1e300
    # edges x = x0, x1: minimise over y of 0.5(a x^2 + c y^2) + b x y -> y* = -b x / c
    for xe in (x0, x1):
        ys = -b * xe / c
        ys = min(max(ys, y0), y1)
        q = 0.5 * (a * xe * xe + c * ys * ys) + b * xe * ys
        best = min(best, q)
    for ye in (y0, y1):
        xs = -b * ye / a
        xs = min(max(xs, x0), x1)
        q = 0.5 * (a * xs * xs + c * ye * ye) + b * xs * ye
        best = min(best, q)
    return best <= lvl

