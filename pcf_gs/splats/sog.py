"""PlayCanvas SOG (Spatially Ordered Gaussians), version 2, written and read per the published spec
(developer.playcanvas.com, "The SOG Format"): lossless WebP images plus ``meta.json``, bundled as
an uncompressed ZIP (``.sog``) or as a folder with ``meta.json``.

Encoding (spec section in brackets):

- positions [3.1]: per axis n = sign(x)·log(|x| + 1), 16 bits between the per-axis min and max
  of n (``means_l`` low byte, ``means_u`` high byte);
- orientation [3.2]: smallest three of the unit quaternion (w, x, y, z, the order of the PLY's
  rot_0..rot_3), sign chosen so the dropped largest one is positive, 8 bits each over
  [-1/√2, 1/√2], alpha = 252 + index of the dropped component;
- scales [3.3]: log-scales (the PLY's scale_*) as indices into a 256-entry codebook
  (1-D k-means over all 3N values);
- colour [3.4]: sh0 (f_dc_*) as indices into a 256-entry codebook, alpha = round(255·sigmoid(opacity));
- higher SH [3.5]: a palette of at most 4096 entries (k-means over the [N, 3K] coefficients; the
  palette is exact when N <= 256), coefficients as indices into a 256-entry codebook, 64 entries
  per row of ``shN_centroids`` (pixel u = (n % 64)·K + c, v = n // 64), per-Gaussian 16-bit
  label in ``shN_labels`` (R low byte, G high byte).

Frame: the spec's section 1.2 names x right, y up, z back, but splat-transform converts
PLY <-> SOG without any change of axes (SuperSplat displays both with the same 180° turn), so a
SOG written from a 3DGS PLY holds the PLY's frame. We do the same: no axis conversion, so our
SOG files open the same way as our PLY files. Gaussians keep their order (no Morton sort).
Our label columns are not stored.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from pcf_gs.atomic import atomic_path
from pcf_gs.errors import UserError

MAX_PALETTE = 4096


def _splats():
    from pcf_gs.splats.ply import Splats

    return Splats


def _f32(v) -> list[float]:
    """Numbers as JSON will hold them (float32 values, shortest repr)."""
    return [float(np.float32(x)) for x in np.asarray(v, np.float64).ravel()]


def codebook_1d(values: np.ndarray, size: int = 256, iters: int = 12, seed: int = 0) -> np.ndarray:
    """[size] sorted float32 codebook for ``values`` (1-D k-means from quantiles; exact when
    there are at most ``size`` distinct values)."""
    v = np.asarray(values, np.float64).ravel()
    uniq = np.unique(v)
    if len(uniq) <= size:
        return np.concatenate([uniq, np.full(size - len(uniq), uniq[-1] if len(uniq) else 0.0)]).astype(np.float32)
    if len(v) > 200_000:
        v = np.random.default_rng(seed).choice(v, 200_000, replace=False)
    v = np.sort(v)
    c = np.quantile(v, (np.arange(size) + 0.5) / size)
    cs = np.concatenate([[0.0], np.cumsum(v)])
    for _ in range(iters):
        c = np.unique(c)
        edges = np.searchsorted(v, (c[1:] + c[:-1]) / 2)
        lo = np.concatenate([[0], edges])
        hi = np.concatenate([edges, [len(v)]])
        cnt = hi - lo
        c = np.where(cnt > 0, (cs[hi] - cs[lo]) / np.maximum(cnt, 1), c)
    c[0], c[-1] = v[0], v[-1]  # keep the extremes: no value is further than half a gap from the codebook
    c = np.unique(c.astype(np.float32))
    return np.concatenate([c, np.full(size - len(c), c[-1])]).astype(np.float32)


def nearest_index(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """uint8 index of the nearest entry of a sorted ``codebook`` for each value."""
    cb = np.asarray(codebook, np.float64)
    v = np.asarray(values, np.float64)
    i = np.clip(np.searchsorted(cb, v), 1, len(cb) - 1)
    left = v - cb[i - 1] <= cb[i] - v
    return np.where(left, i - 1, i).astype(np.uint8)


def kmeans_rows(x: np.ndarray, k: int, iters: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k, D], labels [N]) of plain Lloyd k-means (fit on at most 50k rows, then all assigned)."""
    x = np.asarray(x, np.float32)
    rng = np.random.default_rng(seed)
    fit = x if len(x) <= 50_000 else x[rng.choice(len(x), 50_000, replace=False)]
    c = fit[rng.choice(len(fit), k, replace=False)].copy()
    for _ in range(iters):
        lab = _assign(fit, c)
        cnt = np.bincount(lab, minlength=k)
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, lab, fit)
        nz = cnt > 0
        c[nz] = (sums[nz] / cnt[nz, None]).astype(np.float32)
    return c, _assign(x, c)


def _assign(x: np.ndarray, c: np.ndarray, chunk: int = 8192) -> np.ndarray:
    cc = (c.astype(np.float64) ** 2).sum(1)
    out = np.empty(len(x), np.int64)
    for a in range(0, len(x), chunk):
        xb = x[a:a + chunk].astype(np.float64)
        out[a:a + chunk] = np.argmin(cc[None, :] - 2 * xb @ c.T.astype(np.float64), axis=1)
    return out


def _webp(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    mode = "RGBA" if arr.shape[2] == 4 else "RGB"
    Image.fromarray(np.ascontiguousarray(arr, np.uint8), mode).save(buf, "WEBP", lossless=True, quality=100, method=4, exact=True)
    return buf.getvalue()


def _image(rows: np.ndarray, W: int, H: int) -> np.ndarray:
    """[N, C] per-Gaussian bytes -> [H, W, C] image (row-major, trailing pixels zero)."""
    img = np.zeros((H * W, rows.shape[1]), np.uint8)
    img[: len(rows)] = rows
    return img.reshape(H, W, rows.shape[1])


def encode_sog(s) -> dict[str, bytes]:
    """File name -> bytes of a SOG v2 scene (meta.json + WebP images) for :class:`Splats` ``s``."""
    N = len(s)
    W = max(4, int(math.ceil(math.sqrt(N) / 4)) * 4)
    H = max(1, int(math.ceil(N / W)))
    means = s.means.astype(np.float64)
    n = np.sign(means) * np.log1p(np.abs(means))
    mins, maxs = np.array(_f32(n.min(0))), np.array(_f32(n.max(0)))
    span = np.where(maxs > mins, maxs - mins, 1.0)
    q16 = np.clip(np.round((n - mins) / span * 65535), 0, 65535).astype(np.uint32)
    files = {
        "means_l.webp": _webp(_image((q16 & 255).astype(np.uint8), W, H)),
        "means_u.webp": _webp(_image((q16 >> 8).astype(np.uint8), W, H)),
    }
    q = s.quats.astype(np.float64)
    nrm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(nrm > 0, q / np.where(nrm > 0, nrm, 1), np.array([1.0, 0, 0, 0]))
    big = np.argmax(np.abs(q), axis=1)
    q = q * np.where(q[np.arange(N), big] < 0, -1.0, 1.0)[:, None]
    keep = np.array([[j for j in range(4) if j != b] for b in range(4)])[big]  # [N, 3] kept components, in order
    three = np.take_along_axis(q, keep, 1)
    qb = np.clip(np.round((three * math.sqrt(2) * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
    files["quats.webp"] = _webp(_image(np.concatenate([qb, (252 + big)[:, None].astype(np.uint8)], 1), W, H))
    scb = codebook_1d(s.scales)
    files["scales.webp"] = _webp(_image(nearest_index(s.scales, scb), W, H))
    ccb = codebook_1d(s.sh0[:, 0, :])
    alpha = np.clip(np.round(255 / (1 + np.exp(-s.opacities.astype(np.float64)))), 0, 255).astype(np.uint8)
    files["sh0.webp"] = _webp(_image(np.concatenate([nearest_index(s.sh0[:, 0, :], ccb), alpha[:, None]], 1), W, H))
    meta = {
        "version": 2, "asset": {"generator": "pcf-gs"}, "count": int(N), "antialias": False,
        "means": {"mins": _f32(mins), "maxs": _f32(maxs), "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": _f32(scb), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": _f32(ccb), "files": ["sh0.webp"]},
    }
    K = s.shN.shape[1]
    if K:
        bands = {3: 1, 8: 2, 15: 3}[K]
        flat = s.shN.reshape(N, K * 3).astype(np.float32)  # coefficient-major: c*3 + channel
        if N <= 256:
            cents, labels = flat, np.arange(N)
        else:
            P = int(min(MAX_PALETTE, max(256, 2 ** int(math.floor(math.log2(N / 8))))))
            cents, labels = kmeans_rows(flat, min(P, N))
        P = len(cents)
        shcb = codebook_1d(cents)
        idx = nearest_index(cents, shcb).reshape(P, K, 3)
        rows = int(math.ceil(P / 64))
        cimg = np.zeros((rows, 64 * K, 3), np.uint8)
        for e in range(P):
            cimg[e // 64, (e % 64) * K:(e % 64 + 1) * K] = idx[e]
        lab = np.stack([labels & 255, labels >> 8, np.zeros_like(labels)], 1).astype(np.uint8)
        files["shN_centroids.webp"] = _webp(cimg)
        files["shN_labels.webp"] = _webp(_image(lab, W, H))
        meta["shN"] = {"count": int(P), "bands": bands, "codebook": _f32(shcb), "files": ["shN_centroids.webp", "shN_labels.webp"]}
    files = {"meta.json": json.dumps(meta, separators=(",", ":")).encode(), **files}
    return files


def write_sog(path: Path, s, extra: bool = True) -> None:
    """A bundled ``.sog`` (ZIP, stored entries) or, for a path named ``meta.json``, the files beside it."""
    from pcf_gs.splats.formats import _check_finite, _plain

    path = Path(path)
    _check_finite(s, path)
    if len(s) == 0:
        raise UserError("has no Gaussians; SOG needs at least one", path)
    files = encode_sog(_plain(s))
    if path.name.lower() == "meta.json":
        for name, data in files.items():
            if name != "meta.json":
                with atomic_path(path.parent / name) as tmp:
                    tmp.write_bytes(data)
        with atomic_path(path) as tmp:
            tmp.write_bytes(files["meta.json"])
        return
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for name, data in files.items():
                z.writestr(name, data)


def _decode_webp(data: bytes) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    return np.asarray(im.convert("RGBA"))


def read_sog(path: Path):
    """A bundled ``.sog``, a ``meta.json`` or a folder holding one, into our frame (no axis change)."""
    path = Path(path)
    try:
        if path.is_dir():
            path = path / "meta.json"
        if path.name.lower() == "meta.json":
            base = path.parent
            meta = json.loads(path.read_text())
            get = lambda name: (base / name).read_bytes()  # noqa: E731
        else:
            z = zipfile.ZipFile(path)
            names = {Path(n).name: n for n in z.namelist()}
            meta = json.loads(z.read(names["meta.json"]))
            get = lambda name: z.read(names[name])  # noqa: E731
        if meta.get("version") != 2:
            raise ValueError(f"meta.json version {meta.get('version')!r}, only version 2 is read")
        N = int(meta["count"])
        if N < 0:
            raise ValueError(f"meta.json count {N} is negative")

        def img(key: str, i: int = 0) -> np.ndarray:
            px = _decode_webp(get(meta[key]["files"][i])).reshape(-1, 4)
            if len(px) < N:  # the count and the images disagree: a corrupt count or a wrong image
                raise ValueError(f"{meta[key]['files'][i]} has {len(px)} pixels for {N} Gaussians")
            return px[:N].astype(np.int64)

        lo, hi = img("means", 0), img("means", 1)
        q16 = (hi[:, :3] << 8) | lo[:, :3]
        mins, maxs = np.array(meta["means"]["mins"], np.float64), np.array(meta["means"]["maxs"], np.float64)
        n = mins + (maxs - mins) * q16 / 65535.0
        means = np.sign(n) * np.expm1(np.abs(n))
        qi = img("quats")
        if qi.shape[0] and ((qi[:, 3] < 252).any()):
            raise ValueError("quats alpha outside 252..255")
        three = (qi[:, :3] / 255.0 - 0.5) * 2.0 / math.sqrt(2)
        mode = qi[:, 3] - 252
        d = np.sqrt(np.maximum(0.0, 1 - (three ** 2).sum(1)))
        quats = np.empty((N, 4))
        keep = np.array([[j for j in range(4) if j != b] for b in range(4)])[mode]
        quats[np.arange(N), mode] = d
        np.put_along_axis(quats, keep, three, 1)
        scb = np.array(meta["scales"]["codebook"], np.float64)
        scales = scb[img("scales")[:, :3]]
        ci = img("sh0")
        ccb = np.array(meta["sh0"]["codebook"], np.float64)
        sh0 = ccb[ci[:, :3]][:, None, :]
        opac = ci[:, 3] / 255.0
        if "shN" in meta:
            K = {1: 3, 2: 8, 3: 15}[int(meta["shN"]["bands"])]
            cent = _decode_webp(get(meta["shN"]["files"][0]))[:, :, :3].astype(np.int64)
            labi = img("shN", 1)
            lab = labi[:, 0] + (labi[:, 1] << 8)
            shcb = np.array(meta["shN"]["codebook"], np.float64)
            u = (lab % 64)[:, None] * K + np.arange(K)[None]
            v = (lab // 64)[:, None] + np.zeros(K, np.int64)[None]
            shN = shcb[cent[v, u]]  # [N, K, 3]
        else:
            shN = np.zeros((N, 0, 3))
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except Exception as e:  # noqa: BLE001
        raise UserError(f"not a readable SOG file ({type(e).__name__}: {e})", path) from None
    from pcf_gs.splats.formats import _logit

    Splats = _splats()
    return Splats(means.astype(np.float32), scales.astype(np.float32), quats.astype(np.float32),
                  _logit(opac).astype(np.float32), sh0.astype(np.float32), shN.astype(np.float32))
