"""The synthetic 3D scene: room, objects and lights (dataclasses), and their random layout.

World frame: metres, z up, floor at z = 0, the room is the box
``[-Lx/2, Lx/2] x [-Ly/2, Ly/2] x [0, Lz]``.

Objects are unit primitives (see :mod:`pcf_gs.synth.raycast`) with rotation, anisotropic
scale and centre (``x_world = rotation @ (scale * x_unit) + center``). Placement modes
give real occlusion and touching neighbours:

- ``floor``     resting on the floor (upright, lying on its side, or tilted), some of them
                pushed against a neighbour until their support planes touch;
- ``stacked``   resting on top of another object (touching it);
- ``leaning``   tilted 15-35 degrees and touching a neighbour, bottom on the floor;
- ``floating``  hovering just beside/above another object (0-10 cm gap).

Non-overlap is proven with a separating-plane test over a few candidate directions using
exact support functions, so objects may touch but never interpenetrate.

Appearance (:mod:`pcf_gs.synth.appearance`): random textures and colours, Lambertian +
optional Blinn-Phong specular, ambient + 1-2 lights (directional or point) with colour
temperatures 2700-9000 K. Layout and appearance draw from separate random streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pcf_gs.errors import UserError
from pcf_gs.geometry import axis_angle_to_rotmat, random_rotation, rotmat_to_quat
from pcf_gs.synth import raycast
from pcf_gs.synth.appearance import Light, Material, Texture, kelvin_to_rgb, random_color, random_texture
from pcf_gs.synth.raycast import SHAPES, Primitives

OBJECT_SHAPES = ("sphere", "ellipsoid", "box", "cylinder", "cone", "capsule", "torus")
PLACEMENTS = ("floor", "stacked", "leaning", "floating")


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
    # how placement went: {"shrunk": objects made smaller to fit, "fallback": placed anywhere on the floor}
    placement_stats: dict = field(default_factory=dict)
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
    yaw = axis_angle_to_rotmat([0, 0, 1], rng.uniform(0, 2 * np.pi))
    u = rng.uniform()
    if shape in ("sphere",) or u < 0.55:
        return yaw
    if u < 0.8 and shape != "ellipsoid":
        return yaw @ axis_angle_to_rotmat([1, 0, 0], np.pi / 2)  # lying on its side
    tilt = axis_angle_to_rotmat([1, 0, 0], rng.uniform(0.2, 1.2))
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
    shrunk = fallback = 0
    for i in range(num_objects):
        shape = str(rng_layout.choice(shapes))
        sz = math.exp(rng_layout.uniform(math.log(lo_s), math.log(hi_s)))
        scale = scale0 = _shape_scale(shape, sz, rng_layout)
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
            fallback += 1
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
            raise UserError(f"could not place object {i + 1} of {num_objects} without overlap; "
                            "use fewer or smaller objects (--objects, --size-max)")
        shrunk += int(np.any(placed.scale != scale0))
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
    return Scene(room, objects, lights, ambient, shadows, {"shrunk": shrunk, "fallback": fallback})


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
        tmp_R = axis_angle_to_rotmat([0, 0, 1], rng.uniform(0, 2 * np.pi))
        if mode == "stacked":
            R = tmp_R
            top = nb.center[2] + float(nb.support(np.array([0.0, 0.0, 1.0])))
            off = rng.normal(size=2) * 0.15 * float(np.min(nb.scale))
            c = np.array([nb.center[0] + off[0], nb.center[1] + off[1], top + _bottom(shape, R, scale)])
        elif mode == "leaning":
            az = rng.uniform(0, 2 * np.pi)
            u = np.array([math.cos(az), math.sin(az), 0.0])
            axis = np.cross([0.0, 0.0, 1.0], u)  # tilt towards the neighbour
            R = axis_angle_to_rotmat(axis, rng.uniform(np.radians(15), np.radians(35))) @ tmp_R
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
