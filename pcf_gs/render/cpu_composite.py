"""Numba alpha compositing of the CPU rasterizer, forward and backward, and the
per-Gaussian reduction of the backward's gradient slots.

The kernels follow gsplat's CUDA rules (``RasterizeToPixels3DGSFwd.cu`` /
``...Bwd.cu``); every deliberate difference is listed in ``docs/rendering.md``.

Notation (flattened over images, ``I`` images of ``N`` Gaussians each, ``G = I*N``):

- ``means2d [G,2]`` pixel coordinates of the projected centres,
- ``conics [G,3]`` = (a, b, c), the upper triangle of the inverse blurred 2D
  covariance, so that for a pixel centre p and d = mean - p
  ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``,
- ``opac [G]`` opacities in [0, 1], ``colors [G,D]`` the features to composite,
- ``tile_offsets``, ``flat_ids``: each 16x16 tile's depth-ordered slice of the
  intersection list (``cpu_binning.bin_tiles``).

Per pixel, Gaussians of the pixel's tile are visited front to back:

    alpha = min(0.999, o exp(-sigma));  skip if sigma < 0 or alpha < 1/255
    next_T = T (1 - alpha);             stop (without compositing) if next_T <= 1e-4
    out += alpha T c;  T = next_T
    out += T_final * background

Pixel centres are at (x + 0.5, y + 0.5). Both kernels run one parallel task per
(image, tile) and share its set-up (``_tile_setup``) and the per-entry loading of a
Gaussian with the tile rows it can reach (``_load_entry``).

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

from pcf_gs.render.constants import ALPHA_MAX, ALPHA_THRESHOLD, T_STOP, TILE

TILE_PIX = TILE * TILE

# fastmath without 'nnan'/'ninf' reasoning changes: we compare against thresholds
# and want those comparisons kept literally; contraction/reassociation are fine.
_FM = {"contract", "arcp", "reassoc", "afn"}


# --------------------------------------------------------------- fast exp

# constants of the fast exp (``_exp_neg_v``), cast to the working dtype by the caller:
# EXP_C.astype(dtype) is the kernels' ``ec`` argument
EXP_C = np.array([
    1.0, 11.0, 1.4426950408889634, 0.5, 0.693145751953125, 1.4286068203094173e-06,
    -1.0 / 5040.0, 1.0 / 720.0, -1.0 / 120.0, 1.0 / 24.0, -1.0 / 6.0, 0.5, -1.0, 1.0,
    0.5, 0.25, 0.0625, 0.00390625, 1.52587890625e-05,
])


def _exp_neg_v(s, ec):
    """exp(-s) for s >= 0; ``ec`` is ``EXP_C`` in the working dtype.

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


# --------------------------------------------------------------- shared tile set-up


@njit(inline="always")
def _tile_setup(job, T, tiles_x, width, height, tile_offsets, like):
    """Geometry and entries of the parallel task ``job`` = i * T + t (image i, tile t,
    T = tiles_x * tiles_y tiles per image; width, height in px).

    Returns i, the tile origin x0, y0 (px), its size pw, ph (px, < 16 on the right
    and bottom borders), its entry range [start, end) in ``flat_ids`` (front to
    back), and the pixel centres pxs [16] = x0 + k + 0.5, pys [16] = y0 + k + 0.5
    in the dtype of ``like`` (rows are processed 16 wide, also past pw).
    """
    # T comes from the caller, computed outside the prange: recomputing it here
    # made LLVM vectorise the kernels' tile loads differently (~5% more code).
    i = job // T
    t = job - i * T
    ty = t // tiles_x
    tx = t - ty * tiles_x
    x0 = tx * TILE
    y0 = ty * TILE
    pw = min(TILE, width - x0)
    ph = min(TILE, height - y0)
    dt = like.dtype.type
    half = dt(0.5)
    pxs = np.empty(TILE, like.dtype)
    pys = np.empty(TILE, like.dtype)
    for k in range(TILE):
        pxs[k] = dt(x0 + k) + half
        pys[k] = dt(y0 + k) + half
    return i, x0, y0, pw, ph, tile_offsets[job], tile_offsets[job + 1], pxs, pys


@njit(inline="always")
def _load_entry(e, flat_ids, means2d, conics, opac, y0, ph):
    """Gaussian of intersection entry e: its flat index gid, mean (mx, my) px,
    conic (a, b, c), opacity o, and the tile rows [r0, r1) it can reach."""
    gid = flat_ids[e]
    mx = means2d[gid, 0]
    my = means2d[gid, 1]
    a = conics[gid, 0]
    b = conics[gid, 1]
    c = conics[gid, 2]
    o = opac[gid]
    r0, r1 = _row_range(my, a, b, c, o, y0, ph)
    return gid, mx, my, a, b, c, o, r0, r1


@njit(inline="always")
def _sigma(a, b, c, dx, dy, half):
    """Mahalanobis term 0.5 (a dx^2 + c dy^2) + b dx dy of the conic at offset d = mean - pixel."""
    return half * (a * dx * dx + c * dy * dy) + b * dx * dy


# --------------------------------------------------------------------- kernels


@njit(cache=True, parallel=True, fastmath=_FM)
def composite_fwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                  n_images, width, height, tiles_x, tiles_y, ec):
    """Forward compositing.

    Args:
        means2d [G,2], conics [G,3], opac [G], colors [G,D]: flattened over images.
        backgrounds [I,D] (ignored unless has_bg).
        tile_offsets [I*T+1], flat_ids [M]: from ``cpu_binning.bin_tiles``.
        n_images I; width, height (px); tiles_x, tiles_y: tile grid.
        ec: ``EXP_C`` in the working dtype (exp: polynomial for float32, exact for float64).

    Per tile and Gaussian, each reachable 16-pixel row is done in two passes: a
    branch-free one (alpha, stop test, T update, weights; SIMD) and one that adds
    w * colour: for D <= 4 densely over the row, channel by channel (SIMD, w = 0 adds
    nothing, so the sums are bit-identical), otherwise sparsely, only for the pixels
    that really composite (D-wide loops).

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
    out = np.zeros((n_images, height, width, D), colors.dtype)
    t_final = np.ones((n_images, height, width), colors.dtype)
    last = np.full((n_images, height, width), -1, np.int32)
    T = tiles_x * tiles_y
    for job in prange(n_images * T):
        i, x0, y0, pw, ph, start, end, pxs, pys = _tile_setup(job, T, tiles_x, width, height, tile_offsets, colors)
        trans = np.ones((TILE, TILE), colors.dtype)
        alive = np.zeros((TILE, TILE), colors.dtype)  # 1: still compositing (float mask)
        lastk = np.full((TILE, TILE), -1, np.int32)
        acc = np.zeros((TILE_PIX, D), colors.dtype)
        acct = np.zeros((D, TILE_PIX), colors.dtype)  # channel-major: the dense small-D path (SIMD over a row)
        dense = D <= 4
        wrow = np.zeros(TILE, colors.dtype)
        for r in range(ph):
            for cc in range(pw):
                alive[r, cc] = one
        n_alive = dt(pw * ph)
        for e in range(start, end):
            if n_alive <= zero:
                break
            gid, mx, my, a, b, c, o, r0, r1 = _load_entry(e, flat_ids, means2d, conics, opac, y0, ph)
            e32 = np.int32(e)
            for r in range(r0, r1):
                dy = my - pys[r]
                tr = trans[r]
                al = alive[r]
                lk = lastk[r]
                nstop = zero
                for cc in range(TILE):
                    sigma = _sigma(a, b, c, mx - pxs[cc], dy, half)
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
                if dense:
                    base = r * TILE
                    for d in range(D):
                        cd = colors[gid, d]
                        ad = acct[d]
                        for cc in range(TILE):
                            ad[base + cc] += wrow[cc] * cd
                else:
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
                if dense:
                    for d in range(D):
                        acc[p, d] = acct[d, p]
                if has_bg:
                    for d in range(D):
                        out[i, y0 + r, x0 + cc, d] = acc[p, d] + tp * backgrounds[i, d]
                else:
                    for d in range(D):
                        out[i, y0 + r, x0 + cc, d] = acc[p, d]
    return out, t_final, last


@njit(inline="always", fastmath=_FM)
def _composite_bwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                   n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out,
                   ec, absgrad):
    """Backward compositing: gradient slots per intersection entry.

    Args: as ``composite_fwd`` plus its outputs ``t_final [I,H,W]``, ``last [I,H,W]``
    and the output gradients ``v_out [I,H,W,D]``, ``v_alpha_out [I,H,W]``.

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

    Each row: a branch-free pass (alpha, validity, T recovery), a pass for c . v and dL/dc
    (for D <= 4 dense over the row, channel by channel; otherwise sparse and D-wide over
    the valid pixels), then a branch-free pass for the rest.

    With ``absgrad`` (gsplat's ``absgrad=True``, the AbsGS densification statistic) each entry also sums
    the absolute values of its per-pixel 2D-mean gradients, |dL/dx| and |dL/dy| pixel by pixel, into
    two extra columns of v_col (so the per-Gaussian reduction needs no second pass).

    Returns slots (M entries): v_xy [M,2], v_conic [M,3], v_opac [M], v_col [M,D] ([M,D+2] with absgrad:
    the last two columns are the absolute 2D-mean gradients).
    """
    D = colors.shape[1]
    M = flat_ids.shape[0]
    dt = colors.dtype.type
    one = dt(1.0)
    half = dt(0.5)
    athr = dt(ALPHA_THRESHOLD)
    amax = dt(ALPHA_MAX)
    zero = dt(0.0)
    s_xy = np.zeros((M, 2), colors.dtype)
    s_conic = np.zeros((M, 3), colors.dtype)
    s_opac = np.zeros(M, colors.dtype)
    s_col = np.zeros((M, D + 2 if absgrad else D), colors.dtype)
    T = tiles_x * tiles_y
    for job in prange(n_images * T):
        i, x0, y0, pw, ph, start, end, pxs, pys = _tile_setup(job, T, tiles_x, width, height, tile_offsets, colors)
        if end == start:
            continue
        trans = np.ones((TILE, TILE), colors.dtype)
        tfin = np.ones((TILE, TILE), colors.dtype)
        lastk = np.full((TILE, TILE), -1, np.int32)
        vo = np.zeros((TILE_PIX, D), colors.dtype)
        vot = np.zeros((D, TILE_PIX), colors.dtype)  # channel-major copy: the dense small-D path
        dense = D <= 4
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
                    vot[d, p] = v_out[i, yy, xx, d]
                    if has_bg:
                        bgv += backgrounds[i, d] * v_out[i, yy, xx, d]
                va[r, cc] = v_alpha_out[i, yy, xx] - bgv
        for e in range(kmax, start - 1, -1):
            gid, mx, my, a, b, c, o, r0, r1 = _load_entry(e, flat_ids, means2d, conics, opac, y0, ph)
            e32 = np.int32(e)
            gx = zero
            gy = zero
            ga = zero
            gb = zero
            gc = zero
            go = zero
            gax = zero
            gay = zero
            for d in range(D):
                gcol[d] = zero
            for r in range(r0, r1):
                dy = my - pys[r]
                tr = trans[r]
                lk = lastk[r]
                any_valid = zero
                for cc in range(TILE):
                    sigma = _sigma(a, b, c, mx - pxs[cc], dy, half)
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
                if dense:  # every pixel of the row, SIMD (cv of invalid pixels is multiplied by 0 below)
                    base = r * TILE
                    for cc in range(TILE):
                        cv_r[cc] = zero
                    for d in range(D):
                        cd = colors[gid, d]
                        vd = vot[d]
                        gd = zero
                        for cc in range(TILE):
                            v = vd[base + cc]
                            cv_r[cc] += cd * v
                            gd += fac_r[cc] * v
                        gcol[d] += gd
                else:
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
                    vx = v_sigma * (a * dx + b * dy)
                    vy = v_sigma * (b * dx + c * dy)
                    gx += vx
                    gy += vy
                    if absgrad:
                        gax += abs(vx)
                        gay += abs(vy)
                    go += vism * v_alpha
            s_xy[e, 0] = gx
            s_xy[e, 1] = gy
            s_conic[e, 0] = ga
            s_conic[e, 1] = gb
            s_conic[e, 2] = gc
            s_opac[e] = go
            for d in range(D):
                s_col[e, d] = gcol[d]
            if absgrad:
                s_col[e, D] = gax
                s_col[e, D + 1] = gay
    return s_xy, s_conic, s_opac, s_col


@njit(cache=True, parallel=True, fastmath=_FM)
def composite_bwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                  n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out, ec):
    """Backward compositing (``_composite_bwd``, without the absolute gradients)."""
    return _composite_bwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                          n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out, ec, False)


@njit(cache=True, parallel=True, fastmath=_FM)
def composite_bwd_absgrad(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                          n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out, ec):
    """Backward compositing with gsplat's ``absgrad`` columns (``_composite_bwd``). A second compiled
    kernel rather than a runtime flag, so the default backward carries no extra work."""
    return _composite_bwd(means2d, conics, opac, colors, backgrounds, has_bg, tile_offsets, flat_ids,
                          n_images, width, height, tiles_x, tiles_y, t_final, last, v_out, v_alpha_out, ec, True)


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
