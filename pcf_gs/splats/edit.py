"""Object editing on splat sets: remove, extract, recolour, move, rotate, scale, duplicate; box selection.

Every function is pure: it takes a :class:`~pcf_gs.splats.ply.Splats` (N Gaussians,
world frame, as :func:`~pcf_gs.splats.ply.read_ply` returns it) and returns a new one;
the input is never changed. What to edit is a *selection*:

- an instance ID or a list of IDs: the ``instance_id`` property of a labelled
  PLY, i.e. the ``id`` of ``objects.json`` (0 = stuff / none, not selectable);
- a boolean mask [N], e.g. from :func:`select_box` (for PLYs without labels).

An empty selection, an unknown ID or a malformed value raises
:class:`~pcf_gs.errors.UserError` (one line, naming the problem).

Geometry. A similarity x' = p + c R (x - p) + t (rotation R, uniform scale
c > 0, pivot p, translation t, world units) acts on each selected Gaussian as::

    means     [N,3]    x' as above
    quats     [N,4]    q' = q_R (x) q, Hamilton product in w x y z: the Gaussian's axes turn with R
    scales    [N,3]    log std-dev + log c
    shN       [N,S-1,3] per band l >= 1 and colour channel: c'_l = D_l(R)^T c_l (below)
    normals   nx ny nz n' = R n, only when the file has them and they are not zero
    opacity, sh0        unchanged

Rotations and scales turn about the object's centre (opacity-weighted mean of
the selected Gaussians' positions) unless a pivot is given.

SH rotation. gsplat colours a Gaussian seen along the unit direction d (camera
-> Gaussian) with f(d) = sum_l c_l . y_l(d) + 0.5, where y_l are the 2l+1 real
spherical harmonics of band l in gsplat's order and signs
(``gsplat.cuda._torch_impl._eval_sh_bases_fast``). A rotated Gaussian must look
from R d as the original did from d: f'(R d) = f(d), i.e. f'(d) = f(R^T d).
Rotations act on every band by an orthogonal (2l+1)x(2l+1) matrix,
y_l(R^T d) = D_l y_l(d), so c'_l = D_l^T c_l. D_l^T is fitted in float64 by
least squares on 64 fixed directions d_k: Y D_l^T = Y_rot with Y[k] = y_l(d_k),
Y_rot[k] = y_l(R^T d_k). The relation holds exactly, so the fit is exact to
rounding (~1e-15), and since it uses gsplat's own basis functions its sign
conventions are the renderer's. The DC band (l = 0) is rotation invariant.
In the PLY, f_rest is channel-major (all red coefficients, then green, then
blue); :class:`Splats` holds them as shN [N, S-1, 3], which is what is rotated.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from pcf_gs.errors import UserError
from pcf_gs.geometry import axis_angle_to_rotmat, quat_multiply, rotmat_to_quat
from pcf_gs.sh import rgb_to_sh0, sh0_to_rgb
from pcf_gs.splats.ply import Splats

# --------------------------------------------------------------------------- #
# selection


def object_ids(s: Splats) -> list[int]:
    """Sorted instance IDs > 0 present in ``s`` (empty if the set has no labels)."""
    inst = s.extra.get("instance_id")
    return [] if inst is None else sorted(int(i) for i in np.unique(inst) if i > 0)


def select(s: Splats, sel) -> np.ndarray:
    """Boolean mask [N] of a selection: an ID, IDs, or a mask [N] (returned as a copy)."""
    if isinstance(sel, np.ndarray) and sel.dtype == bool:
        if sel.shape != (len(s),):
            raise UserError(f"selection mask has shape {sel.shape}, expected ({len(s)},)")
        return sel.copy()
    ids = [sel] if np.ndim(sel) == 0 else list(np.asarray(sel).ravel()) if isinstance(sel, np.ndarray) else list(sel)
    if not ids:
        raise UserError("no object IDs given")
    inst = s.extra.get("instance_id")
    if inst is None:
        raise UserError("the splat set has no instance_id property (not a labelled PLY): select by box instead")
    known = set(object_ids(s))
    for i in ids:
        if isinstance(i, (bool, np.bool_)) or not float(i).is_integer():
            raise UserError(f"object ID must be an integer, got {i!r}")
        if int(i) == 0:
            raise UserError("0 is not an object ID (instance 0 = stuff / none)")
        if int(i) not in known:
            shown = ", ".join(map(str, sorted(known)[:20])) + (", ..." if len(known) > 20 else "")
            raise UserError(f"unknown object ID {int(i)} (IDs in the scene: {shown or 'none'})")
    return np.isin(inst, np.asarray(ids, dtype=np.int64))


def select_box(s: Splats, aabb=None, *, obb=None) -> np.ndarray:
    """Mask [N] of the Gaussians whose centre lies in a box (boundary included).

    aabb: (xmin, ymin, zmin, xmax, ymax, zmax) or ((xmin, ymin, zmin), (xmax, ymax, zmax)), world units.
    obb: (center [3], half_extents [3], rotation [3,3] whose columns are the box axes in world).
    Exactly one of the two.
    """
    if (aabb is None) == (obb is None):
        raise UserError("select_box needs exactly one of aabb or obb")
    x = s.means.astype(np.float64)
    if aabb is not None:
        b = _finite(aabb, "box").reshape(-1)
        if b.shape != (6,):
            raise UserError(f"box needs 6 numbers xmin,ymin,zmin,xmax,ymax,zmax, got {b.size}")
        lo, hi = b[:3], b[3:]
        if np.any(lo > hi):
            raise UserError(f"box min {lo.tolist()} is above its max {hi.tolist()}")
        return np.all((x >= lo) & (x <= hi), axis=1)
    try:
        center, half, rot = obb
    except (TypeError, ValueError, OverflowError):
        raise UserError("obb must be (center [3], half_extents [3], rotation [3,3])") from None
    center, half, rot = _finite(center, "obb center"), _finite(half, "obb half extents"), _finite(rot, "obb rotation")
    if center.shape != (3,) or half.shape != (3,) or rot.shape != (3, 3):
        raise UserError("obb must be (center [3], half_extents [3], rotation [3,3])")
    if np.any(half < 0):
        raise UserError("obb half extents must be >= 0")
    _check_rotation(rot, "obb rotation")
    local = (x - center) @ rot  # coordinates along the box axes
    return np.all(np.abs(local) <= half, axis=1)


def centre(s: Splats, sel) -> np.ndarray:
    """[3] float64 centre of a selection: opacity-weighted mean of the Gaussians' positions."""
    m = _nonempty(s, sel)
    w = 1.0 / (1.0 + np.exp(-s.opacities[m].astype(np.float64)))
    x = s.means[m].astype(np.float64)
    return (w[:, None] * x).sum(0) / w.sum() if w.sum() > 0 else x.mean(0)


# --------------------------------------------------------------------------- #
# edits


def remove(s: Splats, sel) -> Splats:
    """All Gaussians except the selected ones."""
    return s.subset(~_nonempty(s, sel))


def extract(s: Splats, sel) -> Splats:
    """Only the selected Gaussians."""
    return s.subset(_nonempty(s, sel))


def recolor(s: Splats, sel, rgb, *, view_dependent: bool = True, texture: bool = False) -> Splats:
    """Give the selection the base colour ``rgb`` (3 floats in [0, 1], linear as stored).

    The DC term of every selected Gaussian is set so that C0 * sh0 + 0.5 = rgb.
    ``view_dependent`` keeps the higher SH bands (highlights and other
    view-dependent shading stay; the colour seen from a direction d changes by
    exactly rgb - old base colour); ``False`` zeroes them (flat colour from
    every side). ``texture`` keeps each Gaussian's relative brightness: base
    colour = rgb * L_i / L_mean (L = Rec. 601 luma of the old base colour,
    L_mean its opacity-weighted mean over the selection).
    """
    m = _nonempty(s, sel)
    rgb = _finite(rgb, "colour").reshape(-1)
    if rgb.shape != (3,) or np.any(rgb < 0) or np.any(rgb > 1):
        raise UserError(f"colour must be 3 values in [0, 1], got {rgb.tolist()}")
    out = s.copy()
    base = np.broadcast_to(rgb, (int(m.sum()), 3)).astype(np.float64)
    if texture:
        old = sh0_to_rgb(s.sh0[m, 0].astype(np.float64))
        lum = old @ np.array([0.299, 0.587, 0.114])
        w = 1.0 / (1.0 + np.exp(-s.opacities[m].astype(np.float64)))
        mean = (w * lum).sum() / max(w.sum(), 1e-12)
        if mean > 1e-6:
            base = base * np.clip(lum / mean, 0.0, None)[:, None]
    out.sh0[m, 0] = rgb_to_sh0(base).astype(out.sh0.dtype)
    if not view_dependent:
        out.shN[m] = 0
    return out


def translate(s: Splats, sel, offset) -> Splats:
    """Move the selection by ``offset`` (dx, dy, dz), world units."""
    return _similarity(s, _nonempty(s, sel), np.eye(3), 1.0, _vec3(offset, "offset"), np.zeros(3))


def rotate(s: Splats, sel, axis=None, degrees: float | None = None, *, matrix=None, pivot=None) -> Splats:
    """Rotate the selection by ``degrees`` about ``axis`` (right-handed), or by a 3x3 rotation ``matrix``,
    about ``pivot`` [3] (default: the selection's :func:`centre`). Positions, quaternions, SH
    bands 1..3 (all of them) and non-zero normals turn together."""
    m = _nonempty(s, sel)
    if matrix is not None:
        if axis is not None or degrees is not None:
            raise UserError("rotate takes either axis and degrees or a matrix")
        R = _finite(matrix, "rotation matrix")
        if R.shape != (3, 3):
            raise UserError(f"rotation matrix must be 3x3, got {R.shape}")
        _check_rotation(R, "rotation matrix")
    else:
        if axis is None or degrees is None:
            raise UserError("rotate needs an axis and an angle in degrees")
        R = axis_angle_matrix(axis, degrees)
    p = centre(s, m) if pivot is None else _vec3(pivot, "pivot")
    return _similarity(s, m, R, 1.0, np.zeros(3), p)


def scale(s: Splats, sel, factor: float, *, pivot=None) -> Splats:
    """Scale the selection uniformly by ``factor`` > 0 about ``pivot`` (default: its :func:`centre`)."""
    m = _nonempty(s, sel)
    c = _positive(factor, "scale factor")
    p = centre(s, m) if pivot is None else _vec3(pivot, "pivot")
    return _similarity(s, m, np.eye(3), c, np.zeros(3), p)


def transform(s: Splats, sel, matrix, *, pivot=None) -> Splats:
    """Apply a 4x4 similarity (rotation x uniform scale, then translation) to the selection.

    x' = p + A (x - p) + t with A = matrix[:3, :3], t = matrix[:3, 3]; ``pivot`` p defaults to
    the world origin, so the matrix acts as written. Shear or mirroring is refused
    (a Gaussian's axes must stay orthogonal and right-handed)."""
    R, c, t = similarity_parts(matrix)
    p = np.zeros(3) if pivot is None else _vec3(pivot, "pivot")
    return _similarity(s, _nonempty(s, sel), R, c, t, p)


def duplicate(s: Splats, sel, transform=None, *, pivot=None) -> Splats:
    """Append a copy of the selection, moved by ``transform``.

    transform: None (in place), an offset (dx, dy, dz), or a 4x4 similarity matrix
    (as in :func:`transform`, about ``pivot``, default world origin).
    The copies get new instance IDs: max existing ID + 1, + 2, ... for the
    selected IDs in increasing order (:func:`duplicate_ids`); stuff (ID 0) stays 0.
    Other labels (semantic_id, embeddings) are copied.
    """
    m = _nonempty(s, sel)
    if transform is None:
        R, c, t = np.eye(3), 1.0, np.zeros(3)
    else:
        arr = np.asarray(transform, dtype=np.float64) if not isinstance(transform, str) else None
        if arr is not None and arr.shape == (4, 4):
            R, c, t = similarity_parts(arr)
        else:
            R, c, t = np.eye(3), 1.0, _vec3(transform, "offset")
    p = np.zeros(3) if pivot is None else _vec3(pivot, "pivot")
    part = s.subset(m)
    if "instance_id" in part.extra:
        new = duplicate_ids(s, m)
        part.extra["instance_id"] = np.array([new.get(int(i), 0) for i in part.extra["instance_id"]], np.int32)
    part = _similarity(part, np.ones(len(part), bool), R, c, t, p)
    return Splats.concat([s, part])


def duplicate_ids(s: Splats, sel) -> dict[int, int]:
    """{source ID: new ID} that :func:`duplicate` gives the copies of a selection."""
    m = select(s, sel)
    inst = s.extra.get("instance_id")
    if inst is None:
        return {}
    src = sorted(int(i) for i in np.unique(inst[m]) if i > 0)
    top = max(object_ids(s), default=0)
    return {i: top + k + 1 for k, i in enumerate(src)}


# --------------------------------------------------------------------------- #
# math


def axis_angle_matrix(axis, degrees: float) -> np.ndarray:
    """[3,3] float64 right-handed rotation by ``degrees`` about ``axis`` (any length > 0);
    user input checked (:class:`UserError`), then :func:`pcf_gs.geometry.axis_angle_to_rotmat`."""
    a = _vec3(axis, "rotation axis")
    if np.linalg.norm(a) < 1e-12:
        raise UserError("rotation axis must not be zero")
    return axis_angle_to_rotmat(a, math.radians(float(_finite(degrees, "angle"))))


def similarity_parts(matrix) -> tuple[np.ndarray, float, np.ndarray]:
    """(R [3,3], c, t [3]) of a 4x4 similarity [[c R, t], [0, 1]]; refuses shear, mirroring, bad rows."""
    M = _finite(matrix, "transform matrix")
    if M.shape != (4, 4):
        raise UserError(f"transform matrix must be 4x4, got {M.shape}")
    if not np.allclose(M[3], [0, 0, 0, 1], atol=1e-9):
        raise UserError("transform matrix's last row must be 0 0 0 1")
    A = M[:3, :3]
    det = np.linalg.det(A)
    if det <= 1e-12:
        raise UserError("transform matrix must keep orientation (det > 0): mirroring is not possible on splats")
    c = float(np.cbrt(det))
    _check_rotation(A / c, "transform matrix (rotation x uniform scale)")
    return A / c, c, M[:3, 3].copy()


def _sh_basis(degree: int, dirs: np.ndarray) -> np.ndarray:
    """[K, (degree+1)^2] float64 real SH of unit directions [K, 3], gsplat's order and signs."""
    import torch
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast  # pure torch; the renderer's own basis

    return _eval_sh_bases_fast((degree + 1) ** 2, torch.as_tensor(dirs, dtype=torch.float64)).numpy()


@lru_cache(maxsize=1)
def _fit_directions() -> np.ndarray:
    """64 unit directions spread over the sphere (Fibonacci lattice)."""
    n = 64
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def sh_rotation_matrices(R: np.ndarray, degree: int) -> list[np.ndarray]:
    """[D_1^T, ..., D_degree^T]: per band l a (2l+1)x(2l+1) float64 matrix with c'_l = D_l^T c_l.

    Coefficients c'_l make the rotated Gaussian look from R d as the original from d
    (module docstring); orthogonal up to rounding.
    """
    R = np.asarray(R, dtype=np.float64)
    d = _fit_directions()
    Y = _sh_basis(degree, d)
    Yr = _sh_basis(degree, d @ R)  # row k: y(R^T d_k)
    out = []
    for l in range(1, degree + 1):
        b = slice(l * l, (l + 1) ** 2)
        DT, *_ = np.linalg.lstsq(Y[:, b], Yr[:, b], rcond=None)  # solves Y X = Y_rot: X = D^T
        out.append(DT)
    return out


def rotate_sh(shN: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotate higher-band SH coefficients shN [M, S-1, 3] (bands 1..d, gsplat order) by R; float64 out.

    For each band and colour channel, c'_j = sum_i (D^T)_{ji} c_i.
    """
    S1 = shN.shape[1]
    degree = int(round(np.sqrt(S1 + 1))) - 1
    if (degree + 1) ** 2 - 1 != S1:
        raise ValueError(f"shN has {S1} coefficients, not a whole SH degree")
    out = np.asarray(shN, dtype=np.float64).copy()
    for l, DT in enumerate(sh_rotation_matrices(R, degree), start=1):
        b = slice(l * l - 1, (l + 1) ** 2 - 1)  # shN excludes the DC term
        out[:, b] = np.einsum("ji,mic->mjc", DT, out[:, b])
    return out


# --------------------------------------------------------------------------- #
# internals


def _similarity(s: Splats, m: np.ndarray, R: np.ndarray, c: float, t: np.ndarray, p: np.ndarray) -> Splats:
    """x' = p + c R (x - p) + t on the rows in mask m; see the module docstring for every attribute."""
    out = s.copy()
    if not m.any():
        return out
    is_rot = not np.array_equal(R, np.eye(3))
    x = s.means[m].astype(np.float64)
    if is_rot or c != 1.0:
        x = p + c * (x - p) @ R.T
    out.means[m] = (x + t).astype(out.means.dtype)
    if c != 1.0:
        out.scales[m] = (s.scales[m].astype(np.float64) + np.log(c)).astype(out.scales.dtype)
    if is_rot:
        qR = rotmat_to_quat(R)
        out.quats[m] = quat_multiply(qR, s.quats[m]).astype(out.quats.dtype)
        if s.shN.shape[1]:
            out.shN[m] = rotate_sh(s.shN[m], R).astype(out.shN.dtype)
        if out.raw is not None and all(n in (out.raw.dtype.names or ()) for n in ("nx", "ny", "nz")):
            n = np.stack([out.raw[k][m] for k in ("nx", "ny", "nz")], 1).astype(np.float64)
            rows = np.flatnonzero(m)[np.any(n != 0, axis=1)]
            if len(rows):
                nr = n[np.any(n != 0, axis=1)] @ R.T
                for j, k in enumerate(("nx", "ny", "nz")):
                    col = out.raw[k]
                    col[rows] = nr[:, j]
    return out


def _nonempty(s: Splats, sel) -> np.ndarray:
    m = select(s, sel)
    if not m.any():
        raise UserError("the selection contains no Gaussians")
    return m


def _finite(v, what: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{what} must be numbers, got {v!r}") from None
    if not np.all(np.isfinite(a)):
        raise UserError(f"{what} must be finite, got {a.tolist()}")
    return a


def _vec3(v, what: str) -> np.ndarray:
    a = _finite(v, what).reshape(-1)
    if a.shape != (3,):
        raise UserError(f"{what} needs 3 numbers, got {a.size}")
    return a


def _positive(v, what: str) -> float:
    a = _finite(v, what)
    if a.ndim or a <= 0:
        raise UserError(f"{what} must be one number > 0, got {a.tolist()}")
    return float(a)


def _check_rotation(R: np.ndarray, what: str) -> None:
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-5) or np.linalg.det(R) < 0:
        raise UserError(f"{what} is not a rotation (orthonormal, det +1)")
