"""Compositing at a list of pixels (CPU): the blending weights of each listed pixel, from the same tile
lists and the same per-pixel rules as the dense kernels (:mod:`pcf_gs.render.cpu_composite`).

Training needs the instance features at a few hundred sampled pixels per view, not at every pixel.
With the geometry detached (the feature losses move only the features), a pixel's value is linear in
the features:

    out[p] = sum_k w_pk c[g_pk] (+ T_p bg),   w_pk = alpha_pk T_pk

so the numba kernel only walks each listed pixel's tile front to back (once) and records the Gaussians that
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
def _tile_pass(start, end, flat_ids, means2d, conics, opac, reach, half_h, px, py, row_start, y0, ec, cnt, trans,
               gids, ws, slot, write):
    """The listed pixels of one tile, centres (px [m], py [m]): visit the tile's entries [start, end) front to
    back once, each against every pixel still compositing, by the rules of ``composite_fwd``. Fills
    ``cnt`` [m] (contributions) and ``trans`` [m] (final transmittance); with ``write``, also the
    contributing Gaussian ids and weights of pixel j at ``gids/ws[slot[j] + k]``.

    The pixels come sorted by row; ``row_start`` [17] gives the first of each tile row (y0 = the tile's top).
    Per Gaussian, ``half_h`` [G] (px) bounds the rows it can reach (as the dense kernel's ``_row_range``)
    and ``reach`` [G] bounds sigma: beyond either, alpha < 1/255 for sure, so most pairs cost nothing
    or a quadratic form, and no exp."""
    dt = ec.dtype.type
    one = dt(1.0)
    zero = dt(0.0)
    half = dt(0.5)
    athr = dt(ALPHA_THRESHOLD)
    amax = dt(ALPHA_MAX)
    tstop = dt(T_STOP)
    m = px.shape[0]
    alive = np.ones(m, np.bool_)
    n_alive = m
    for j in range(m):
        cnt[j] = 0
        trans[j] = one
    for e in range(start, end):
        if n_alive == 0:
            break
        g = flat_ids[e]
        mx = means2d[g, 0]
        my = means2d[g, 1]
        a = conics[g, 0]
        b = conics[g, 1]
        c = conics[g, 2]
        o = opac[g]
        rc = reach[g]
        ly = np.float64(my) - 0.5 - y0
        hh = half_h[g]
        r0 = min(max(int(math.ceil(ly - hh)), 0), TILE)
        r1 = min(max(int(math.floor(ly + hh)) + 1, r0), TILE)
        for j in range(row_start[r0], row_start[r1]):
            if not alive[j]:
                continue
            sigma = _sigma(a, b, c, mx - px[j], my - py[j], half)
            if sigma < zero or sigma > rc:
                continue
            alpha = min(amax, o * _exp_neg_v(sigma, ec))
            if alpha < athr:
                continue
            t = trans[j]
            next_t = t * (one - alpha)
            if next_t <= tstop:
                alive[j] = False
                n_alive -= 1
                continue
            if write:
                k = slot[j] + cnt[j]
                gids[k] = g
                ws[k] = alpha * t
            cnt[j] += 1
            trans[j] = next_t


@njit(cache=True)
def _row_starts(rows, job, tiles_x, T):
    """For one tile's pixels sorted by row (``rows`` [m], 0..15 inside the tile): the index of the first pixel
    of each row [17] (row_start[16] = m), and the tile's top y0 (px) from its task index ``job``."""
    rs = np.zeros(TILE + 1, np.int64)
    for r in rows:
        rs[r + 1] += 1
    for r in range(TILE):
        rs[r + 1] += rs[r]
    t = job % T
    return rs, (t // tiles_x) * TILE


@njit(cache=True, fastmath=_FM)
def _group_pass(members, jobs, rows, pxs, pys, tiles_x, T, tile_offsets, flat_ids, means2d, conics, opac, reach,
                half_h, ec, gids, ws, slot, write):
    """``_tile_pass`` over one tile's listed pixels (``members`` [m], indices into the pixel list, sorted by
    row); returns their contribution counts [m] and final transmittances [m]."""
    job = jobs[members[0]]
    cnt = np.empty(members.shape[0], np.int64)
    trans = np.empty(members.shape[0], ec.dtype)
    rs, y0 = _row_starts(rows[members], job, tiles_x, T)
    _tile_pass(tile_offsets[job], tile_offsets[job + 1], flat_ids, means2d, conics, opac, reach, half_h,
               pxs[members], pys[members], rs, y0, ec, cnt, trans, gids, ws, slot, write)
    return cnt, trans


# scratch slots per batch of the single pass (see ``pixel_weights``): 16M slots = 192 MB of address space, of which
# only the pages holding real contributions are ever touched
SCRATCH_SLOTS = 1 << 24


def pixel_weights(means2d, conics, opac, tile_offsets, flat_ids, pixels, width, height, tiles_x, tiles_y, ec,
                  scratch_slots=SCRATCH_SLOTS):
    """Blending weights at listed pixels.

    Args:
        means2d [G,2], conics [G,3], opac [G]: projected Gaussians flattened over images (G = I*N).
        tile_offsets [I*T+1], flat_ids [M]: from ``cpu_binning.bin_tiles``.
        pixels [P] int64: flat indices i*H*W + y*W + x (any order, repeats allowed).
        width, height (px); tiles_x, tiles_y: tile grid; ec: ``EXP_C`` in the working dtype.
        scratch_slots: size of one batch's scratch space (slots; tests lower it to force several batches).

    Pixels are grouped by tile (one parallel task per tile), so each entry is loaded once per tile, and
    each tile's entries are walked once: a pixel can composite each entry of its tile at most once, so
    pixel j of a tile with n_e entries gets n_e scratch slots and writes its contributions there
    directly. Scratch that is never written costs address space only (the pages are not touched); the
    groups are processed in batches of at most ``scratch_slots`` slots (at least one tile each), and each
    batch's contributions are compacted before the next batch. In float32 the walk runs in the native
    kernels when this machine has them (:mod:`pcf_gs.render.cpu_native`; the same rules, float32 rounding
    apart), else in numba (``_numba_pass``).

    Returns:
        offsets [P+1] int64: pixel p's contributions are slots offsets[p]:offsets[p+1],
        gids [K] int64 (into G) and weights [K] (alpha T), front to back,
        t_final [P] transmittance after the last contribution.
    """
    from pcf_gs.render import cpu_native

    native = cpu_native.kernels() if ec.dtype == np.float32 else None
    P = pixels.shape[0]
    T = tiles_x * tiles_y
    jobs, rows, pxs, pys, order, groups, reach, half_h, cap = _prepare(
        means2d, conics, opac, tile_offsets, pixels, width, height, tiles_x, tiles_y, ec)
    n_groups = groups.shape[0] - 1
    counts_go = np.zeros(P, np.int64)
    start_go = np.zeros(P + 1, np.int64)
    t_final = np.ones(P, ec.dtype)
    go_ids = np.empty(max(4 * P, 16), np.int64)
    go_ws = np.empty(max(4 * P, 16), ec.dtype)
    g0 = 0
    while g0 < n_groups:
        g1, sslot, tot = _batch(g0, groups, cap, scratch_slots)
        s_ids = np.empty(tot, np.int64)
        s_ws = np.empty(tot, ec.dtype)
        args = (g0, g1, groups, order, jobs, rows, pxs, pys, tiles_x, T, tile_offsets, flat_ids, means2d, conics,
                opac, reach, half_h, sslot, s_ids, s_ws, counts_go, t_final)
        if native is not None:
            native.pixel_pass(*args)
        else:
            _numba_pass(*args, ec)
        go_ids, go_ws = _compact(groups[g0], groups[g1], sslot, s_ids, s_ws, counts_go, start_go, go_ids, go_ws)
        g0 = g1
    offsets, gids, ws = _reorder(order, counts_go, start_go, go_ids, go_ws)
    return offsets, gids, ws, t_final


@njit(cache=True, parallel=True)
def _prepare(means2d, conics, opac, tile_offsets, pixels, width, height, tiles_x, tiles_y, ec):
    """Per listed pixel p [P]: its (image, tile) job, row in the tile, centre (pxs, pys); ``order`` [P] sorts the
    pixels by tile, then row; ``groups`` [n_groups+1] bounds each tile's run in that order; per Gaussian [G] the
    sigma bound ``reach`` and the row half-height ``half_h``; per group-ordered pixel q [P] its scratch
    capacity ``cap`` (the entries of its tile)."""
    P = pixels.shape[0]
    T = tiles_x * tiles_y
    HW = height * width
    dt = ec.dtype.type
    half = dt(0.5)
    jobs = np.empty(P, np.int64)
    rows = np.empty(P, np.int64)
    pxs = np.empty(P, ec.dtype)
    pys = np.empty(P, ec.dtype)
    for p in prange(P):
        q = pixels[p]
        i = q // HW
        r = q - i * HW
        y = r // width
        x = r - y * width
        jobs[p] = i * T + (y // TILE) * tiles_x + x // TILE
        rows[p] = y - (y // TILE) * TILE
        pxs[p] = dt(x) + half
        pys[p] = dt(y) + half
    order = np.argsort(jobs * TILE + rows, kind="mergesort")  # by tile, then by row inside the tile
    bounds = [0]
    for k in range(1, P):
        if jobs[order[k]] != jobs[order[k - 1]]:
            bounds.append(k)
    bounds.append(P)
    groups = np.array(bounds, np.int64) if P > 0 else np.zeros(1, np.int64)
    # alpha >= 1/255 needs sigma <= ln(255 o); the margin covers the fast exp's rounding (the exact test follows)
    # and |dy| <= sqrt(2 ln(255 o) cov_yy), cov = inverse(conic), + 1 px (the dense kernel's row bound)
    reach = np.empty(opac.shape[0], ec.dtype)
    half_h = np.empty(opac.shape[0], np.float64)
    for g in prange(opac.shape[0]):
        lvl = math.log(max(np.float64(opac[g]) * 255.0, 1e-30))
        reach[g] = lvl + 1e-3 + 1e-3 * abs(lvl)
        a = np.float64(conics[g, 0])
        det = a * np.float64(conics[g, 2]) - np.float64(conics[g, 1]) ** 2
        half_h[g] = math.sqrt(2.0 * max(lvl, 0.0) * a / det) + 1.0 if det > 0 else np.inf
    cap = np.empty(P, np.int64)
    for gi in range(groups.shape[0] - 1):
        job = jobs[order[groups[gi]]]
        for q in range(groups[gi], groups[gi + 1]):
            cap[q] = tile_offsets[job + 1] - tile_offsets[job]
    return jobs, rows, pxs, pys, order, groups, reach, half_h, cap


@njit(cache=True)
def _batch(g0, groups, cap, scratch_slots):
    """The batch from group g0: its end g1 (at least one group; at most ``scratch_slots`` slots unless one group
    needs more), each of its group-ordered pixels' first scratch slot ``sslot`` and the slot total."""
    n_groups = groups.shape[0] - 1
    g1 = g0 + 1
    size = (groups[g1] - groups[g0]) * cap[groups[g0]]
    while g1 < n_groups and size + (groups[g1 + 1] - groups[g1]) * cap[groups[g1]] <= scratch_slots:
        size += (groups[g1 + 1] - groups[g1]) * cap[groups[g1]]
        g1 += 1
    q0 = groups[g0]
    q1 = groups[g1]
    sslot = np.empty(q1 - q0, np.int64)
    tot = 0
    for q in range(q0, q1):
        sslot[q - q0] = tot
        tot += cap[q]
    return g1, sslot, tot


@njit(cache=True, parallel=True, fastmath=_FM)
def _numba_pass(g0, g1, groups, order, jobs, rows, pxs, pys, tiles_x, T, tile_offsets, flat_ids, means2d, conics,
                opac, reach, half_h, sslot, s_ids, s_ws, counts_go, t_final, ec):
    """Groups [g0, g1), one parallel task each: pixel j of group gi writes its contributions at its scratch slots
    ``s_ids/s_ws[sslot[q - groups[g0]] + k]`` (q its group-ordered index), its count in ``counts_go[q]`` and its
    final transmittance in ``t_final`` (caller order)."""
    q0 = groups[g0]
    for gi in prange(g0, g1):
        a0 = groups[gi]
        a1 = groups[gi + 1]
        members = order[a0:a1]
        cnt, trans = _group_pass(members, jobs, rows, pxs, pys, tiles_x, T, tile_offsets, flat_ids, means2d,
                                 conics, opac, reach, half_h, ec, s_ids, s_ws, sslot[a0 - q0:a1 - q0], True)
        for j in range(a1 - a0):
            counts_go[a0 + j] = cnt[j]
            t_final[members[j]] = trans[j]


@njit(cache=True, parallel=True)
def _compact(q0, q1, sslot, s_ids, s_ws, counts_go, start_go, go_ids, go_ws):
    """Copy a batch's contributions (group-ordered pixels [q0, q1)) from scratch to the group-ordered lists
    ``go_ids/go_ws`` (grown when needed; returned), filling ``start_go``."""
    for q in range(q0, q1):
        start_go[q + 1] = start_go[q] + counts_go[q]
    need = start_go[q1]
    if need > go_ids.shape[0]:
        n_new = max(need, 2 * go_ids.shape[0])
        ids2 = np.empty(n_new, np.int64)
        ws2 = np.empty(n_new, go_ws.dtype)
        for k in range(start_go[q0]):
            ids2[k] = go_ids[k]
            ws2[k] = go_ws[k]
        go_ids = ids2
        go_ws = ws2
    for q in prange(q0, q1):
        src = sslot[q - q0]
        dst = start_go[q]
        for k in range(counts_go[q]):
            go_ids[dst + k] = s_ids[src + k]
            go_ws[dst + k] = s_ws[src + k]
    return go_ids, go_ws


@njit(cache=True, parallel=True)
def _reorder(order, counts_go, start_go, go_ids, go_ws):
    """The group-ordered lists back in the caller's pixel order: offsets [P+1], gids, ws."""
    P = order.shape[0]
    counts = np.zeros(P + 1, np.int64)
    for q in range(P):
        counts[order[q] + 1] = counts_go[q]
    offsets = np.cumsum(counts)
    gids = np.empty(offsets[P], np.int64)
    ws = np.empty(offsets[P], go_ws.dtype)
    for q in prange(P):
        p = order[q]
        src = start_go[q]
        dst = offsets[p]
        for k in range(counts_go[q]):
            gids[dst + k] = go_ids[src + k]
            ws[dst + k] = go_ws[src + k]
    return offsets, gids, ws


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
