"""Appearance of synthetic scenes: colours, procedural textures, materials and lights.

Colours are sRGB in [0, 1] where stored (``Texture.colors``) and linear RGB where lit
(albedo, light colours, ambient); the conversion is the gamma-2.2 approximation. Textures
are evaluated in a local frame: the object's unit frame, or world metres for the room.
Lights have colour temperatures (black-body fit, 1000-12000 K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TEXTURE_KINDS = ("solid", "checker", "stripes", "noise", "twotone")


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
