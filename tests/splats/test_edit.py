"""Object editing (pcf_gs.splats.edit, `pcf-gs edit`, `pcf-gs render --ply`).

Render-based checks use a hand-built labelled scene: a uniform wall (stuff, ID 0)
behind three separated blobs (IDs 1, 2, 3), rendered with the CPU rasterizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement
from scipy.ndimage import binary_dilation

from pcf_gs.splats import edit as E
from pcf_gs.cli import main
from pcf_gs.splats.edit_script import parse_flag, parse_ops
from pcf_gs.errors import UserError
from pcf_gs.splats.export import export_objects
from pcf_gs.splats.ply import Splats, read_ply, write_ply
from pcf_gs.render import rasterize
from tests.conftest import load_tool

C0 = 0.28209479177387814
W, H = 64, 48
WALL_RGB = np.array([0.2, 0.3, 0.8])
BLOB_RGB = {1: (0.9, 0.2, 0.1), 2: (0.1, 0.8, 0.2), 3: (0.9, 0.9, 0.1)}


def blob_scene(degree: int = 3, seed: int = 0, wall: bool = True) -> Splats:
    """Wall (z = 1.5, ID 0) + blobs 1, 2, 3 at x = -1.2, 0, 1.2 (60 Gaussians each), labelled, SH ``degree``."""
    rng = np.random.default_rng(seed)
    S = (degree + 1) ** 2
    parts = []
    if wall:
        gx, gy = np.meshgrid(np.linspace(-3.6, 3.6, 25), np.linspace(-2.7, 2.7, 19))
        n = gx.size
        parts.append(dict(
            means=np.stack([gx.ravel(), gy.ravel(), np.full(n, 1.5)], 1), scales=np.log(np.full((n, 3), [0.2, 0.2, 0.02])),
            quats=np.tile([1.0, 0, 0, 0], (n, 1)), opac=np.full(n, 4.0), rgb=np.tile(WALL_RGB, (n, 1)),
            shN=np.zeros((n, S - 1, 3)), inst=np.zeros(n), sem=np.zeros(n)))
    for k, x in ((1, -1.2), (2, 0.0), (3, 1.2)):
        n = 60
        d = rng.normal(size=(n, 3))
        d *= (0.3 * rng.random(n) ** (1 / 3) / np.linalg.norm(d, axis=1))[:, None]
        parts.append(dict(
            means=d + [x, 0.0, 0.0], scales=np.log(rng.uniform(0.05, 0.09, (n, 3))), quats=rng.normal(size=(n, 4)),
            opac=np.full(n, 3.0), rgb=np.tile(BLOB_RGB[k], (n, 1)) + rng.normal(0, 0.03, (n, 3)),
            shN=rng.normal(0, 0.15, (n, S - 1, 3)), inst=np.full(n, k), sem=np.ones(n)))
    cat = lambda k: np.concatenate([p[k] for p in parts]).astype(np.float32)  # noqa: E731
    return Splats(
        means=cat("means"), scales=cat("scales"), quats=cat("quats"), opacities=cat("opac"),
        sh0=((cat("rgb") - 0.5) / C0)[:, None, :], shN=cat("shN"),
        extra={"instance_id": cat("inst").astype(np.int32), "semantic_id": cat("sem").astype(np.int32),
               "inst_mu": np.repeat(cat("inst")[:, None], 3, 1), "inst_var": np.ones((len(cat("inst")), 3), np.float32)},
    )


def look_at(pos, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """[4,4] OpenCV c2w (x right, y down, z forward) at ``pos`` looking at ``target``, world up = -y."""
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    z = target - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, y, z], 1)
    c2w[:3, 3] = pos
    return c2w


FRONT = look_at([0.0, 0.0, -5.0], [0.0, 0.0, 0.0])
KMAT = np.array([[100.0, 0, W / 2], [0, 100.0, H / 2], [0, 0, 1]])


def render(s: Splats, c2w=FRONT, K=KMAT, features=None, dtype=torch.float32):
    """(rgb [H,W,3] or features [H,W,D], alpha [H,W]) as numpy, CPU rasterizer, SH evaluated as gsplat does."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    means = t(s.means)
    vm = torch.linalg.inv(t(c2w))[None]
    if features is None:
        campos = t(c2w)[:3, 3]
        coeffs = torch.cat([t(s.sh0), t(s.shN)], 1)
        deg = int(round(np.sqrt(coeffs.shape[1]))) - 1
        colors = torch.clamp_min(_spherical_harmonics(deg, means - campos, coeffs) + 0.5, 0.0)
    else:
        colors = t(features)
    out, alpha, _ = rasterize(means, t(s.quats), torch.exp(t(s.scales)), torch.sigmoid(t(s.opacities)), colors,
                              vm, t(K)[None], W, H, backend="cpu")
    return out[0].numpy().astype(np.float64), alpha[0, :, :, 0].numpy().astype(np.float64)


def id_map(s: Splats, c2w=FRONT) -> np.ndarray:
    """[H,W] instance label per pixel: argmax of blended one-hot IDs 0..3, -1 where alpha < 0.5."""
    onehot = np.eye(4, dtype=np.float32)[s.extra["instance_id"]]
    w, alpha = render(s, c2w, features=onehot)
    return np.where(alpha >= 0.5, w.argmax(-1), -1)


def psnr(a, b, mask) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return float("inf") if mse == 0 else -10 * np.log10(mse)


@pytest.fixture(scope="module")
def scene():
    return blob_scene()


@pytest.fixture(scope="module")
def base(scene):
    rgb, alpha = render(scene)
    return rgb, alpha, id_map(scene)


# --------------------------------------------------------------------------- #
# remove / extract against renders


@pytest.mark.parametrize("k", [1, 2])
def test_remove_changes_only_the_footprint_and_reveals_what_is_behind(scene, base, k):
    rgb0, alpha0, ids0 = base
    foot = binary_dilation(ids0 == k, iterations=2)
    assert (ids0 == k).sum() > 100
    out = E.remove(scene, k)
    assert len(out) == len(scene) - 60 and k not in E.object_ids(out)
    rgb1, alpha1 = render(out)
    assert psnr(rgb1, rgb0, ~foot) > 40
    inner = ids0 == k
    assert np.abs(rgb1[inner] - WALL_RGB).mean() < 0.02  # the wall shows through
    assert np.abs(rgb0[inner] - WALL_RGB).mean() > 0.2
    still_k = (id_map(out) == k)[inner].mean()
    assert still_k < 0.01


def test_extract_renders_nothing_outside_the_footprint(scene, base):
    _, _, ids0 = base
    for k in (1, 2, 3):
        foot = binary_dilation(ids0 == k, iterations=2)
        _, alpha = render(E.extract(scene, k))
        assert alpha[~foot].sum() / alpha.sum() < 0.01
        assert set(np.unique(E.extract(scene, k).extra["instance_id"])) == {k}


# --------------------------------------------------------------------------- #
# rotation


def test_rotated_object_from_rotated_camera_equals_original(scene):
    """SH degree 3 with large view-dependent terms; float64 rendering; two cameras."""
    obj = E.extract(scene, 1)
    obj.shN[:] = np.random.default_rng(3).normal(0, 0.4, obj.shN.shape)
    R = E.axis_angle_matrix([0.3, -1.0, 0.5], 73.0)
    p = E.centre(obj, 1)
    rot = E.rotate(obj, 1, [0.3, -1.0, 0.5], 73.0)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, p - R @ p  # the same rigid motion, about the object's centre
    for cam in (look_at([-1.0, -0.6, -3.5], p), look_at([1.5, 0.4, 2.8], p)):
        a, aa = render(obj, cam, dtype=torch.float64)
        b, ba = render(rot, T @ cam, dtype=torch.float64)
        assert aa.max() > 0.5
        assert np.abs(a - b).max() < 1e-4 and np.abs(aa - ba).max() < 1e-4
    # sanity: without the SH rotation the views differ
    wrong = E.rotate(obj, 1, [0.3, -1.0, 0.5], 73.0)
    wrong.shN[:] = obj.shN
    b, _ = render(wrong, T @ look_at([-1.0, -0.6, -3.5], p), dtype=torch.float64)
    assert np.abs(render(obj, look_at([-1.0, -0.6, -3.5], p), dtype=torch.float64)[0] - b).max() > 1e-2


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


vec3 = st.tuples(*[st.floats(-1, 1)] * 3).filter(lambda v: np.linalg.norm(v) > 0.1)


@settings(max_examples=40, deadline=None)
@given(axis=vec3, deg=st.floats(-360, 360), degree=st.integers(1, 4), seed=st.integers(0, 2**16), d=vec3)
def test_sh_rotation_property(axis, deg, degree, seed, d):
    """f'(R d) = f(d) for random rotations, coefficients (all bands) and directions, with gsplat's SH."""
    from gsplat.cuda._torch_impl import _spherical_harmonics

    R = E.axis_angle_matrix(axis, deg)
    S = (degree + 1) ** 2
    c = np.random.default_rng(seed).normal(size=(1, S - 1, 3))
    c2 = E.rotate_sh(c, R)
    full = lambda sh: torch.cat([torch.zeros(1, 1, 3, dtype=torch.float64), torch.from_numpy(sh)], 1)  # noqa: E731
    d = torch.from_numpy(_unit(d))[None]
    f = _spherical_harmonics(degree, d, full(c))
    f2 = _spherical_harmonics(degree, d @ torch.from_numpy(R).T, full(c2))
    assert torch.allclose(f, f2, atol=1e-10)
    for DT in E.sh_rotation_matrices(R, degree):
        assert np.allclose(DT @ DT.T, np.eye(len(DT)), atol=1e-10)


def test_rotation_turns_covariances_and_normalises_nothing(scene):
    R = E.axis_angle_matrix([1, 2, 3], 40)
    out = E.rotate(scene, [2], matrix=R, pivot=[0, 0, 0])
    m = scene.extra["instance_id"] == 2

    def cov(q, s):
        from scipy.spatial.transform import Rotation

        Rq = Rotation.from_quat(np.c_[q[:, 1:], q[:, :1]]).as_matrix()
        return Rq @ (np.exp(2 * s.astype(np.float64))[:, :, None] * np.eye(3)) @ Rq.transpose(0, 2, 1)

    assert np.allclose(cov(out.quats[m], out.scales[m]), R @ cov(scene.quats[m], scene.scales[m]) @ R.T, atol=1e-6)
    assert np.allclose(out.means[m], scene.means[m] @ R.T, atol=1e-6)
    assert np.allclose(np.linalg.norm(out.quats[m], axis=1), np.linalg.norm(scene.quats[m], axis=1), rtol=1e-6)
    assert np.array_equal(out.means[~m], scene.means[~m]) and np.array_equal(out.shN[~m], scene.shN[~m])


# --------------------------------------------------------------------------- #
# exact checks: recolour, translate, scale, duplicate


def _colors(s: Splats, dirs: np.ndarray) -> np.ndarray:
    from gsplat.cuda._torch_impl import _spherical_harmonics

    coeffs = torch.from_numpy(np.concatenate([s.sh0, s.shN], 1).astype(np.float64))
    return _spherical_harmonics(3, torch.from_numpy(dirs), coeffs).numpy() + 0.5


def test_recolor_exact(scene):
    rgb = np.array([1.0, 128 / 255, 0.0])
    m = scene.extra["instance_id"] == 3
    dirs = np.random.default_rng(0).normal(size=(len(scene), 3))
    flat = E.recolor(scene, 3, rgb, view_dependent=False)
    assert np.allclose(_colors(flat, dirs)[m], rgb, atol=1e-6)  # the same colour from every side
    keep = E.recolor(scene, 3, rgb)
    old = C0 * scene.sh0[m, 0].astype(np.float64) + 0.5
    assert np.allclose(_colors(keep, dirs)[m] - _colors(scene, dirs)[m], rgb - old, atol=1e-6)
    assert np.array_equal(keep.shN, scene.shN)
    for out in (flat, keep):
        for k in ("means", "quats", "scales", "opacities"):
            assert np.array_equal(getattr(out, k), getattr(scene, k))
        assert np.array_equal(out.sh0[~m], scene.sh0[~m]) and np.array_equal(out.shN[~m], scene.shN[~m])
    tex = E.recolor(scene, 3, rgb, texture=True)
    lum = old @ [0.299, 0.587, 0.114]
    new = C0 * tex.sh0[m, 0].astype(np.float64) + 0.5
    assert np.allclose(new, rgb[None] * (lum / lum.mean())[:, None], atol=1e-5)  # equal opacities: plain mean


def test_translate_and_scale_exact(scene):
    off = np.array([0.25, -0.5, 1.0])
    m = scene.extra["instance_id"] == 1
    t = E.translate(scene, 1, off)
    assert np.array_equal(t.means[m], (scene.means[m].astype(np.float64) + off).astype(np.float32))
    for k in ("scales", "quats", "opacities", "sh0", "shN"):
        assert np.array_equal(getattr(t, k), getattr(scene, k)), k
    assert np.array_equal(t.means[~m], scene.means[~m])
    # the moved scene seen from a moved camera is the original image
    T = np.eye(4)
    T[:3, 3] = off
    a, _ = render(E.extract(scene, 1))
    b, _ = render(E.extract(t, 1), T @ FRONT)
    assert np.abs(a - b).max() < 1e-4

    p = np.array([0.1, 0.2, -0.3])
    sc = E.scale(scene, 1, 1.7, pivot=p)
    assert np.allclose(sc.means[m], p + 1.7 * (scene.means[m] - p), atol=1e-6)
    assert np.allclose(sc.scales[m], scene.scales[m] + np.log(1.7), atol=1e-6)
    assert np.array_equal(sc.quats, scene.quats) and np.array_equal(sc.shN, scene.shN)
    cam = FRONT.copy()
    cam[:3, 3] = p + 1.7 * (cam[:3, 3] - p)
    b, _ = render(E.extract(sc, 1), cam, dtype=torch.float64)
    a, _ = render(E.extract(scene, 1), dtype=torch.float64)
    assert np.abs(a - b).max() < 1e-4
    c = E.centre(scene, 1)
    assert np.allclose(E.centre(E.scale(scene, 1, 2.0), 1), c, atol=1e-5)  # default pivot: the centre stays


def test_duplicate_exact(scene):
    out = E.duplicate(scene, [1, 3], [0.0, 1.0, 0.0])
    assert E.duplicate_ids(scene, [1, 3]) == {1: 4, 3: 5}
    assert E.object_ids(out) == [1, 2, 3, 4, 5] and len(out) == len(scene) + 120
    head = out.subset(np.arange(len(scene)))
    for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        assert np.array_equal(getattr(head, k), getattr(scene, k))
    for src, new in ((1, 4), (3, 5)):
        a, b = E.extract(out, new), E.translate(E.extract(scene, src), src, [0.0, 1.0, 0.0])
        for k in ("means", "scales", "quats", "opacities", "sh0", "shN"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), k
        assert np.array_equal(a.extra["semantic_id"], b.extra["semantic_id"])
    M = np.eye(4)
    M[:3, :3] = 2 * E.axis_angle_matrix([0, 0, 1], 90)
    M[:3, 3] = [5, 0, 0]
    d = E.extract(E.duplicate(scene, 2, M), 4)
    assert np.allclose(d.means, E.extract(scene, 2).means @ (2 * E.axis_angle_matrix([0, 0, 1], 90)).T + [5, 0, 0], atol=1e-5)
    with pytest.raises(UserError, match="mirroring"):
        E.duplicate(scene, 2, np.diag([-1.0, 1, 1, 1]))


def test_selection_by_box_and_errors(scene):
    m = E.select_box(scene, [-1.6, -0.5, -0.5, -0.8, 0.5, 0.5])
    assert np.array_equal(m, scene.extra["instance_id"] == 1)
    R = E.axis_angle_matrix([0, 0, 1], 45)
    ob = E.select_box(scene, obb=([0.0, 0, 0], [0.45, 0.45, 0.45], R))
    assert np.array_equal(ob, scene.extra["instance_id"] == 2)
    assert np.array_equal(E.remove(scene, m).means, E.remove(scene, 1).means)
    unlabelled = Splats(scene.means, scene.scales, scene.quats, scene.opacities, scene.sh0, scene.shN)
    with pytest.raises(UserError, match="select by box"):
        E.remove(unlabelled, 1)
    assert len(E.remove(unlabelled, m)) == len(scene) - 60
    for bad, msg in ((9, "unknown object ID 9"), (0, "not an object"), ([], "no object IDs"), (1.5, "integer")):
        with pytest.raises(UserError, match=msg):
            E.remove(scene, bad)
    with pytest.raises(UserError, match="no Gaussians"):
        E.translate(scene, E.select_box(scene, [9, 9, 9, 10, 10, 10]), [1, 0, 0])
    with pytest.raises(UserError, match="min"):
        E.select_box(scene, [1, 0, 0, 0, 1, 1])
    with pytest.raises(UserError, match="> 0"):
        E.scale(scene, 1, 0.0)
    with pytest.raises(UserError, match="axis"):
        E.rotate(scene, 1, [0, 0, 0], 10)


# --------------------------------------------------------------------------- #
# PLYs from other tools: untouched properties keep their bytes


def _gsplat_ply(path: Path, s: Splats) -> None:
    """gsplat 1.5.3's own exporter (x y z f_dc f_rest opacity scale rot, no normals)."""
    from gsplat.exporter import export_splats

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    export_splats(t(s.means), t(s.scales), t(s.quats), t(s.opacities), t(s.sh0), t(s.shN), format="ply", save_to=str(path))


def _inria_ply(path: Path, s: Splats, weird: bool = False) -> None:
    """The original 3DGS layout (with nx ny nz); ``weird``: doubles, big-endian, shuffled order, extra columns."""
    N = len(s)
    rest = s.shN.transpose(0, 2, 1).reshape(N, -1)
    cols = [("x", s.means[:, 0]), ("y", s.means[:, 1]), ("z", s.means[:, 2])]
    cols += [(n, np.random.default_rng(1).normal(size=N) if weird else np.zeros(N)) for n in ("nx", "ny", "nz")]
    cols += [(f"f_dc_{i}", s.sh0[:, 0, i]) for i in range(3)] + [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
    cols += [("opacity", s.opacities)] + [(f"scale_{i}", s.scales[:, i]) for i in range(3)]
    cols += [(f"rot_{i}", s.quats[:, i]) for i in range(4)]
    types = {n: "<f4" for n, _ in cols}
    if weird:
        cols = cols[::-1] + [("red", np.arange(N) % 256), ("confidence", np.linspace(0, 1, N))]
        types = {n: ">f4" for n, _ in cols}
        types.update(x=">f8", y=">f8", z=">f8", opacity=">f8", confidence=">f8", red="u1")
    data = np.empty(N, dtype=[(n, types[n]) for n, _ in cols])
    for n, v in cols:
        data[n] = v
    PlyData([PlyElement.describe(data, "vertex")], byte_order=">" if weird else "<",
            comments=["made by another tool"]).write(str(path))


@pytest.mark.parametrize("layout", ["gsplat", "inria_normals", "weird"])
def test_edits_on_foreign_plys_keep_untouched_bytes(tmp_path, layout):
    s = blob_scene(wall=False)
    src = tmp_path / "in.ply"
    (_gsplat_ply(src, s) if layout == "gsplat" else _inria_ply(src, s, weird=layout == "weird"))
    before = src.read_bytes()
    v0 = PlyData.read(str(src))["vertex"].data
    box = "-1.6,-0.5,-0.5,-0.8,0.5,0.5"  # object 1's Gaussians (the file has no labels)
    sel = np.ones(len(v0), bool)
    sel[:] = False
    sel[:60] = True

    def edited(*flags):
        out = tmp_path / "out.ply"
        assert main(["-q", "edit", str(src), "--out", str(out), f"--box={box}", *flags]) == 0
        assert src.read_bytes() == before
        ply = PlyData.read(str(out))
        assert [p.name for p in ply["vertex"].properties] == [p.name for p in PlyData.read(str(src))["vertex"].properties]
        return ply["vertex"].data

    def same(a, b, names):
        for n in names:
            assert a[n].tobytes() == b[n].tobytes(), n

    names = v0.dtype.names
    v = edited("--translate", "box=0.5,0,0")
    assert v.dtype == v0.dtype
    same(v, v0, [n for n in names if n not in "xyz"])
    same(v[~sel], v0[~sel], "xyz")
    assert np.allclose(v["x"][sel], v0["x"][sel] + 0.5, atol=1e-6)

    v = edited("--rotate", "box=0,0,1,30", "--recolor", "box=#ff0000")
    moved = {"x", "y", "z", "rot_0", "rot_1", "rot_2", "rot_3", "f_dc_0", "f_dc_1", "f_dc_2"} | {n for n in names if n.startswith("f_rest_")}
    if layout == "weird":
        moved |= {"nx", "ny", "nz"}  # real normals turn with the object
        n0 = np.stack([v0[k][sel] for k in ("nx", "ny", "nz")], 1)
        assert np.allclose(np.stack([v[k][sel] for k in ("nx", "ny", "nz")], 1), n0 @ E.axis_angle_matrix([0, 0, 1], 30).T)
    same(v, v0, [n for n in names if n not in moved])
    same(v[~sel], v0[~sel], names)


def test_foreign_remove_and_duplicate_keep_rows(tmp_path):
    s = blob_scene(wall=False)
    src = tmp_path / "in.ply"
    _inria_ply(src, s, weird=True)
    v0 = PlyData.read(str(src))["vertex"].data
    out = tmp_path / "o.ply"
    assert main(["-q", "edit", str(src), "--out", str(out), "--box=-1.6,-0.5,-0.5,-0.8,0.5,0.5", "--remove", "box"]) == 0
    v = PlyData.read(str(out))["vertex"].data
    assert v.tobytes() == v0[60:].tobytes()
    assert PlyData.read(str(out)).comments == ["made by another tool"]
    assert main(["-q", "edit", str(src), "--out", str(out), "--box=-1.6,-0.5,-0.5,-0.8,0.5,0.5", "--duplicate", "box=0,0,0"]) == 0
    v = PlyData.read(str(out))["vertex"].data
    assert v[: len(v0)].tobytes() == v0.tobytes() and v[len(v0):].tobytes() == v0[:60].tobytes()


# --------------------------------------------------------------------------- #
# CLI


@pytest.fixture
def labelled(tmp_path) -> Path:
    """A segment-like folder: scene_labeled.ply + objects.json (export_objects)."""
    s = blob_scene(degree=1)
    seg = tmp_path / "seg"
    export_objects(seg, s, s.extra["instance_id"], s.extra["semantic_id"], ["wall", "blob"], np.array([False, True]))
    return seg / "scene_labeled.ply"


def test_cli_edits_chain_and_keep_objects_json(labelled, tmp_path, capsys):
    out = tmp_path / "e" / "a.ply"
    assert main(["edit", str(labelled), "--out", str(out), "--remove", "2", "--translate", "1=0.5,0,0",
                 "--duplicate", "3=0,1,0", "--recolor", "4=#00ff00"]) == 0
    text = capsys.readouterr().out
    assert "removed 60 Gaussians (object 2)" in text and "duplicated 60 Gaussians (object 3) as 4" in text
    s, _ = read_ply(out)
    assert E.object_ids(s) == [1, 3, 4]
    assert {"inst_mu", "inst_var", "semantic_id"} <= set(s.extra)
    table = json.loads((tmp_path / "e" / "a.objects.json").read_text())
    assert [o["id"] for o in table["objects"]] == [1, 3, 4] and table["objects"][2]["duplicate_of"] == 3
    assert table["objects"][0]["bbox_min"] == s.means[s.extra["instance_id"] == 1].min(0).round(5).tolist()
    assert "file" not in table["objects"][0] and len(table["edits"]) == 4
    # chain: the edited file is a labelled PLY again, its table is found beside it
    out2 = tmp_path / "e" / "b.ply"
    assert main(["-q", "edit", str(out), "--out", str(out2), "--rotate", "4=0,0,1,90", "--scale", "1=2", "--extract", "1",
                 "--extract", "4"]) == 0
    s2, _ = read_ply(out2)
    assert E.object_ids(s2) == [1, 4]
    t2 = json.loads((tmp_path / "e" / "b.objects.json").read_text())
    assert [o["id"] for o in t2["objects"]] == [1, 4] and len(t2["edits"]) == 7 and t2["source"] == str(labelled)


def test_cli_script_equals_flags(labelled, tmp_path):
    script = tmp_path / "edits.yaml"
    script.write_text(
        "# applied in order\n"
        "- remove: 2\n"
        "- translate: {id: 1, offset: [0.5, 0, 0]}\n"
        "- rotate: '3=0,1,0,45'\n"
        "- box: [-2, -1, -1, 2, 1, 1]\n"
        "- scale: {id: box, factor: 0.5, pivot: [0, 0, 0]}\n"
        "- recolor: {id: [1, 3], rgb: '#336699', view_dependent: false}\n"
    )
    a, b = tmp_path / "a.ply", tmp_path / "b.ply"
    assert main(["-q", "edit", str(labelled), "--out", str(a), "--script", str(script)]) == 0
    assert main(["-q", "edit", str(labelled), "--out", str(b), "--remove", "2", "--translate", "1=0.5,0,0",
                 "--rotate", "3=0,1,0,45", "--box=-2,-1,-1,2,1,1", "--script", str(_one(tmp_path))]) == 0
    sa, _ = read_ply(a)
    sb, _ = read_ply(b)
    for k in ("means", "scales", "quats", "sh0", "shN"):
        assert np.array_equal(getattr(sa, k), getattr(sb, k)), k


def _one(tmp_path: Path) -> Path:
    p = tmp_path / "rest.yaml"
    p.write_text("edits:\n  - scale: {id: box, factor: 0.5, pivot: [0, 0, 0]}\n"
                 "  - recolor: {id: [1, 3], rgb: [0.2, 0.4, 0.6], view_dependent: false}\n")
    return p


@pytest.mark.parametrize("args, msg", [
    (["--remove", "9"], "unknown object ID 9"),
    (["--remove", "abc"], "expected an object ID"),
    (["--remove", "box"], "before any --box"),
    (["--recolor", "1=#12345"], "#rrggbb"),
    (["--recolor", "1"], "expected ID=#rrggbb"),
    (["--translate", "1=1,2"], "needs 3"),
    (["--translate", "1=1,x,2"], "must be numbers"),
    (["--translate", "1=1,nan,2"], "finite"),
    (["--rotate", "1=0,0,0,90"], "axis must not be zero"),
    (["--scale", "1=-2"], "> 0"),
    (["--box=1,0,0,0,1,1", "--remove", "box"], "above its max"),
    (["--box=5,5,5,6,6,6", "--remove", "box"], "no Gaussians"),
    (["--extract", "1", "--translate", "2=1,0,0"], "unknown object ID 2"),
    ([], "no edits given"),
])
def test_cli_errors_are_one_line_and_leave_the_input_alone(labelled, tmp_path, capsys, args, msg):
    before, mtime = labelled.read_bytes(), labelled.stat().st_mtime_ns
    out = tmp_path / "out.ply"
    capsys.readouterr()
    assert main(["-q", "edit", str(labelled), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1 and err.startswith("pcf-gs edit: error:")
    assert labelled.read_bytes() == before and labelled.stat().st_mtime_ns == mtime
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_cli_refuses_bad_files_and_in_place(labelled, tmp_path, capsys):
    (tmp_path / "x.ply").write_text("not a ply")
    pts = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(pts, "vertex")]).write(str(tmp_path / "pts.ply"))
    bad_script = tmp_path / "bad.yaml"
    bad_script.write_text("- rotat: {id: 1}\n")
    cases = [
        ([str(tmp_path / "x.ply"), "--remove", "1"], "not a readable PLY"),
        ([str(tmp_path / "pts.ply"), "--remove", "1"], "not a 3DGS PLY"),
        ([str(tmp_path / "nope.ply"), "--remove", "1"], "file not found"),
        ([str(labelled), "--script", str(bad_script)], "unknown operation 'rotat'"),
        ([str(labelled), "--script", str(tmp_path / "none.yaml")], "edit script not found"),
    ]
    for args, msg in cases:
        capsys.readouterr()
        assert main(["-q", "edit", *args, "--out", str(tmp_path / "o.ply")]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "x.ply").read_text() == "not a ply"
    before = labelled.read_bytes()
    assert main(["-q", "edit", str(labelled), "--out", str(labelled), "--remove", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err and labelled.read_bytes() == before
    assert main(["-q", "edit", str(labelled), "--out", str(labelled), "--remove", "1", "--overwrite"]) == 0
    assert E.object_ids(read_ply(labelled)[0]) == [2, 3]


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["remove", "extract", "recolor", "translate", "rotate", "scale", "duplicate"]),
       value=st.text(alphabet="0123456789,.=-#abcdefxbo e", max_size=24))
def test_flag_parsing_only_raises_user_errors(kind, value):
    try:
        op = parse_flag(kind, value, None)
    except UserError:
        return
    assert op.kind == kind and all(isinstance(t, int) for t in op.target)


@settings(max_examples=30, deadline=None)
@given(v=st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False)] * 3))
def test_translate_values_round_trip(v):
    (op,) = parse_ops([("translate", "7=" + ",".join(repr(x) for x in v))])
    assert op.target == [7] and op.params["offset"] == list(v)


# --------------------------------------------------------------------------- #
# render --ply and the demo tool, on a tiny trained run


def test_render_ply_and_edit_demo_tool_on_a_tiny_run(tiny_mr, tmp_path, capsys):
    import cv2

    from tests.lift.test_train import FAST

    root, _ = tiny_mr
    run, seg = tmp_path / "run", tmp_path / "seg"
    assert main(["-q", "train", str(root), "--out", str(run), *FAST]) == 0
    assert main(["-q", "segment", str(run), "--out", str(seg), "--split", "all", "--export-ply"]) == 0
    # render the unedited labelled PLY: the same images as rendering the run
    assert main(["-q", "render", str(run), "--out", str(tmp_path / "r0"), "--split", "all"]) == 0
    assert main(["-q", "render", str(run), "--ply", str(seg / "scene_labeled.ply"), "--out", str(tmp_path / "r1"),
                 "--split", "all"]) == 0
    for d in ("rgb", "alpha"):
        a = cv2.imread(str(tmp_path / "r0" / d / "0.png"))
        b = cv2.imread(str(tmp_path / "r1" / d / "0.png"))
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, d
    assert not (tmp_path / "r1" / "semantics").exists()
    # the demo tool on this run writes its before/after images and measurements; 24 training steps
    # find no object and leave the splats faint: make everything opaque and label the Gaussians nearest
    # to the first camera as object 1
    s, _ = read_ply(seg / "scene_labeled.ply")
    s.opacities[:] = 4.0
    cam = json.loads((root / "metadata.json").read_text())["camera"]["positions"][0]
    d = np.linalg.norm(s.means - cam, axis=1)
    s.extra["instance_id"] = (d <= np.quantile(d, 0.3)).astype(np.int32)
    write_ply(tmp_path / "seg1" / "scene_labeled.ply", s)
    tool = load_tool("edit_demo")
    docs = tmp_path / "docs"
    assert tool.main(["--run", str(run), "--segment", str(tmp_path / "seg1"), "--out", str(docs), "--work", str(tmp_path / "w")]) == 0
    for name in ("edit_remove.png", "edit_move.png", "edit_demo.json"):
        assert (docs / name).is_file(), name
    m = json.loads((docs / "edit_demo.json").read_text())
    assert m["object"] == 1 and m["remove"]["former_pixels"] > 0 and m["remove"]["still_k_fraction"] < 0.01
    assert 0 <= m["extract"]["alpha_mass_outside_fraction"] <= 1
    capsys.readouterr()
    assert main(["-q", "render", str(run), "--ply", str(tmp_path / "nope.ply"), "--out", str(tmp_path / "r2")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_edit_does_not_load_torch_or_numba():
    """`pcf-gs edit` works on numpy arrays: importing it must not pay for torch or numba (~2 s)."""
    import subprocess
    import sys

    code = "import sys, pcf_gs.splats.edit_script; print('torch' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
