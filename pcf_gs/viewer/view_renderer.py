"""The viewer's render call: camera + display state -> uint8 image, and picking.

Independent of viser so that it can be unit-tested and benchmarked without a
browser (``tools/bench_viewer.py``). Every frame is one call of
:func:`pcf_gs.render.rasterize` (gsplat on CUDA, the numba kernels on CPU)
with all the channels the frame needs stacked — RGB, the mode's colours and,
for the depth mode, expected depth — under ``torch.no_grad``.

Modes (``MODES``):

=============  ===============================================================
``rgb``        the splats' colours (SH evaluated for the view direction)
``semantic``   per-Gaussian class (argmax of logits) in a class palette, blended
``instance``   per-Gaussian object id in the colours of ``objects.json``; stuff
               Gaussians show their own colour darkened (as ``segment``'s vis/)
``uncertainty``  alpha-normalised blend of the Gaussians' activated embedding
               variance (mean over dims), log scale, fixed per scene
``depth``      expected depth (accumulated z / alpha), per-frame range
=============  ===============================================================

``overlay`` blends any mode over the RGB image. Visibility (hidden objects,
isolate) removes Gaussians before rasterizing, so hidden objects neither show
nor occlude; recoloured objects take a flat colour in RGB and instance mode.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from pcf_gs.geometry import quat_to_rotmat
from pcf_gs.render.cpu_sh import sh_to_rgb
from pcf_gs.sh import sh0_to_rgb
from pcf_gs.splats.export import distinct_colors
from pcf_gs.viewer.target import STUFF, ViewScene

NEAR_PLANE = 0.01  # world units, as the rasterizer's default
HIGHLIGHT_DIM = 0.55  # what is not selected is drawn at 45% brightness
MODES = ("rgb", "semantic", "instance", "uncertainty", "depth")
MODE_LABELS = {"rgb": "RGB", "semantic": "Semantic", "instance": "Instance", "uncertainty": "Uncertainty", "depth": "Depth"}

# colour map anchors (dark violet -> red -> orange -> pale yellow), linear in between
_CMAP_T = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_CMAP_RGB = np.array([
    [0.04, 0.03, 0.18],
    [0.35, 0.07, 0.45],
    [0.75, 0.22, 0.33],
    [0.98, 0.56, 0.06],
    [0.99, 0.98, 0.62],
])


def colormap(t: torch.Tensor) -> torch.Tensor:
    """[...] values in [0, 1] (clamped) -> [..., 3] RGB in [0, 1]."""
    t = t.clamp(0, 1)
    anchors = torch.as_tensor(_CMAP_RGB, dtype=t.dtype, device=t.device)
    x = t * (len(_CMAP_T) - 1)
    i = x.floor().long().clamp(max=len(_CMAP_T) - 2)
    f = (x - i)[..., None]
    return anchors[i] * (1 - f) + anchors[i + 1] * f


def semantic_palette(num_classes: int) -> np.ndarray:
    """[K, 3] uint8 class colours (a different hue sequence than the instance palette)."""
    return distinct_colors(max(num_classes, 1), seed=5)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: ``c2w`` [4,4] camera-to-world (OpenCV axes: x right, y down,
    z forward; world units), ``fov_y`` vertical field of view in radians; square pixels,
    principal point at the image centre. The image size is chosen per render."""

    c2w: np.ndarray
    fov_y: float

    @classmethod
    def from_wxyz_position(cls, wxyz, position, fov_y: float) -> "Camera":
        """From a viser camera (``T_world_camera`` as quaternion + position, OpenCV axes)."""
        c2w = np.eye(4)
        c2w[:3, :3] = quat_to_rotmat(wxyz)
        c2w[:3, 3] = np.asarray(position, dtype=np.float64)
        return cls(c2w, float(fov_y))

    @classmethod
    def from_ray(cls, origin, direction, fov_y: float) -> "Camera":
        """A camera at ``origin`` looking along ``direction`` (any roll), ``fov_y`` wide."""
        z = np.asarray(direction, dtype=np.float64)
        n = float(np.linalg.norm(z))
        if not np.isfinite(n) or n < 1e-12:
            raise ValueError(f"bad ray direction {direction!r}")
        z = z / n
        a = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        x = np.cross(a, z)
        x /= np.linalg.norm(x)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        c2w[:3, 3] = np.asarray(origin, dtype=np.float64)
        return cls(c2w, float(fov_y))

    def K(self, width: int, height: int) -> np.ndarray:
        """[3,3] intrinsics in pixels for a ``width`` x ``height`` image."""
        f = 0.5 * height / math.tan(0.5 * self.fov_y)
        return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])

    def viewmat(self) -> np.ndarray:
        """[4,4] world-to-camera."""
        return np.linalg.inv(self.c2w)


@dataclass(frozen=True)
class DisplayState:
    """What to show (immutable, so a render thread can hold a snapshot).

    ``hidden``: object ids not drawn (0 hides the stuff / unlabelled Gaussians);
    ``recolors``: (object id, (r, g, b) uint8) pairs; ``highlight``: an object id
    shown at full brightness while everything else is dimmed (the selection), or None;
    ``background``: uint8 RGB.
    """

    mode: str = "rgb"
    overlay: bool = False
    overlay_opacity: float = 0.5
    hidden: frozenset = frozenset()
    recolors: tuple = ()
    highlight: int | None = None
    background: tuple = (0, 0, 0)

    def with_(self, **kw) -> "DisplayState":
        return replace(self, **kw)


def available_modes(scene: ViewScene) -> list[str]:
    """The modes this scene can show (labels are needed for semantic/instance/uncertainty)."""
    out = ["rgb"]
    if scene.has_semantics:
        out.append("semantic")
    if scene.has_instances:
        out.append("instance")
    if scene.has_variance:
        out.append("uncertainty")
    out.append("depth")
    return out


def mode_unavailable_reason(scene: ViewScene, mode: str) -> str | None:
    if mode in available_modes(scene):
        return None
    if mode not in MODES:
        return f"unknown mode {mode!r} (one of {', '.join(MODES)})"
    what = {"semantic": "semantic labels", "instance": "object labels", "uncertainty": "embedding variances"}[mode]
    return f"{MODE_LABELS[mode]} needs {what}, which this scene does not have"


@dataclass
class _Visible:
    """The Gaussians drawn under one visibility / recolour state (device tensors, M of them)."""

    means: torch.Tensor  # [M,3]
    quats: torch.Tensor  # [M,4] unit
    scales: torch.Tensor  # [M,3] activated
    opacities: torch.Tensor  # [M]
    sh: torch.Tensor  # [M,S,3]
    recolor_mask: torch.Tensor | None  # [M] bool: flat colour in RGB
    recolor_rgb: torch.Tensor | None  # [M,3]
    instance_rgb: torch.Tensor | None  # [M,3]
    semantic_rgb: torch.Tensor | None  # [M,3]
    variance: torch.Tensor | None  # [M,1]
    ids: torch.Tensor | None  # [M] long object ids
    radius: torch.Tensor  # [M] 3 x the largest scale (world units), for frustum culling

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def prefix(self, k: int) -> "_Visible":
        """The first ``k`` Gaussians (views, no copies); they are stored most important first."""
        return _Visible(*(None if f is None else f[:k] for f in (
            self.means, self.quats, self.scales, self.opacities, self.sh, self.recolor_mask, self.recolor_rgb,
            self.instance_rgb, self.semantic_rgb, self.variance, self.ids, self.radius)))

    def subset(self, idx: torch.Tensor, need: set[str]) -> "_Visible":
        """The Gaussians ``idx``, with only the geometry and the ``need``-ed fields indexed (others None)."""
        take = lambda name: None if name not in need or getattr(self, name) is None else getattr(self, name)[idx]  # noqa: E731
        return _Visible(
            self.means[idx], self.quats[idx], self.scales[idx], self.opacities[idx], take("sh"),
            take("recolor_mask"), take("recolor_rgb"), take("instance_rgb"), take("semantic_rgb"),
            take("variance"), take("ids"), take("radius"),
        )


@dataclass
class FrameInfo:
    """What one render call did (for the stats line and the benchmark)."""

    width: int
    height: int
    seconds: float
    gaussians: int  # drawn (after visibility, level of detail and frustum culling)


class ViewRenderer:
    """Renders a :class:`ViewScene` for the viewer; thread-safe (one render at a time).

    Args:
        scene: what to render (replace it with :meth:`set_scene`).
        device: torch device for the Gaussians (default: CUDA when available, else CPU);
            rasterization goes to gsplat on CUDA and to the numba kernels on CPU.

    The rasterizer keywords (2D blur, antialiasing) are the scene's (``ViewScene.raster``), as in training.
    """

    def __init__(self, scene: ViewScene, device: str | torch.device | None = None):
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.lock = threading.RLock()
        self._cache_key = None
        self._cache: _Visible | None = None
        self._generation = 0
        self.set_scene(scene)

    @property
    def backend(self) -> str:
        return "gsplat (CUDA)" if self.device.type == "cuda" else "numba (CPU)"

    # ------------------------------------------------------------------ scene
    @torch.no_grad()
    def set_scene(self, scene: ViewScene) -> None:
        """Upload a scene's Gaussians (activated) and per-Gaussian display colours."""
        s = scene.splats
        dev = self.device
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)  # noqa: E731
        opac = torch.sigmoid(t(s.opacities))
        alive = opac >= 1.0 / 255.0  # culled by the rasterizer anyway
        base = {
            "means": t(s.means),
            "quats": torch.nn.functional.normalize(t(s.quats), dim=-1),
            "scales": torch.exp(t(s.scales)),
            "opacities": opac,
            "sh": torch.cat([t(s.sh0), t(s.shN)], 1),
        }
        dc = sh0_to_rgb(base["sh"][:, 0, :]).clamp(0, 1)
        if scene.instance_ids is not None:
            ids = torch.as_tensor(scene.instance_ids.astype(np.int64), device=dev)
            table = torch.as_tensor(scene.object_colors(), dtype=torch.float32, device=dev) / 255.0
            inst_rgb = table[ids.clamp(min=0)]
            stuff = ids <= STUFF
            inst_rgb[stuff] = dc[stuff] * 0.35
            base["ids"] = ids
            base["instance_rgb"] = inst_rgb
        if scene.semantic_ids is not None:
            K = max(len(scene.class_names), int(scene.semantic_ids.max(initial=0)) + 1)
            pal = torch.as_tensor(semantic_palette(K), dtype=torch.float32, device=dev) / 255.0
            base["semantic_rgb"] = pal[torch.as_tensor(scene.semantic_ids.astype(np.int64), device=dev).clamp(0, K - 1)]
        if scene.variance is not None:
            v = t(scene.variance).clamp(min=1e-8)[:, None]
            base["variance"] = v
            lv = torch.log(v[alive.nonzero()[:, 0]] if bool(alive.any()) else v)
            lo, hi = (float(x) for x in torch.quantile(lv.flatten()[:1_000_000].cpu(), torch.tensor([0.02, 0.98])))
            log_var_range = (lo, hi if hi > lo + 1e-3 else lo + 1.0)
        else:
            log_var_range = (0.0, 1.0)
        with self.lock:  # swap everything at once: a render holds the lock for its whole frame
            self.scene = scene
            self._base = base
            self._alive = alive
            self.log_var_range = log_var_range
            self._generation += 1
            self._cache_key = None
            self._cache = None

    def _visible(self, state: DisplayState) -> _Visible:
        key = (self._generation, state.hidden, state.recolors)
        if key == self._cache_key and self._cache is not None:
            return self._cache
        b = self._base
        mask = self._alive.clone()
        ids = b.get("ids")
        if ids is not None and state.hidden:
            hidden = torch.as_tensor(sorted(state.hidden), dtype=torch.long, device=self.device)
            mask &= ~torch.isin(ids, hidden)
        idx = mask.nonzero()[:, 0]
        # most important first (opacity x largest scale^2), so a moving frame's subset is a prefix
        importance = b["opacities"][idx] * b["scales"][idx].amax(-1) ** 2
        idx = idx[torch.argsort(importance, descending=True)]
        pick = lambda k: None if b.get(k) is None else b[k][idx]  # noqa: E731
        v = _Visible(
            means=b["means"][idx], quats=b["quats"][idx], scales=b["scales"][idx], opacities=b["opacities"][idx],
            sh=b["sh"][idx], recolor_mask=None, recolor_rgb=None, instance_rgb=pick("instance_rgb"),
            semantic_rgb=pick("semantic_rgb"), variance=pick("variance"), ids=pick("ids"),
            radius=3.0 * b["scales"][idx].amax(-1),
        )
        if v.ids is not None and state.recolors:
            rm = torch.zeros(len(v), dtype=torch.bool, device=self.device)
            rc = torch.zeros(len(v), 3, device=self.device)
            inst = v.instance_rgb.clone()
            for oid, rgb in state.recolors:
                m = v.ids == int(oid)
                col = torch.tensor(rgb, dtype=torch.float32, device=self.device) / 255.0
                rm |= m
                rc[m] = col
                inst[m] = col
            v.recolor_mask, v.recolor_rgb, v.instance_rgb = rm, rc, inst
        self._cache_key, self._cache = key, v
        return v

    # ----------------------------------------------------------------- render
    def _rgb_colors(self, v: _Visible, campos: torch.Tensor) -> torch.Tensor:
        """[M,3] view-dependent colours: max(SH(dir) + 0.5, 0) as gsplat, recolours flat."""
        deg = min(self.scene.sh_degree, 3)
        if deg == 0:
            rgb = sh0_to_rgb(v.sh[:, 0, :]).clamp_min(0)
        else:
            rgb = sh_to_rgb(v.means, v.sh, campos, deg)
        if v.recolor_mask is not None:
            rgb = torch.where(v.recolor_mask[:, None], v.recolor_rgb, rgb)
        return rgb

    @staticmethod
    def _in_frustum(v: _Visible, vm: torch.Tensor, K: torch.Tensor, width: int, height: int,
                    near: float) -> torch.Tensor | None:
        """Indices of the Gaussians whose 3-sigma sphere reaches into the view frustum,
        or None when that is (nearly) all of them. Conservative: the rasterizer culls exactly."""
        p = v.means @ vm[:3, :3].T + vm[:3, 3]
        x, y, z = p.unbind(-1)
        r = v.radius
        tx = 0.5 * width / float(K[0, 0])
        ty = 0.5 * height / float(K[1, 1])
        keep = (z + r > near) & ((x.abs() - z * tx) <= r * math.sqrt(1 + tx * tx)) & (
            (y.abs() - z * ty) <= r * math.sqrt(1 + ty * ty))
        n = int(keep.sum())
        if n > 0.75 * len(v):  # indexing every attribute would cost more than it saves
            return None
        return keep.nonzero()[:, 0]

    @torch.no_grad()
    def render(self, camera: Camera, state: DisplayState, width: int, height: int,
               detail: float = 1.0) -> tuple[np.ndarray, FrameInfo]:
        """Render ``state`` seen by ``camera`` as a [height, width, 3] uint8 image.

        ``detail`` < 1 draws only that share of the visible Gaussians, the most
        important first (opacity x largest scale^2): a cheaper preview while moving.
        """
        import time

        from pcf_gs.render import rasterize

        t0 = time.perf_counter()
        with self.lock:
            scene = self.scene
            reason = mode_unavailable_reason(scene, state.mode)
            if reason:
                raise ValueError(reason)
            v = self._visible(state)
            if detail < 1.0:
                v = v.prefix(max(1, int(math.ceil(detail * len(v)))))
            dev = self.device
            bg = torch.tensor(state.background, dtype=torch.float32, device=dev) / 255.0
            M = len(v)
            if M == 0:
                img = bg.expand(height, width, 3)
                return _to_uint8(img), FrameInfo(width, height, time.perf_counter() - t0, 0)
            vm = torch.as_tensor(camera.viewmat(), dtype=torch.float32, device=dev)
            K = torch.as_tensor(camera.K(width, height), dtype=torch.float32, device=dev)
            mode = state.mode
            want_rgb = mode == "rgb" or state.overlay
            highlight = state.highlight if state.highlight and v.ids is not None else None
            keep = self._in_frustum(v, vm, K, width, height, NEAR_PLANE)
            if keep is not None:
                need = {"sh", "recolor_mask", "recolor_rgb"} if want_rgb else set()
                need |= {"semantic": {"semantic_rgb"}, "instance": {"instance_rgb"},
                         "uncertainty": {"variance"}}.get(mode, set())
                v = v.subset(keep, need | ({"ids"} if highlight else set()))
                M = len(v)
            chans: list[torch.Tensor] = []
            if want_rgb:
                campos = torch.as_tensor(camera.c2w[:3, 3], dtype=torch.float32, device=dev)
                chans.append(self._rgb_colors(v, campos))
            if mode == "semantic":
                chans.append(v.semantic_rgb)
            elif mode == "instance":
                chans.append(v.instance_rgb)
            elif mode == "uncertainty":
                chans.append(v.variance)
            if highlight:
                chans.append((v.ids == int(highlight)).float()[:, None])  # blended: the selection's coverage
            colors = torch.cat(chans, 1) if chans else torch.zeros(M, 1, device=dev)
            out, alpha, _ = rasterize(
                v.means, v.quats, v.scales, v.opacities, colors, vm[None], K[None], width, height,
                render_mode="RGB+ED" if mode == "depth" else "RGB", near_plane=NEAR_PLANE, **scene.raster,
            )
            out, alpha = out[0], alpha[0]
            rgb_img = out[..., :3] + (1 - alpha) * bg if want_rgb else None
            o = 3 if want_rgb else 0
            if mode == "rgb":
                img = rgb_img
            elif mode in ("semantic", "instance"):
                img = out[..., o:o + 3] + (1 - alpha) * bg
            elif mode == "uncertainty":
                lv = torch.log((out[..., o:o + 1] / alpha.clamp(min=1e-6)).clamp(min=1e-8))
                lo, hi = self.log_var_range
                img = colormap(((lv - lo) / (hi - lo))[..., 0]) * alpha + (1 - alpha) * bg
            else:  # depth
                img = self._depth_image(out[..., -1:], alpha, bg)
            if state.overlay and mode != "rgb":
                a = float(np.clip(state.overlay_opacity, 0, 1))
                img = (1 - a) * rgb_img + a * img
            if highlight:
                sel = out[..., -2:-1] if mode == "depth" else out[..., -1:]
                img = img * (1 - HIGHLIGHT_DIM * (1 - sel.clamp(0, 1)))
            return _to_uint8(img), FrameInfo(width, height, time.perf_counter() - t0, M)

    @staticmethod
    def _depth_image(depth: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
        """Expected depth [H,W,1] -> colours (near = bright), range = 2nd..98th percentile of covered pixels."""
        valid = alpha[..., 0] > 0.5
        d = depth[..., 0]
        if bool(valid.any()):
            vals = d[valid]
            if vals.numel() > 200_000:
                vals = vals[torch.randperm(vals.numel(), device=vals.device)[:200_000]]
            q = torch.quantile(vals.float(), torch.tensor([0.02, 0.98], device=vals.device))
            lo, hi = float(q[0]), float(q[1])
        else:
            lo, hi = 0.0, 1.0
        t = 1 - (d - lo) / max(hi - lo, 1e-6)
        return colormap(t) * alpha + (1 - alpha) * bg

    @torch.no_grad()
    def pick(self, camera: Camera, state: DisplayState, x: float, y: float, width: int, height: int,
             min_alpha: float = 0.05) -> int | None:
        """The object under pixel (x, y) of a ``width`` x ``height`` view: the label with the
        largest blending weight at that pixel among the visible Gaussians.

        Returns the object id, 0 when stuff / unlabelled splats are in front, None for
        empty space (total alpha < ``min_alpha``) or a scene without object labels.
        Renders a 1x1 crop (principal point shifted onto the pixel): first the ids
        alone to find the Gaussians that touch the pixel, then their one-hot labels.
        """
        from pcf_gs.render import rasterize

        with self.lock:
            v = self._visible(state)
            if v.ids is None or len(v) == 0:
                return None
            if not (0 <= x < width and 0 <= y < height):
                return None
            dev = self.device
            vm = torch.as_tensor(camera.viewmat(), dtype=torch.float32, device=dev)[None]
            K = torch.as_tensor(camera.K(width, height), dtype=torch.float32, device=dev)
            K[0, 2] -= math.floor(x)
            K[1, 2] -= math.floor(y)
            geo = (v.means, v.quats, v.scales, v.opacities)
            _, _, meta = rasterize(*geo, v.ids[:, None].float(), vm, K[None], 1, 1, **self.scene.raster)
            touch = (meta["radii"][0] > 0).any(-1).nonzero()[:, 0]
            if len(touch) == 0:
                return None
            labels, inv = torch.unique(v.ids[touch], return_inverse=True)
            onehot = torch.nn.functional.one_hot(inv, len(labels)).float()
            sub = tuple(g[touch] for g in geo)
            w, _, _ = rasterize(*sub, onehot, vm, K[None], 1, 1, **self.scene.raster)
            w = w[0, 0, 0]
            if float(w.sum()) < min_alpha:
                return None
            return int(labels[int(w.argmax())])


    def pick_ray(self, origin, direction, state: DisplayState, pixel_angle: float = 1e-3) -> int | None:
        """:meth:`pick` along a ray (browser rendering: viser's click ray, world frame): the
        object with the largest blending weight in a one-pixel view ``pixel_angle`` radians
        wide centred on the ray — what the server would draw at that pixel."""
        cam = Camera.from_ray(origin, direction, max(float(pixel_angle), 1e-6))
        return self.pick(cam, state, 0.5, 0.5, 1, 1)


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


# --------------------------------------------------------------------------- #
# adaptive resolution


@dataclass
class AdaptiveResolution:
    """Image size and level of detail per frame: reduced while the camera moves, full at rest.

    While moving, the long side starts at ``moving_side``. Whenever a frame takes
    longer than ``1 / target_fps`` the long side is scaled down (x0.8) to
    ``lod_side``, and below that the share of Gaussians drawn (``detail``, the most
    opaque and largest first) is lowered (x0.7, to ``min_detail``) — at low
    resolution most of a frame's cost is per Gaussian, not per pixel. When frames
    take less than 60% of the budget, detail comes back first, then resolution
    (x1.15). At rest every Gaussian is drawn and the long side is the canvas's,
    capped at ``max_side``. Sizes keep the canvas aspect ratio.
    """

    max_side: int = 1024
    moving_side: int = 256
    lod_side: int = 128
    min_detail: float = 0.05
    target_fps: float = 10.0
    _scale: float = field(default=1.0, repr=False)
    detail: float = field(default=1.0, repr=False)

    def size(self, canvas_w: int, canvas_h: int, moving: bool) -> tuple[int, int]:
        canvas_w, canvas_h = max(int(canvas_w), 1), max(int(canvas_h), 1)
        long_side = max(canvas_w, canvas_h)
        side = min(long_side, self.max_side)
        if moving:
            side = min(side, max(min(self.lod_side, self.moving_side), int(round(self.moving_side * self._scale))))
        f = side / long_side
        return max(1, int(round(canvas_w * f))), max(1, int(round(canvas_h * f)))

    def frame_detail(self, moving: bool) -> float:
        """Share of the Gaussians to draw in this frame."""
        return self.detail if moving else 1.0

    def record(self, seconds: float, moving: bool) -> None:
        """Feed back how long a frame took (only moving frames steer)."""
        if not moving:
            return
        budget = 1.0 / self.target_fps
        floor = min(self.lod_side, self.moving_side) / max(self.moving_side, 1)
        if seconds > budget:
            if self._scale > floor + 1e-9:
                self._scale = max(self._scale * 0.8, floor)
            else:
                self.detail = max(self.detail * 0.7, self.min_detail)
        elif seconds < 0.6 * budget:
            if self.detail < 1.0:
                self.detail = min(self.detail * 1.25, 1.0)
            else:
                self._scale = min(self._scale * 1.15, 1.0)
