"""EWA projection of 3D Gaussians to the image plane (torch, differentiable).

Follows gsplat's ``projection_ewa_3dgs_fused_fwd_kernel`` (pinhole, classic mode)
step by step, with torch autograd providing the backward pass:

    R = rotmat(q / |q|),  Sigma = R diag(s)^2 R^T                      (world)
    t = W mean + w,       Sigma_c = W Sigma W^T                          (camera, W = viewmat[:3,:3])
    J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]]                   (tx, ty: x, y clamped to
                                                                           1.3x the field of view)
    Sigma_2d = J Sigma_c J^T + eps2d I,   mean_2d = (fx x/z + cx, fy y/z + cy)
    conic = inverse(Sigma_2d) as (a, b, c) = (S11, -S01, S00) / det

Culling (radius 0, excluded from rasterization) exactly as the CUDA kernel:
z < near or z > far; det <= 0; opacity < 1/255; both radii <= 0 (radius_clip 0);
bounding box entirely off-screen. Radii use gsplat's opacity-aware extent
``min(3.33, sqrt(2 ln(255 o)))`` times the marginal std, rounded up.
"""

from __future__ import annotations


import numpy as np
import torch
from torch import Tensor

from pcf_gs.geometry import rotmat_entries
from pcf_gs.render.constants import ALPHA_THRESHOLD


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[..., 4] wxyz (any norm) -> [..., 3, 3] rotation matrices; differentiable.

    The torch twin of :func:`pcf_gs.geometry.quat_to_rotmat` (numpy, float64): the same
    entries (:func:`pcf_gs.geometry.rotmat_entries`), on tensors of any dtype and device.
    """
    q = quats / quats.norm(dim=-1, keepdim=True)
    R = torch.stack(rotmat_entries(*q.unbind(-1)), dim=-1)
    return R.reshape(quats.shape[:-1] + (3, 3))


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    compensations: bool = False,
) -> tuple[Tensor, ...]:
    """Project N Gaussians into C pinhole cameras.

    Args:
        means [N,3] world positions; quats [N,4] wxyz; scales [N,3] (activated, world
        units); opacities [N] in [0,1]; viewmats [C,4,4] world-to-camera (OpenCV);
        Ks [C,3,3] intrinsics in pixels; width, height in pixels.

    Returns:
        radii [C,N,2] int32 pixel half-extents (0 = culled, no gradient),
        means2d [C,N,2] pixels, depths [C,N] camera z (world units),
        conics [C,N,3] (a, b, c) of the inverse blurred 2D covariance (1/px^2),
        and with ``compensations`` a fifth output [C,N]: gsplat's antialiasing factor
        sqrt(det(J Sc J^T) / det(J Sc J^T + eps2d I)) (``rasterize_mode="antialiased"``).
        Culled entries carry finite values and receive zero gradients.
    """
    dtype = means.dtype
    R = quat_to_rotmat(quats)  # [N,3,3]
    M = R * scales[:, None, :]
    cov = M @ M.transpose(-1, -2)  # [N,3,3]

    Wr = viewmats[:, :3, :3]  # [C,3,3]
    wt = viewmats[:, :3, 3]  # [C,3]
    means_c = torch.einsum("cij,nj->cni", Wr, means) + wt[:, None, :]  # [C,N,3]
    # Sigma_c = W Sigma W^T, as (W Sigma) W^T with one batched matmul per camera
    WS = torch.einsum("cij,njk->cnik", Wr, cov)
    cov_c = torch.einsum("cnik,clk->cnil", WS, Wr)  # [C,N,3,3]

    x, y, z = means_c.unbind(-1)
    depth_ok = (z >= near_plane) & (z <= far_plane)
    # culled Gaussians never reach the kernels; keep their math finite so that the
    # zero gradients flowing back stay zero (no 0 * inf).
    zs = torch.where(depth_ok, z, torch.ones_like(z))
    fx = Ks[:, 0, 0, None]
    fy = Ks[:, 1, 1, None]
    cx = Ks[:, 0, 2, None]
    cy = Ks[:, 1, 2, None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / zs
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    rz2 = rz * rz
    j00 = fx * rz
    j02 = -fx * tx * rz2
    j11 = fy * rz
    j12 = -fy * ty * rz2
    # cov2d = J Sigma_c J^T with J sparse (j01 = j10 = 0), written out
    s00, s01, s02 = cov_c[..., 0, 0], cov_c[..., 0, 1], cov_c[..., 0, 2]
    s11, s12, s22 = cov_c[..., 1, 1], cov_c[..., 1, 2], cov_c[..., 2, 2]
    c00 = j00 * j00 * s00 + 2 * j00 * j02 * s02 + j02 * j02 * s22 + eps2d
    c11 = j11 * j11 * s11 + 2 * j11 * j12 * s12 + j12 * j12 * s22 + eps2d
    c01 = j00 * j11 * s01 + j00 * j12 * s02 + j02 * j11 * s12 + j02 * j12 * s22
    det = c00 * c11 - c01 * c01
    det_ok = det > 0
    dets = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c11 / dets, -c01 / dets, c00 / dets], dim=-1)
    if compensations:
        # det of the unblurred covariance from the blurred entries: exact in float64, and the
        # float32 path loses only what float32 c00, c11 already lost
        ratio = ((c00 - eps2d) * (c11 - eps2d) - c01 * c01) / dets
        pos = ratio > 0  # a flat Gaussian: 0 with a zero gradient, not sqrt's infinite one
        comp = torch.where(pos, torch.sqrt(torch.where(pos, ratio, 1.0)), 0.0)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    with torch.no_grad():
        o = opacities.detach().to(dtype)[None, :].expand_as(z)
        opa_ok = o >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(torch.clamp(o, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = torch.clamp(extend, max=3.33)
        # radii in float32 like the CUDA kernel (ceilf of a float expression)
        rx = torch.ceil((extend * torch.sqrt(torch.clamp(c00.detach(), min=0))).float())
        ry = torch.ceil((extend * torch.sqrt(torch.clamp(c11.detach(), min=0))).float())
        m2 = means2d.detach().float()
        on_screen = (
            (m2[..., 0] + rx > 0) & (m2[..., 0] - rx < width)
            & (m2[..., 1] + ry > 0) & (m2[..., 1] - ry < height)
        )
        keep = depth_ok & det_ok & opa_ok & ((rx > 0) | (ry > 0)) & on_screen
        radii = torch.stack([rx, ry], dim=-1).to(torch.int32) * keep[..., None]
    if compensations:
        return radii, means2d, z, conics, torch.where(keep, comp, 1.0)
    return radii, means2d, z, conics


class _FusedProjection(torch.autograd.Function):
    """``project_gaussians`` as one numba kernel forward and one backward
    (``cpu_projection.project_fwd`` / ``project_bwd``): ~2 passes over N instead of ~100
    small torch ops, which dominate at small N and suffer most when cores are shared.
    No gradient to viewmats / Ks (use ``project_gaussians`` for that)."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far):
        from pcf_gs.render import cpu_projection as K

        a = [t.detach().contiguous().numpy() for t in (means, quats, scales, opacities, viewmats, Ks)]
        radii, m2d, depths, conics, comps = K.project_fwd(*a, width, height, float(eps2d), float(near), float(far))
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        ctx.arrays = a
        ctx.radii = radii
        ctx.args = (width, height, float(eps2d))
        return radii_t, torch.from_numpy(m2d), torch.from_numpy(depths), torch.from_numpy(conics), torch.from_numpy(comps)

    @staticmethod
    def backward(ctx, _v_radii, v_m2d, v_depths, v_conics, v_comps):
        from pcf_gs.render import cpu_projection as K

        means, quats, scales, _opac, viewmats, Ks = ctx.arrays
        width, height, eps2d = ctx.args
        dt = means.dtype
        C, N = ctx.radii.shape[:2]

        def arr(v, shape):
            return np.zeros(shape, dt) if v is None else np.ascontiguousarray(v.detach().numpy(), dtype=dt)

        vm, vq, vs = K.project_bwd(
            means, quats, scales, viewmats, Ks, width, height, eps2d, ctx.radii,
            arr(v_m2d, (C, N, 2)), arr(v_depths, (C, N)), arr(v_conics, (C, N, 3)), arr(v_comps, (C, N)),
        )
        return (torch.from_numpy(vm), torch.from_numpy(vq), torch.from_numpy(vs),
                None, None, None, None, None, None, None, None)


def project_gaussians_fused(means, quats, scales, opacities, viewmats, Ks, width, height, *,
                            eps2d=0.3, near_plane=0.01, far_plane=1e10, compensations=False):
    """Same contract as ``project_gaussians`` (numba, no viewmat/K gradients);
    culled entries have zero means2d/conics."""
    out = _FusedProjection.apply(means, quats, scales, opacities, viewmats, Ks, width, height,
                                 eps2d, near_plane, far_plane)
    return out if compensations else out[:4]
