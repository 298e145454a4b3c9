"""Rotations and camera conventions, written once for the whole package (numpy, float64).

Conventions
-----------
- Quaternions are ``(w, x, y, z)`` (scalar first), Hamilton product, any norm > 0 on
  input; rotation matrices act on column vectors (``x_world = R @ x_local``).
- Cameras are OpenCV: x right, y down, z forward; poses are camera-to-world ``c2w``
  [4,4] (``c2w[:3, :3]`` the camera axes in world coordinates, ``c2w[:3, 3]`` the centre).
- A Blender / OpenGL camera (x right, y up, looking down -z) differs from OpenCV by
  ``diag(1, -1, -1)`` on the camera axes: ``c2w_opencv = c2w_blender @ diag(1, -1, -1, 1)``
  and back with the same matrix (it is its own inverse).
- Kubric camera block (Messy Rooms ``metadata.json["camera"]``): ``K`` normalised and
  signed, ``[[fx/W, 0, -cx/W], [0, -fy/H, -cy/H], [0, 0, -1]]`` (pixel K = ``|K|`` with
  row 0 times W and row 1 times H); ``positions`` [F][3] camera centres;
  ``quaternions`` [F][4] (w, x, y, z) of the Blender camera rotation.

:func:`rotmat_entries` is the one formula for a quaternion's rotation matrix; it is
plain arithmetic, so ``pcf_gs.render.projection`` (torch, the training hot path) uses
it on tensors too.
"""

from __future__ import annotations

import math

import numpy as np

# flips the camera's y and z axes: Blender/OpenGL <-> OpenCV, on [3,3] rotations and [4,4] poses
FLIP_YZ = np.diag([1.0, -1.0, -1.0])
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
KUBRIC_SENSOR_WIDTH_MM = 32.0  # Kubric's default sensor width


# ----------------------------------------------------------------------------- rotations


def rotmat_entries(w, x, y, z) -> list:
    """The 9 entries (row-major) of the rotation matrix of the unit quaternion (w, x, y, z).

    Plain arithmetic, so it works elementwise on floats, numpy arrays and torch tensors
    (autograd included); the operation order is fixed, results are reproducible bit for bit.
    """
    return [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip


def quat_to_rotmat(q) -> np.ndarray:
    """Quaternions [..., 4] (w, x, y, z; any norm > 0) -> rotation matrices [..., 3, 3] float64.

    Each quaternion is divided by its norm first. A single quaternion [4] is normalised
    with ``np.linalg.norm(q)`` (a BLAS dot), a batch row-wise (``norm(axis=-1)``); the two
    can differ in the last bit, and written scenes and loaded cameras depend on each
    staying as it is.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternions must be [..., 4], got shape {q.shape}")
    q = q / (np.linalg.norm(q) if q.ndim == 1 else np.linalg.norm(q, axis=-1, keepdims=True))
    R = np.stack(rotmat_entries(q[..., 0], q[..., 1], q[..., 2], q[..., 3]), -1)
    return R.reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R) -> np.ndarray:
    """Rotation matrix [3,3] -> unit quaternion [4] (w, x, y, z) with w >= 0.

    Shepperd's method: the trace branch when the trace is positive, else the branch of the
    largest diagonal entry, so the divisor is never small.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"rotation matrix must be 3x3, got shape {R.shape}")
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


def axis_angle_to_rotmat(axis, angle: float) -> np.ndarray:
    """[3,3] float64 right-handed rotation by ``angle`` radians about ``axis`` [3] (any length > 0)."""
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


def quat_multiply(a, b) -> np.ndarray:
    """Hamilton product a (x) b of quaternions (w, x, y, z) [..., 4], float64; broadcasts.

    As rotations, ``a (x) b`` applies b first: R(a (x) b) = R(a) @ R(b).
    """
    aw, ax, ay, az = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], -1)  # fmt: skip


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """[3,3] rotation drawn uniformly (normalised 4D Gaussian quaternion); draws 4 normals from ``rng``."""
    q = rng.normal(size=4)
    return quat_to_rotmat(q / np.linalg.norm(q))


# ----------------------------------------------------------------------------- camera conventions


def blender_to_opencv(m) -> np.ndarray:
    """Blender/OpenGL camera -> OpenCV camera (and back: the flip is its own inverse).

    ``m``: camera rotations [..., 3, 3] or camera-to-world poses [..., 4, 4]; the camera's
    y and z axes (columns 1 and 2) change sign, the centre is kept.
    """
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] == (3, 3):
        return m @ FLIP_YZ
    if m.shape[-2:] == (4, 4):
        return m @ BLENDER_TO_OPENCV
    raise ValueError(f"expected [..., 3, 3] or [..., 4, 4], got shape {m.shape}")


opencv_to_blender = blender_to_opencv


def kubric_intrinsics(K, width: int, height: int) -> np.ndarray:
    """Kubric's normalised signed K [..., 3, 3] -> pixel K for a ``width`` x ``height`` image:
    ``|K|`` with row 0 times W and row 1 times H."""
    Kp = np.abs(np.asarray(K, dtype=np.float64))
    Kp[..., 0, :] *= width
    Kp[..., 1, :] *= height
    return Kp


def kubric_c2w(positions, quaternions) -> np.ndarray:
    """Kubric camera positions [..., 3] and Blender-camera quaternions [..., 4] (w, x, y, z)
    -> OpenCV c2w [..., 4, 4]: ``[R(q) | position] @ diag(1, -1, -1, 1)``."""
    pos = np.asarray(positions, dtype=np.float64)
    c2w = np.zeros(pos.shape[:-1] + (4, 4))
    c2w[..., :3, :3] = quat_to_rotmat(quaternions)
    c2w[..., :3, 3] = pos
    c2w[..., 3, 3] = 1.0
    return blender_to_opencv(c2w)


def kubric_to_opencv(K, positions, quaternions, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a Kubric camera block (module docstring): (pixel K, same shape as ``K``;
    OpenCV c2w [..., 4, 4]). Inputs are not validated (the Messy Rooms loader does that)."""
    return kubric_intrinsics(K, width, height), kubric_c2w(positions, quaternions)


def opencv_to_kubric(K, c2w, width: int, height: int, sensor_width: float = KUBRIC_SENSOR_WIDTH_MM) -> dict:
    """Encode pixel K [3,3] (square pixels, principal point at the image centre) and OpenCV
    c2w [F,4,4] as a Kubric camera block (JSON-ready lists).

    fx_n = fx / W is the focal length in sensor widths; the sensor height is
    ``sensor_width * H / W`` (square pixels), so fy_n = focal / sensor_height. Also written:
    focal_length and sensor sizes (mm), horizontal field_of_view (radians).
    """
    fx_n = K[0, 0] / width
    focal = fx_n * sensor_width
    sensor_h = sensor_width * height / width
    fy_n = focal / sensor_h
    return {
        "K": [[fx_n, 0.0, -0.5], [0.0, -fy_n, -0.5], [0.0, 0.0, -1.0]],
        "focal_length": focal,
        "sensor_width": sensor_width,
        "sensor_height": sensor_h,
        "field_of_view": 2.0 * math.atan(sensor_width / (2.0 * focal)),
        "positions": [c[:3, 3].tolist() for c in c2w],
        "quaternions": [rotmat_to_quat(opencv_to_blender(c[:3, :3])).tolist() for c in c2w],
    }
