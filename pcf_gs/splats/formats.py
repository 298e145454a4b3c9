"""Splat file formats: one reader/writer pair per format, a registry keyed by format name and extension.

Every reader returns a :class:`~pcf_gs.splats.ply.Splats` in *our* frame (the capture's
world frame, the one 3DGS / COLMAP PLY files use: x right, y down, z forward, "RDF"),
with log-scales, logit opacities, (w, x, y, z) quaternions and SH in gsplat's layout;
every writer takes one. Where a format prescribes another frame the writer converts
and the reader converts back, so ``read(write(s)) == s`` in our frame up to the
format's quantisation (tolerances: ``docs/formats.md`` and :data:`FORMATS`).

========== ============================ ============== =========================================
name       extension                    library        frame stored / extras
========== ============================ ============== =========================================
ply        ``.ply``                     plyfile (ours) ours, as is; carries our label columns
ply-compr. ``.compressed.ply``          gsply          ours, as is (SuperSplat reads it so); none
splat      ``.splat``                   numpy (ours)   ours, as is; SH degree 0 only; none
spz        ``.spz``                     gsply          RUB: (x, -y, -z), see :func:`flip_yz`; none
sog        ``.sog`` (zip) / meta.json   numpy+Pillow   ours, as is (as splat-transform does); none
glb        ``.glb``                     numpy (ours)   glTF +Y up: (x, -y, -z); ``_INSTANCE_ID`` ...
gsplat-ckpt ``.pt``                     torch          ours, as is; labels under "pcf_gs"
========== ============================ ============== =========================================

The (x, -y, -z) change of frame is the 180° rotation about x, a proper rotation:
positions and quaternions (w, x, -y, -z) change sign component-wise, and so do
the SH coefficients whose basis function is odd in y·z parity (:data:`SH_FLIP`).
It is its own inverse.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pcf_gs.atomic import atomic_path
from pcf_gs.errors import UserError
from pcf_gs.splats.ply import LABEL_BASES as LABEL_KEYS, Splats, check_plausible, check_ply_size, read_ply, write_ply

C0 = 0.28209479177387814

# Sign of each higher SH coefficient (3DGS order: degree 1 = y, z, x; degree 2 = xy, yz,
# 3z²-r², xz, x²-y²; degree 3 = y(3x²-y²), xyz, y(4z²-x²-y²), z(2z²-3x²-3y²), x(4z²-x²-y²),
# z(x²-y²), x(x²-3y²)) under (x, y, z) -> (x, -y, -z).
SH_FLIP = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)


# ----------------------------------------------------------------------------- helpers


def sh_degree_of(s: Splats) -> int:
    return int(round(np.sqrt(s.shN.shape[1] + 1))) - 1


def flip_yz(s: Splats) -> Splats:
    """``s`` seen in the frame (x, -y, -z) (RDF <-> RUB / glTF): its own inverse; extras unchanged."""
    K = s.shN.shape[1]
    return Splats(
        (s.means * np.array([1, -1, -1], np.float32)).astype(np.float32), s.scales.astype(np.float32),
        (s.quats * np.array([1, 1, -1, -1], np.float32)).astype(np.float32), s.opacities.astype(np.float32),
        s.sh0.astype(np.float32), (s.shN * SH_FLIP[:K, None]).astype(np.float32), dict(s.extra),
    )


def _plain(s: Splats) -> Splats:
    """float32 copy of the modelled arrays without extras or the raw PLY table."""
    f = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Splats(f(s.means), f(s.scales), f(s.quats), f(s.opacities).reshape(-1), f(s.sh0), f(s.shN))


def _check_finite(s: Splats, path: Path) -> None:
    for name in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        if not np.isfinite(getattr(s, name)).all():
            raise UserError(f"has non-finite {name}; this format cannot store them", path)


def _unit_quats(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    out = np.where(n > 0, q / np.where(n > 0, n, 1), np.array([1.0, 0, 0, 0]))
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _logit(p, eps=1e-7):
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError("file not found", path)
    return path.read_bytes()


# ----------------------------------------------------------------------------- ply (ours)


def _read_ply_any(path: Path) -> Splats:
    """Uncompressed 3DGS PLY (:func:`read_ply`) or a SuperSplat compressed PLY (``element chunk``)."""
    if _is_compressed_ply(path):
        check_ply_size(path)
        return read_ply_compressed(path)
    return read_ply(path)[0]


def _is_compressed_ply(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    end = head.find(b"end_header")
    return head.startswith(b"ply") and b"element chunk" in (head[:end] if end >= 0 else head)


def _write_ply(path: Path, s: Splats, extra: bool = True) -> None:
    write_ply(path, s, extra=extra)


# ----------------------------------------------------------------------------- compressed ply (gsply)


def _gsdata(s: Splats):
    import gsply

    p = _plain(s)
    return gsply.GSData.from_arrays(means=p.means, scales=p.scales, quats=p.quats, opacities=p.opacities,
                                    sh0=np.ascontiguousarray(p.sh0[:, 0, :]), shN=p.shN if p.shN.shape[1] else None,
                                    format="ply")


def _from_gsdata(d) -> Splats:
    N = int(d.means.shape[0])
    shN = d.shN
    shN = np.zeros((N, 0, 3), np.float32) if shN is None or np.asarray(shN).size == 0 else np.asarray(shN, np.float32).reshape(N, -1, 3)
    f = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Splats(f(d.means), f(d.scales), f(d.quats), f(d.opacities).reshape(N), f(d.sh0).reshape(N, 1, 3), f(shN))


def write_ply_compressed(path: Path, s: Splats, extra: bool = True) -> None:
    """SuperSplat / PlayCanvas compressed PLY via ``gsply.compress_to_bytes`` (chunks of 256 Gaussians,
    per-chunk min/max quantisation). Stored in our frame, as SuperSplat's own export does. No extras."""
    import gsply

    _check_finite(s, path)
    if len(s) == 0:
        raise UserError("has no Gaussians; a compressed PLY needs at least one", path)
    _write_bytes(path, gsply.compress_to_bytes(_gsdata(s)))


def read_ply_compressed(path: Path) -> Splats:
    import gsply

    try:
        d = gsply.decompress_from_bytes(_read_bytes(path))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable compressed PLY ({type(e).__name__}: {e})", path) from None
    return _from_gsdata(d)


# ----------------------------------------------------------------------------- .splat (antimatter15)

_SPLAT_ROW = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def write_splat(path: Path, s: Splats, extra: bool = True) -> None:
    """antimatter15 ``.splat``: 32-byte rows of position (3 x f32), linear scale (3 x f32),
    RGBA (u8: colour C0*sh0 + 0.5 and sigmoid(opacity), both clamped to [0, 1]) and the unit
    quaternion w, x, y, z as u8 (q * 128 + 128). Our frame, as is. SH above degree 0 and extras are dropped.
    Rows keep their order (gsplat's exporter sorts them by Morton code; viewers do not care)."""
    _check_finite(s, path)
    p = _plain(s)
    rows = np.zeros(len(p), _SPLAT_ROW)
    rows["pos"] = p.means
    rows["scale"] = np.exp(np.clip(p.scales.astype(np.float64), -87, 88))
    rgb = C0 * p.sh0[:, 0, :].astype(np.float64) + 0.5
    a = _sigmoid(p.opacities)[:, None]
    rows["rgba"] = np.clip(np.round(np.concatenate([rgb, a], 1) * 255), 0, 255).astype(np.uint8)
    rows["rot"] = np.clip(np.round(_unit_quats(p.quats) * 128 + 128), 0, 255).astype(np.uint8)
    _write_bytes(path, rows.tobytes())


def read_splat(path: Path) -> Splats:
    data = _read_bytes(path)
    if len(data) % 32:
        raise UserError(f"not a .splat file ({len(data)} bytes is not a whole number of 32-byte rows)", path)
    rows = np.frombuffer(data, _SPLAT_ROW)
    scale = rows["scale"].astype(np.float64)
    if not np.isfinite(rows["pos"]).all() or not (scale > 0).all():
        raise UserError("not a .splat file (non-finite positions or non-positive scales)", path)
    rgba = rows["rgba"].astype(np.float64) / 255
    q = (rows["rot"].astype(np.float64) - 128) / 128
    N = len(rows)
    return Splats(
        rows["pos"].astype(np.float32), np.log(scale).astype(np.float32), _unit_quats(q).astype(np.float32),
        _logit(rgba[:, 3]).astype(np.float32), ((rgba[:, None, :3] - 0.5) / C0).astype(np.float32),
        np.zeros((N, 0, 3), np.float32),
    )


# ----------------------------------------------------------------------------- spz (gsply)


def spz_sh_buckets(shN: np.ndarray) -> np.ndarray:
    """shN rounded as Niantic's reference SPZ encoder does by default: the byte round(128·v) + 128 is
    rounded to a multiple of 8 for degree 1 (5 bits kept) and of 16 for degrees 2-3 (4 bits), clamped to
    0..255. Coarser than gsply's 8 bits, and what makes SPZ files ~10x smaller than PLY."""
    K = shN.shape[1]
    bucket = np.where(np.arange(K) < 3, 8.0, 16.0)[None, :, None]
    b = np.round(shN.astype(np.float64) * 128) + 128
    b = np.clip(np.floor((b + bucket / 2) / bucket) * bucket, 0, 255)
    return ((b - 128) / 128).astype(np.float32)


def write_spz(path: Path, s: Splats, extra: bool = True) -> None:
    """Niantic SPZ (v3, gzip) via ``gsply.write_spz``. SPZ stores RUB axes, so the data are turned
    by :func:`flip_yz` first (positions (x, -y, -z), quaternions (w, x, -y, -z), odd SH
    coefficients negated); :func:`read_spz` turns them back. Higher SH are bucketed as the
    reference encoder does (:func:`spz_sh_buckets`). Positions are 24-bit fixed
    point with 12 fractional bits (fewer when a coordinate reaches 2048 world units). No extras."""
    import gsply

    _check_finite(s, path)
    if len(s) == 0:
        raise UserError("has no Gaussians; SPZ needs at least one", path)
    p = flip_yz(_plain(s))
    p.quats = _unit_quats(p.quats).astype(np.float32)
    p.shN = spz_sh_buckets(p.shN)
    m = float(np.abs(p.means).max())
    bits = 12 if m < 2047 else int(np.floor(22 - np.log2(m)))
    if bits < 1:
        raise UserError(f"coordinates up to {m:g} do not fit SPZ's 24-bit positions", path)
    with atomic_path(path) as tmp:
        gsply.write_spz(tmp, _gsdata(p), version=3, fractional_bits=bits)


def read_spz(path: Path) -> Splats:
    """An SPZ file (any version gsply reads) back in our frame (the RUB -> RDF turn of :func:`flip_yz`)."""
    import gsply

    if not path.is_file():
        raise UserError("file not found", path)
    try:
        d = gsply.read_spz(path)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable SPZ file ({type(e).__name__}: {e})", path) from None
    return flip_yz(_from_gsdata(d))


# ----------------------------------------------------------------------------- glb (KHR_gaussian_splatting)

GLB_PREFIX = "KHR_gaussian_splatting:"
_GLB_EXTRA = {"instance_id": "_INSTANCE_ID", "semantic_id": "_SEMANTIC_ID", "inst_mu": "_INST_MU", "inst_var": "_INST_VAR"}


def write_glb(path: Path, s: Splats, extra: bool = True) -> None:
    """glTF 2.0 binary with the ratified ``KHR_gaussian_splatting`` extension (ellipse kernel).

    One node, one mesh, one POINTS primitive. glTF is +Y up, right-handed; our frame is
    turned by :func:`flip_yz` (x, -y, -z) so that our "up" (-y) becomes glTF +Y. Attributes
    are float32: POSITION, ``KHR_gaussian_splatting:ROTATION`` (unit quaternion x, y, z, w),
    ``:SCALE`` (linear, exp of our log-scales), ``:OPACITY`` (sigmoid of our logits, in [0, 1]),
    ``:SH_DEGREE_l_COEF_n`` (n = m + l). With ``extra`` our labels are application-specific
    attributes (float32, exact up to 2^24): ``_INSTANCE_ID``, ``_SEMANTIC_ID``, ``_INST_MU_<k>``,
    ``_INST_VAR_<k>``.
    """
    _check_finite(s, path)
    if len(s) == 0:
        raise UserError("has no Gaussians; a glTF accessor needs at least one element", path)
    p = flip_yz(_plain(s))
    N = len(p)
    q = _unit_quats(p.quats)
    attrs: list[tuple[str, np.ndarray, str]] = [
        ("POSITION", p.means, "VEC3"),
        (GLB_PREFIX + "ROTATION", q[:, [1, 2, 3, 0]], "VEC4"),
        (GLB_PREFIX + "SCALE", np.exp(np.clip(p.scales.astype(np.float64), -87, 88)), "VEC3"),
        (GLB_PREFIX + "OPACITY", _sigmoid(p.opacities), "SCALAR"),
        (GLB_PREFIX + "SH_DEGREE_0_COEF_0", p.sh0[:, 0, :], "VEC3"),
    ]
    k = 0
    for deg in range(1, sh_degree_of(p) + 1):
        for n in range(2 * deg + 1):
            attrs.append((f"{GLB_PREFIX}SH_DEGREE_{deg}_COEF_{n}", p.shN[:, k, :], "VEC3"))
            k += 1
    if extra:
        for key, sem in _GLB_EXTRA.items():
            if key not in s.extra:
                continue
            v = np.asarray(s.extra[key])
            if v.ndim == 1:
                attrs.append((sem, v, "SCALAR"))
            else:
                attrs += [(f"{sem}_{i}", v[:, i], "SCALAR") for i in range(v.shape[1])]
    blob = bytearray()
    views, accessors, attributes = [], [], {}
    for name, arr, typ in attrs:
        a = np.ascontiguousarray(arr, dtype="<f4").reshape(N, -1)
        while len(blob) % 4:
            blob.append(0)
        # target ARRAY_BUFFER: vertex data (the Khronos validator asks for it on attribute views)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": a.nbytes, "target": 34962})
        blob += a.tobytes()
        acc = {"bufferView": len(views) - 1, "componentType": 5126, "count": N, "type": typ}
        if name == "POSITION":  # required by glTF for POSITION
            acc["min"] = a.min(0).astype(float).tolist()
            acc["max"] = a.max(0).astype(float).tolist()
        accessors.append(acc)
        attributes[name] = len(accessors) - 1
    gltf = {
        "asset": {"version": "2.0", "generator": "pcf-gs"},
        "extensionsUsed": ["KHR_gaussian_splatting"],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": attributes, "mode": 0, "extensions": {"KHR_gaussian_splatting": {
            "kernel": "ellipse", "colorSpace": "srgb_rec709_display", "projection": "perspective",
            "sortingMethod": "cameraDistance"}}}]}],
        "buffers": [{"byteLength": len(blob)}], "bufferViews": views, "accessors": accessors,
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    out = struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(js) + 8 + len(blob))
    out += struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)
    _write_bytes(path, out)


def parse_glb(data: bytes) -> tuple[dict, bytes]:
    """(glTF JSON, BIN chunk) of a GLB container (glTF 2.0 spec, "Binary glTF Layout")."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValueError("no glTF magic")
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise ValueError(f"GLB version {version}")
    if length != len(data):  # the header's total length: a truncated or padded file is corrupt
        raise ValueError(f"the header says {length} bytes, the file has {len(data)}")
    off, js, binary = 12, None, b""
    while off + 8 <= length:
        clen, ctype = struct.unpack_from("<II", data, off)
        if off + 8 + clen > length:
            raise ValueError(f"chunk at byte {off} claims {clen} bytes, past the end of the file")
        chunk = data[off + 8: off + 8 + clen]
        if ctype == 0x4E4F534A:
            js = json.loads(chunk.decode("utf-8"))
        elif ctype == 0x004E4942:
            binary = chunk
        off += 8 + clen
    if js is None:
        raise ValueError("no JSON chunk")
    return js, binary


_COMP = {5120: ("i1", 127.0), 5121: ("u1", 255.0), 5122: ("<i2", 32767.0), 5123: ("<u2", 65535.0), 5125: ("<u4", None), 5126: ("<f4", None)}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def glb_accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    """[count, ncomp] float64 values of accessor ``index`` (normalised integers mapped as the glTF spec says)."""
    acc = gltf["accessors"][index]
    dt, norm = _COMP[acc["componentType"]]
    nc = _NCOMP[acc["type"]]
    count = acc["count"]
    view = gltf["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    item = np.dtype(dt).itemsize * nc
    stride = view.get("byteStride") or item
    raw = np.frombuffer(binary, np.uint8, count=(count - 1) * stride + item if count else 0, offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, (count, item), (stride, 1)) if count else raw.reshape(0, item)
    out = np.ascontiguousarray(rows).view(dt).reshape(count, nc).astype(np.float64)
    if acc.get("normalized") and norm is not None:
        out = np.maximum(out / norm, -1.0)
    return out


def read_glb(path: Path) -> Splats:
    """A ``KHR_gaussian_splatting`` GLB (float or normalised-integer accessors, first splat primitive)
    back in our frame; ``_INSTANCE_ID`` / ``_SEMANTIC_ID`` / ``_INST_MU_k`` / ``_INST_VAR_k`` become extras."""
    try:
        gltf, binary = parse_glb(_read_bytes(path))
        prims = [p for m in gltf.get("meshes", []) for p in m.get("primitives", [])
                 if "KHR_gaussian_splatting" in p.get("extensions", {})]
        if not prims:
            raise ValueError("no KHR_gaussian_splatting primitive")
        at = prims[0]["attributes"]
        get = lambda name: glb_accessor(gltf, binary, at[name])  # noqa: E731
        for need in ("POSITION", GLB_PREFIX + "ROTATION", GLB_PREFIX + "SCALE", GLB_PREFIX + "OPACITY", GLB_PREFIX + "SH_DEGREE_0_COEF_0"):
            if need not in at:
                raise ValueError(f"no {need} attribute")
        means = get("POSITION")
        N = len(means)
        q = get(GLB_PREFIX + "ROTATION")[:, [3, 0, 1, 2]]
        scale = get(GLB_PREFIX + "SCALE")
        opac = get(GLB_PREFIX + "OPACITY")[:, 0]
        sh0 = get(GLB_PREFIX + "SH_DEGREE_0_COEF_0")[:, None, :]
        coefs = []
        for deg in (1, 2, 3):
            names = [f"{GLB_PREFIX}SH_DEGREE_{deg}_COEF_{n}" for n in range(2 * deg + 1)]
            if not all(n in at for n in names):
                break
            coefs += [get(n) for n in names]
        shN = np.stack(coefs, 1) if coefs else np.zeros((N, 0, 3))
    except UserError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"not a readable KHR_gaussian_splatting GLB ({e})", path) from None
    with np.errstate(divide="ignore"):
        logs = np.log(np.maximum(scale, 1e-38))
    s = Splats(means.astype(np.float32), logs.astype(np.float32), _unit_quats(q).astype(np.float32),
               _logit(opac).astype(np.float32), sh0.astype(np.float32), shN.astype(np.float32))
    s = flip_yz(s)
    for key, sem in _GLB_EXTRA.items():
        if sem in at:
            v = get(sem)[:, 0]
            s.extra[key] = v.astype(np.int32) if key in ("instance_id", "semantic_id") else v.astype(np.float32)
        else:
            cols = sorted((n for n in at if n.startswith(sem + "_") and n[len(sem) + 1:].isdigit()), key=lambda n: int(n.rsplit("_", 1)[1]))
            if cols:
                s.extra[key] = np.stack([get(n)[:, 0] for n in cols], 1).astype(np.float32)
    return s


# ----------------------------------------------------------------------------- gsplat checkpoint


def write_gsplat_ckpt(path: Path, s: Splats, extra: bool = True) -> None:
    """A torch checkpoint as gsplat's ``examples/simple_trainer.py`` saves it and ``simple_viewer.py``
    loads it: ``{"step": 0, "splats": {means, scales, quats, opacities, sh0 [N,1,3], shN [N,K,3]}}``
    (float32 tensors; log-scales, logit opacities, w x y z quaternions as stored). Our frame, as is.
    With ``extra`` our labels go under a separate top-level ``"pcf_gs"`` key, which gsplat ignores
    (``splats`` stays loadable into its ParameterDict)."""
    import torch

    p = _plain(s)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    ck = {"step": 0, "splats": {"means": t(p.means), "scales": t(p.scales), "quats": t(p.quats),
                                "opacities": t(p.opacities), "sh0": t(p.sh0), "shN": t(p.shN)}}
    if extra and s.extra:
        ck["pcf_gs"] = {k: t(np.asarray(v)) for k, v in s.extra.items() if k in LABEL_KEYS}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def read_gsplat_ckpt(path: Path) -> Splats:
    import torch

    if not path.is_file():
        raise UserError("file not found", path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        sp = ck["splats"]
        g = lambda k: sp[k].detach().float().numpy()  # noqa: E731
        means, scales, quats, opac, sh0 = g("means"), g("scales"), g("quats"), g("opacities"), g("sh0")
        N = len(means)
        shN = g("shN") if "shN" in sp else np.zeros((N, 0, 3), np.float32)
        sh0 = sh0.reshape(N, 1, 3)
        shN = shN.reshape(N, -1, 3)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a gsplat checkpoint with a 'splats' dict of means/scales/quats/opacities/sh0 ({type(e).__name__})", path) from None
    for name, a, shape in (("means", means, (N, 3)), ("scales", scales, (N, 3)), ("quats", quats, (N, 4))):
        if a.shape != shape:
            raise UserError(f"splats['{name}'] has shape {list(a.shape)}, expected {list(shape)} ({N} Gaussians)", path)
    if opac.size != N:
        raise UserError(f"splats['opacities'] has {opac.size} values for {N} Gaussians", path)
    s = Splats(means, scales, quats, opac.reshape(N), sh0, shN)
    labels = ck.get("pcf_gs") if isinstance(ck, dict) else None
    for k, v in (labels if isinstance(labels, dict) else {}).items():
        if k in LABEL_KEYS:
            if not hasattr(v, "numpy") or len(v) != N:
                raise UserError(f"pcf_gs['{k}'] is not a tensor of {N} values", path)
            s.extra[k] = v.numpy().astype(np.int32 if k in ("instance_id", "semantic_id") else np.float32)
    return s


# ----------------------------------------------------------------------------- registry

from pcf_gs.splats import sog as _sog  # noqa: E402  (needs the helpers above)


@dataclass(frozen=True)
class Format:
    name: str
    ext: str  # written extension (".compressed.ply" for ply-compressed)
    read: Callable[[Path], Splats]
    write: Callable[..., None]  # write(path, splats, extra=True)
    extras: bool  # can carry instance_id / semantic_id / inst_mu / inst_var
    library: str
    tolerance: str  # one line, see docs/formats.md


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("ply", ".ply", _read_ply_any, _write_ply, True, "plyfile", "exact (float32)"),
    Format("ply-compressed", ".compressed.ply", read_ply_compressed, write_ply_compressed, False, "gsply 0.4.6",
           "per 256-Gaussian chunk: position/scale 11-10-11 bits of the chunk's range, colour 8 bits, opacity 1/255, SH 8 bits over [-4, 4]"),
    Format("splat", ".splat", read_splat, write_splat, False, "numpy (fixed 32-byte rows)",
           "position/scale float32, colour and opacity 1/255 (clamped to [0, 1]), quaternion 1/128 per component, no SH above degree 0"),
    Format("spz", ".spz", read_spz, write_spz, False, "gsply 0.4.6",
           "position 2^-12, log-scale 1/16 in [-10, 6], opacity 1/255, sh0 1/38.25 in [-3.3, 3.3], shN degree 1 8/128, degrees 2-3 16/128 in [-1, 1] (reference-encoder buckets), quaternion 9 bits + sign"),
    Format("sog", ".sog", _sog.read_sog, _sog.write_sog, False, "numpy + Pillow (WebP lossless)",
           "position 16 bits of the log-range, quaternion 8 bits, scales/sh0/shN: 256-entry codebooks, shN: k-means palette"),
    Format("glb", ".glb", read_glb, write_glb, True, "numpy (glTF 2.0 + KHR_gaussian_splatting)",
           "float32; scales and opacity stored activated (exp / sigmoid), quaternions normalised"),
    Format("gsplat-ckpt", ".pt", read_gsplat_ckpt, write_gsplat_ckpt, True, "torch", "exact (float32)"),
)}


def parse_formats(text: str) -> list[Format]:
    """``"spz,glb"`` -> formats (each once, in order); a UserError names an unknown one."""
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise UserError(f"no format given (choose from {', '.join(FORMATS)})")
    out = []
    for n in names:
        n = {"ply_compressed": "ply-compressed", "compressed-ply": "ply-compressed", "ckpt": "gsplat-ckpt", "pt": "gsplat-ckpt"}.get(n, n)
        if n not in FORMATS:
            raise UserError(f"unknown format {n!r} (choose from {', '.join(FORMATS)})")
        if FORMATS[n] not in out:
            out.append(FORMATS[n])
    return out


def format_of(path: str | os.PathLike, reading: bool = False) -> Format:
    """The format a path names by its extension (``.compressed.ply`` before ``.ply``; a SOG folder's
    ``meta.json`` or a folder holding one is SOG). Reading sniffs ``.ply`` files for compressed ones."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".compressed.ply") or name.endswith(".ply_compressed"):
        return FORMATS["ply-compressed"]
    if name == "meta.json" or (reading and p.is_dir() and (p / "meta.json").is_file()):
        return FORMATS["sog"]
    for f in FORMATS.values():
        if name.endswith(f.ext):
            return f
    if name.endswith(".ckpt"):
        return FORMATS["gsplat-ckpt"]
    known = ", ".join(sorted({f.ext for f in FORMATS.values()} | {"meta.json"}))
    raise UserError(f"unknown splat file type (known: {known})", p)


def strip_ext(name: str) -> str:
    """A file name without its splat extension (``a.compressed.ply`` -> ``a``)."""
    low = name.lower()
    for ext in sorted({f.ext for f in FORMATS.values()} | {".ckpt"}, key=len, reverse=True):
        if low.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def read_splats(path: str | os.PathLike) -> Splats:
    """Read any supported splat file (chosen by extension) into our frame."""
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", p)
    with warnings.catch_warnings():
        # a library's warning about the file is an error naming it (not import-time deprecations)
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("error", UserWarning)
        try:
            s = format_of(p, reading=True).read(p)
        except Warning as w:
            raise UserError(f"not a readable splat file ({type(w).__name__}: {w})", p) from None
    check_plausible(s, p)  # every format: misread or corrupt values stop here, not in a render or edit
    return s


def write_splats(path: str | os.PathLike, s: Splats, extra: bool = True) -> None:
    """Write ``s`` in the format named by ``path``'s extension (atomically). ``extra``: keep our
    label columns where the format can carry them."""
    p = Path(path)
    format_of(p).write(p, s, extra=extra)
