"""Numba fused EWA projection of the CPU rasterizer, forward and backward
(gsplat's ``projection_ewa_3dgs_fused_fwd_kernel`` / ``..._bwd_kernel``, pinhole,
classic mode). ``projection._FusedProjection`` wraps them as an autograd Function;
``projection.project_gaussians`` is the same math in torch (its docstring has the
formulas).

Per Gaussian everything is computed in float64 and stored in the input dtype.
3x3 matrices are row-major 9-tuples of float64: they stay in registers (no heap
allocation per Gaussian, no BLAS call for 3x3 products).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from pcf_gs.render.constants import ALPHA_THRESHOLD


@njit(inline="always")
def _mm(A, B):
    return (
        A[0] * B[0] + A[1] * B[3] + A[2] * B[6], A[0] * B[1] + A[1] * B[4] + A[2] * B[7],
        A[0] * B[2] + A[1] * B[5] + A[2] * B[8],
        A[3] * B[0] + A[4] * B[3] + A[5] * B[6], A[3] * B[1] + A[4] * B[4] + A[5] * B[7],
        A[3] * B[2] + A[4] * B[5] + A[5] * B[8],
        A[6] * B[0] + A[7] * B[3] + A[8] * B[6], A[6] * B[1] + A[7] * B[4] + A[8] * B[7],
        A[6] * B[2] + A[7] * B[5] + A[8] * B[8],
    )


@njit(inline="always")
def _tr(A):
    return (A[0], A[3], A[6], A[1], A[4], A[7], A[2], A[5], A[8])


@njit(inline="always")
def _gauss_frame(quats, scales, g):
    """R (of q/|q|), M = R diag(s), Sigma = M M^T, normalised q and 1/|q| for Gaussian g."""
    qw = np.float64(quats[g, 0])
    qx = np.float64(quats[g, 1])
    qy = np.float64(quats[g, 2])
    qz = np.float64(quats[g, 3])
    inv = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w = qw * inv
    x = qx * inv
    y = qy * inv
    z = qz * inv
    R = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    s0 = np.float64(scales[g, 0])
    s1 = np.float64(scales[g, 1])
    s2 = np.float64(scales[g, 2])
    M = (R[0] * s0, R[1] * s1, R[2] * s2, R[3] * s0, R[4] * s1, R[5] * s2, R[6] * s0, R[7] * s1, R[8] * s2)
    cov = _mm(M, _tr(M))
    return R, M, cov, (s0, s1, s2), (w, x, y, z), inv


@njit(inline="always")
def _cam(viewmats, Ks, ci, means, g, width, height):
    """Camera-space mean, rotation W (9-tuple), intrinsics and the FOV clamp limits."""
    V = viewmats[ci]
    Wr = (np.float64(V[0, 0]), np.float64(V[0, 1]), np.float64(V[0, 2]),
          np.float64(V[1, 0]), np.float64(V[1, 1]), np.float64(V[1, 2]),
          np.float64(V[2, 0]), np.float64(V[2, 1]), np.float64(V[2, 2]))
    mx = np.float64(means[g, 0])
    my = np.float64(means[g, 1])
    mz = np.float64(means[g, 2])
    px = Wr[0] * mx + Wr[1] * my + Wr[2] * mz + np.float64(V[0, 3])
    py = Wr[3] * mx + Wr[4] * my + Wr[5] * mz + np.float64(V[1, 3])
    pz = Wr[6] * mx + Wr[7] * my + Wr[8] * mz + np.float64(V[2, 3])
    fx = np.float64(Ks[ci, 0, 0])
    fy = np.float64(Ks[ci, 1, 1])
    cx = np.float64(Ks[ci, 0, 2])
    cy = np.float64(Ks[ci, 1, 2])
    tfx = 0.5 * width / fx
    tfy = 0.5 * height / fy
    lims = ((width - cx) / fx + 0.3 * tfx, cx / fx + 0.3 * tfx,
            (height - cy) / fy + 0.3 * tfy, cy / fy + 0.3 * tfy)
    return Wr, px, py, pz, fx, fy, cx, cy, lims


@njit(inline="always")
def _jac(px, py, pz, fx, fy, lims):
    """Jacobian entries (j00, j02, j11, j12) with gsplat's 1.3x-FOV clamp, and tx, ty."""
    rz = 1.0 / pz
    rz2 = rz * rz
    tx = pz * min(lims[0], max(-lims[1], px * rz))
    ty = pz * min(lims[2], max(-lims[3], py * rz))
    return fx * rz, -fx * tx * rz2, fy * rz, -fy * ty * rz2, tx, ty


@njit(inline="always")
def _cov2d(cc, j00, j02, j11, j12, eps2d):
    """2D covariance J cc J^T + eps2d I (entries c00, c11, c01) and its determinant, for the
    camera-space covariance cc (9-tuple, row-major) and the Jacobian rows (j00, 0, j02), (0, j11, j12).
    The forward and the backward both need it (the backward recomputes rather than stores it)."""
    c00 = j00 * j00 * cc[0] + 2 * j00 * j02 * cc[2] + j02 * j02 * cc[8] + eps2d
    c11 = j11 * j11 * cc[4] + 2 * j11 * j12 * cc[5] + j12 * j12 * cc[8] + eps2d
    c01 = j00 * j11 * cc[1] + j00 * j12 * cc[2] + j02 * j11 * cc[5] + j02 * j12 * cc[8]
    return c00, c11, c01, c00 * c11 - c01 * c01


@njit(inline="always")
def _comp_ratio(c00, c11, c01, det, eps2d):
    """r = det(S - eps I) / det(S) for the blurred 2D covariance S (antialiased mode: compensation
    sqrt(r)), in float64, where subtracting eps from S's diagonal loses nothing."""
    return ((c00 - eps2d) * (c11 - eps2d) - c01 * c01) / det


@njit
def _project_one(g, means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far,
                 radii, m2d, depths, conics, comps):
    C = viewmats.shape[0]
    R, M, cov, s, q, inv = _gauss_frame(quats, scales, g)
    o = np.float64(opac[g])
    for ci in range(C):
        Wr, px, py, pz, fx, fy, cx, cy, lims = _cam(viewmats, Ks, ci, means, g, width, height)
        depths[ci, g] = pz
        if pz < near or pz > far:
            continue
        cc = _mm(_mm(Wr, cov), _tr(Wr))
        j00, j02, j11, j12, tx, ty = _jac(px, py, pz, fx, fy, lims)
        c00, c11, c01, det = _cov2d(cc, j00, j02, j11, j12, eps2d)
        if det <= 0.0 or o < ALPHA_THRESHOLD:
            continue
        ext = min(3.33, math.sqrt(2.0 * math.log(o * 255.0)))
        rx = math.ceil(np.float32(ext * math.sqrt(c00)))
        ry = math.ceil(np.float32(ext * math.sqrt(c11)))
        if rx <= 0 and ry <= 0:
            continue
        mx = fx * px / pz + cx
        my = fy * py / pz + cy
        if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
            continue
        radii[ci, g, 0] = rx
        radii[ci, g, 1] = ry
        m2d[ci, g, 0] = mx
        m2d[ci, g, 1] = my
        conics[ci, g, 0] = c11 / det
        conics[ci, g, 1] = -c01 / det
        conics[ci, g, 2] = c00 / det
        comps[ci, g] = math.sqrt(max(_comp_ratio(c00, c11, c01, det, eps2d), 0.0))


@njit(cache=True, parallel=True)
def project_fwd(means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far):
    """Fused EWA projection (gsplat's ``projection_ewa_3dgs_fused_fwd_kernel``, pinhole).

    Same math and culling as ``projection.project_gaussians`` (its docstring has the
    formulas), computed in float64 per Gaussian and stored in the input dtype.

    Args: means [N,3], quats [N,4] wxyz, scales [N,3], opac [N], viewmats [C,4,4],
        Ks [C,3,3]; width, height (px); eps2d (px^2); near, far (camera z).
    Returns: radii [C,N,2] int32 (0 = culled), means2d [C,N,2], depths [C,N],
        conics [C,N,3], compensations [C,N] (gsplat's antialiasing factor
        sqrt(det(S - eps I) / det S), S the blurred 2D covariance). Culled entries:
        means2d/conics 0, compensation 1, depths = camera z.
    """
    N = means.shape[0]
    C = viewmats.shape[0]
    radii = np.zeros((C, N, 2), np.int32)
    m2d = np.zeros((C, N, 2), means.dtype)
    depths = np.zeros((C, N), means.dtype)
    conics = np.zeros((C, N, 3), means.dtype)
    comps = np.ones((C, N), means.dtype)
    for g in prange(N):
        _project_one(g, means, quats, scales, opac, viewmats, Ks, width, height, eps2d, near, far,
                     radii, m2d, depths, conics, comps)
    return radii, m2d, depths, conics, comps


@njit
def _project_one_bwd(g, means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                     v_m2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales):
    C = viewmats.shape[0]
    R, M, cov, s, q, inv = _gauss_frame(quats, scales, g)
    vcov = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    vmx = 0.0
    vmy = 0.0
    vmz = 0.0
    hit = False
    for ci in range(C):
        if radii[ci, g, 0] <= 0 or radii[ci, g, 1] <= 0:
            continue
        hit = True
        Wr, px, py, pz, fx, fy, cx, cy, lims = _cam(viewmats, Ks, ci, means, g, width, height)
        cc = _mm(_mm(Wr, cov), _tr(Wr))
        j00, j02, j11, j12, tx, ty = _jac(px, py, pz, fx, fy, lims)
        c00, c11, c01, det = _cov2d(cc, j00, j02, j11, j12, eps2d)
        q00 = c11 / det
        q01 = -c01 / det
        q11 = c00 / det
        g00 = np.float64(v_conics[ci, g, 0])
        g01 = 0.5 * np.float64(v_conics[ci, g, 1])
        g11 = np.float64(v_conics[ci, g, 2])
        # vS = -Q G Q (symmetric)
        a00 = q00 * g00 + q01 * g01
        a01 = q00 * g01 + q01 * g11
        a10 = q01 * g00 + q11 * g01
        a11 = q01 * g01 + q11 * g11
        vs00 = -(a00 * q00 + a01 * q01)
        vs01 = -(a00 * q01 + a01 * q11)
        vs11 = -(a10 * q01 + a11 * q11)
        vcomp = np.float64(v_comps[ci, g])
        if vcomp != 0.0:
            r = _comp_ratio(c00, c11, c01, det, eps2d)
            if r > 0.0:
                # comp = sqrt(r): dr/dS00 = (S11 - eps - r S11) / det, dr/dS11 likewise, and the
                # symmetric entry's dr/dS01 = (r - 1) S01 / det (half of the scalar derivative)
                vr = 0.5 * vcomp / math.sqrt(r)
                vs00 += vr * (c11 - eps2d - r * c11) / det
                vs11 += vr * (c00 - eps2d - r * c00) / det
                vs01 += vr * (r - 1.0) * c01 / det
        # J as 2x3 rows (j00, 0, j02), (0, j11, j12)
        # dL/dSc = J^T vS J  (3x3 symmetric)
        u0 = (vs00 * j00, vs01 * j00)  # vS J[:,0]
        u1 = (vs01 * j11, vs11 * j11)  # vS J[:,1]
        u2 = (vs00 * j02 + vs01 * j12, vs01 * j02 + vs11 * j12)  # vS J[:,2]
        vcc = (
            j00 * u0[0], j00 * u1[0], j00 * u2[0],
            j11 * u0[1], j11 * u1[1], j11 * u2[1],
            j02 * u0[0] + j12 * u0[1], j02 * u1[0] + j12 * u1[1], j02 * u2[0] + j12 * u2[1],
        )
        # dL/dJ = 2 vS J Sc, entries needed: (0,0), (0,2), (1,1), (1,2)
        # (vS J) rows: r0 = (vs00 j00, vs01 j11, vs00 j02 + vs01 j12), r1 = (vs01 j00, vs11 j11, vs01 j02 + vs11 j12)
        r0 = (u0[0], u1[0], u2[0])
        r1 = (u0[1], u1[1], u2[1])
        vj00 = 2.0 * (r0[0] * cc[0] + r0[1] * cc[3] + r0[2] * cc[6])
        vj02 = 2.0 * (r0[0] * cc[2] + r0[1] * cc[5] + r0[2] * cc[8])
        vj11 = 2.0 * (r1[0] * cc[1] + r1[1] * cc[4] + r1[2] * cc[7])
        vj12 = 2.0 * (r1[0] * cc[2] + r1[1] * cc[5] + r1[2] * cc[8])
        rz = 1.0 / pz
        rz2 = rz * rz
        rz3 = rz2 * rz
        gmx = np.float64(v_m2d[ci, g, 0])
        gmy = np.float64(v_m2d[ci, g, 1])
        vpx = fx * rz * gmx
        vpy = fy * rz * gmy
        vpz = -(fx * px * gmx + fy * py * gmy) * rz2 + np.float64(v_depths[ci, g])
        if px * rz <= lims[0] and px * rz >= -lims[1]:
            vpx += -fx * rz2 * vj02
        else:
            vpz += -fx * rz3 * vj02 * tx
        if py * rz <= lims[2] and py * rz >= -lims[3]:
            vpy += -fy * rz2 * vj12
        else:
            vpz += -fy * rz3 * vj12 * ty
        vpz += -fx * rz2 * vj00 - fy * rz2 * vj11 + 2.0 * fx * tx * rz3 * vj02 + 2.0 * fy * ty * rz3 * vj12
        vmx += Wr[0] * vpx + Wr[3] * vpy + Wr[6] * vpz
        vmy += Wr[1] * vpx + Wr[4] * vpy + Wr[7] * vpz
        vmz += Wr[2] * vpx + Wr[5] * vpy + Wr[8] * vpz
        d = _mm(_mm(_tr(Wr), vcc), Wr)
        vcov = (vcov[0] + d[0], vcov[1] + d[1], vcov[2] + d[2], vcov[3] + d[3], vcov[4] + d[4],
                vcov[5] + d[5], vcov[6] + d[6], vcov[7] + d[7], vcov[8] + d[8])
    if not hit:
        return
    v_means[g, 0] = vmx
    v_means[g, 1] = vmy
    v_means[g, 2] = vmz
    # dL/dM = (vcov + vcov^T) M
    sym = (2 * vcov[0], vcov[1] + vcov[3], vcov[2] + vcov[6],
           vcov[3] + vcov[1], 2 * vcov[4], vcov[5] + vcov[7],
           vcov[6] + vcov[2], vcov[7] + vcov[5], 2 * vcov[8])
    vM = _mm(sym, M)
    vR = (vM[0] * s[0], vM[1] * s[1], vM[2] * s[2], vM[3] * s[0], vM[4] * s[1], vM[5] * s[2],
          vM[6] * s[0], vM[7] * s[1], vM[8] * s[2])
    v_scales[g, 0] = R[0] * vM[0] + R[3] * vM[3] + R[6] * vM[6]
    v_scales[g, 1] = R[1] * vM[1] + R[4] * vM[4] + R[7] * vM[7]
    v_scales[g, 2] = R[2] * vM[2] + R[5] * vM[5] + R[8] * vM[8]
    w, x, y, z = q
    vw = 2 * (-z * vR[1] + y * vR[2] + z * vR[3] - x * vR[5] - y * vR[6] + x * vR[7])
    vx = 2 * (y * vR[1] + z * vR[2] + y * vR[3] - 2 * x * vR[4] - w * vR[5]
              + z * vR[6] + w * vR[7] - 2 * x * vR[8])
    vy = 2 * (-2 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + z * vR[5]
              - w * vR[6] + z * vR[7] - 2 * y * vR[8])
    vz = 2 * (-2 * z * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2 * z * vR[4]
              + y * vR[5] + x * vR[6] + y * vR[7])
    dq = vw * w + vx * x + vy * y + vz * z
    v_quats[g, 0] = (vw - dq * w) * inv
    v_quats[g, 1] = (vx - dq * x) * inv
    v_quats[g, 2] = (vy - dq * y) * inv
    v_quats[g, 3] = (vz - dq * z) * inv


@njit(cache=True, parallel=True)
def project_bwd(means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                v_m2d, v_depths, v_conics, v_comps):
    """VJP of ``project_fwd`` (the math of gsplat's fused projection backward).

    Per camera and drawn Gaussian (radii > 0), with S the blurred 2D covariance:
        conic Q = S^-1:          dL/dS = -Q G Q,   G = [[va, vb/2], [vb/2, vc]]
        compensation sqrt(r), r = det(S - eps I) / det S:  dL/dS += dL/dr dr/dS (0 where r <= 0)
        S = J Sc J^T + eps I:    dL/dSc = J^T dL/dS J,   dL/dJ = 2 dL/dS J Sc
        J(p_c) (FOV clamp as gsplat's ``persp_proj_vjp``), mean2d(p_c), depth = p_c.z
        Sc = W Sigma W^T:        dL/dSigma += W^T dL/dSc W;  p_c = W m + t: dL/dm += W^T dL/dp_c
        Sigma = M M^T, M = R diag(s):  dL/dM = 2 dL/dSigma M;  dL/ds_j = sum_i R_ij dL/dM_ij
        R(q/|q|): closed-form dR/dq, then the normalisation (I - q q^T)/|q|.
    Culled entries contribute nothing. Parallel over Gaussians (cameras looped inside),
    so each output row has one writer.

    Returns v_means [N,3], v_quats [N,4], v_scales [N,3].
    """
    N = means.shape[0]
    v_means = np.zeros((N, 3), means.dtype)
    v_quats = np.zeros((N, 4), means.dtype)
    v_scales = np.zeros((N, 3), means.dtype)
    for g in prange(N):
        _project_one_bwd(g, means, quats, scales, viewmats, Ks, width, height, eps2d, radii,
                         v_m2d, v_depths, v_conics, v_comps, v_means, v_quats, v_scales)
    return v_means, v_quats, v_scales
