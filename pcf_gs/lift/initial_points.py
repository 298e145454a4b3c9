"""Initial Gaussian positions: SfM-like points when the scene has them, otherwise
random points in the region the training cameras see."""

from __future__ import annotations

import numpy as np

from pcf_gs.data.scene import Scene


def project(points: np.ndarray, K: np.ndarray, c2w: np.ndarray, width: int, height: int):
    """points [P,3] scene frame -> (u [P], v [P], z [P], inside [P] bool)."""
    w2c = np.linalg.inv(c2w.astype(np.float64))
    xc = points @ w2c[:3, :3].T + w2c[:3, 3]
    z = xc[:, 2]
    zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
    u = K[0, 0] * xc[:, 0] / zs + K[0, 2]
    v = K[1, 1] * xc[:, 1] / zs + K[1, 2]
    inside = (z > 1e-3) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return u, v, z, inside


def random_points_in_view(
    scene: Scene, n: int, seed: int = 0, near: float = 0.05, far: float | None = None, min_views: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points seen by at least ``min_views`` training cameras, with colours [n,3] in [0,1].

    Points are drawn along random pixel rays of random training views at a
    depth uniform in [near, far] (far defaults to 3x the camera radius, the
    scene being normalised so cameras fit in the unit sphere); each takes the
    colour of the pixel it was drawn from. Points seen by too few cameras are
    redrawn (up to a few rounds), so the budget goes where views overlap.
    """
    rng = np.random.default_rng(seed)
    frames = scene.train_frames or scene.frames
    if far is None:
        pos = np.stack([f.c2w[:3, 3] for f in frames])
        radius = float(np.linalg.norm(pos - pos.mean(0), axis=1).max()) or 1.0
        far = 3.0 * radius
    pts_all, col_all = [], []
    need = n
    for _round in range(6):
        m = max(need * 2, 64)
        fi = rng.integers(0, len(frames), m)
        pts = np.empty((m, 3))
        col = np.empty((m, 3))
        for k in np.unique(fi):
            sel = np.where(fi == k)[0]
            f = frames[k]
            u = rng.uniform(0, f.width, len(sel))
            v = rng.uniform(0, f.height, len(sel))
            d = rng.uniform(near, far, len(sel))
            x = np.stack([(u - f.K[0, 2]) / f.K[0, 0], (v - f.K[1, 2]) / f.K[1, 1], np.ones_like(u)], 1) * d[:, None]
            pts[sel] = x @ f.c2w[:3, :3].T.astype(np.float64) + f.c2w[:3, 3]
            col[sel] = f.rgb[v.astype(int), u.astype(int)] / 255.0
        if min_views > 1 and len(frames) > 1:
            seen = np.zeros(m, dtype=np.int32)
            for f in frames:
                seen += project(pts, f.K, f.c2w, f.width, f.height)[3]
            keep = seen >= min_views
            pts, col = pts[keep], col[keep]
        pts_all.append(pts[:need])
        col_all.append(col[:need])
        need -= len(pts_all[-1])
        if need <= 0:
            break
    pts = np.concatenate(pts_all)
    col = np.concatenate(col_all)
    if len(pts) < n:  # views barely overlap: fill with single-view points
        extra, extra_c = random_points_in_view(scene, n - len(pts), seed + 1, near, far, min_views=1)
        pts, col = np.concatenate([pts, extra]), np.concatenate([col, extra_c])
    return pts.astype(np.float32), col.astype(np.float32)


def initial_points(scene: Scene, n_random: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """(points [P,3], colours [P,3] in [0,1], source) — the scene's points if any, else random."""
    if scene.points is not None and len(scene.points) > 0:
        col = (
            scene.point_colors.astype(np.float32) / 255.0
            if scene.point_colors is not None
            else np.full((len(scene.points), 3), 0.5, np.float32)
        )
        return scene.points.astype(np.float32), col, "scene points"
    pts, col = random_points_in_view(scene, n_random, seed)
    return pts, col, "random in view"
