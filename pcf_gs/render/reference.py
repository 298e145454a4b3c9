"""Reference renderers: a brute-force float64 per-pixel one (tests) and a dense-tile
PyTorch rasterizer (the benchmark baseline).

Neither uses the CPU kernels; the brute-force one shares no code with the fast path
at all (its projection is written again in numpy float64).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from pcf_gs.render.constants import ALPHA_MAX, ALPHA_THRESHOLD, T_STOP, TILE


# --------------------------------------------------------------------------- brute force


def project_reference(means, quats, scales, opacities, viewmat, K, width, height,
                      eps2d=0.3, near_plane=0.01, far_plane=1e10):
    """float64 numpy EWA projection of N Gaussians into one camera (gsplat's rules).

    Returns dict of numpy arrays: means2d [N,2], conics [N,3], depths [N], valid [N]
    (depth within [near, far], det > 0, opacity >= 1/255; off-screen Gaussians stay
    valid: they cannot reach a pixel with alpha >= 1/255 anyway) and compensation [N],
    sqrt(det(J Sigma J^T) / det(J Sigma J^T + eps2d I)) from the two matrices (antialiased mode).
    """
    m = np.asarray(means, np.float64)
    q = np.asarray(quats, np.float64)
    s = np.asarray(scales, np.float64)
    o = np.asarray(opacities, np.float64)
    V = np.asarray(viewmat, np.float64)
    K = np.asarray(K, np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)  # [N,3,3]
    cov = R @ np.einsum("nj,nkj->njk", s * s, R)  # R diag(s^2) R^T
    pc = m @ V[:3, :3].T + V[:3, 3]
    covc = V[:3, :3] @ cov @ V[:3, :3].T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    X, Y, Z = pc.T
    ok = (Z >= near_plane) & (Z <= far_plane)
    Zs = np.where(ok, Z, 1.0)
    limx_p = (width - cx) / fx + 0.3 * 0.5 * width / fx
    limx_n = cx / fx + 0.3 * 0.5 * width / fx
    limy_p = (height - cy) / fy + 0.3 * 0.5 * height / fy
    limy_n = cy / fy + 0.3 * 0.5 * height / fy
    tx = Zs * np.clip(X / Zs, -limx_n, limx_p)
    ty = Zs * np.clip(Y / Zs, -limy_n, limy_p)
    J = np.zeros((len(m), 2, 3))
    J[:, 0, 0] = fx / Zs
    J[:, 0, 2] = -fx * tx / Zs**2
    J[:, 1, 1] = fy / Zs
    J[:, 1, 2] = -fy * ty / Zs**2
    c2_orig = J @ covc @ J.transpose(0, 2, 1)
    c2 = c2_orig + eps2d * np.eye(2)
    det = c2[:, 0, 0] * c2[:, 1, 1] - c2[:, 0, 1] * c2[:, 1, 0]
    det_orig = np.linalg.det(c2_orig)
    ok &= det > 0
    ok &= o >= ALPHA_THRESHOLD
    dets = np.where(det > 0, det, 1.0)
    conics = np.stack([c2[:, 1, 1] / dets, -c2[:, 0, 1] / dets, c2[:, 0, 0] / dets], -1)
    means2d = np.stack([fx * X / Zs + cx, fy * Y / Zs + cy], -1)
    comp = np.sqrt(np.clip(det_orig / dets, 0.0, None))
    return {"means2d": means2d, "conics": conics, "depths": Z, "valid": ok, "compensation": comp}


def composite_reference(means2d, conics, opacities, colors, depths, valid, width, height,
                        background=None):
    """Brute-force float64 compositing of one image: every valid Gaussian, for every
    pixel, front to back in (float32-depth, index) order, with gsplat's per-pixel rules.

    Args: numpy arrays means2d [N,2], conics [N,3], opacities [N], colors [N,D],
        depths [N], valid [N] bool; background [D] or None.

    Returns:
        out [H,W,D], alpha [H,W], near_stop [H,W] bool: pixels where some
        next_T came within 0.1% of the 1e-4 stop threshold, so float32 and float64
        may legitimately stop one Gaussian apart there.
    """
    colors = np.asarray(colors, np.float64)
    D = colors.shape[1]
    idx = np.nonzero(valid)[0]
    order = idx[np.argsort(np.asarray(depths, np.float32)[idx], kind="stable")]
    ys, xs = np.mgrid[0:height, 0:width]
    px = xs.ravel() + 0.5
    py = ys.ravel() + 0.5
    P = px.size
    T = np.ones(P)
    done = np.zeros(P, bool)
    near = np.zeros(P, bool)
    out = np.zeros((P, D))
    for g in order:
        mx, my = means2d[g]
        a, b, c = conics[g]
        dx = mx - px
        dy = my - py
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = np.minimum(ALPHA_MAX, opacities[g] * np.exp(-sigma))
        use = (~done) & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        nt = T * (1 - alpha)
        near |= use & (np.abs(nt / T_STOP - 1.0) < 1e-3)
        stop = use & (nt <= T_STOP)
        done |= stop
        use &= ~stop
        out[use] += (alpha[use] * T[use])[:, None] * colors[g][None, :]
        T = np.where(use, nt, T)
    if background is not None:
        out += T[:, None] * np.asarray(background, np.float64)[None, :]
    return out.reshape(height, width, D), (1 - T).reshape(height, width), near.reshape(height, width)


def render_reference(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                     eps2d=0.3, near_plane=0.01, far_plane=1e10, backgrounds=None,
                     render_mode="RGB", rasterize_mode="classic"):
    """float64 brute-force version of ``pcf_gs.render.rasterize`` (numpy in, numpy out).

    colors [N,D] or [C,N,D]. Returns (out [C,H,W,X], alpha [C,H,W,1], near_stop [C,H,W]).
    """
    to = lambda t: t.detach().double().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, np.float64)  # noqa: E731
    means, quats, scales, opacities, colors, viewmats, Ks = map(
        to, (means, quats, scales, opacities, colors, viewmats, Ks))
    C = viewmats.shape[0]
    bgs = None if backgrounds is None else to(backgrounds)
    outs, alphas, nears = [], [], []
    for ci in range(C):
        pr = project_reference(means, quats, scales, opacities, viewmats[ci], Ks[ci], width, height,
                               eps2d, near_plane, far_plane)
        col = colors[ci] if colors.ndim == 3 else colors
        bg = None if bgs is None else bgs[ci]
        if render_mode in ("RGB+D", "RGB+ED"):
            col = np.concatenate([col, pr["depths"][:, None]], 1)
            bg = None if bg is None else np.concatenate([bg, [0.0]])
        elif render_mode in ("D", "ED"):
            col = pr["depths"][:, None]
            bg = None
        op = opacities * pr["compensation"] if rasterize_mode == "antialiased" else opacities
        o, a, n = composite_reference(pr["means2d"], pr["conics"], op, col, pr["depths"],
                                      pr["valid"], width, height, bg)
        if render_mode in ("ED", "RGB+ED"):
            o[..., -1] = o[..., -1] / np.maximum(a, 1e-10)
        outs.append(o)
        alphas.append(a[..., None])
        nears.append(n)
    return np.stack(outs), np.stack(alphas), np.stack(nears)


# --------------------------------------------------------------------------- dense tiles


def dense_tile_memory_estimate(radii: Tensor, means2d: Tensor, width: int, height: int, D: int) -> int:
    """Bytes the dense-tile rasterizer would hold for autograd (rough: ~(12 + D) floats
    per (tile, pixel, slot)), to skip configurations that would not fit."""
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    _, counts = _tile_lists(means2d, radii, tiles_x, tiles_y)
    return int(counts.numel() * TILE * TILE * int(counts.max().item() if counts.numel() else 0) * (12 + D) * 4)


def _tile_lists(means2d, radii, tiles_x, tiles_y):
    """gsplat's tile rectangles for one image -> (tile ids [M], gaussian ids [M]), counts [T]."""
    m = means2d.detach()
    r = radii.float()
    ok = (radii > 0).all(-1)
    x0 = torch.clamp(torch.floor((m[:, 0] - r[:, 0]) / TILE), 0, tiles_x).long()
    x1 = torch.clamp(torch.ceil((m[:, 0] + r[:, 0]) / TILE), 0, tiles_x).long()
    y0 = torch.clamp(torch.floor((m[:, 1] - r[:, 1]) / TILE), 0, tiles_y).long()
    y1 = torch.clamp(torch.ceil((m[:, 1] + r[:, 1]) / TILE), 0, tiles_y).long()
    tiles, gids = [], []
    nx = (x1 - x0) * ok
    ny = (y1 - y0) * ok
    for gx in range(int(nx.max().item()) if nx.numel() else 0):
        for gy in range(int(ny.max().item()) if ny.numel() else 0):
            sel = (gx < nx) & (gy < ny)
            g = torch.nonzero(sel)[:, 0]
            tiles.append((y0[g] + gy) * tiles_x + (x0[g] + gx))
            gids.append(g)
    if tiles:
        t = torch.cat(tiles)
        g = torch.cat(gids)
    else:
        t = torch.zeros(0, dtype=torch.long)
        g = torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(t, minlength=tiles_x * tiles_y)
    return (t, g), counts


def rasterize_dense_tiles(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor,
                          radii: Tensor, depths: Tensor, width: int, height: int,
                          backgrounds: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Plain PyTorch tile rasterizer (autograd backward), the benchmark baseline.

    Per image: each tile's Gaussians are padded to K (the longest tile list), sorted
    by depth, and every (tile, pixel, slot) alpha is evaluated densely:
    tensors [tiles, 256, K]. Transmittance by an exclusive cumulative product;
    stop rule: a Gaussian contributes iff the transmittance after it stays > 1e-4.

    Args: means2d [C,N,2], conics [C,N,3], opacities [C,N], colors [C,N,D],
        radii [C,N,2], depths [C,N], backgrounds [C,D] or None.
    Returns: colors [C,H,W,D], alphas [C,H,W,1].
    """
    C, N, D = colors.shape
    tiles_x = (width + TILE - 1) // TILE
    tiles_y = (height + TILE - 1) // TILE
    nt = tiles_x * tiles_y
    ly, lx = torch.meshgrid(torch.arange(TILE), torch.arange(TILE), indexing="ij")
    ty, tx = torch.meshgrid(torch.arange(tiles_y), torch.arange(tiles_x), indexing="ij")
    pxs = (tx.reshape(-1, 1) * TILE + lx.reshape(1, -1)).to(colors.dtype) + 0.5  # [T,256]
    pys = (ty.reshape(-1, 1) * TILE + ly.reshape(1, -1)).to(colors.dtype) + 0.5
    outs, alphas = [], []
    for ci in range(C):
        (t, g), counts = _tile_lists(means2d[ci], radii[ci], tiles_x, tiles_y)
        Kmax = max(int(counts.max().item()) if counts.numel() else 0, 1)
        # sort by (tile, depth): depth first (stable), then tile (stable)
        o1 = torch.argsort(depths[ci].detach()[g], stable=True)
        t, g = t[o1], g[o1]
        o2 = torch.argsort(t, stable=True)
        t, g = t[o2], g[o2]
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(t.numel()) - start[t]
        ids = torch.full((nt, Kmax), N, dtype=torch.long)
        ids[t, slot] = g
        pad = lambda x, v: torch.cat([x, torch.full((1,) + x.shape[1:], v, dtype=x.dtype)], 0)  # noqa: E731
        m2 = pad(means2d[ci], 0.0)[ids]  # [T,K,2]
        cn = pad(conics[ci], 0.0)[ids]
        op = pad(opacities[ci], 0.0)[ids]  # padding slots: opacity 0 -> skipped
        col = pad(colors[ci], 0.0)[ids]  # [T,K,D]
        dx = m2[:, None, :, 0] - pxs[:, :, None]  # [T,256,K]
        dy = m2[:, None, :, 1] - pys[:, :, None]
        sigma = 0.5 * (cn[:, None, :, 0] * dx * dx + cn[:, None, :, 2] * dy * dy) + cn[:, None, :, 1] * dx * dy
        alpha = torch.clamp_max(op[:, None, :] * torch.exp(-sigma), ALPHA_MAX)
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
        t_incl = torch.cumprod(1 - alpha, dim=-1)
        t_excl = torch.cat([torch.ones_like(t_incl[..., :1]), t_incl[..., :-1]], -1)
        keep = (t_incl > T_STOP).to(alpha.dtype)
        w = alpha * t_excl * keep  # [T,256,K]
        img = torch.einsum("tpk,tkd->tpd", w, col)  # [T,256,D]
        acc = w.sum(-1)  # [T,256]
        if backgrounds is not None:
            img = img + (1 - acc)[..., None] * backgrounds[ci]
        img = img.reshape(tiles_y, tiles_x, TILE, TILE, D).permute(0, 2, 1, 3, 4).reshape(
            tiles_y * TILE, tiles_x * TILE, D)[:height, :width]
        acc = acc.reshape(tiles_y, tiles_x, TILE, TILE).permute(0, 2, 1, 3).reshape(
            tiles_y * TILE, tiles_x * TILE)[:height, :width]
        outs.append(img)
        alphas.append(acc[..., None])
    return torch.stack(outs), torch.stack(alphas)


def rasterize_dense(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                    eps2d=0.3, near_plane=0.01, far_plane=1e10, backgrounds=None):
    """Projection (torch) + ``rasterize_dense_tiles``: the whole dense baseline."""
    from pcf_gs.render.projection import project_gaussians

    C, N = viewmats.shape[0], means.shape[0]
    radii, means2d, depths, conics = project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)
    if colors.dim() == 2:
        colors = colors[None].expand(C, N, -1)
    return rasterize_dense_tiles(means2d, conics, opacities[None].expand(C, N), colors, radii,
                                 depths, width, height, backgrounds)
