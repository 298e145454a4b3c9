"""Cameras of synthetic scenes: look-at poses, focal length, camera paths, pixel rays.

Cameras are OpenCV (x right, y down, z forward) ``c2w`` 4x4 in the world frame of
:mod:`pcf_gs.synth.layout` (metres, z up); pixel (row i, col j) has its centre at
(j + 0.5, i + 0.5).
"""

from __future__ import annotations

import math

import numpy as np

from pcf_gs.geometry import axis_angle_to_rotmat
from pcf_gs.synth.layout import Scene


def look_at_opencv(pos: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """[4,4] OpenCV c2w (x right, y down, z forward) at ``pos`` looking at ``target`` (z up world)."""
    f = np.asarray(target, np.float64) - pos
    f /= np.linalg.norm(f)
    up = np.array([0.0, 0.0, 1.0])
    if abs(f @ up) > 0.999:
        up = np.array([0.0, 1.0, 0.0])
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    R = np.stack([r, d, f], axis=1)
    if roll:
        R = R @ axis_angle_to_rotmat([0, 0, 1], roll)
    c2w = np.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = pos
    return c2w


def focal_from_fov(fov_x_deg: float, width: int) -> float:
    """Pixel focal length for a horizontal field of view."""
    return 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)


def _clear_position(p: np.ndarray, scene: Scene, clearance: float) -> np.ndarray:
    """Push a camera position out of objects' bounding spheres (+clearance), keep it in the room."""
    lo, hi = scene.room.lo + 0.25, scene.room.hi - 0.25
    prims = scene.prims
    p = np.clip(p.astype(np.float64).copy(), lo, hi)
    for _ in range(30):
        if len(prims) == 0:
            break
        d = p - prims.center
        dist = np.linalg.norm(d, axis=1)
        over = prims.radius + clearance - dist
        k = int(np.argmax(over))
        if over[k] <= 0:
            break
        dirv = d[k].copy()
        dirv[2] = max(dirv[2], 0.0) + 0.3  # prefer moving up and out
        dirv /= np.linalg.norm(dirv)
        p = np.clip(p + dirv * (over[k] + 0.02), lo, hi)
    return p


def camera_path(
    scene: Scene,
    kind: str,
    n: int,
    rng: np.random.Generator,
    height_range: tuple[float, float] = (0.7, 2.2),
    clearance: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` OpenCV c2w [n,4,4] and look-at targets [n,3] for path ``kind``.

    random  independent poses anywhere in the room, looking at a random object or area
    orbit   an ellipse around the object region, height and target oscillating
    walk    a smooth random spline through the room, looking at a smoothly moving target
    """
    room = scene.room
    centers = scene.prims.center if len(scene.objects) else np.zeros((1, 3))
    ring_x = room.region[0] + 0.5 * (room.size[0] / 2 - room.region[0])
    ring_y = room.region[1] + 0.5 * (room.size[1] / 2 - room.region[1])
    h0, h1 = height_range
    h1 = min(h1, room.size[2] - 0.3)
    poses, targets = [], []
    if kind == "random":
        for _ in range(n):
            for _try in range(20):
                if rng.uniform() < 0.7:  # from the outer ring, looking in
                    az = rng.uniform(0, 2 * np.pi)
                    rad = rng.uniform(0.85, 1.15)
                    p = np.array([ring_x * rad * math.cos(az), ring_y * rad * math.sin(az), rng.uniform(h0, h1)])
                else:
                    p = np.array([*rng.uniform(room.lo[:2] + 0.3, room.hi[:2] - 0.3), rng.uniform(h0, h1)])
                p = _clear_position(p, scene, clearance)
                t = centers[int(rng.integers(len(centers)))] + rng.normal(size=3) * 0.3
                t[2] = np.clip(t[2], 0.0, 1.5)
                if np.linalg.norm(t - p) > 1.0:
                    break
            poses.append(look_at_opencv(p, t, roll=float(rng.normal(0, np.radians(4)))))
            targets.append(t)
    elif kind == "orbit":
        th0 = rng.uniform(0, 2 * np.pi)
        hm, ha = 0.5 * (h0 + h1), 0.5 * (h1 - h0) * rng.uniform(0.4, 1.0)
        phase = rng.uniform(0, 2 * np.pi)
        tc = np.array([*centers[:, :2].mean(axis=0), 0.3])
        for i in range(n):
            th = th0 + 2 * np.pi * i / max(n, 1)
            p = np.array([ring_x * math.cos(th), ring_y * math.sin(th), hm + ha * math.sin(2 * th + phase)])
            p = _clear_position(p, scene, clearance)
            t = tc + 0.25 * np.array([room.region[0] * math.sin(3 * th), room.region[1] * math.cos(2 * th), 0.5])
            poses.append(look_at_opencv(p, t))
            targets.append(t)
    elif kind == "walk":
        k = 6
        # closed Catmull-Rom spline through k control points on a jittered ring
        az = np.sort(rng.uniform(0, 2 * np.pi, k)) + rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.6, 1.1, k)
        ctrl = np.stack([ring_x * rad * np.cos(az), ring_y * rad * np.sin(az), rng.uniform(h0, h1, k)], 1)
        tctrl = centers[rng.integers(len(centers), size=k)] * np.array([1, 1, 0.5]) + np.array([0, 0, 0.2])
        span = 0.6 + 0.4 * rng.uniform()  # walk covers part of the loop
        for i in range(n):
            s = span * k * i / max(n - 1, 1)
            p = _catmull_rom(ctrl, s)
            t = _catmull_rom(tctrl, s)
            p = _clear_position(p, scene, clearance)
            if np.linalg.norm(t - p) < 0.8:
                t = p + (t - p) / max(np.linalg.norm(t - p), 1e-6) * 0.8
                t[2] = min(t[2], p[2] - 0.2)
            poses.append(look_at_opencv(p, t))
            targets.append(t)
    else:
        raise ValueError(f"unknown camera path {kind!r} (random, orbit, walk)")
    return np.stack(poses), np.stack(targets)


def _catmull_rom(ctrl: np.ndarray, s: float) -> np.ndarray:
    k = len(ctrl)
    i = int(math.floor(s)) % k
    u = s - math.floor(s)
    p0, p1, p2, p3 = ctrl[(i - 1) % k], ctrl[i], ctrl[(i + 1) % k], ctrl[(i + 2) % k]
    return 0.5 * (
        2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u * u + (-p0 + 3 * p1 - 3 * p2 + p3) * u**3
    )



def camera_rays(K: np.ndarray, c2w: np.ndarray, width: int, height: int, offset=(0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """Rays through pixel positions (j + offset_x, i + offset_y): origin [3], dirs [H*W,3].

    Directions have camera-z component 1, so the hit parameter ``t`` is the z-depth.
    """
    j, i = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x = (j + offset[0] - K[0, 2]) / K[0, 0]
    y = (i + offset[1] - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
    return c2w[:3, 3].copy(), d_cam @ c2w[:3, :3].T
