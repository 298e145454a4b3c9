"""Splat file formats (pcf_gs.splats.formats, pcf_gs.splats.sog): round trips within each format's
quantisation, independent readers (gsply, our own GLB parse per the glTF spec, gsplat's exporter),
axis conventions, object counts through PLY -> FMT -> PLY, and compression ratios.

Tolerances (also in docs/formats.md), in our units (log-scales, logit opacities compared as
sigmoid, quaternions up to sign after normalising):

==============  ===============================================================================
ply, glb, pt    exact float32 (glb: scales through exp/log, opacity through sigmoid: 1e-5 rel.)
splat           means/scales float32; colour C0*sh0+0.5 and opacity 0.5/255; quat |dot| > 0.999
spz             means 2^-13 (half of 2^-12); log-scale 1/32; opacity 0.5/255; sh0 0.5/38.25;
                shN 4.5/128 (degree 1), 8.5/128 (degrees 2-3); quat |dot| > 0.99999
ply-compressed  means / scales: chunk range / 2^10; colour range/255; opacity 1/255; shN 8/255/2
sog             means 16 bits of the log range; quat |dot| > 0.9995; scales / sh0: the nearest of
                the 256 codebook entries; shN: exact palette when N <= 256, then the codebook
==============  ===============================================================================
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import gsply
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_gs.errors import UserError
from pcf_gs.splats import formats as F
from pcf_gs.splats.export import export_formats, export_objects
from pcf_gs.splats.ply import Splats, read_ply
from pcf_gs.splats.sog import nearest_index

C0 = F.C0


def random_splats(n: int = 300, degree: int = 3, seed: int = 0, spread: float = 1.0, sh_std: float = 0.1) -> Splats:
    rng = np.random.default_rng(seed)
    K = (degree + 1) ** 2 - 1
    return Splats(
        means=(rng.normal(size=(n, 3)) * spread + [0.2, -0.5, 2.0]).astype(np.float32),
        scales=rng.normal(-3.5, 0.6, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacities=rng.normal(1.0, 1.5, n).astype(np.float32),
        sh0=rng.normal(0, 0.6, (n, 1, 3)).astype(np.float32),
        shN=np.clip(rng.normal(0, sh_std, (n, K, 3)), -0.95, 0.95).astype(np.float32),
    )


def sig(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def unit(q):
    q = np.asarray(q, np.float64)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def quat_dot(a, b):
    return np.abs((unit(a) * unit(b)).sum(1))


# ----------------------------------------------------------------------------- per-format round trips


def check_spz(a: Splats, b: Splats, bits: int = 12):
    assert np.abs(b.means - a.means).max() <= 2.0 ** -(bits + 1) + 1e-6 * (1 + np.abs(a.means).max())
    inside = (a.scales > -10) & (a.scales < 5.9)
    assert np.abs(b.scales - a.scales)[inside].max(initial=0) <= 1 / 32 + 1e-5
    assert np.abs(sig(b.opacities) - sig(a.opacities)).max() <= 0.5 / 255 + 1e-4  # + the reader's edge clamp
    assert np.abs(b.sh0 - a.sh0).max() <= 0.5 / (0.15 * 255) + 1e-5
    K = a.shN.shape[1]
    if K:
        tol = np.where(np.arange(K) < 3, 4.5 / 128, 8.5 / 128)[None, :, None]
        assert (np.abs(b.shN - a.shN) <= tol + 1e-6).all()
    assert quat_dot(a.quats, b.quats).min() > 0.99999


@given(
    n=st.integers(1, 40),
    log_scale=st.floats(-9.5, 5.5),
    quat_scale=st.floats(1e-3, 1e3),
    degree=st.sampled_from([0, 1, 2, 3]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_spz_round_trip_within_quantisation(tmp_path, n, log_scale, quat_scale, degree, seed):
    """SPZ written by us, read by gsply (independent) and by us: values within SPZ's steps,
    for tiny/huge scales, unnormalised quaternions and N = 1."""
    a = random_splats(n, degree, seed)
    a.scales[:] = np.clip(a.scales - a.scales.mean() + log_scale, -9.9, 5.9)
    a.quats *= quat_scale
    p = tmp_path / f"x{seed}.spz"
    F.write_splats(p, a)
    b = F.read_splats(p)
    assert len(b) == n and b.shN.shape == a.shN.shape
    check_spz(a, b)
    g = gsply.read_spz(p)  # the independent reader: RUB axes, as stored
    assert np.allclose(g.means, b.means * [1, -1, -1], atol=1e-6)


def test_spz_large_coordinates_use_fewer_fraction_bits(tmp_path):
    a = random_splats(50, 1, spread=1.0)
    a.means[0] = [5000.0, -3000.0, 100.0]
    F.write_splats(tmp_path / "big.spz", a)
    b = F.read_splats(tmp_path / "big.spz")
    assert np.abs(b.means - a.means).max() < 2.0 ** -(22 - 13) + 1e-3  # 9 fractional bits at |x| < 8192


@given(n=st.integers(1, 60), degree=st.sampled_from([0, 1, 3]), seed=st.integers(0, 2**16), log_scale=st.floats(-15, 10))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_glb_round_trip_is_float32_exact(tmp_path, n, degree, seed, log_scale):
    a = random_splats(n, degree, seed)
    a.scales += log_scale
    a.quats *= 7.0  # unnormalised in, unit out
    a.extra = {"instance_id": np.arange(n, dtype=np.int32) % 3, "inst_mu": np.full((n, 2), 0.5, np.float32)}
    p = tmp_path / f"x{seed}.glb"
    F.write_splats(p, a)
    b = F.read_splats(p)
    assert np.array_equal(b.means, a.means)
    assert np.allclose(b.scales, a.scales, atol=1e-5 * (1 + abs(log_scale)))
    assert np.allclose(sig(b.opacities), sig(a.opacities), atol=1e-6)
    assert quat_dot(a.quats, b.quats).min() > 1 - 1e-6
    assert np.array_equal(b.sh0, a.sh0) and np.array_equal(b.shN, a.shN)
    assert np.array_equal(b.extra["instance_id"], a.extra["instance_id"])
    assert np.array_equal(b.extra["inst_mu"], a.extra["inst_mu"])


def test_splat_round_trip_and_gsplat_exporter_agree(tmp_path):
    """Our .splat rows decode like gsplat's exporter's (an independent writer; it sorts rows by Morton code
    and truncates colours where we round, so compare as sets within one step)."""
    import torch
    from gsplat.exporter import export_splats

    a = random_splats(200, 2)
    a.sh0 = np.clip(a.sh0, -1.7, 1.7)  # inside the [0, 1] colour range
    F.write_splats(tmp_path / "a.splat", a)
    b = F.read_splats(tmp_path / "a.splat")
    assert np.array_equal(b.means, a.means) and np.allclose(b.scales, a.scales, atol=1e-5)
    assert np.abs(C0 * (b.sh0 - a.sh0)).max() <= 0.5 / 255 + 1e-6
    assert np.abs(sig(b.opacities) - sig(a.opacities)).max() <= 0.5 / 255 + 1e-6
    assert quat_dot(a.quats, b.quats).min() > 0.999
    assert b.shN.shape == (200, 0, 3)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
    (tmp_path / "g.splat").write_bytes(export_splats(t(a.means), t(a.scales), t(a.quats), t(a.opacities), t(a.sh0), t(a.shN), format="splat"))
    g = F.read_splats(tmp_path / "g.splat")
    oa, og = np.lexsort(b.means.T), np.lexsort(g.means.T)
    assert np.array_equal(b.means[oa], g.means[og])
    assert np.abs(C0 * (b.sh0[oa] - g.sh0[og])).max() <= 1.0 / 255 + 1e-6
    assert quat_dot(b.quats[oa], g.quats[og]).min() > 0.999


def test_compressed_ply_read_by_gsply(tmp_path):
    a = random_splats(700, 3)
    p = tmp_path / "a.compressed.ply"
    F.write_splats(p, a)
    assert F.format_of(p).name == "ply-compressed"
    g = gsply.plyread(p)  # the independent reader
    b = F.read_splats(p)
    assert np.allclose(g.means, b.means) and len(b) == 700
    rng = lambda x: (x.max(0) - x.min(0))  # noqa: E731  (a chunk's range is at most the whole range)
    assert (np.abs(b.means - a.means) <= rng(a.means) / 1023 + 1e-6).all()
    assert (np.abs(b.scales - a.scales) <= rng(a.scales) / 1023 + 1e-6).all()
    assert np.abs(sig(b.opacities) - sig(a.opacities)).max() <= 1 / 255 + 1e-6
    assert (np.abs(b.sh0 - a.sh0)[:, 0] <= rng(a.sh0[:, 0]) / 255 + 1e-5).all()
    assert np.abs(b.shN - a.shN).max() <= 8 / 255 / 2 + 1e-5
    assert quat_dot(a.quats, b.quats).min() > 0.9999
    assert F.read_splats(tmp_path / "a.compressed.ply").shN.shape == a.shN.shape


def test_gsply_reads_our_ply_and_spz(tmp_path):
    a = random_splats(100, 3)
    a.extra = {"instance_id": np.ones(100, np.int32), "semantic_id": np.zeros(100, np.int32)}
    F.write_splats(tmp_path / "a.ply", a)
    g = gsply.plyread(tmp_path / "a.ply")
    assert np.array_equal(g.means, a.means) and np.array_equal(g.shN, a.shN)
    F.write_splats(tmp_path / "a.spz", a)
    assert len(gsply.read_spz(tmp_path / "a.spz").means) == 100


@pytest.mark.parametrize("n", [1, 200, 900])
def test_sog_round_trip(tmp_path, n):
    a = random_splats(n, 3, seed=n)
    a.quats *= 3.0
    p = tmp_path / "a.sog"
    F.write_splats(p, a)
    with zipfile.ZipFile(p) as z:
        meta = json.loads(z.read("meta.json"))
        assert {"meta.json", "means_l.webp", "quats.webp", "sh0.webp", "shN_labels.webp"} <= set(z.namelist())
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert meta["version"] == 2 and meta["count"] == n and meta["shN"]["bands"] == 3
    b = F.read_splats(p)
    nlog = np.sign(a.means) * np.log1p(np.abs(a.means))
    step = (np.array(meta["means"]["maxs"]) - meta["means"]["mins"]) / 65535
    assert (np.abs(b.means - a.means) <= (0.5 * step + 1e-7) * np.exp(np.abs(nlog) + step) + 1e-6).all()
    assert quat_dot(a.quats, b.quats).min() > 0.9995
    scb, ccb = np.array(meta["scales"]["codebook"]), np.array(meta["sh0"]["codebook"])
    assert np.allclose(b.scales, scb[nearest_index(a.scales, scb)], atol=1e-6)
    assert np.allclose(b.sh0, ccb[nearest_index(a.sh0, ccb)], atol=1e-6)
    assert np.abs(sig(b.opacities) - sig(a.opacities)).max() <= 0.5 / 255 + 1e-6
    shcb = np.array(meta["shN"]["codebook"])
    if n <= 256:  # palette = every row: only the codebook's rounding
        assert np.allclose(b.shN, shcb[nearest_index(a.shN, shcb)], atol=1e-6)
    else:  # a k-means palette: better than dropping the SH
        assert np.sqrt(((b.shN - a.shN) ** 2).mean()) < 0.8 * np.sqrt((a.shN ** 2).mean())
    # the unbundled variant (a folder with meta.json) reads the same
    d = tmp_path / "unbundled"
    d.mkdir()
    F.write_splats(d / "meta.json", a)
    c = F.read_splats(d)
    assert np.array_equal(c.means, b.means) and np.array_equal(c.quats, b.quats)


def test_gsplat_checkpoint_layout(tmp_path):
    import torch

    a = random_splats(30, 3)
    a.extra = {"instance_id": np.arange(30, dtype=np.int32)}
    F.write_splats(tmp_path / "ckpt.pt", a)
    ck = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert set(ck["splats"]) == {"means", "scales", "quats", "opacities", "sh0", "shN"}
    assert ck["splats"]["sh0"].shape == (30, 1, 3) and ck["splats"]["shN"].shape == (30, 15, 3)
    assert ck["splats"]["opacities"].shape == (30,) and isinstance(ck["step"], int)
    b = F.read_splats(tmp_path / "ckpt.pt")
    assert np.array_equal(b.means, a.means) and np.array_equal(b.quats, a.quats)
    assert np.array_equal(b.extra["instance_id"], a.extra["instance_id"])


# ----------------------------------------------------------------------------- axis conventions


def up_scene() -> Splats:
    """Gaussians along world "up" (-y in our RDF frame, y down), each stretched along y and rotated 30° about z,
    with a degree-1 SH that is bright towards -y."""
    n = 8
    s = random_splats(n, 1)
    s.means = np.stack([np.zeros(n), -np.arange(n, dtype=np.float64), np.full(n, 2.0)], 1).astype(np.float32)
    s.scales = np.tile(np.log([0.01, 0.2, 0.01]), (n, 1)).astype(np.float32)
    a = np.deg2rad(30) / 2
    s.quats = np.tile([np.cos(a), 0, 0, np.sin(a)], (n, 1)).astype(np.float32)
    s.shN = np.zeros((n, 3, 3), np.float32)
    s.shN[:, 0, :] = 0.5  # coefficient of -C1*y: brighter looking towards -y
    return s


def test_spz_stores_rub_as_gsply_reads_it(tmp_path):
    s = up_scene()
    F.write_splats(tmp_path / "up.spz", s)
    g = gsply.read_spz(tmp_path / "up.spz")  # gsply returns what the file stores: RUB
    assert np.allclose(g.means[:, 1], np.arange(8), atol=1e-3)  # up is +y in RUB
    assert np.allclose(g.means[:, 2], -2.0, atol=1e-3)  # forward (+z in RDF) is -z
    assert np.allclose(g.means[:, 0], 0, atol=1e-3)
    # a 30° turn about our +z is a -30° turn about RUB's +z (z flipped): (w, x, -y, -z)
    assert quat_dot(g.quats, np.tile(s.quats[0] * [1, 1, -1, -1], (8, 1))).min() > 0.99999
    assert np.allclose(g.shN[:, 0, :], -0.5, atol=0.04)  # degree-1 y coefficient flips sign
    b = F.read_splats(tmp_path / "up.spz")  # and we restore our frame
    assert np.allclose(b.means, s.means, atol=2e-4) and quat_dot(b.quats, s.quats).min() > 0.99999


def test_glb_is_y_up_per_the_gltf_spec(tmp_path):
    s = up_scene()
    F.write_splats(tmp_path / "up.glb", s)
    data = (tmp_path / "up.glb").read_bytes()
    # parse by hand per the glTF 2.0 spec: 12-byte header, JSON chunk, BIN chunk
    assert data[:4] == b"glTF" and int.from_bytes(data[4:8], "little") == 2 and int.from_bytes(data[8:12], "little") == len(data)
    jlen = int.from_bytes(data[12:16], "little")
    assert data[16:20] == b"JSON"
    gltf = json.loads(data[20:20 + jlen])
    blen = int.from_bytes(data[20 + jlen:24 + jlen], "little")
    assert data[24 + jlen:28 + jlen] == b"BIN\0"
    binary = data[28 + jlen:28 + jlen + blen]
    prim = gltf["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0 and "KHR_gaussian_splatting" in gltf["extensionsUsed"]
    assert prim["extensions"]["KHR_gaussian_splatting"]["kernel"] == "ellipse"

    def acc(name):
        a = gltf["accessors"][prim["attributes"][name]]
        v = gltf["bufferViews"][a["bufferView"]]
        assert a["componentType"] == 5126
        k = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[a["type"]]
        return np.frombuffer(binary, "<f4", a["count"] * k, v["byteOffset"]).reshape(-1, k)

    pos = acc("POSITION")
    assert np.allclose(pos[:, 1], np.arange(8)) and np.allclose(pos[:, 2], -2.0)  # +Y up; the scene in front of a -Z-looking camera
    assert np.allclose(gltf["accessors"][prim["attributes"]["POSITION"]]["max"], pos.max(0))
    rot = acc("KHR_gaussian_splatting:ROTATION")  # x, y, z, w, unit
    a = np.deg2rad(30) / 2
    assert np.allclose(rot, [0, 0, -np.sin(a), np.cos(a)], atol=1e-6)
    assert np.allclose(acc("KHR_gaussian_splatting:SCALE"), [0.01, 0.2, 0.01], atol=1e-7)  # linear
    assert np.allclose(acc("KHR_gaussian_splatting:OPACITY")[:, 0], sig(s.opacities), atol=1e-6)  # in [0, 1]
    assert np.allclose(acc("KHR_gaussian_splatting:SH_DEGREE_1_COEF_0"), -0.5)  # m = -1 (y) flips
    b = F.read_splats(tmp_path / "up.glb")
    assert np.array_equal(b.means, s.means) and np.allclose(b.shN, s.shN)


def test_flip_keeps_rendered_colour():
    """The SH sign flips are the 180° turn about x: colour seen from direction d in our frame equals
    colour seen from (x, -y, -z)(d) in the flipped frame, for every degree-3 basis function."""
    import torch

    from pcf_gs.sh import sh_colors

    rng = np.random.default_rng(1)
    s = random_splats(5, 3)
    t = F.flip_yz(s)
    cam = torch.eye(4)[None]
    for _ in range(3):
        d = rng.normal(size=3)
        vm = cam.clone()
        vm[0, :3, 3] = torch.tensor(-d * 10, dtype=torch.float32)  # camera at 10·d
        m = np.zeros((5, 3), np.float32)
        c = sh_colors(torch.from_numpy(np.concatenate([s.sh0, s.shN], 1)), 3, torch.from_numpy(m), vm)
        vm2 = cam.clone()
        vm2[0, :3, 3] = torch.tensor(-d * [1, -1, -1] * 10, dtype=torch.float32)
        c2 = sh_colors(torch.from_numpy(np.concatenate([t.sh0, t.shN], 1)), 3, torch.from_numpy(m), vm2)
        assert torch.allclose(c, c2, atol=1e-5)


# ----------------------------------------------------------------------------- trees and ratios


def small_export(out: Path, n: int = 500, seed: int = 0) -> list[dict]:
    s = random_splats(n, 3, seed)
    s.extra = {"inst_mu": np.zeros((n, 2), np.float32), "inst_var": np.ones((n, 2), np.float32)}
    rng = np.random.default_rng(seed)
    inst = rng.integers(0, 4, n)
    sem = np.where(inst > 0, 1 + inst % 2, 0)
    return export_objects(out, s, inst, sem, ["wall", "chair", "table"], np.array([False, True, True]))


@pytest.mark.parametrize("fmt", ["spz", "sog", "glb", "ply-compressed", "splat", "gsplat-ckpt"])
def test_ply_to_format_to_ply_keeps_object_counts(tmp_path, fmt):
    table = small_export(tmp_path / "seg")
    res = export_formats(tmp_path / "seg", tmp_path / "fmt", [fmt], progress=False)
    back = export_formats(tmp_path / "fmt", tmp_path / "back", ["ply"], progress=False)
    assert res["objects"] == back["objects"] == len(table)
    t2 = json.loads((tmp_path / "back" / "objects.json").read_text())
    for o0, o2 in zip(table, t2["objects"]):
        assert o2["file"].endswith(".ply") and o2["files"][fmt] == o2["file"][:-4] + F.FORMATS[fmt].ext
        assert len(read_ply(tmp_path / "back" / o2["file"])[0]) == o0["num_gaussians"] == o2["num_gaussians"]
    ext = F.FORMATS[fmt].ext
    if F.FORMATS[fmt].extras:
        lab = F.read_splats(tmp_path / "fmt" / f"scene_labeled{ext}")
        assert {"instance_id", "semantic_id", "inst_mu"} <= set(lab.extra)
    else:
        assert (tmp_path / "fmt" / f"scene{ext}").is_file()
        assert json.loads((tmp_path / "fmt" / "objects.json").read_text())["exports"][fmt]["dropped"][:2] == ["instance_id", "semantic_id"]


def realistic_object(n: int = 3000, seed: int = 0) -> Splats:
    """An object as training leaves it: a surface-like blob, small scales, mostly opaque, colours that
    vary smoothly, SH rest small (std 0.05, the size trained 3DGS coefficients have), degree 3."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = (d * [0.4, 0.3, 0.5] + rng.normal(0, 0.01, (n, 3)) + [1.0, -0.3, 3.0]).astype(np.float32)
    base = np.stack([0.3 + 0.2 * d[:, 0], 0.2 + 0.1 * d[:, 1], 0.1 - 0.1 * d[:, 2]], 1)
    return Splats(
        means, rng.normal(-4.5, 0.4, (n, 3)).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32),
        rng.normal(3.0, 1.5, n).astype(np.float32), (base + rng.normal(0, 0.05, (n, 3)))[:, None, :].astype(np.float32),
        (rng.normal(0, 0.05, (n, 15, 3)) * np.exp(-np.arange(15) / 8)[None, :, None]).astype(np.float32),
    )


def test_compression_ratios(tmp_path):
    s = realistic_object()
    sizes = {}
    for fmt in ("ply", "spz", "sog", "ply-compressed", "splat"):
        p = tmp_path / ("obj" + F.FORMATS[fmt].ext)
        F.write_splats(p, s)
        sizes[fmt] = p.stat().st_size
    ratios = {k: sizes["ply"] / v for k, v in sizes.items()}
    print("compression ratios vs PLY:", {k: round(v, 1) for k, v in ratios.items()})
    assert ratios["spz"] >= 8 and ratios["sog"] >= 8


# ----------------------------------------------------------------------------- errors, dispatch


def test_bad_files_are_one_line_user_errors(tmp_path):
    for name, data in (("x.spz", b"not gzip"), ("x.glb", b"glTF\x02\0\0\0junk"), ("x.sog", b"PK junk"),
                       ("x.splat", b"\0" * 33), ("x.pt", b"junk"), ("x.compressed.ply", b"ply\nformat binary_little_endian 1.0\nelement chunk 1\nend_header\n")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            F.read_splats(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="unknown splat file type"):
        F.write_splats(tmp_path / "x.obj", random_splats(3))
    with pytest.raises(UserError, match="unknown format"):
        F.parse_formats("spz,nope")


def test_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "a.spz"
    F.write_splats(p, random_splats(10, 0))
    before = p.read_bytes()
    bad = random_splats(10, 0)
    bad.means[3, 1] = np.nan
    with pytest.raises(UserError, match="non-finite"):
        F.write_splats(p, bad)
    assert p.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.spz"]


def test_edit_keeps_the_input_format(tmp_path):
    from pcf_gs.cli import main

    s = random_splats(50, 1)
    s.extra = {"instance_id": np.repeat([1, 2], 25).astype(np.int32), "semantic_id": np.ones(50, np.int32)}
    F.write_splats(tmp_path / "in.glb", s)
    F.write_splats(tmp_path / "in.spz", s)
    assert main(["-q", "edit", str(tmp_path / "in.glb"), "--remove", "2", "--out", str(tmp_path / "out")]) == 0
    assert len(F.read_splats(tmp_path / "out.glb")) == 25  # no extension: IN's format
    assert main(["-q", "edit", str(tmp_path / "in.glb"), "--remove", "1", "--out", str(tmp_path / "o.spz")]) == 0
    assert len(F.read_splats(tmp_path / "o.spz")) == 25
    assert main(["-q", "edit", str(tmp_path / "in.spz"), "--box=-9,-9,-9,9,9,9", "--remove", "box", "--box=-9,-9,-9,0,9,9",
                 "--out", str(tmp_path / "e.spz")]) == 2  # removing everything is a user error
    assert main(["-q", "edit", str(tmp_path / "in.spz"), "--box=-9,-9,-9,0.2,9,9", "--remove", "box", "--out", str(tmp_path / "e")]) == 0
    e = F.read_splats(tmp_path / "e.spz")
    assert 0 < len(e) < 50 and (e.means[:, 0] > 0.2 - 1e-3).all()


# ----------------------------------------------------------------------------- splat-transform (slow)


def _splat_transform() -> list[str] | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        major = int(subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    st_bin = shutil.which("splat-transform")
    if major < 22 or st_bin is None:
        return None
    return [st_bin]


@pytest.mark.slow
def test_splat_transform_reads_what_we_write(tmp_path):
    """@playcanvas/splat-transform (node >= 22 and splat-transform on PATH; see
    tools/check_formats_splat_transform.sh) converts each of our files to PLY; the result equals our
    own reading of the file (the same decoded values: SOG layout, SPZ's RUB turn, compressed PLY)."""
    cmd = _splat_transform()
    if cmd is None:
        pytest.skip("needs node >= 22 and splat-transform on PATH (npm i node@22 @playcanvas/splat-transform)")
    s = random_splats(1500, 3)
    for fmt in ("ply", "ply-compressed", "splat", "spz", "sog"):
        p = tmp_path / ("a" + F.FORMATS[fmt].ext)
        F.write_splats(p, s)
        out = tmp_path / f"st_{fmt}.ply"
        r = subprocess.run(cmd + ["-w", "-q", str(p), str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        a, b = read_ply(out)[0], F.read_splats(p)
        assert len(a) == len(b) == 1500
        assert np.allclose(a.means, b.means, atol=1e-5) and np.allclose(a.sh0, b.sh0, atol=1e-5)
        # .splat readers differ in how they map the quaternion bytes back (within one 8-bit step)
        assert quat_dot(a.quats, b.quats).min() > (1 - 1e-3 if fmt == "splat" else 1 - 1e-5)
        if b.shN.shape[1]:
            assert np.allclose(a.shN, b.shN, atol=1e-5)
