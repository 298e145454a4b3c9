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

Files from other tools (gsplat's exporter has no normals; others add columns,
reorder properties or use doubles) are edited without loss: :func:`read_ply`
keeps the file's vertex table in :attr:`Splats.raw`, and :func:`write_ply`
writes that table back with its own property order and types, rewriting only
the entries whose modelled value (``means``, ``sh0``, ``instance_id``, ...)
differs from what was read. Every other byte of every row is copied.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from pcf_gs.errors import UserError
from pcf_gs.atomic import atomic_path

PLY_TYPE_BYTES = {n: b for b, names in ((1, "char uchar int8 uint8"), (2, "short ushort int16 uint16"),
                                         (4, "int uint int32 uint32 float float32"), (8, "double float64"))
                  for n in names.split()}
MAX_HEADER_BYTES = 1 << 20  # a PLY header is text lines; a megabyte without end_header is not one
# |value| beyond which a modelled attribute is not a Gaussian but misread bytes (a wrong byte order reads
# 0.5 as 8.8e-44 and 1.0 as 4.6e-41, and typical positions as 1e+30 and up); positions in world units,
# the rest as stored (log-scales, logit opacity, quaternion, SH)
PLAUSIBLE_ABS = {"means": 1e9, "scales": 1e3, "quats": 1e9, "opacities": 1e4, "sh0": 1e6, "shN": 1e6}


def ply_layout(path: Path) -> tuple[str, int, list[tuple[str, int, int | None]]]:
    """(format, header bytes, [(element, count, row bytes or None when it has list properties)]) from
    a PLY header, read without the body. Raises UserError for a header that is not PLY."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        raise UserError("not a readable PLY file (no ply ... end_header header)", path)
    nl = head.find(b"\n", end)
    if nl < 0:
        raise UserError("not a readable PLY file (header does not end with a newline)", path)
    fmt, elements = "", []
    for line in head[:end].decode("ascii", "replace").splitlines():
        t = line.split()
        if not t:
            continue
        if t[0] == "format" and len(t) > 1:
            fmt = t[1]
        elif t[0] == "element" and len(t) == 3:
            try:
                count = int(t[2])
            except ValueError:
                raise UserError(f"PLY header: element {t[1]} has count {t[2]!r}", path) from None
            if count < 0:
                raise UserError(f"PLY header: element {t[1]} has a negative count {count}", path)
            elements.append([t[1], count, 0])
        elif t[0] == "property" and elements and elements[-1][2] is not None:
            if len(t) >= 2 and t[1] == "list":
                elements[-1][2] = None
            elif len(t) == 3 and t[1] in PLY_TYPE_BYTES:
                elements[-1][2] += PLY_TYPE_BYTES[t[1]]
            else:
                raise UserError(f"PLY header: unknown property line {line.strip()!r}", path)
    return fmt, nl + 1, [tuple(e) for e in elements]


def check_ply_size(path: Path) -> None:
    """A binary PLY must be exactly its header plus count x row bytes of every element: a header that
    claims fewer rows than the file holds would otherwise drop the rest without a word. Skipped for
    ASCII files and elements with list properties (whose size is in the data)."""
    fmt, header, elements = ply_layout(path)
    if not fmt.startswith("binary") or any(row is None for _, _, row in elements):
        return
    want = header + sum(count * row for _, count, row in elements)
    have = path.stat().st_size
    if have != want:
        desc = ", ".join(f"{count} {name} x {row} bytes" for name, count, row in elements)
        raise UserError(f"file is {have} bytes but its header ({desc}) says {want}: "
                        f"{'truncated' if have < want else 'more data than the header counts'} (corrupt file?)", path)


def check_plausible(s: "Splats", path: Path, hint: str = "") -> None:
    """Every modelled value finite and within :data:`PLAUSIBLE_ABS`: else a one-line error naming the
    file (``hint`` adds a likely cause, e.g. the byte order)."""
    for name, limit in PLAUSIBLE_ABS.items():
        a = np.asarray(getattr(s, name))
        if a.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(a) | (np.abs(a) > limit)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise UserError(f"implausible {name} (Gaussian {row}: {a[row].ravel()[:4].tolist()}; "
                            f"finite values within +-{limit:g} expected){hint}", path)


LABEL_BASES = ("instance_id", "semantic_id", "inst_mu", "inst_var")  # our labelled-file properties
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
    # the file's vertex table as read (structured array, one row per Gaussian), or None;
    # write_ply writes it back with only the changed entries replaced (see the module docstring)
    raw: np.ndarray | None = field(default=None, repr=False)
    ply_info: dict = field(default_factory=dict, repr=False)  # text, byte_order, comments, obj_info of the file read

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def subset(self, mask: np.ndarray) -> "Splats":
        """The Gaussians selected by a boolean mask [N] or an index array (rows of ``raw`` too)."""
        return Splats(
            self.means[mask], self.scales[mask], self.quats[mask], self.opacities[mask], self.sh0[mask], self.shN[mask],
            {k: v[mask] for k, v in self.extra.items()},
            None if self.raw is None else self.raw[mask], dict(self.ply_info),
        )

    def copy(self) -> "Splats":
        """A deep copy (arrays included)."""
        return Splats(
            self.means.copy(), self.scales.copy(), self.quats.copy(), self.opacities.copy(), self.sh0.copy(),
            self.shN.copy(), {k: np.array(v, copy=True) for k, v in self.extra.items()},
            None if self.raw is None else self.raw.copy(), dict(self.ply_info),
        )

    @staticmethod
    def concat(parts: "list[Splats]") -> "Splats":
        """Rows of ``parts`` one after the other. ``extra`` keys must agree; ``raw`` is kept
        only if every part has one with the same dtype (else the result is written fresh)."""
        keys = set(parts[0].extra)
        if any(set(p.extra) != keys for p in parts):
            raise ValueError("Splats.concat: parts have different extra properties")
        if any(p.shN.shape[1:] != parts[0].shN.shape[1:] for p in parts):
            raise ValueError("Splats.concat: parts have different SH degrees")
        raws = [p.raw for p in parts]
        same = all(r is not None and r.dtype == raws[0].dtype for r in raws)
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return Splats(
            cat("means"), cat("scales"), cat("quats"), cat("opacities"), cat("sh0"), cat("shN"),
            {k: np.concatenate([p.extra[k] for p in parts]) for k in parts[0].extra},
            np.concatenate(raws) if same else None, dict(parts[0].ply_info),
        )


def _is_label_column(name: str) -> bool:
    return name in ("instance_id", "semantic_id") or re.fullmatch(r"inst_(mu|var)_\d+", name) is not None


def _model_columns(s: Splats, extra: bool) -> list[tuple[str, np.ndarray]]:
    """(property name, [N] values) of everything :class:`Splats` models, in the 3DGS order (no normals)."""
    N = len(s)
    rest = np.ascontiguousarray(s.shN.transpose(0, 2, 1)).reshape(N, -1)  # [N, 3*(S-1)] channel-major
    cols = [("x", s.means[:, 0]), ("y", s.means[:, 1]), ("z", s.means[:, 2])]
    cols += [(f"f_dc_{i}", s.sh0[:, 0, i]) for i in range(3)]
    cols += [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
    cols += [("opacity", s.opacities)]
    cols += [(f"scale_{i}", s.scales[:, i]) for i in range(3)]
    cols += [(f"rot_{i}", s.quats[:, i]) for i in range(4)]
    if extra:
        for name, arr in s.extra.items():
            arr = np.asarray(arr)
            if arr.ndim == 1:
                cols.append((name, arr))
            else:
                cols += [(f"{name}_{i}", arr[:, i]) for i in range(arr.shape[1])]
    return cols


def _merge_into_raw(raw: np.ndarray, cols: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """``raw``'s rows with only the entries of ``cols`` that differ from what :func:`read_ply` read replaced.

    Columns of ``raw`` that ``cols`` does not model (normals, unknown properties) are
    copied as they are; f_rest / label columns that ``cols`` no longer has are
    dropped; new columns are appended as float32.
    """
    names = raw.dtype.names
    wanted = {n for n, _ in cols}
    keep = [n for n in names if n in wanted or not (_is_label_column(n) or n.startswith("f_rest_"))]
    dtype = [(n, raw.dtype.fields[n][0]) for n in keep] + [(n, "f4") for n, _ in cols if n not in names]
    out = np.empty(len(raw), dtype=dtype)
    for n in keep:
        out[n] = raw[n]
    for n, v in cols:
        v = np.asarray(v)
        if n not in names:
            out[n] = v
            continue
        seen_dtype = np.int32 if n in ("instance_id", "semantic_id") else np.float32  # as read_ply reads it
        old, new = raw[n].astype(seen_dtype), v.astype(seen_dtype)
        changed = old != new
        if seen_dtype is np.float32:
            changed &= ~(np.isnan(old) & np.isnan(new))
        if changed.any():
            col = out[n]  # a view into out
            col[changed] = v[changed]
    return out


def write_ply(path: str | os.PathLike, s: Splats, extra: bool = True) -> None:
    """Write ``s`` in the 3DGS layout; ``extra`` adds the labelled properties in ``s.extra``.

    If ``s.raw`` holds the table of a file read with :func:`read_ply` (rows kept
    in step by :meth:`Splats.subset` / :meth:`Splats.concat`), that table is
    written back with its property order, types and format, and only changed
    entries are rewritten (``extra=False`` drops our label properties).
    """
    N = len(s)
    cols = _model_columns(s, extra)
    if s.raw is not None and len(s.raw) == N:
        data = _merge_into_raw(s.raw, cols)  # without ``extra`` the label columns are not in cols: dropped
        info = s.ply_info
        ply = PlyData([PlyElement.describe(data, "vertex")], text=bool(info.get("text", False)),
                      byte_order=info.get("byte_order", "="), comments=list(info.get("comments", [])),
                      obj_info=list(info.get("obj_info", [])))
    else:
        zeros = np.zeros(N, np.float32)
        cols = cols[:3] + [("nx", zeros), ("ny", zeros), ("nz", zeros)] + cols[3:]
        data = np.empty(N, dtype=[(n, "f4") for n, _ in cols])  # all-float rows: see the module docstring
        for n, a in cols:
            data[n] = a
        ply = PlyData([PlyElement.describe(data, "vertex")], text=False)
    with atomic_path(path) as tmp:
        ply.write(str(tmp))


def read_ply(path: str | os.PathLike) -> tuple[Splats, np.ndarray]:
    """Read a 3DGS PLY. Returns (Splats, the raw vertex record array, also kept as ``Splats.raw``).

    Only the ``vertex`` element is kept (3DGS files have no other); properties are
    looked up by name, so any order, extra columns and double types are fine.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found", path)
    check_ply_size(path)
    try:
        with warnings.catch_warnings():
            # plyfile/numpy warnings about the file are errors about it
            warnings.simplefilter("error", RuntimeWarning)
            warnings.simplefilter("error", UserWarning)
            ply = PlyData.read(str(path))
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable PLY file ({type(e).__name__}: {e})", path) from None
    if "vertex" not in [el.name for el in ply.elements]:
        raise UserError("not a 3DGS PLY (no vertex element)", path)
    v = np.array(ply["vertex"].data)  # a copy: never a memory map of the input file
    names = v.dtype.names or ()
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise UserError(f"not a 3DGS PLY (missing {', '.join(missing[:4])})", path)
    N = len(v)
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    if len(rest_names) % 3:
        raise UserError(f"f_rest_* count {len(rest_names)} is not a multiple of 3", path)
    k = len(rest_names) // 3
    if int(round(np.sqrt(k + 1))) ** 2 != k + 1:
        raise UserError(f"{len(rest_names)} f_rest_* properties is not a whole SH degree (3*((d+1)^2-1))", path)
    rest = np.stack([v[n] for n in rest_names], 1).astype(np.float32) if rest_names else np.zeros((N, 0), np.float32)
    shN = rest.reshape(N, 3, k).transpose(0, 2, 1) if k else np.zeros((N, 0, 3), np.float32)
    s = Splats(
        means=np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32),
        scales=np.stack([v[f"scale_{i}"] for i in range(3)], 1).astype(np.float32),
        quats=np.stack([v[f"rot_{i}"] for i in range(4)], 1).astype(np.float32),
        opacities=np.asarray(v["opacity"], np.float32),
        sh0=np.stack([v[f"f_dc_{i}"] for i in range(3)], 1).astype(np.float32)[:, None, :],
        shN=np.ascontiguousarray(shN),
        raw=v,
        ply_info={"text": ply.text, "byte_order": ply.byte_order, "comments": list(ply.comments),
                  "obj_info": list(ply.obj_info), "other_elements": [el.name for el in ply.elements if el.name != "vertex"]},
    )
    swapped = ply.byte_order == ">" and sys.byteorder == "little" or ply.byte_order == "<" and sys.byteorder == "big"
    check_plausible(s, path, f"; the header says {ply.header.splitlines()[1].strip()!r}: is that the data's "
                    "byte order?" if swapped else "")
    for name in ("instance_id", "semantic_id"):
        if name in names:
            ids = np.asarray(v[name])
            if not np.isfinite(ids).all() or np.abs(ids).max(initial=0) >= 2**31:
                raise UserError(f"{name} has values that are not 32-bit integers", path)
            s.extra[name] = ids.astype(np.int32)
    for base in ("inst_mu", "inst_var"):
        sub = sorted((n for n in names if n.startswith(base + "_")), key=lambda n: int(n.rsplit("_", 1)[1]))
        if sub:
            s.extra[base] = np.stack([v[n] for n in sub], 1).astype(np.float32)
    return s, v
