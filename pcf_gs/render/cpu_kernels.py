"""Numba kernels of the CPU rasterizer: tile binning, forward and backward compositing.

All kernels follow gsplat's CUDA rules (``RasterizeToPixels3DGSFwd.cu`` /
``...Bwd.cu``); every deliberate difference is listed in ``docs/rendering.md``.

Notation (flattened over images, ``I`` images of ``N`` Gaussians each, ``G = I*N``):

- ``means2d [G,2]`` pixel coordinates of the projected centres,
- ``conics [G,3]`` = (a, b, c), the upper triangle of the inverse blurred 2D
  covariance, so that for a pixel centre p and d = mean - p
  ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``,
- ``opac [G]`` opacities in [0, 1], ``colors [G,D]`` the features to composite.

Per pixel, Gaussians of the pixel's tile are visited front to back:

    alpha = min(0.999, o exp(-sigma));  skip if sigma < 0 or alpha < 1/255
    next_T = T (1 - alpha);             stop (without compositing) if next_T <= 1e-4
    out += alpha T c;  T = next_T
    out += T_final * background

Tiles are 16x16 pixels, pixel centres at (x + 0.5, y + 0.5). Each tile owns a
contiguous, depth-ordered slice of the intersection list (``tile_offsets``,
``flat_ids``), built by a stable counting sort over (image, tile) of Gaussians
already radix-sorted by depth.

The backward pass walks each pixel's list back to front, recovering the
transmittance before Gaussian k as T_k = T_{k+1} / (1 - alpha_k) like gsplat,
and writes its gradient into one slot per intersection entry (no atomics, every
entry belongs to exactly one tile, i.e. one parallel task); ``reduce_entries``
then sums the slots per Gaussian through a per-Gaussian CSR list of entries.

Dtype: kernels are generic over float32/float64 (numba compiles one version per
dtype; constants are cast with ``arr.dtype.type`` so float32 stays float32).
float32 uses a vectorisable polynomial exp (relative error ~2e-7, float32 rounding
level); float64 uses ``math.exp`` (exact float64 checks and gradchecks).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

TILE = 16
TILE_PIX = TILE * TILE
ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
T_STOP = 1e-4

# fastmath without 'nnan'/'ninf' reasoning changes: we compare against thresholds
# and want those comparisons kept literally; contraction/reassociation are fine.
_FM = {"contract", "arcp", "reassoc", "afn"}


# constants of the fast exp, cast to the working dtype at the call site
_EXP_C = np.array([
    1.0, 11.0, 1.4426950408889634, 0.5, 0.693145751953125, 1.4286068203094173e-06,
    -1.0 / 5040.0, 1.0 / 720.0, -1.0 / 120.0, 1.0 / 24.0, -1.0 / 6.0, 0.5, -1.0, 1.0,
    0.5, 0.25, 0.0625, 0.00390625, 1.52587890625e-05,
])


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
        cnt = 0
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                if _tile_hit(means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1],
                             conics[i, g, 2], opac[i, g], tx, ty):
                    cnt += 1
        ntiles[ig] = cnt
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
        for ty in range(rect[ig, 2], rect[ig, 3]):
            for tx in range(rect[ig, 0], rect[ig, 1]):
                if _tile_hit(means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1],
                             conics[i, g, 2], opac[i, g], tx, ty):
                    tile_cnt[i * T + ty * tiles_x + tx + 1] += 1
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
            for ty in range(rect[ig, 2], rect[ig, 3]):
                for tx in range(rect[ig, 0], rect[ig, 1]):
                    if _tile_hit(means2d[i, g, 0], means2d[i, g, 1], conics[i, g, 0], conics[i, g, 1],
                                 conics[i, g, 2], opac[i, g], tx, ty):
                        t = ty * tiles_x + tx
                        pos = cursor[t]
                        cursor[t] = pos + 1
                        flat_ids[pos] = ig
                        gauss_entries[w] = pos
                        w += 1
    return tile_offsets, flat_ids, gauss_offsets, gauss_entries


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


@njit(inline="always", fastmath=_FM)
def _pixel_box(mx, my, a, b, c, o, x0, y0, pw, ph):
    """Pixel rows/cols [c0, c1) x [r0, r1) of the tile (local coordinates) where the
    Gaussian can reach alpha >= 1/255, with a 1 px margin.

    sigma <= L  implies  |dx| <= sqrt(2 L cov_xx), cov = inverse(conic).
    """
    af = np.float64(a)
    bf = np.float64(b)
    cf = np.float64(c)
    det = af * cf - bf * bf
    lvl = math.log(max(np.float64(o) * 255.0, 1.0))
    hx = math.sqrt(2.0 * lvl * cf / det) + 1.0
    hy = math.sqrt(2.0 * lvl * af / det) + 1.0
    lx = np.float64(mx) - 0.5 - x0
    ly = np.float64(my) - 0.5 - y0
    c0 = max(int(math.ceil(lx - hx)), 0)
    c1 = min(int(math.floor(lx + hx)) + 1, pw)
    r0 = max(int(math.ceil(ly - hy)), 0)
    r1 = min(int(math.floor(ly + hy)) + 1, ph)
    return c0, c1, r0, r1


def _exp_neg_v(s, ec):
    """exp(-s) for s >= 0; ``ec`` is ``_EXP_C`` in the working dtype.

    Resolved at compile time by dtype (numba ``overload``): float64 uses
    ``math.exp`` (exact checks, gradcheck); float32 uses a branch-free polynomial
    that LLVM vectorises: s is clamped to [0, 11] (exp(-11) = 1.7e-5 < 1/255, so
    an alpha from a clamped sigma is skipped anyway for opacities <= 1), split as
    s = n ln2 + r with |r| <= ln2/2 (Cody-Waite two-part ln2), exp(-r) by a
    degree-7 Taylor polynomial (truncation < 6e-9) and 2^-n from the bits of n
    by selects (no bit casts). Relative error ~2e-7, float32 rounding level.
    """
    raise NotImplementedError  # only callable from numba code


def _exp_neg_poly(s, ec):
    one = ec[0]
    ss = max(min(s, ec[1]), ec[0] - ec[0])
    nf = np.floor(ss * ec[2] + ec[3])
    n = np.int32(nf)
    r = ss - nf * ec[4] - nf * ec[5]
    p = ec[6]
    p = p * r + ec[7]
    p = p * r + ec[8]
    p = p * r + ec[9]
    p = p * r + ec[10]
    p = p * r + ec[11]
    p = p * r + ec[12]
    p = p * r + ec[13]
    p = p * (ec[14] if (n & 1) != 0 else one)
    p = p * (ec[15] if (n & 2) != 0 else one)
    p = p * (ec[16] if (n & 4) != 0 else one)
    p = p * (ec[17] if (n & 8) != 0 else one)
    p = p * (ec[18] if (n & 16) != 0 else one)
    return p


def _exp_neg_exact(s, ec):
    return math.exp(-s)


@overload(_exp_neg_v, inline="always")
def _exp_neg_v_ov(s, ec):
    if isinstance(s, types.Float) and s.bitwidth == 64:
        return _exp_neg_exact
    return _exp_neg_poly


@njit(inline="always", fastmath=_FM)
def _row_range(my, a, b, c, o, y0, ph):
    """Tile rows [r0, r1) (local) where the Gaussian can reach alpha >= 1/255 (+1 px margin).

    sigma <= L = ln(255 o) implies |dy| <= sqrt(2 L cov_yy), cov = inverse(conic).
    Columns are not clipped: rows are processed 16 wide (one fixed-trip SIMD loop).
    """
    af = np.float64(a)
    bf = np.float64(b)
    cf = np.float64(c)
    det = af * cf - bf * bf
    lvl = math.log(max(np.float64(o) * 255.0, 1.0))
    hy = math.sqrt(2.0 * lvl * af / det) + 1.0
    ly = np.float64(my) - 0.5 - y0
    r0 = max(int(math.ceil(ly - hy)), 0)
    r1 = min(int(math.floor(ly + hy)) + 1, ph)
    return r0, r1


@njit(cache=True, parallel=True, fastmath=_FM)
def composite_fwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                  n_images, width, height, tiles_x, tiles_y, ec):
    """Forward compositing.

    Args:
        means2d [G,2], conics [G,3], opac [G], colors [G,D]: flattened over images.
        backgrounds [I,D] (ignored unless has_bg).
        tile_offsets, flat_ids: from ``bin_tiles``.
        ec: ``_EXP_C`` in the working dtype (exp: polynomial for float32, exact for float64).

    Per tile and Gaussian, each reachable 16-pixel row is done in two passes: a
    branch-free one (alpha, stop test, T update, weights; SIMD) and a sparse one that
    adds w * colour only for the pixels that really composite.

    Returns:
        out [I,H,W,D] composited features (+ T_final * background),
        t_final [I,H,W] transmittance after the last composited Gaussian (alpha = 1 - T),
        last [I,H,W] int32 entry index (into flat_ids) of the last composited
            Gaussian, -1 if none.
    """
    D = colors.shape[1]
    dt = colors.dtype.type
    one = dt(1.0)
    zero = dt(0.0)
    half = dt(0.5)
    athr = dt(ALPHA_THRESHOLD)
    amax = dt(ALPHA_MAX)
    tstop = dt(T_STOP)
    T = tiles_x * tiles_y
    out = np.zeros((n_images, height, width, D), colors.dtype)
    t_final = np.ones((n_images, height, width), colors.dtype)
    last = np.full((n_images, height, width), -1, np.int32)
    for job in prange(n_images * T):
        i = job // T
        t = job - i * T
        ty = t // tiles_x
        tx = t - ty * tiles_x
        x0 = tx * TILE
        y0 = ty * TILE
        pw = min(TILE, width - x0)
        ph = min(TILE, height - y0)
        start = tile_offsets[job]
        end = tile_offsets[job + 1]
        trans = np.ones((TILE, TILE), colors.dtype)
        alive = np.zeros((TILE, TILE), colors.dtype)  # 1: still compositing (float mask)
        lastk = np.full((TILE, TILE), -1, np.int32)
        acc = np.zeros((TILE_PIX, D), colors.dtype)
        wrow = np.zeros(TILE, colors.dtype)
        for r in range(ph):
            for cc in range(pw):
                alive[r, cc] = one
        n_alive = dt(pw * ph)
        pxs = np.empty(TILE, colors.dtype)
        pys = np.empty(TILE, colors.dtype)
        for k in range(TILE):
            pxs[k] = dt(x0 + k) + half
            pys[k] = dt(y0 + k) + half
        for e in range(start, end):
            if n_alive <= zero:
                break
            gid = flat_ids[e]
            e32 = np.int32(e)
            mx = means2d[gid, 0]
            my = means2d[gid, 1]
            a = conics[gid, 0]
            b = conics[gid, 1]
            c = conics[gid, 2]
            o = opac[gid]
            r0, r1 = _row_range(my, a, b, c, o, y0, ph)
            for r in range(r0, r1):
                dy = my - pys[r]
                tr = trans[r]
                al = alive[r]
                lk = lastk[r]
                nstop = zero
                for cc in range(TILE):
                    dx = mx - pxs[cc]
                    sigma = half * (a * dx * dx + c * dy * dy) + b * dx * dy
                    alpha = min(amax, o * _exp_neg_v(sigma, ec))
                    tp = tr[cc]
                    next_t = tp * (one - alpha)
                    ok = (sigma >= zero) & (alpha >= athr) & (al[cc] > zero)
                    contrib = ok & (next_t > tstop)
                    stop = ok & (next_t <= tstop)
                    wrow[cc] = alpha * tp if contrib else zero
                    tr[cc] = next_t if contrib else tp
                    al[cc] = zero if stop else al[cc]
                    nstop += one if stop else zero
                    lk[cc] = e32 if contrib else lk[cc]
                n_alive -= nstop
                for cc in range(TILE):
                    w = wrow[cc]
                    if w != zero:
                        p = r * TILE + cc
                        for d in range(D):
                            acc[p, d] += w * colors[gid, d]
        for r in range(ph):
            for cc in range(pw):
                p = r * TILE + cc
                tp = trans[r, cc]
                t_final[i, y0 + r, x0 + cc] = tp
                last[i, y0 + r, x0 + cc] = lastk[r, cc]
                if has_bg:
                    for d in range(D):
                        out[i, y0 + r, x0 + cc, d] = acc[p, d] + tp * backgrounds[i, d]
                else:
                    for d in range(D):
                        out[i, y0 + r, x0 + cc, d] = acc[p, d]
    return out, t_final, last


@njit(cache=True, parallel=True, fastmath=_FM)
def composite_bwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                  n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out,
                  ec):
    """Backward compositing: gradient slots per intersection entry.

    Args: as ``composite_fwd`` plus its outputs ``t_final``, ``last`` and the
    output gradients ``v_out [I,H,W,D]``, ``v_alpha_out [I,H,W]``.

    Per pixel, going back to front from its last composited entry
    (gsplat's ``rasterize_to_pixels_3dgs_bwd_kernel``):

        T_k = T_{k+1} / (1 - alpha_k);  w = alpha_k T_k
        dL/dc_k      += w v
        dL/dalpha_k   = T_k (c_k . v) - S / (1 - alpha_k)
                        + T_final / (1 - alpha_k) (v_alpha - bg . v)
        S            += w (c_k . v)          (S = sum over Gaussians behind of w c . v)
        unless alpha was clamped at 0.999:
        dL/dsigma = -o exp(-sigma) dL/dalpha, dL/do = exp(-sigma) dL/dalpha,
        sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with d = mean - pixel.

    Each row: a branch-free pass (alpha, validity, T recovery), a sparse D-wide pass
    (c . v and dL/dc) over the valid pixels, then a branch-free pass for the rest.

    Returns slots: v_xy [M,2], v_conic [M,3], v_opac [M], v_col [M,D].
    """
    D = colors.shape[1]
    M = flat_ids.shape[0]
    dt = colors.dtype.type
    one = dt(1.0)
    half = dt(0.5)
    athr = dt(ALPHA_THRESHOLD)
    amax = dt(ALPHA_MAX)
    zero = dt(0.0)
    T = tiles_x * tiles_y
    s_xy = np.zeros((M, 2), colors.dtype)
    s_conic = np.zeros((M, 3), colors.dtype)
    s_opac = np.zeros(M, colors.dtype)
    s_col = np.zeros((M, D), colors.dtype)
    for job in prange(n_images * T):
        i = job // T
        t = job - i * T
        ty = t // tiles_x
        tx = t - ty * tiles_x
        x0 = tx * TILE
        y0 = ty * TILE
        pw = min(TILE, width - x0)
        ph = min(TILE, height - y0)
        start = tile_offsets[job]
        end = tile_offsets[job + 1]
        if end == start:
            continue
        trans = np.ones((TILE, TILE), colors.dtype)
        tfin = np.ones((TILE, TILE), colors.dtype)
        lastk = np.full((TILE, TILE), -1, np.int32)
        vo = np.zeros((TILE_PIX, D), colors.dtype)
        va = np.zeros((TILE, TILE), colors.dtype)  # v_alpha_out - bg . v
        sbuf = np.zeros((TILE, TILE), colors.dtype)
        fac_r = np.zeros(TILE, colors.dtype)
        ra_r = np.zeros(TILE, colors.dtype)
        vis_r = np.zeros(TILE, colors.dtype)
        cv_r = np.zeros(TILE, colors.dtype)
        gcol = np.zeros(D, colors.dtype)
        kmax = -1
        for r in range(ph):
            for cc in range(pw):
                p = r * TILE + cc
                yy = y0 + r
                xx = x0 + cc
                trans[r, cc] = t_final[i, yy, xx]
                tfin[r, cc] = t_final[i, yy, xx]
                lk = last[i, yy, xx]
                lastk[r, cc] = lk
                kmax = max(kmax, lk)
                bgv = zero
                for d in range(D):
                    vo[p, d] = v_out[i, yy, xx, d]
                    if has_bg:
                        bgv += backgrounds[i, d] * v_out[i, yy, xx, d]
                va[r, cc] = v_alpha_out[i, yy, xx] - bgv
        pxs = np.empty(TILE, colors.dtype)
        pys = np.empty(TILE, colors.dtype)
        for k in range(TILE):
            pxs[k] = dt(x0 + k) + half
            pys[k] = dt(y0 + k) + half
        for e in range(kmax, start - 1, -1):
            gid = flat_ids[e]
            e32 = np.int32(e)
            mx = means2d[gid, 0]
            my = means2d[gid, 1]
            a = conics[gid, 0]
            b = conics[gid, 1]
            c = conics[gid, 2]
            o = opac[gid]
            r0, r1 = _row_range(my, a, b, c, o, y0, ph)
            gx = zero
            gy = zero
            ga = zero
            gb = zero
            gc = zero
            go = zero
            for d in range(D):
                gcol[d] = zero
            for r in range(r0, r1):
                dy = my - pys[r]
                tr = trans[r]
                lk = lastk[r]
                any_valid = zero
                for cc in range(TILE):
                    dx = mx - pxs[cc]
                    sigma = half * (a * dx * dx + c * dy * dy) + b * dx * dy
                    vis = _exp_neg_v(sigma, ec)
                    alpha = min(amax, o * vis)
                    valid = (sigma >= zero) & (alpha >= athr) & (e32 <= lk[cc])
                    ra = one / (one - alpha)
                    tnew = tr[cc] * ra
                    tr[cc] = tnew if valid else tr[cc]
                    fac_r[cc] = alpha * tnew if valid else zero
                    ra_r[cc] = ra
                    vis_r[cc] = vis if valid else zero
                    any_valid += one if valid else zero
                if any_valid == zero:
                    continue
                for cc in range(TILE):
                    fac = fac_r[cc]
                    cv = zero
                    if fac != zero:
                        p = r * TILE + cc
                        for d in range(D):
                            cv += colors[gid, d] * vo[p, d]
                            gcol[d] += fac * vo[p, d]
                    cv_r[cc] = cv
                sb = sbuf[r]
                tf = tfin[r]
                var = va[r]
                for cc in range(TILE):
                    vis = vis_r[cc]  # 0 where not valid: no gradient
                    ra = ra_r[cc]
                    v_alpha = cv_r[cc] * tr[cc] - sb[cc] * ra + tf[cc] * ra * var[cc]
                    sb[cc] += fac_r[cc] * cv_r[cc]
                    vism = vis if o * vis <= amax else zero
                    v_sigma = -o * vism * v_alpha
                    dx = mx - pxs[cc]
                    ga += half * v_sigma * dx * dx
                    gb += v_sigma * dx * dy
                    gc += half * v_sigma * dy * dy
                    gx += v_sigma * (a * dx + b * dy)
                    gy += v_sigma * (b * dx + c * dy)
                    go += vism * v_alpha
            s_xy[e, 0] = gx
            s_xy[e, 1] = gy
            s_conic[e, 0] = ga
            s_conic[e, 1] = gb
            s_conic[e, 2] = gc
            s_opac[e] = go
            for d in range(D):
                s_col[e, d] = gcol[d]
    return s_xy, s_conic, s_opac, s_col


@njit(cache=True, parallel=True)
def reduce_entries(s_xy, s_conic, s_opac, s_col, gauss_offsets, gauss_entries):
    """Sum per-entry gradient slots per Gaussian (parallel over Gaussians, no atomics).

    Returns v_means2d [G,2], v_conics [G,3], v_opac [G], v_colors [G,D].
    """
    G = gauss_offsets.shape[0] - 1
    D = s_col.shape[1]
    v_xy = np.zeros((G, 2), s_xy.dtype)
    v_conic = np.zeros((G, 3), s_xy.dtype)
    v_opac = np.zeros(G, s_xy.dtype)
    v_col = np.zeros((G, D), s_xy.dtype)
    for g in prange(G):
        for k in range(gauss_offsets[g], gauss_offsets[g + 1]):
            e = gauss_entries[k]
            v_xy[g, 0] += s_xy[e, 0]
            v_xy[g, 1] += s_xy[e, 1]
            v_conic[g, 0] += s_conic[e, 0]
            v_conic[g, 1] += s_conic[e, 1]
            v_conic[g, 2] += s_conic[e, 2]
            v_opac[g] += s_opac[e]
            for d in range(D):
                v_col[g, d] += s_col[e, d]
    return v_xy, v_conic, v_opac, v_col


# ----------------------------------------------------------------------------- projection
# 3x3 matrices as row-major 9-tuples of float64: stays in registers (no heap
# allocation per Gaussian, no BLAS call for 3x3 products).


@njit(inline="always")
def _mm(A, B):
    return (
        A[0] * B[0] + A[1] * B[3] + A[2] * B[6], A[0] * B[1] + A[1] * B[4] + A[2] * B[7],
        A[0] * B[2] + A[1] * B[5] + A[2] * B[8],
        A[3] * B[0] + A[4] * B[3] + A[5] * B[6], A[3] * B[1] + A[4] * B[4] + A[5] * B[7],
        A[3] * B[2] + A[4] * B[5] + A[5] * B[8],
        A[6] * B[0] + A[7] * B[3] + A[8] * B[6], A[6] * B[1] + A[7] * B[4] + A[8] * B[7],
        A[6] * B[2] + A[7] * B[5] + A[8] * B[8],
    )


@njit(inline="always")
def _tr(A):
    return (A[0], A[3], A[6], A[1], A[4], A[7], A[2], A[5], A[8])


@njit(inline="always")
def _gauss_frame(quats, scales, g):
    """R (of q/|q|), M = R diag(s), Sigma = M M^T, normalised q and 1/|q| for Gaussian g."""
    qw = np.float64(quats[g, 0])
    qx = np.float64(quats[g, 1])
    qy = np.float64(quats[g, 2])
    qz = np.float64(quats[g, 3])
    inv = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w = qw * inv
    x = qx * inv
    y = qy * inv
    z = qz * inv
    R = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    s0 = np.float64(scales[g, 0])
    s1 = np.float64(scales[g, 1])
    s2 = np.float64(scales[g, 2])
    M = (R[0] * s0, R[1] * s1, R[2] * s2, R[3] * s0, R[4] * s1, R[5] * s2, R[6] * s0, R[7] * s1, R[8] * s2)
    cov = _mm(M, _tr(M))
    return R, M, cov, (s0, s1, s2), (w, x, y, z), inv


@njit(inline="always")
def _cam(viewmats, Ks, ci, means, g, width, height):
    """Camera-space mean, rotation W (9-tuple), intrinsics and the FOV clamp limits."""
    V = viewmats[ci]
    Wr = (np.float64(V[0, 0]), np.float64(V[0, 1]), np.float64(V[0, 2]),
          np.float64(V[1, 0]), np.float64(V[1, 1]), np.float64(V[1, 2]),
          np.float64(V[2, 0]), np.float64(V[2, 1]), np.float64(V[2, 2]))
    mx = np.float64(means[g, 0])
    my = np.float64(means[g, 1])
    mz = np.float64(means[g, 2])
    px = Wr[0] * mx + Wr[1] * my + Wr[2] * mz + np.float64(V[0, 3])
    py = Wr[3] * mx + Wr[4] * my + Wr[5] * mz + np.float64(V[1, 3])
    pz = Wr[6] * mx + Wr[7] * my + Wr[8] * mz + np.float64(V[2, 3])
    fx = np.float64(Ks[ci, 0, 0])
    fy = np.float64(Ks[ci, 1, 1])
    cx = np.float64(Ks[ci, 0, 2])
    cy = np.float64(Ks[ci, 1, 2])
    tfx = 0.5 * width / fx
    tfy = 0.5 * height / fy
    lims = ((width - cx) / fx + 0.3 * tfx, cx / fx + 0.3 * tfx,
            (height - cy) / fy + 0.3 * tfy, cy / fy + 0.3 * tfy)
    return Wr, px, py, pz, fx, fy, cx, cy, lims


@njit(inline="always")
def _jac(px, py, pz, fx, fy, lims):
    """Jacobian entries (j00, j02, j11, j12) with gsplat's 1.3x-FOV clamp, and tx, ty."""
    rz = 1.0 / pz
    rz2 = rz * rz
    tx = pz * min(lims[0], max(-lims[1], px * rz))
    ty = pz * min(lims[2], max(-lims[3], py * rz))
    return fx * rz, -fx * tx * rz2, fy * rz, -fy * ty * rz2, tx, ty


@njit
def _project_one(g, means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far,
                 radii, m2d, depths, conics):
    C = viewmats.shape[0]
    R, M, cov, s, q, inv = _gauss_frame(quats, scales, g)
    o = np.float64(opac[g])
    for ci in range(C):
        Wr, px, py, pz, fx, fy, cx, cy, lims = _cam(viewmats, Ks, ci, means, g, width, height)
        depths[ci, g] = pz
        if pz < near or pz > far:
            continue
        cc = _mm(_mm(Wr, cov), _tr(Wr))
        j00, j02, j11, j12, tx, ty = _jac(px, py, pz, fx, fy, lims)
        c00 = j00 * j00 * cc[0] + 2 * j00 * j02 * cc[2] + j02 * j02 * cc[8] + eps2d
        c11 = j11 * j11 * cc[4] + 2 * j11 * j12 * cc[5] + j12 * j12 * cc[8] + eps2d
        c01 = j00 * j11 * cc[1] + j00 * j12 * cc[2] + j02 * j11 * cc[5] + j02 * j12 * cc[8]
        det = c00 * c11 - c01 * c01
        if det <= 0.0 or o < 1.0 / 255.0:
            continue
        ext = min(3.33, math.sqrt(2.0 * math.log(o * 255.0)))
        rx = math.ceil(np.float32(ext * math.sqrt(c00)))
        ry = math.ceil(np.float32(ext * math.sqrt(c11)))
        if rx <= 0 and ry <= 0:
            continue
        mx = fx * px / pz + cx
        my = fy * py / pz + cy
        if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
            continue
        radii[ci, g, 0] = rx
        radii[ci, g, 1] = ry
        m2d[ci, g, 0] = mx
        m2d[ci, g, 1] = my
        conics[ci, g, 0] = c11 / det
        conics[ci, g, 1] = -c01 / det
        conics[ci, g, 2] = c00 / det


@njit(cache=True, parallel=True)
def project_fwd(means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far):
    """Fused EWA projection (gsplat's ``projection_ewa_3dgs_fused_fwd_kernel``, pinhole).

    Same math and culling as ``projection.project_gaussians`` (its docstring has the
    formulas), computed in float64 per Gaussian and stored in the input dtype.

    Args: means [N,3], quats [N,4] wxyz, scales [N,3], opac [N], viewmats [C,4,4],
        Ks [C,3,3]; width, height (px); eps2d (px^2); near, far (camera z).
    Returns: radii [C,N,2] int32 (0 = culled), means2d [C,N,2], depths [C,N],
        conics [C,N,3]. Culled entries: means2d/conics 0, depths = camera z.
    """
    N = means.shape[0]
    C = viewmats.shape[0]
    radii = np.zeros((C, N, 2), np.int32)
    m2d = np.zeros((C, N, 2), means.dtype)
    depths = np.zeros((C, N), means.dtype)
    conics = np.zeros((C, N, 3), means.dtype)
    for g in prange(N):
        _project_one(g, means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far,
                     radii, m2d, depths, conics)
    return radii, m2d, depths, conics


@njit
def _project_one_bwd(g, means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                     v_m2d, v_depths, v_conics, v_means, v_quats, v_scales):
    C = viewmats.shape[0]
    R, M, cov, s, q, inv = _gauss_frame(quats, scales, g)
    vcov = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    vmx = 0.0
    vmy = 0.0
    vmz = 0.0
    hit = False
    for ci in range(C):
        if radii[ci, g, 0] <= 0 or radii[ci, g, 1] <= 0:
            continue
        hit = True
        Wr, px, py, pz, fx, fy, cx, cy, lims = _cam(viewmats, Ks, ci, means, g, width, height)
        cc = _mm(_mm(Wr, cov), _tr(Wr))
        j00, j02, j11, j12, tx, ty = _jac(px, py, pz, fx, fy, lims)
        c00 = j00 * j00 * cc[0] + 2 * j00 * j02 * cc[2] + j02 * j02 * cc[8] + eps2d
        c11 = j11 * j11 * cc[4] + 2 * j11 * j12 * cc[5] + j12 * j12 * cc[8] + eps2d
        c01 = j00 * j11 * cc[1] + j00 * j12 * cc[2] + j02 * j11 * cc[5] + j02 * j12 * cc[8]
        det = c00 * c11 - c01 * c01
        q00 = c11 / det
        q01 = -c01 / det
        q11 = c00 / det
        g00 = np.float64(v_conics[ci, g, 0])
        g01 = 0.5 * np.float64(v_conics[ci, g, 1])
        g11 = np.float64(v_conics[ci, g, 2])
        # vS = -Q G Q (symmetric)
        a00 = q00 * g00 + q01 * g01
        a01 = q00 * g01 + q01 * g11
        a10 = q01 * g00 + q11 * g01
        a11 = q01 * g01 + q11 * g11
        vs00 = -(a00 * q00 + a01 * q01)
        vs01 = -(a00 * q01 + a01 * q11)
        vs11 = -(a10 * q01 + a11 * q11)
        # J as 2x3 rows (j00, 0, j02), (0, j11, j12)
        # dL/dSc = J^T vS J  (3x3 symmetric)
        u0 = (vs00 * j00, vs01 * j00)  # vS J[:,0]
        u1 = (vs01 * j11, vs11 * j11)  # vS J[:,1]
        u2 = (vs00 * j02 + vs01 * j12, vs01 * j02 + vs11 * j12)  # vS J[:,2]
        vcc = (
            j00 * u0[0], j00 * u1[0], j00 * u2[0],
            j11 * u0[1], j11 * u1[1], j11 * u2[1],
            j02 * u0[0] + j12 * u0[1], j02 * u1[0] + j12 * u1[1], j02 * u2[0] + j12 * u2[1],
        )
        # dL/dJ = 2 vS J Sc, entries needed: (0,0), (0,2), (1,1), (1,2)
        # (vS J) rows: r0 = (vs00 j00, vs01 j11, vs00 j02 + vs01 j12), r1 = (vs01 j00, vs11 j11, vs01 j02 + vs11 j12)
        r0 = (u0[0], u1[0], u2[0])
        r1 = (u0[1], u1[1], u2[1])
        vj00 = 2.0 * (r0[0] * cc[0] + r0[1] * cc[3] + r0[2] * cc[6])
        vj02 = 2.0 * (r0[0] * cc[2] + r0[1] * cc[5] + r0[2] * cc[8])
        vj11 = 2.0 * (r1[0] * cc[1] + r1[1] * cc[4] + r1[2] * cc[7])
        vj12 = 2.0 * (r1[0] * cc[2] + r1[1] * cc[5] + r1[2] * cc[8])
        rz = 1.0 / pz
        rz2 = rz * rz
        rz3 = rz2 * rz
        gmx = np.float64(v_m2d[ci, g, 0])
        gmy = np.float64(v_m2d[ci, g, 1])
        vpx = fx * rz * gmx
        vpy = fy * rz * gmy
        vpz = -(fx * px * gmx + fy * py * gmy) * rz2 + np.float64(v_depths[ci, g])
        if px * rz <= lims[0] and px * rz >= -lims[1]:
            vpx += -fx * rz2 * vj02
        else:
            vpz += -fx * rz3 * vj02 * tx
        if py * rz <= lims[2] and py * rz >= -lims[3]:
            vpy += -fy * rz2 * vj12
        else:
            vpz += -fy * rz3 * vj12 * ty
        vpz += -fx * rz2 * vj00 - fy * rz2 * vj11 + 2.0 * fx * tx * rz3 * vj02 + 2.0 * fy * ty * rz3 * vj12
        vmx += Wr[0] * vpx + Wr[3] * vpy + Wr[6] * vpz
        vmy += Wr[1] * vpx + Wr[4] * vpy + Wr[7] * vpz
        vmz += Wr[2] * vpx + Wr[5] * vpy + Wr[8] * vpz
        d = _mm(_mm(_tr(Wr), vcc), Wr)
        vcov = (vcov[0] + d[0], vcov[1] + d[1], vcov[2] + d[2], vcov[3] + d[3], vcov[4] + d[4],
                vcov[5] + d[5], vcov[6] + d[6], vcov[7] + d[7], vcov[8] + d[8])
    if not hit:
        return
    v_means[g, 0] = vmx
    v_means[g, 1] = vmy
    v_means[g, 2] = vmz
    # dL/dM = (vcov + vcov^T) M
    sym = (2 * vcov[0], vcov[1] + vcov[3], vcov[2] + vcov[6],
           vcov[3] + vcov[1], 2 * vcov[4], vcov[5] + vcov[7],
           vcov[6] + vcov[2], vcov[7] + vcov[5], 2 * vcov[8])
    vM = _mm(sym, M)
    vR = (vM[0] * s[0], vM[1] * s[1], vM[2] * s[2], vM[3] * s[0], vM[4] * s[1], vM[5] * s[2],
          vM[6] * s[0], vM[7] * s[1], vM[8] * s[2])
    v_scales[g, 0] = R[0] * vM[0] + R[3] * vM[3] + R[6] * vM[6]
    v_scales[g, 1] = R[1] * vM[1] + R[4] * vM[4] + R[7] * vM[7]
    v_scales[g, 2] = R[2] * vM[2] + R[5] * vM[5] + R[8] * vM[8]
    w, x, y, z = q
    vw = 2 * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7])
    vx = 2 * (y * vR[1] + z * vR[2] + y * vR[3] - 2 * x * vR[4] - w * vR[5]
              + z * vR[6] + w * vR[7] - 2 * x * vR[8])
    vy = 2 * (-2 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5]
              - w * vR[6] + z * vR[7] - 2 * y * vR[8])
    vz = 2 * (-2 * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2 * z * vR[4]
              + y * vR[5] + x * vR[6] + y * vR[7])
    dq = vw * w + vx * x + vy * y + vz * z
    v_quats[g, 0] = (vw - dq * w) * inv
    v_quats[g, 1] = (vx - dq * x) * inv
    v_quats[g, 2] = (vy - dq * y) * inv
    v_quats[g, 3] = (vz - dq * z) * inv


@njit(cache=True, parallel=True)
def project_bwd(means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                v_m2d, v_depths, v_conics):
    """VJP of ``project_fwd`` (the math of gsplat's fused projection backward).

    Per camera and drawn Gaussian (radii > 0), with S the blurred 2D covariance:
        conic Q = S^-1:          dL/dS = -Q G Q,   G = [[va, vb/2], [vb/2, vc]]
        S = J Sc J^T + eps I:    dL/dSc = J^T dL/dS J,   dL/dJ = 2 dL/dS J Sc
        J(p_c) (FOV clamp as gsplat's ``persp_proj_vjp``), mean2d(p_c), depth = p_c.z
        Sc = W Sigma W^T:        dL/dSigma += W^T dL/dSc W;  p_c = W m + t: dL/dm += W^T dL/dp_c
        Sigma = M M^T, M = R diag(s):  dL/dM = 2 dL/dSigma M;  dL/ds_j = sum_i R_ij dL/dM_ij
        R(q/|q|): closed-form dR/dq, then the normalisation (I - q q^T)/|q|.
    Culled entries contribute nothing. Parallel over Gaussians (cameras looped inside),
    so each output row has one writer.

    Returns v_means [N,3], v_quats [N,4], v_scales [N,3].
    """
    N = means.shape[0]
    C = viewmats.shape[0]
    v_means = np.zeros((N, 3), means.dtype)
    v_quats = np.zeros((N, 4), means.dtype)
    v_scales = np.zeros((N, 3), means.dtype)
    for g in prange(N):
        _project_one_bwd(g, means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                         v_m2d, v_depths, v_conics, v_means, v_quats, v_scales)
    return v_means, v_quats, v_scales
