"""Rendering synthetic scenes: shading of ray hits and whole views with exact ground truth.

Lambertian + optional Blinn-Phong specular, ambient + lights, cast shadows (shadow rays
against all objects); supersampled colour, GT instance / semantic / depth / hit position
from the pixel-centre ray.
"""

from __future__ import annotations

import numpy as np

from pcf_gs.synth import raycast
from pcf_gs.synth.appearance import linear_to_srgb
from pcf_gs.synth.cameras import camera_rays
from pcf_gs.synth.layout import Scene


def shade(scene: Scene, hits: raycast.Hits, dirs: np.ndarray) -> np.ndarray:
    """Linear RGB [R,3] of the hits: ambient + sum over lights (Lambert + Blinn-Phong) x shadow."""
    R = len(hits.t)
    ids = hits.id
    albedo = np.zeros((R, 3))
    spec_k = np.zeros(R)
    shin = np.ones(R)
    order = np.argsort(ids, kind="stable")
    uniq, starts = np.unique(ids[order], return_index=True)
    bounds = list(starts[1:]) + [R]
    room = scene.room
    for k, a, b in zip(uniq, starts, bounds):
        idx = order[a:b]
        if k >= 0:
            m = scene.objects[k].material
        elif k == raycast.ROOM_FLOOR:
            m = room.floor
        elif k == raycast.ROOM_CEILING:
            m = room.ceiling
        elif k == raycast.MISS:
            continue
        else:
            m = room.walls
        albedo[idx] = m.texture.albedo(hits.local[idx])
        spec_k[idx] = m.specular
        shin[idx] = m.shininess
    n = hits.normal
    p = hits.position
    v = -dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    color = albedo * scene.ambient
    shadows = scene.shadows
    for lt in scene.lights:
        if lt.kind == "directional":
            L = np.broadcast_to(-lt.vector / np.linalg.norm(lt.vector), (R, 3))
            dist = np.full(R, np.inf)
            att = np.ones(R)
        else:
            Lv = lt.vector - p
            dist = np.linalg.norm(Lv, axis=1)
            L = Lv / np.maximum(dist, 1e-9)[:, None]
            att = 1.0 / (1.0 + 0.08 * dist**2)  # soft falloff so the far side of a room is not black
        ndl = np.einsum("ij,ij->i", n, L)
        lit = ndl > 0
        vis = lit.copy()
        if shadows and len(scene.objects) and lit.any():
            idx = np.nonzero(lit)[0]
            eps = 1e-4 * (1.0 + np.abs(p[idx]).max(axis=1))
            blocked = raycast.occluded(p[idx] + n[idx] * eps[:, None], L[idx], dist[idx], scene.prims, tmin=1e-6)
            vis[idx[blocked]] = False
        w = np.where(vis, ndl, 0.0) * att * lt.intensity
        color += albedo * (w[:, None] * lt.color)
        if np.any(spec_k > 0):
            h = L + v
            h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
            ndh = np.clip(np.einsum("ij,ij->i", n, h), 0, 1)
            s = spec_k * ndh**shin * vis * att * lt.intensity
            color += s[:, None] * lt.color
    return color


def render_view(scene: Scene, K: np.ndarray, c2w: np.ndarray, width: int, height: int, supersample: int = 2) -> dict:
    """Render one view.

    Returns a dict of
      rgb       [H,W,3] uint8 sRGB (supersample x supersample samples per pixel, box filter)
      instance  [H,W] int16 GT instance (object index + 1, 0 = room), from the pixel-centre ray
      semantic  [H,W] uint8 GT class (0 = room/stuff)
      depth     [H,W] float32 z-depth in metres (pixel-centre ray)
      position  [H,W,3] float64 world hit point of the pixel-centre ray
    """
    o, d = camera_rays(K, c2w, width, height)
    hc = raycast.trace(o, d, scene.prims, scene.room.lo, scene.room.hi)
    ids = hc.id
    inst = np.where(ids >= 0, ids + 1, 0).astype(np.int16)
    cls = scene.class_of_index
    sem = np.where(ids >= 0, cls[np.maximum(ids, 0)] if len(cls) else 0, 0).astype(np.uint8)
    if supersample <= 1:
        lin = shade(scene, hc, d)
    else:
        lin = np.zeros((width * height, 3))
        ss = supersample
        for a in range(ss):
            for b in range(ss):
                off = ((b + 0.5) / ss, (a + 0.5) / ss)
                o2, d2 = camera_rays(K, c2w, width, height, off)
                h2 = raycast.trace(o2, d2, scene.prims, scene.room.lo, scene.room.hi)
                lin += shade(scene, h2, d2)
        lin /= ss * ss
    rgb = np.round(linear_to_srgb(lin) * 255.0).astype(np.uint8).reshape(height, width, 3)
    return {
        "rgb": rgb,
        "instance": inst.reshape(height, width),
        "semantic": sem.reshape(height, width),
        "depth": hc.t.astype(np.float32).reshape(height, width),
        "position": hc.position.reshape(height, width, 3),
    }
