"""Browser-side rendering: the splats are sent to the browser once and viser draws them with WebGL.

In this render mode (``pcf-gs view --render browser``) the server renders no
images: the Gaussians go to the browser as one viser Gaussian-splat node
(``SceneApi.add_gaussian_splats``) and the browser sorts and draws them itself,
at the browser's frame rate and the window's resolution.

viser 1.1.1's splats take one colour and one opacity per Gaussian (its buffer
is 32 bytes a Gaussian: centre 3 x f32, covariance upper triangle 6 x f16,
RGBA 4 x u8), so

- RGB is the SH band 0 colour: view-dependent SH (bands 1-3) is not shown;
- semantic and instance modes recolour the splats (the palettes of
  :mod:`pcf_gs.viewer.view_renderer`), recolours are flat colours, the
  selection's highlight dims every other Gaussian's colour;
- hidden objects are left out of the buffer (they neither show nor occlude).

Covariances are ``R diag(s²) Rᵀ`` in the world frame (the frame the viewer
shows). Every change of colour or visibility replaces the node's buffer:
viser 1.1.1 has no partial update of a splat node (assigning ``rgbs`` or
``opacities`` on the handle also re-sends the whole buffer), so an update costs
32 bytes per visible Gaussian on the websocket; the geometry is packed once per
scene and only the RGBA column changes. Uncertainty, depth and the overlay need
per-pixel blending of other quantities and stay server-side.
"""

from __future__ import annotations

import numpy as np

from pcf_gs.geometry import quat_to_rotmat
from pcf_gs.sh import C0 as SH_C0
from pcf_gs.viewer.target import STUFF, ViewScene

RENDERS = ("server", "browser")
RENDER_LABELS = {"server": "Server (streamed images)", "browser": "Browser (WebGL splats)"}
BROWSER_MODES = ("rgb", "semantic", "instance")
BYTES_PER_GAUSSIAN = 32  # viser 1.1.1's splat buffer: 8 x uint32 a Gaussian
NODE_NAME = "/pcf_gs_splats"



def browser_unsupported(mode: str, overlay: bool) -> str | None:
    """Why a display state cannot be drawn in the browser (None: it can)."""
    if mode not in BROWSER_MODES:
        return f"{mode} mode is rendered on the server only (the browser draws RGB, semantic and instance)"
    if overlay:
        return "the overlay is rendered on the server only"
    return None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def world_covariances(quats: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """[N,3,3] float32 covariances ``R diag(exp(s)²) Rᵀ`` from raw quaternions (wxyz, any norm)
    and log scales, world frame."""
    q = np.asarray(quats, dtype=np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    R = quat_to_rotmat(q)
    s2 = np.exp(2.0 * np.asarray(log_scales, dtype=np.float64))
    return ((R * s2[:, None, :]) @ np.swapaxes(R, -1, -2)).astype(np.float32)


def pack_geometry(centers: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """[N,8] uint32 splat buffer in viser 1.1.1's layout with the RGBA column left zero."""
    n = len(centers)
    buf = np.zeros((n, 8), dtype=np.uint32)
    buf[:, 0:3] = np.ascontiguousarray(centers, dtype=np.float32).view(np.uint32)
    triu = np.asarray(covariances, dtype=np.float32).reshape(n, 9)[:, [0, 1, 2, 4, 5, 8]]
    buf[:, 4:7] = np.ascontiguousarray(triu.astype(np.float16)).view(np.uint32)
    return buf


class SplatColors:
    """Per-Gaussian display colours of a scene for the browser, in [0, 1] float32 (numpy),
    the same as the server-side modes' (:meth:`ViewRenderer.set_scene`)."""

    def __init__(self, scene: ViewScene):
        from pcf_gs.viewer.view_renderer import semantic_palette

        s = scene.splats
        self.n = len(scene)
        self.dc = np.clip(SH_C0 * np.asarray(s.sh0, dtype=np.float32)[:, 0, :] + 0.5, 0.0, 1.0)
        self.opacity = _sigmoid(np.asarray(s.opacities, dtype=np.float32).reshape(-1))
        self.alive = self.opacity >= 1.0 / 255.0  # as the rasterizer culls
        self.ids = None if scene.instance_ids is None else scene.instance_ids.astype(np.int64)
        self.instance = self.semantic = None
        if self.ids is not None:
            table = scene.object_colors().astype(np.float32) / 255.0
            self.instance = table[np.clip(self.ids, 0, None)]
            stuff = self.ids <= STUFF
            self.instance[stuff] = self.dc[stuff] * 0.35
        if scene.semantic_ids is not None:
            k = max(len(scene.class_names), int(scene.semantic_ids.max(initial=0)) + 1)
            pal = semantic_palette(k).astype(np.float32) / 255.0
            self.semantic = pal[np.clip(scene.semantic_ids.astype(np.int64), 0, k - 1)]

    def visible_mask(self, state) -> np.ndarray:
        """[N] bool: the Gaussians drawn under ``state`` (alive and not in a hidden object)."""
        mask = self.alive.copy()
        if self.ids is not None and state.hidden:
            mask &= ~np.isin(self.ids, np.fromiter(state.hidden, dtype=np.int64))
        return mask

    def rgba(self, state, idx: np.ndarray | None = None) -> np.ndarray:
        """[M,4] uint8 RGBA of the Gaussians ``idx`` (default all) under ``state``."""
        from pcf_gs.viewer.view_renderer import HIGHLIGHT_DIM

        reason = browser_unsupported(state.mode, state.overlay)
        if reason:
            raise ValueError(reason)
        sl = slice(None) if idx is None else idx
        base = {"rgb": self.dc, "semantic": self.semantic, "instance": self.instance}[state.mode]
        if base is None:
            raise ValueError(f"{state.mode} mode needs labels this scene does not have")
        rgb = base[sl].copy()
        ids = None if self.ids is None else self.ids[sl]
        if ids is not None and state.recolors and state.mode in ("rgb", "instance"):
            for oid, col in state.recolors:
                rgb[ids == int(oid)] = np.asarray(col, dtype=np.float32) / 255.0
        if ids is not None and state.highlight:
            rgb[ids != int(state.highlight)] *= 1.0 - HIGHLIGHT_DIM
        out = np.empty((len(rgb), 4), dtype=np.uint8)
        out[:, :3] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out[:, 3] = np.clip(self.opacity[sl] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out


class BrowserSplats:
    """The scene as one viser splat node, updated on colour / visibility changes.

    Args:
        scene_api: ``ViserServer.scene`` (the node is shared by every tab).
    """

    def __init__(self, scene_api, name: str = NODE_NAME):
        self.api, self.name = scene_api, name
        self.handle = None
        self._geometry: np.ndarray | None = None  # [N,8] packed centres + covariances
        self._colors: SplatColors | None = None
        self._scene_key = None
        self.gaussians_sent = 0  # in the last message
        self.bytes_sent = 0  # raw buffer bytes, all messages
        self.updates = 0
        self._shown_key = None

    def set_scene(self, scene: ViewScene) -> None:
        """Pack a scene's geometry (done once per scene; the next :meth:`show` sends it)."""
        s = scene.splats
        self._geometry = pack_geometry(s.means, world_covariances(s.quats, s.scales))
        self._colors = SplatColors(scene)
        self._scene_key = (id(scene), scene.version)

    def show(self, scene: ViewScene, state) -> int:
        """Send (or update) the splats for ``state``; returns the number of Gaussians sent."""
        if self._scene_key != (id(scene), scene.version) or self._geometry is None:
            self.set_scene(scene)
        key = (self._scene_key, state.mode, state.hidden, state.recolors, state.highlight)
        if key == self._shown_key and self.handle is not None:
            return self.gaussians_sent  # nothing the splats show changed (e.g. a server-side slider)
        self._shown_key = key
        mask = self._colors.visible_mask(state)
        idx = np.flatnonzero(mask)
        buf = self._geometry[idx]
        buf[:, 7] = self._colors.rgba(state, idx).view(np.uint32)[:, 0]
        if len(idx) == 0:  # viser needs at least one Gaussian: keep the node, hide it
            if self.handle is not None:
                self.handle.visible = False
            self.gaussians_sent = 0
            return 0
        if self.handle is None:
            self.handle = self.api.add_gaussian_splats(
                self.name, centers=np.zeros((1, 3)), covariances=np.eye(3)[None] * 1e-6,
                rgbs=np.zeros((1, 3)), opacities=np.zeros((1, 1)))
        self.handle.buffer = buf  # one message with the whole buffer (viser 1.1.1 has no partial update)
        if not self.handle.visible:
            self.handle.visible = True
        self.gaussians_sent = len(idx)
        self.bytes_sent += buf.nbytes
        self.updates += 1
        return len(idx)

    def remove(self) -> None:
        self._shown_key = None
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
