"""The synthetic 3D scene: a textured room, N objects, lights, camera paths, and a renderer.

World frame: metres, z up, floor at z = 0, the room is the box
``[-Lx/2, Lx/2] x [-Ly/2, Ly/2] x [0, Lz]``. Cameras are OpenCV (x right, y down,
z forward) ``c2w`` 4x4; pixel (row i, col j) has its centre at (j + 0.5, i + 0.5).

Objects are unit primitives (see :mod:`pcf_gs.synth.raycast`) with rotation, anisotropic
scale and centre. Placement modes give real occlusion and touching neighbours:

- ``floor``     resting on the floor (upright, lying on its side, or tilted), some of them
                pushed against a neighbour until their support planes touch;
- ``stacked``   resting on top of another object (touching it);
- ``leaning``   tilted 15-35 degrees and touching a neighbour, bottom on the floor;
- ``floating``  hovering just beside/above another object (0-10 cm gap).

Non-overlap is proven with a separating-plane test over a few candidate directions using
exact support functions, so objects may touch but never interpenetrate.

Appearance: procedural textures in the object's unit frame (solid, checker, stripes,
smooth noise = sum of random sinusoids, two-tone split), random colours, Lambertian +
optional Blinn-Phong specular, ambient + 1-2 lights (directional or point) with colour
temperatures 2700-9000 K and cast shadows (shadow rays against all objects).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pcf_gs.synth import raycast
from pcf_gs.synth.raycast import SHAPES, Primitives

TEXTURE_KINDS = ("solid", "checker", "stripes", "noise", "twotone")
OBJECT_SHAPES = ("sphere", "ellipsoid", "box", "cylinder", "cone", "capsule", "torus")
PLACEMENTS = ("floor", "stacked", "leaning", "floating")


# ----------------------------------------------------------------------------- small maths


def rot_axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """[3,3] rotation by ``angle`` radians about ``axis``."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    x, y, z = a
    c, s = math.cos(angle), math.sin(angle)
    C = 1 - c
    return np.array(
        [
            [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
            [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
            [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
        ]
    )


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quat_to_rotmat(q / np.linalg.norm(q))


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """q [4] w, x, y, z -> [3,3]."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_quat(R: np.ndarray) -> np.ndarray:
    """[3,3] rotation -> q [4] w, x, y, z with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, np.float64)
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(tr + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


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
        R = R @ rot_axis_angle([0, 0, 1], roll)
    c2w = np.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = pos
    return c2w


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.power(np.clip(c, 0, 1), 2.2)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.power(np.clip(c, 0, 1), 1 / 2.2)


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Approximate linear RGB (max channel 1) of a black body at ``kelvin`` (1000-12000 K).

    A smooth fit: red falls, blue rises with temperature; neutral near 6500 K.
    """
    t = float(np.clip(kelvin, 1000, 12000)) / 100.0
    r = 1.0 if t <= 66 else 1.29293618 * (t - 60) ** -0.1332047592
    g = 0.39008157 * math.log(t) - 0.63184144 if t <= 66 else 1.12989086 * (t - 60) ** -0.0755148492
    b = 1.0 if t >= 66 else (0.0 if t <= 19 else 0.54320679 * math.log(t - 10) - 1.19625408)
    c = np.clip(np.array([r, g, b]), 0, 1)
    return srgb_to_linear(c / c.max())


def random_color(rng: np.random.Generator, sat=(0.2, 0.95), val=(0.25, 0.95)) -> np.ndarray:
    """Random sRGB colour [3] in [0,1] from HSV."""
    h = rng.uniform(0, 1)
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


# ----------------------------------------------------------------------------- appearance


@dataclass
class Texture:
    """Procedural albedo in a local frame (unit frame for objects, world metres for the room).

    kind    one of TEXTURE_KINDS
    colors  [2,3] sRGB in [0,1] (the second is unused for ``solid``)
    freq    cells / stripes / waves per local unit
    axis    [3] unit vector (stripes direction, two-tone split normal)
    offset  two-tone split offset along ``axis``
    waves   [K,4] (kx, ky, kz, phase) for ``noise``
    """

    kind: str
    colors: np.ndarray
    freq: float = 1.0
    axis: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    offset: float = 0.0
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    def albedo(self, p: np.ndarray) -> np.ndarray:
        """p [M,3] local coordinates -> [M,3] linear albedo."""
        c0, c1 = srgb_to_linear(self.colors[0]), srgb_to_linear(self.colors[1])
        if self.kind == "solid" or len(p) == 0:
            return np.broadcast_to(c0, (len(p), 3)).copy()
        if self.kind == "checker":
            cell = np.floor(p * self.freq + 1e-3).astype(np.int64).sum(axis=1) & 1
            w = cell.astype(np.float64)
        elif self.kind == "stripes":
            w = (np.sin(2 * np.pi * self.freq * (p @ self.axis)) > 0).astype(np.float64)
        elif self.kind == "noise":
            k = self.waves[:, :3] * self.freq
            s = np.sin(p @ k.T + self.waves[:, 3]).mean(axis=1)
            w = np.clip(0.5 + 1.2 * s, 0, 1)
        elif self.kind == "twotone":
            w = (p @ self.axis > self.offset).astype(np.float64)
        else:
            raise ValueError(f"unknown texture kind {self.kind!r}")
        return c0 * (1 - w[:, None]) + c1 * w[:, None]

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "colors": self.colors.tolist(),
            "freq": self.freq,
            "axis": self.axis.tolist(),
            "offset": self.offset,
            "waves": self.waves.tolist(),
        }


def random_texture(rng: np.random.Generator, kinds=TEXTURE_KINDS, freq=(1.0, 4.0)) -> Texture:
    kind = str(rng.choice(kinds))
    c0 = random_color(rng)
    c1 = random_color(rng)
    if np.abs(c0 - c1).sum() < 0.3:  # keep patterns visible
        c1 = 1.0 - c0 * 0.8
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    waves = np.concatenate([rng.normal(size=(5, 3)) * 2.0, rng.uniform(0, 2 * np.pi, (5, 1))], axis=1)
    return Texture(kind, np.stack([c0, c1]), float(rng.uniform(*freq)), axis, float(rng.uniform(-0.4, 0.4)), waves)


@dataclass
class Material:
    texture: Texture
    specular: float = 0.0  # Blinn-Phong strength (0 = matte)
    shininess: float = 32.0


@dataclass
class Light:
    """kind "directional" (``vector`` = direction the light travels) or "point" (``vector`` = position)."""

    kind: str
    vector: np.ndarray
    color: np.ndarray  # linear RGB, max 1
    intensity: float
    kelvin: float

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "vector": self.vector.tolist(),
            "color": self.color.tolist(),
            "intensity": self.intensity,
            "kelvin": self.kelvin,
        }


@dataclass
class SceneObject:
    """One object: unit primitive ``shape`` placed by rotation/scale/center; ``id`` = GT instance id."""

    id: int
    shape: str  # name from OBJECT_SHAPES
    center: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    material: Material
    class_id: int = 1
    placement: str = "floor"
    support_id: int = 0  # GT id of the object it rests on / touches (0 = none)

    @property
    def shape_id(self) -> int:
        return SHAPES[self.shape]

    def support(self, u: np.ndarray) -> np.ndarray:
        return raycast.support(self.shape_id, self.rotation, self.scale, u)

    def to_json(self, class_names: list[str]) -> dict:
        return {
            "id": self.id,
            "shape": self.shape,
            "unit_shape": raycast.SHAPE_NAMES[self.shape_id],
            "center": self.center.tolist(),
            "rotation": self.rotation.tolist(),
            "quaternion": rotmat_to_quat(self.rotation).tolist(),
            "scale": self.scale.tolist(),
            "bounding_radius": float(np.linalg.norm(raycast.UNIT_HALF_EXTENT[self.shape_id] * self.scale)),
            "class_id": self.class_id,
            "class_name": class_names[self.class_id],
            "placement": self.placement,
            "support_id": self.support_id,
            "texture": self.material.texture.to_json(),
            "specular": self.material.specular,
            "shininess": self.material.shininess,
        }


@dataclass
class Room:
    size: np.ndarray  # [3] Lx, Ly, Lz (metres)
    floor: Material
    walls: Material
    ceiling: Material
    region: np.ndarray  # [2] half extents (x, y) of the central area that holds objects

    @property
    def lo(self) -> np.ndarray:
        return np.array([-self.size[0] / 2, -self.size[1] / 2, 0.0])

    @property
    def hi(self) -> np.ndarray:
        return np.array([self.size[0] / 2, self.size[1] / 2, self.size[2]])

    def to_json(self) -> dict:
        return {
            "size": self.size.tolist(),
            "lo": self.lo.tolist(),
            "hi": self.hi.tolist(),
            "object_region_half_extent": self.region.tolist(),
            "floor": self.floor.texture.to_json(),
            "walls": self.walls.texture.to_json(),
            "ceiling": self.ceiling.texture.to_json(),
        }


@dataclass
class Scene:
    room: Room
    objects: list[SceneObject]
    lights: list[Light]
    ambient: np.ndarray  # [3] linear RGB
    shadows: bool = True  # cast shadows with shadow rays
    prims: Primitives = field(init=False)

    def __post_init__(self) -> None:
        self.prims = Primitives(
            np.array([o.shape_id for o in self.objects], np.int32),
            np.array([o.center for o in self.objects]).reshape(-1, 3),
            np.array([o.rotation for o in self.objects]).reshape(-1, 3, 3),
            np.array([o.scale for o in self.objects]).reshape(-1, 3),
        )

    @property
    def class_of_index(self) -> np.ndarray:
        """[N] semantic class of object index k (GT id k + 1)."""
        return np.array([o.class_id for o in self.objects], np.int64)


# ----------------------------------------------------------------------------- layout


def _shape_scale(shape: str, size: float, rng: np.random.Generator) -> np.ndarray:
    """Per-axis scale of the unit primitive for an object of characteristic half-size ``size``."""
    a = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    if shape == "sphere":
        return np.full(3, size)
    if shape == "ellipsoid":
        return size * np.array([a(0.5, 1.3), a(0.5, 1.3), a(0.4, 1.4)])
    if shape == "box":
        return size * np.array([a(0.4, 1.2), a(0.4, 1.2), a(0.3, 1.3)])
    if shape == "cylinder":
        r = size * a(0.35, 1.0)
        return np.array([r, r, size * a(0.4, 1.3)])
    if shape == "cone":
        r = size * a(0.5, 1.0)
        return np.array([r, r, size * a(0.6, 1.3)])
    if shape == "capsule":  # unit capsule is 0.5 wide, 1.0 tall
        r = size * a(1.0, 1.8)
        return np.array([r, r, size * a(0.8, 1.4)])
    if shape == "torus":
        return size * np.array([1.0, 1.0, a(0.8, 1.6)])
    raise ValueError(shape)


def _separated(a: SceneObject, b: SceneObject, tol: float = 1e-9) -> bool:
    """True if a separating plane exists (checked over a few candidate directions)."""
    d = b.center - a.center
    dist = np.linalg.norm(d)
    cands = [np.eye(3), a.rotation.T, b.rotation.T]
    if dist > 1e-12:
        cands.append((d / dist)[None])
        h = d.copy()
        h[2] = 0
        if np.linalg.norm(h) > 1e-12:
            cands.append((h / np.linalg.norm(h))[None])
    U = np.concatenate(cands)
    U = np.concatenate([U, -U])
    gap = U @ d - a.support(U) - b.support(-U)
    return bool(np.any(gap >= -tol))


def _bound_radius(o: SceneObject) -> float:
    return float(np.linalg.norm(raycast.UNIT_HALF_EXTENT[o.shape_id] * o.scale))


def _fits(obj: SceneObject, objects: list[SceneObject], centres: np.ndarray, radii: np.ndarray) -> bool:
    """No overlap with any placed object (bounding spheres first, then separating planes)."""
    n = len(objects)
    if n == 0:
        return True
    near = np.linalg.norm(centres[:n] - obj.center, axis=1) < radii[:n] + _bound_radius(obj)
    return all(_separated(objects[k], obj) for k in np.nonzero(near)[0])


def _bottom(shape: str, R: np.ndarray, s: np.ndarray) -> float:
    """Height of the centre above the lowest point."""
    return float(raycast.support(SHAPES[shape], R, s, np.array([0.0, 0.0, -1.0])))


def _floor_rotation(shape: str, rng: np.random.Generator) -> np.ndarray:
    yaw = rot_axis_angle([0, 0, 1], rng.uniform(0, 2 * np.pi))
    u = rng.uniform()
    if shape in ("sphere",) or u < 0.55:
        return yaw
    if u < 0.8 and shape != "ellipsoid":
        return yaw @ rot_axis_angle([1, 0, 0], np.pi / 2)  # lying on its side
    tilt = rot_axis_angle([1, 0, 0], rng.uniform(0.2, 1.2))
    return yaw @ tilt


def build_scene(
    num_objects: int,
    rng_layout: np.random.Generator,
    rng_look: np.random.Generator,
    size_range: tuple[float, float] = (0.1, 0.45),
    shapes: tuple[str, ...] = OBJECT_SHAPES,
    thing_classes: int = 1,
    placement_probs: tuple[float, float, float, float] = (0.55, 0.2, 0.12, 0.13),
    num_lights: int | None = None,
    specular: bool = True,
    shadows: bool = True,
) -> Scene:
    """Random room + ``num_objects`` objects + lights. Deterministic per generator state."""
    lo_s, hi_s = size_range
    # room size grows with the clutter so the object region stays ~40% covered
    mean_sq = (hi_s**2 - lo_s**2) / (2 * math.log(hi_s / lo_s)) if hi_s > lo_s else lo_s**2
    area = max(2.0, num_objects * math.pi * mean_sq * 2.2 / 0.4 * 0.75)
    aspect = rng_layout.uniform(0.75, 1.33)
    region = np.array([math.sqrt(area * aspect) / 2, math.sqrt(area / aspect) / 2])
    ring = rng_layout.uniform(1.4, 2.2)  # space for cameras between the objects and the walls
    height = rng_layout.uniform(2.6, 3.4)
    size = np.array([2 * (region[0] + ring), 2 * (region[1] + ring), height])

    objects: list[SceneObject] = []
    centres = np.zeros((num_objects, 3))
    radii = np.zeros(num_objects)
    probs = np.asarray(placement_probs, np.float64)
    probs = probs / probs.sum()
    for i in range(num_objects):
        shape = str(rng_layout.choice(shapes))
        sz = math.exp(rng_layout.uniform(math.log(lo_s), math.log(hi_s)))
        scale = _shape_scale(shape, sz, rng_layout)
        mode = "floor" if not objects else str(rng_layout.choice(PLACEMENTS, p=probs))
        placed = None
        for attempt in range(80):
            if attempt == 40:
                mode = "floor"
            if attempt and attempt % 20 == 0:
                scale = scale * 0.85
            cand = _propose(shape, scale, mode, objects, region, height, rng_layout)
            if cand is None:
                continue
            R, c, sup = cand
            obj = SceneObject(i + 1, shape, c, R, scale, None, 1, mode, sup)  # type: ignore[arg-type]
            if _fits(obj, objects, centres, radii):
                placed = obj
                break
        if placed is None:  # free spot anywhere in the room's ring (always exists for sane inputs)
            for _ in range(200):
                R = _floor_rotation(shape, rng_layout)
                xy = rng_layout.uniform(-region - ring * 0.5, region + ring * 0.5)
                c = np.array([xy[0], xy[1], _bottom(shape, R, scale)])
                obj = SceneObject(i + 1, shape, c, R, scale * 0.7, None, 1, "floor", 0)  # type: ignore[arg-type]
                obj.center[2] = _bottom(shape, R, obj.scale)
                if _fits(obj, objects, centres, radii):
                    placed = obj
                    break
        if placed is None:
            raise RuntimeError(f"could not place object {i + 1} of {num_objects}; use fewer or smaller objects")
        objects.append(placed)
        centres[i] = placed.center
        radii[i] = _bound_radius(placed)

    # appearance (separate stream so changing materials never moves objects)
    for o in objects:
        tex = random_texture(rng_look)
        spec = float(rng_look.uniform(0.1, 0.6)) if (specular and rng_look.uniform() < 0.5) else 0.0
        o.material = Material(tex, spec, float(rng_look.uniform(8, 80)))
        o.class_id = int(rng_look.integers(1, thing_classes + 1)) if thing_classes > 1 else 1
    room = Room(
        size,
        Material(random_texture(rng_look, ("checker", "stripes", "noise"), (0.8, 2.5))),
        Material(random_texture(rng_look, ("solid", "stripes", "noise"), (0.3, 1.5))),
        Material(Texture("solid", np.stack([random_color(rng_look, (0, 0.15), (0.7, 0.95))] * 2))),
        region,
    )
    for m in (room.floor, room.walls):  # room a little desaturated so objects stand out
        m.texture.colors = 0.55 * m.texture.colors + 0.45 * m.texture.colors.mean(axis=1, keepdims=True)

    n_lights = int(rng_look.integers(1, 3)) if num_lights is None else num_lights
    lights = []
    for _ in range(n_lights):
        kelvin = float(rng_look.uniform(2700, 9000))
        col = kelvin_to_rgb(kelvin)
        if rng_look.uniform() < 0.5:
            el = rng_look.uniform(np.radians(30), np.radians(80))
            az = rng_look.uniform(0, 2 * np.pi)
            d = -np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            lights.append(Light("directional", d, col, float(rng_look.uniform(0.6, 1.0)), kelvin))
        else:
            p = np.array([*rng_look.uniform(-region, region), height - rng_look.uniform(0.2, 0.6)])
            lights.append(Light("point", p, col, float(rng_look.uniform(0.7, 1.1)), kelvin))
    if n_lights:
        for lt in lights:
            lt.intensity /= math.sqrt(n_lights)
    ambient = kelvin_to_rgb(float(rng_look.uniform(4500, 8000))) * float(rng_look.uniform(0.18, 0.35))
    return Scene(room, objects, lights, ambient, shadows)


def _propose(shape, scale, mode, objects, region, height, rng):
    """Candidate (rotation, centre, support GT id) for ``mode`` or None."""
    if mode == "floor":
        R = _floor_rotation(shape, rng)
        if objects and rng.uniform() < 0.35:  # push against a neighbour on the floor
            nb = objects[int(rng.integers(len(objects)))]
            az = rng.uniform(0, 2 * np.pi)
            u = np.array([math.cos(az), math.sin(az), 0.0])
            tmp = SceneObject(0, shape, np.zeros(3), R, scale, None)  # type: ignore[arg-type]
            xy = nb.center[:2] + u[:2] * float(nb.support(u) + tmp.support(-u))
            sup = nb.id
        else:
            xy = rng.uniform(-region, region)
            sup = 0
        c = np.array([xy[0], xy[1], _bottom(shape, R, scale)])
    else:
        nb = objects[int(rng.integers(len(objects)))]
        tmp_R = rot_axis_angle([0, 0, 1], rng.uniform(0, 2 * np.pi))
        if mode == "stacked":
            R = tmp_R
            top = nb.center[2] + float(nb.support(np.array([0.0, 0.0, 1.0])))
            off = rng.normal(size=2) * 0.15 * float(np.min(nb.scale))
            c = np.array([nb.center[0] + off[0], nb.center[1] + off[1], top + _bottom(shape, R, scale)])
        elif mode == "leaning":
            az = rng.uniform(0, 2 * np.pi)
            u = np.array([math.cos(az), math.sin(az), 0.0])
            axis = np.cross([0.0, 0.0, 1.0], u)  # tilt towards the neighbour
            R = rot_axis_angle(axis, rng.uniform(np.radians(15), np.radians(35))) @ tmp_R
            tmp = SceneObject(0, shape, np.zeros(3), R, scale, None)  # type: ignore[arg-type]
            xy = nb.center[:2] - u[:2] * float(nb.support(-u) + tmp.support(u))
            c = np.array([xy[0], xy[1], _bottom(shape, R, scale)])
        else:  # floating
            R = random_rotation(rng)
            u = rng.normal(size=3)
            u[2] = abs(u[2]) + 0.3
            u /= np.linalg.norm(u)
            tmp = SceneObject(0, shape, np.zeros(3), R, scale, None)  # type: ignore[arg-type]
            c = nb.center + u * float(nb.support(u) + tmp.support(-u) + rng.uniform(0.0, 0.1))
            if c[2] < _bottom(shape, R, scale):
                return None
        sup = nb.id
    top = c[2] + float(raycast.support(SHAPES[shape], R, scale, np.array([0.0, 0.0, 1.0])))
    if np.any(np.abs(c[:2]) > region + 0.5) or top > height - 0.4:
        return None
    return R, c, sup


# ----------------------------------------------------------------------------- cameras


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


# ----------------------------------------------------------------------------- rendering


def camera_rays(K: np.ndarray, c2w: np.ndarray, width: int, height: int, offset=(0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """Rays through pixel positions (j + offset_x, i + offset_y): origin [3], dirs [H*W,3].

    Directions have camera-z component 1, so the hit parameter ``t`` is the z-depth.
    """
    j, i = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    x = (j + offset[0] - K[0, 2]) / K[0, 0]
    y = (i + offset[1] - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
    return c2w[:3, 3].copy(), d_cam @ c2w[:3, :3].T


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
