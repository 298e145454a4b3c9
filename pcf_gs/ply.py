"""3DGS PLY files: the layout splat viewers read, plus our optional labelled properties.

Standard layout (one ``vertex`` element, float32 unless noted)::

    x y z                      position (world units)
    nx ny nz                   normals (written as zeros, as 3DGS does)
    f_dc_0 f_dc_1 f_dc_2       SH band 0 (RGB)
    f_rest_0 .. f_rest_{3(S-1)-1}   higher SH bands, channel-major: all R coefficients, then G, then B
    opacity                    logit of opacity
    scale_0 scale_1 scale_2    log std-devs
    rot_0 .. rot_3             quaternion w x y z (not necessarily normalised)

Labelled full-scene files add per-vertex ``instance_id``, ``semantic_id``,
``inst_mu_*`` and ``inst_var_*`` (activated variance). Every property is
float32, the IDs included (exact up to 2^24): fast readers such as gsply
count ``property float`` lines to find the row size, and an int column
makes them misread every row (measured). Readers look properties up by name,
so the extras are ignored by standard viewers. Files are written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from pcf_gs.errors import UserError
from pcf_gs.io_utils import atomic_path

REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


@dataclass
class Splats:
    """A set of Gaussians in numpy, world frame. N Gaussians, S = (degree + 1)^2 SH coefficients."""

    means: np.ndarray  # [N, 3]
    scales: np.ndarray  # [N, 3] log
    quats: np.ndarray  # [N, 4] w x y z
    opacities: np.ndarray  # [N] logit
    sh0: np.ndarray  # [N, 1, 3]
    shN: np.ndarray  # [N, S-1, 3]
    extra: dict = field(default_factory=dict)  # name -> [N] or [N, k] arrays (instance_id, semantic_id, ...)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def subset(self, mask: np.ndarray) -> "Splats":
        return Splats(
            self.means[mask], self.scales[mask], self.quats[mask], self.opacities[mask], self.sh0[mask], self.shN[mask],
            {k: v[mask] for k, v in self.extra.items()},
        )


def write_ply(path: str | os.PathLike, s: Splats, extra: bool = True) -> None:
    """Write ``s`` in the 3DGS layout; ``extra`` adds the labelled properties in ``s.extra``."""
    N = len(s)
    rest = np.ascontiguousarray(s.shN.transpose(0, 2, 1)).reshape(N, -1)  # [N, 3*(S-1)] channel-major
    cols: list[tuple[str, np.ndarray, str]] = [
        ("x", s.means[:, 0], "f4"), ("y", s.means[:, 1], "f4"), ("z", s.means[:, 2], "f4"),
        ("nx", np.zeros(N), "f4"), ("ny", np.zeros(N), "f4"), ("nz", np.zeros(N), "f4"),
    ]
    cols += [(f"f_dc_{i}", s.sh0[:, 0, i], "f4") for i in range(3)]
    cols += [(f"f_rest_{i}", rest[:, i], "f4") for i in range(rest.shape[1])]
    cols += [("opacity", s.opacities, "f4")]
    cols += [(f"scale_{i}", s.scales[:, i], "f4") for i in range(3)]
    cols += [(f"rot_{i}", s.quats[:, i], "f4") for i in range(4)]
    if extra:
        for name, arr in s.extra.items():
            arr = np.asarray(arr)
            kind = "f4"  # all-float rows: see the module docstring
            if arr.ndim == 1:
                cols.append((name, arr, kind))
            else:
                cols += [(f"{name}_{i}", arr[:, i], kind) for i in range(arr.shape[1])]
    data = np.empty(N, dtype=[(n, k) for n, _, k in cols])
    for n, a, _ in cols:
        data[n] = a
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")], text=False).write(str(tmp))


def read_ply(path: str | os.PathLike) -> tuple[Splats, np.ndarray]:
    """Read a 3DGS PLY. Returns (Splats, the raw vertex record array, for byte-exact pass-through)."""
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", path)
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable PLY file ({type(e).__name__})", path) from None
    names = v.dtype.names or ()
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise UserError(f"not a 3DGS PLY (missing {', '.join(missing[:4])})", path)
    N = len(v)
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    if len(rest_names) % 3:
        raise UserError(f"f_rest_* count {len(rest_names)} is not a multiple of 3", path)
    k = len(rest_names) // 3
    rest = np.stack([v[n] for n in rest_names], 1).astype(np.float32) if rest_names else np.zeros((N, 0), np.float32)
    shN = rest.reshape(N, 3, k).transpose(0, 2, 1) if k else np.zeros((N, 0, 3), np.float32)
    s = Splats(
        means=np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32),
        scales=np.stack([v[f"scale_{i}"] for i in range(3)], 1).astype(np.float32),
        quats=np.stack([v[f"rot_{i}"] for i in range(4)], 1).astype(np.float32),
        opacities=np.asarray(v["opacity"], np.float32),
        sh0=np.stack([v[f"f_dc_{i}"] for i in range(3)], 1).astype(np.float32)[:, None, :],
        shN=np.ascontiguousarray(shN),
    )
    for name in ("instance_id", "semantic_id"):
        if name in names:
            s.extra[name] = np.asarray(v[name]).astype(np.int32)
    for base in ("inst_mu", "inst_var"):
        sub = sorted((n for n in names if n.startswith(base + "_")), key=lambda n: int(n.rsplit("_", 1)[1]))
        if sub:
            s.extra[base] = np.stack([v[n] for n in sub], 1).astype(np.float32)
    return s, v
