"""pcf_gs.geometry: quaternions <-> matrices, axis-angle, Blender <-> OpenCV, Kubric cameras."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pcf_gs import geometry as G
from pcf_gs.render.projection import quat_to_rotmat as quat_to_rotmat_torch

# components include exact zeros and +-1, so 180-degree turns (w = 0), axis-aligned and
# near-identity rotations (every Shepperd branch) are drawn, besides generic ones
_comp = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5, -1e-9]), st.floats(-1, 1, allow_nan=False))
quats = st.tuples(_comp, _comp, _comp, _comp).map(np.array).filter(lambda q: np.linalg.norm(q) > 1e-6)
vec3 = st.tuples(_comp, _comp, _comp).map(np.array)
angles = st.one_of(st.sampled_from([0.0, math.pi, -math.pi, math.pi / 2, 2 * math.pi]), st.floats(-7, 7))


def _is_rotation(R, tol=1e-12):
    return np.allclose(R @ R.T, np.eye(3), atol=tol) and abs(np.linalg.det(R) - 1) < tol


def _look_at(pos, target):
    """OpenCV c2w at pos looking at target, z-up world."""
    f = (target - pos) / np.linalg.norm(target - pos)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([r, np.cross(f, r), f], 1)
    c2w[:3, 3] = pos
    return c2w


def test_quaternion_convention():
    # w, x, y, z: 90 degrees about +z takes x to y
    q = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])
    assert np.allclose(G.quat_to_rotmat(q), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    assert np.array_equal(G.quat_to_rotmat([2.0, 0, 0, 0]), np.eye(3))  # any norm
    assert G.quat_to_rotmat(np.ones((2, 5, 4))).shape == (2, 5, 3, 3)
    with pytest.raises(ValueError):
        G.quat_to_rotmat(np.ones(3))


@settings(max_examples=300, deadline=None)
@given(quats)
def test_quat_matrix_round_trip(q):
    R = G.quat_to_rotmat(q)
    assert _is_rotation(R)
    q2 = G.rotmat_to_quat(R)
    qn = q / np.linalg.norm(q)
    assert q2[0] >= 0 and abs(np.linalg.norm(q2) - 1) < 1e-12
    assert np.allclose(q2, qn, atol=1e-9) or np.allclose(q2, -qn, atol=1e-9)  # q and -q: one rotation
    assert np.allclose(G.quat_to_rotmat(q2), R, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(quats, min_size=1, max_size=6))
def test_batch_agrees_with_single(qs):
    Q = np.stack(qs)
    batch = G.quat_to_rotmat(Q)
    single = np.stack([G.quat_to_rotmat(q) for q in Q])
    # the norm of one quaternion (BLAS dot) and of rows (add.reduce) may differ in the last bit
    assert np.allclose(batch, single, rtol=0, atol=1e-12)  # a few ulps through the products (1e-15 failed once)


@settings(max_examples=200, deadline=None)
@given(vec3.filter(lambda a: np.linalg.norm(a) > 1e-6), angles, angles)
def test_axis_angle(axis, a, b):
    R = G.axis_angle_to_rotmat(axis, a)
    assert _is_rotation(R)
    u = axis / np.linalg.norm(axis)
    assert np.allclose(R @ u, u, atol=1e-12)  # the axis stays
    q = np.array([math.cos(a / 2), *(math.sin(a / 2) * u)])
    assert np.allclose(R, G.quat_to_rotmat(q), atol=1e-12)
    assert np.allclose(R @ G.axis_angle_to_rotmat(axis, b), G.axis_angle_to_rotmat(axis, a + b), atol=1e-12)
    assert np.allclose(G.axis_angle_to_rotmat(axis * 3.0, a), R, atol=1e-15)  # axis length is ignored


def test_axis_angle_right_handed():
    assert np.allclose(G.axis_angle_to_rotmat([0, 0, 1], math.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    assert np.allclose(G.axis_angle_to_rotmat([1, 0, 0], math.pi / 2) @ [0, 1, 0], [0, 0, 1], atol=1e-15)


@settings(max_examples=200, deadline=None)
@given(quats, quats)
def test_quat_multiply_composes_rotations(a, b):
    assert np.allclose(G.quat_to_rotmat(G.quat_multiply(a, b)), G.quat_to_rotmat(a) @ G.quat_to_rotmat(b), atol=1e-12)
    assert np.array_equal(G.quat_multiply([1.0, 0, 0, 0], b), b.astype(np.float64))
    assert G.quat_multiply(np.stack([a, b]), a).shape == (2, 4)  # broadcasts


def test_random_rotation():
    rng = np.random.default_rng(0)
    Rs = [G.random_rotation(rng) for _ in range(200)]
    assert all(_is_rotation(R) for R in Rs)
    assert np.abs(np.mean([R[:, 2] for R in Rs], axis=0)).max() < 0.15  # no preferred direction


@settings(max_examples=100, deadline=None)
@given(quats, vec3)
def test_blender_opencv(q, pos):
    c2w_gl = np.eye(4)
    c2w_gl[:3, :3] = G.quat_to_rotmat(q)
    c2w_gl[:3, 3] = pos
    cv = G.blender_to_opencv(c2w_gl)
    assert np.array_equal(G.opencv_to_blender(cv), c2w_gl)  # its own inverse, exactly
    assert np.array_equal(cv[:3, 3], c2w_gl[:3, 3]) and np.array_equal(cv[:3, 0], c2w_gl[:3, 0])
    assert np.array_equal(cv[:3, 1:3], -c2w_gl[:3, 1:3])  # y down = -up, z forward = -backward
    assert np.array_equal(G.blender_to_opencv(c2w_gl[:3, :3]), cv[:3, :3])  # rotations alone
    with pytest.raises(ValueError):
        G.blender_to_opencv(np.eye(2))


def test_kubric_round_trip_and_projection():
    W, H = 40, 30
    f = 33.0
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    rng = np.random.default_rng(1)
    c2w = np.stack([_look_at(rng.uniform(-4, 4, 3) + [0, 0, 6], rng.uniform(-1, 1, 3)) for _ in range(6)])
    cam = json.loads(json.dumps(G.opencv_to_kubric(K, c2w, W, H)))
    # normalised and signed as Kubric writes it
    assert np.allclose(cam["K"], [[f / W, 0, -0.5], [0, -f / H, -0.5], [0, 0, -1]], atol=1e-15)
    assert cam["sensor_width"] == G.KUBRIC_SENSOR_WIDTH_MM
    assert math.isclose(cam["field_of_view"], 2 * math.atan(W / (2 * f)))
    assert all(q[0] >= 0 for q in cam["quaternions"])
    Kp, c2w2 = G.kubric_to_opencv(cam["K"], cam["positions"], cam["quaternions"], W, H)
    assert np.allclose(Kp, K, atol=1e-12) and np.allclose(c2w2, c2w, atol=1e-12)
    # one frame at a time and per-frame K decode the same cameras
    for i in range(len(c2w)):
        assert np.allclose(G.kubric_c2w(cam["positions"][i], cam["quaternions"][i]), c2w2[i], rtol=0, atol=1e-15)
    assert np.array_equal(G.kubric_intrinsics(np.stack([cam["K"]] * 3), W, H), np.stack([Kp] * 3))
    # a world point lands on the same pixel through the OpenCV camera and through the
    # Blender camera read straight from the block (looks down -z, y up)
    X = np.array([0.3, -0.2, 0.4])
    for i in range(len(c2w)):
        xc = np.linalg.inv(c2w2[i]) @ np.append(X, 1)
        u, v = (Kp @ xc[:3])[:2] / xc[2]
        Rb = G.quat_to_rotmat(cam["quaternions"][i])
        d = X - np.array(cam["positions"][i])
        depth = -(d @ Rb[:, 2])
        ub = W / 2 + cam["K"][0][0] * W * (d @ Rb[:, 0]) / depth
        vb = H / 2 + cam["K"][1][1] * H * (d @ Rb[:, 1]) / depth  # K[1][1] = -fy/H
        assert np.allclose([u, v], [ub, vb], atol=1e-9)


def test_rotmat_to_quat_rejects_bad_shapes():
    with pytest.raises(ValueError):
        G.rotmat_to_quat(np.eye(4))


@settings(max_examples=50, deadline=None)
@given(st.lists(quats, min_size=1, max_size=8))
def test_torch_twin_agrees(qs):
    Q = np.stack(qs)
    Rt = quat_to_rotmat_torch(torch.as_tensor(Q, dtype=torch.float64)).numpy()
    assert np.allclose(Rt, G.quat_to_rotmat(Q), rtol=0, atol=1e-15)
    # the same entries, written once: bit-identical given the same normalised quaternion
    qn = Q / np.linalg.norm(Q, axis=-1, keepdims=True)
    ref = np.stack(G.rotmat_entries(*torch.as_tensor(qn).unbind(-1)), -1).reshape(-1, 3, 3)
    assert np.array_equal(ref, np.stack(G.rotmat_entries(*qn.T), -1).reshape(-1, 3, 3))
