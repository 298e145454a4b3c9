"""COLMAP captures: the sparse model (text or binary) and the loader.

Layout, as COLMAP and 3DGS users keep it::

    ROOT/images/<name>                      the photos (``<name>`` as in images.txt; may have sub-folders)
    ROOT/images_2/, images_4/, images_8/    optional pre-shrunk copies (used when data.downscale is 2/4/8)
    ROOT/sparse/0/cameras.{bin,txt}         intrinsics
    ROOT/sparse/0/images.{bin,txt}          poses: world-to-camera quaternion (w, x, y, z) and translation
    ROOT/sparse/0/points3D.{bin,txt}        the sparse points with colours (initial Gaussians)
    (``sparse/`` itself when it has no ``0/``)
    ROOT/panoptic/ + panoptic.json | instances/, confidence/, panoptic_gt/  2D predictions and ground
                                            truth by image key (:mod:`pcf_gs.data.predictions`)

Conventions (COLMAP's): the camera is OpenCV (x right, y down, z forward), the
pose maps world to camera, x_cam = R(q) x_world + t, and pixel centres sit at
+0.5, as ours do. The binary format (little-endian)::

    cameras.bin   u64 n; n x (i32 id, i32 model, u64 width, u64 height, f64 params[model's count])
    images.bin    u64 n; n x (i32 id, f64 q[4], f64 t[3], i32 camera_id, name\\0,
                              u64 n2d, n2d x (f64 x, f64 y, i64 point3D_id))
    points3D.bin  u64 n; n x (u64 id, f64 xyz[3], u8 rgb[3], f64 error,
                              u64 track_len, track_len x (i32 image_id, i32 point2D_idx))

Newer COLMAP also writes ``rigs`` and ``frames`` files beside these; they add
nothing for single-camera-per-image captures and are not read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcf_gs.config import DataConfig
from pcf_gs.data.scene import Scene
from pcf_gs.errors import DataError
from pcf_gs.geometry import quat_to_rotmat, rotmat_to_quat

# id -> (name, number of parameters); the ids COLMAP writes in cameras.bin
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV")


@dataclass
class Camera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # [n] float64, COLMAP's order for the model

    def intrinsics(self) -> tuple[np.ndarray, np.ndarray]:
        """(K [3,3] pixels, centres at +0.5; OpenCV distortion coefficients [k1, k2, p1, p2(, k3, k4, k5, k6)])."""
        p = self.params
        m = self.model
        if m in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy = p[1], p[2]
        else:
            fx, fy, cx, cy = p[:4]
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
        if m in ("SIMPLE_PINHOLE", "PINHOLE"):
            dist = []
        elif m == "SIMPLE_RADIAL":
            dist = [p[3], 0, 0, 0]
        elif m == "RADIAL":
            dist = [p[3], p[4], 0, 0]
        elif m == "OPENCV":
            dist = list(p[4:8])
        elif m == "FULL_OPENCV":  # k1 k2 p1 p2 k3 k4 k5 k6: OpenCV's rational model, same order
            dist = list(p[4:12])
        else:
            raise ValueError(f"no pinhole+distortion form for {m}")
        return K, np.asarray(dist, dtype=np.float64)


@dataclass
class Image:
    id: int
    qvec: np.ndarray  # [4] w, x, y, z (world-to-camera)
    tvec: np.ndarray  # [3]
    camera_id: int
    name: str

    def c2w(self) -> np.ndarray:
        """[4,4] float64 OpenCV camera-to-world."""
        R = quat_to_rotmat(self.qvec)
        m = np.eye(4)
        m[:3, :3] = R.T
        m[:3, 3] = -R.T @ self.tvec
        return m


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: np.ndarray  # [P,3] float64
    colors: np.ndarray  # [P,3] uint8


# ------------------------------------------------------------------------------------------------ reading


class _Reader:
    """Bounds-checked little-endian reads; a short file is a DataError naming it."""

    def __init__(self, path: Path):
        self.path = path
        self.buf = path.read_bytes()
        self.pos = 0

    def take(self, fmt: str):
        n = struct.calcsize("<" + fmt)
        if self.pos + n > len(self.buf):
            raise DataError(f"truncated binary file (needs {self.pos + n} bytes, has {len(self.buf)})", self.path)
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return out

    def count(self, item_bytes: int, what: str) -> int:
        (n,) = self.take("Q")
        if n * item_bytes > len(self.buf) - self.pos:
            raise DataError(f"header claims {n} {what}, more than the file holds (corrupt or truncated)", self.path)
        return n

    def finish(self, what: str):
        """The file must end where its header's counts say: extra bytes mean a corrupt count."""
        if self.pos != len(self.buf):
            raise DataError(f"{len(self.buf) - self.pos} bytes after the {what} its header counts "
                            f"(file is {len(self.buf)} bytes, records end at {self.pos}; corrupt count?)", self.path)

    def name(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise DataError("truncated binary file (unterminated image name)", self.path)
        s = self.buf[self.pos:end]
        self.pos = end + 1
        try:
            return s.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError("image name is not UTF-8 (corrupt file?)", self.path) from None


def _model_of(model_id_or_name, path: Path, where: str) -> tuple[str, int]:
    if isinstance(model_id_or_name, int):
        if model_id_or_name not in CAMERA_MODELS:
            raise DataError(f"{where}: unknown camera model id {model_id_or_name}", path)
        return CAMERA_MODELS[model_id_or_name]
    if model_id_or_name not in MODEL_IDS:
        raise DataError(f"{where}: unknown camera model {model_id_or_name!r}", path)
    return model_id_or_name, CAMERA_MODELS[MODEL_IDS[model_id_or_name]][1]


def _check_camera(cam: Camera, path: Path) -> Camera:
    if cam.width <= 0 or cam.height <= 0:
        raise DataError(f"camera {cam.id}: size {cam.width}x{cam.height} is not positive", path)
    if not np.all(np.isfinite(cam.params)):
        raise DataError(f"camera {cam.id}: non-finite parameters", path)
    if cam.params[0] <= 0 or (cam.model not in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") and cam.params[1] <= 0):
        raise DataError(f"camera {cam.id}: focal length must be positive", path)
    return cam


def _check_image(img: Image, path: Path) -> Image:
    if not (np.all(np.isfinite(img.qvec)) and np.all(np.isfinite(img.tvec))):
        raise DataError(f"image {img.id} ({img.name}): non-finite pose", path)
    if np.linalg.norm(img.qvec) < 1e-8:
        raise DataError(f"image {img.id} ({img.name}): zero quaternion", path)
    return img


def read_cameras_bin(path: Path) -> dict[int, Camera]:
    r = _Reader(path)
    out = {}
    for _ in range(r.count(24, "cameras")):
        cid, mid, w, h = r.take("iiQQ")
        name, n = _model_of(mid, path, f"camera {cid}")
        out[cid] = _check_camera(Camera(cid, name, int(w), int(h), np.array(r.take(f"{n}d"))), path)
    r.finish("cameras")
    return out


def read_images_bin(path: Path) -> dict[int, Image]:
    r = _Reader(path)
    out = {}
    for _ in range(r.count(64, "images")):
        iid, *qt, cid = r.take("i7di")
        name = r.name()
        n2d = r.count(24, "2D points")
        r.pos += 24 * n2d  # 2D observations are not needed
        out[iid] = _check_image(Image(iid, np.array(qt[:4]), np.array(qt[4:]), cid, name), path)
    r.finish("images")
    return out


def read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    r = _Reader(path)
    n = r.count(43, "points")
    xyz = np.empty((n, 3)); rgb = np.empty((n, 3), np.uint8)
    for i in range(n):
        v = r.take("Q3d3Bd")
        xyz[i], rgb[i] = v[1:4], v[4:7]
        track = r.count(8, "track elements")
        r.pos += 8 * track
    r.finish("points")
    return xyz, rgb


def _text_lines(path: Path):
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError("not a text file (binary or corrupt?)", path) from None
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield no, line


def _nums(tokens, kind, path: Path, no: int):
    try:
        return [kind(t) for t in tokens]
    except ValueError:
        raise DataError(f"line {no}: expected numbers, got {' '.join(tokens)!r}", path) from None


def read_cameras_txt(path: Path) -> dict[int, Camera]:
    out = {}
    for no, line in _text_lines(path):
        t = line.split()
        if len(t) < 4:
            raise DataError(f"line {no}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., got {len(t)} fields", path)
        name, n = _model_of(t[1], path, f"line {no}")
        if len(t) != 4 + n:
            raise DataError(f"line {no}: {name} has {n} parameters, got {len(t) - 4}", path)
        cid, w, h = _nums([t[0], t[2], t[3]], int, path, no)
        out[cid] = _check_camera(Camera(cid, name, w, h, np.array(_nums(t[4:], float, path, no))), path)
    return out


def read_images_txt(path: Path) -> dict[int, Image]:
    out = {}
    lines = list(_text_lines_keep_empty(path))
    # two lines per image: the pose line, then the 2D points (possibly empty)
    for k in range(0, len(lines), 2):
        no, line = lines[k]
        t = line.split()
        if len(t) < 10:
            raise DataError(
                f"line {no}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {len(t)} fields", path
            )
        vals = _nums(t[1:8], float, path, no)
        iid, cid = _nums([t[0], t[8]], int, path, no)
        name = " ".join(t[9:])  # names may contain spaces
        out[iid] = _check_image(Image(iid, np.array(vals[:4]), np.array(vals[4:]), cid, name), path)
    return out


def _text_lines_keep_empty(path: Path):
    """Non-comment lines of images.txt, keeping the (possibly empty) 2D-point line after each pose."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError("not a text file (binary or corrupt?)", path) from None
    lines = [(no, ln.strip()) for no, ln in enumerate(text.splitlines(), 1) if not ln.startswith("#")]
    while lines and not lines[-1][1]:
        lines.pop()  # trailing newline(s)
    if len(lines) % 2 == 1:
        lines.append((lines[-1][0] + 1, ""))  # last image without its (empty) points line
    return lines


def read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for no, line in _text_lines(path):
        t = line.split()
        if len(t) < 8:
            raise DataError(f"line {no}: expected POINT3D_ID X Y Z R G B ERROR TRACK[], got {len(t)} fields", path)
        xyz.append(_nums(t[1:4], float, path, no))
        rgb.append(_nums(t[4:7], int, path, no))
    return np.asarray(xyz, np.float64).reshape(-1, 3), np.asarray(rgb, np.int64).clip(0, 255).astype(np.uint8).reshape(-1, 3)


def find_sparse_dir(root: Path) -> Path | None:
    """``sparse/0`` or ``sparse`` (whichever holds cameras + images), else None."""
    for d in (root / "sparse" / "0", root / "sparse"):
        if any((d / f"cameras{e}").is_file() for e in (".bin", ".txt")):
            return d
    return None


def read_model(sparse: Path) -> Model:
    """Read cameras, images and points3D from ``sparse`` (binary preferred, as COLMAP does)."""
    sparse = Path(sparse)
    parts = {}
    for stem in ("cameras", "images", "points3D"):
        for ext in (".bin", ".txt"):
            if (sparse / f"{stem}{ext}").is_file():
                parts[stem] = sparse / f"{stem}{ext}"
                break
    for stem in ("cameras", "images"):
        if stem not in parts:
            raise DataError(f"no {stem}.bin or {stem}.txt", sparse)
    rd = lambda stem, b, t: (b if parts[stem].suffix == ".bin" else t)(parts[stem])  # noqa: E731
    cameras = rd("cameras", read_cameras_bin, read_cameras_txt)
    images = rd("images", read_images_bin, read_images_txt)
    if "points3D" in parts:
        xyz, rgb = rd("points3D", read_points_bin, read_points_txt)
    else:
        xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    for img in images.values():
        if img.camera_id not in cameras:
            raise DataError(f"image {img.id} ({img.name}) uses camera {img.camera_id}, which is not in cameras", parts["images"])
    keep = np.all(np.isfinite(xyz), axis=1)
    return Model(cameras, images, xyz[keep], rgb[keep])


# ------------------------------------------------------------------------------------------------ writing


def write_model(sparse: Path, model: Model, binary: bool = True) -> None:
    """Write ``model`` as COLMAP would (binary or text); observations and tracks are left empty."""
    sparse = Path(sparse)
    sparse.mkdir(parents=True, exist_ok=True)
    if binary:
        with open(sparse / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.cameras)))
            for c in model.cameras.values():
                f.write(struct.pack("<iiQQ", c.id, MODEL_IDS[c.model], c.width, c.height))
                f.write(struct.pack(f"<{len(c.params)}d", *c.params))
        with open(sparse / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.images)))
            for im in model.images.values():
                f.write(struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id))
                f.write(im.name.encode() + b"\0" + struct.pack("<Q", 0))
        with open(sparse / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", len(model.points)))
            for i, (p, c) in enumerate(zip(model.points, model.colors), 1):
                f.write(struct.pack("<Q3d3BdQ", i, *p, *(int(v) for v in c), 0.0, 0))
        return
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [f"{c.id} {c.model} {c.width} {c.height} " + " ".join(repr(float(v)) for v in c.params)
              for c in model.cameras.values()]
    (sparse / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for im in model.images.values():
        lines.append(f"{im.id} " + " ".join(repr(float(v)) for v in (*im.qvec, *im.tvec)) + f" {im.camera_id} {im.name}")
        lines.append("")
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    lines += [f"{i} {p[0]!r} {p[1]!r} {p[2]!r} {c[0]} {c[1]} {c[2]} 0.0"
              for i, (p, c) in enumerate(zip(model.points.tolist(), model.colors.tolist()), 1)]
    (sparse / "points3D.txt").write_text("\n".join(lines) + "\n")


def image_from_c2w(image_id: int, c2w: np.ndarray, camera_id: int, name: str) -> Image:
    """COLMAP image record (world-to-camera) for an OpenCV camera-to-world [4,4]."""
    R = np.asarray(c2w, np.float64)[:3, :3].T
    t = -R @ np.asarray(c2w, np.float64)[:3, 3]
    return Image(image_id, rotmat_to_quat(R), t, camera_id, name)


# ------------------------------------------------------------------------------------------------ loading


def is_colmap(root: Path) -> bool:
    return find_sparse_dir(root) is not None


def load_colmap(root: str | Path, cfg: DataConfig | None = None, progress: bool = True) -> Scene:
    """Read a COLMAP capture into a :class:`Scene` (see the module docstring)."""
    from pcf_gs.data.capture import CaptureView, build_capture_scene

    cfg = cfg or DataConfig()
    root = Path(root)
    sparse = find_sparse_dir(root)
    if sparse is None:
        raise DataError("no sparse/0/cameras.{bin,txt} or sparse/cameras.{bin,txt}", root)
    model = read_model(sparse)
    if not model.images:
        raise DataError("the model has no images", sparse)
    views = []
    for img in sorted(model.images.values(), key=lambda im: im.name):
        cam = model.cameras[img.camera_id]
        if cam.model not in SUPPORTED_MODELS:
            raise DataError(
                f"camera {cam.id} uses the {cam.model} model, which pcf-gs cannot undistort "
                f"(supported: {', '.join(SUPPORTED_MODELS)}); undistort with colmap image_undistorter first",
                sparse,
            )
        K, dist = cam.intrinsics()
        views.append(CaptureView(img.name, root / "images" / img.name, K, dist, cam.width, cam.height, img.c2w(),
                                 camera_id=cam.id))
    return build_capture_scene(root, "colmap", views, cfg, model.points, model.colors, progress=progress,
                               meta={"colmap": {"sparse": str(sparse.relative_to(root)), "cameras": len(model.cameras)}})
