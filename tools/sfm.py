"""Structure from motion with pycolmap: turn a folder of images into a COLMAP capture pcf-gs trains on.

Runs COLMAP's CPU pipeline through pycolmap (4.x): SIFT feature extraction (one shared camera),
exhaustive matching with geometric verification, incremental mapping. The database and every
model COLMAP finds live in a work folder (a temporary one unless ``--work``); the largest model
(most registered images) is written as ``OUT/sparse/0/*.bin`` next to copies of the scene's
``images/`` and, when present, ``images_N/``, ``panoptic/`` + ``panoptic.json``, ``instances/``,
``confidence/`` and ``panoptic_gt/`` + ``panoptic_gt.json``. OUT is then a complete COLMAP
capture whose cameras are in COLMAP's own arbitrary frame and scale, as a real user's are::

    python tools/sfm.py SCENE --out OUT                      # SCENE: any folder with images/
    python tools/sfm.py SCENE --out OUT --camera-model SIMPLE_PINHOLE --max-features 4096 --threads 1
    python -m pcf_gs train OUT --out RUN ...                 # then as any COLMAP capture

It prints a table (registered images / total, 3D points, mean reprojection error, track length,
time per stage) and writes a JSON summary (``OUT/sfm.json``, or ``--json``).

When the scene already holds cameras (a ``pcf-gs synth --layout colmap`` scene holds the true
ones), or ``--known`` names a capture or sparse folder that does, the SfM cameras are compared
with them after a similarity alignment of the camera centres (Umeyama, with scale):

- rotation error: angle of R_known^T (R_align R_sfm) per registered image (camera-to-world), degrees;
- centre error: | s R_align c_sfm + t - c_known | over the known cameras' radius (largest
  distance from their centroid, as pcf-gs normalises a scene);
- relative rotation error: for every image pair, the angle between SfM's and the known relative
  rotation (needs no alignment: SfM's own rotation error);
- focal ratio: SfM focal length (sqrt(fx fy)) over the known one, and the same for fy / fx.

Errors are one line on stderr with exit status 1 (2 when pycolmap is missing). SIFT stays on the
CPU (``Device.cpu``, ``use_gpu = False``) so the result does not depend on the machine.
"""

# no "from __future__ import annotations": tests load this file by path without registering it in
# sys.modules, where dataclasses cannot resolve string annotations
import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere: import pcf_gs from this checkout
    sys.path.insert(0, str(REPO))

from pcf_gs.data import colmap  # noqa: E402

CAMERA_MODELS = ("SIMPLE_RADIAL", "SIMPLE_PINHOLE", "PINHOLE", "RADIAL", "OPENCV")  # all undistorted by pcf-gs
# what OUT gets from the scene besides the model (globs, top level only)
COPY = ("images", "images_*", "panoptic", "panoptic.json", "instances", "confidence", "panoptic_gt",
        "panoptic_gt.json")


class SfmError(Exception):
    """A one-line failure of the tool (the message is printed as is)."""

    status = 1


def import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        err = SfmError("pycolmap is not installed (pip install pycolmap)")
        err.status = 2
        raise err from None
    return pycolmap


@dataclass
class SfmOptions:
    camera_model: str = "SIMPLE_RADIAL"
    max_features: int = 8192
    threads: int = 2
    peak_threshold: float = 0.0  # SIFT's; 0 = COLMAP's default (0.02 / octave_resolution)
    max_image_size: int = -1  # SIFT works on images no larger than this (-1 = full size)
    init_min_inliers: int = 100  # verified matches the initial pair needs (COLMAP's default 100)
    abs_pose_min_inliers: int = 30  # 2D-3D inliers to register a further image (COLMAP's default 30)
    min_registered: float = 0.5  # fail when fewer than this fraction of the images register
    seed: int = 0
    verbose: bool = False
    # further pycolmap options, "STAGE.path.to.field=value"; STAGE is reader, extract, match, verify or map
    # (e.g. "map.mapper.init_min_tri_angle=8", "extract.sift.upright=true")
    extra: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------ SfM

STAGES = ("reader", "extract", "match", "verify", "map")


def _parse_extra(items) -> dict[str, list[tuple[list[str], object]]]:
    """"STAGE.a.b=value" -> {STAGE: [(["a", "b"], value)]} (value: bool, int, float or string)."""
    out: dict = {k: [] for k in STAGES}
    for item in items:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or parts[0] not in STAGES:
            raise SfmError(f"--colmap {item!r}: expected STAGE.field=value with STAGE one of {', '.join(STAGES)}")
        raw = raw.strip()
        value: object
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
        out[parts[0]].append((parts[1:], value))
    return out


def _apply(obj, settings, stage: str) -> None:
    for path, value in settings:
        target = obj
        for name in path[:-1]:
            target = getattr(target, name, None)
            if target is None:
                break
        if target is None or not hasattr(target, path[-1]):
            raise SfmError(f"--colmap {stage}.{'.'.join(path)}: pycolmap's {type(obj).__name__} has no such option")
        try:
            setattr(target, path[-1], value)
        except (TypeError, ValueError) as e:
            raise SfmError(f"--colmap {stage}.{'.'.join(path)}={value!r}: {e}") from None


@contextlib.contextmanager
def _stage(name: str):
    """pycolmap's own exceptions (bad options, unreadable files) as one-line SfmErrors."""
    try:
        yield
    except SfmError:
        raise
    except Exception as e:  # pycolmap raises ValueError / RuntimeError with COLMAP's check message
        msg = " ".join(str(e).split()) or type(e).__name__
        raise SfmError(f"{name} failed: {msg}") from None


def _image_names(images: Path) -> list[str]:
    exts = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
    return sorted(p.relative_to(images).as_posix() for p in images.rglob("*")
                  if p.is_file() and p.suffix.lower() in exts)


def reconstruct(images: Path, work: Path, opts: SfmOptions) -> dict:
    """Run extraction, matching and mapping in ``work``; return the largest reconstruction and stats.

    Returns {"reconstruction", "models" (registered images per model, largest first), "images"
    (total), "keypoints" (mean per image), "verified_pairs", "seconds" {extract, match, map}}.
    """
    pycolmap = import_pycolmap()
    if not opts.verbose:
        pycolmap.logging.minloglevel = 2  # errors only: COLMAP logs every step at INFO
    names = _image_names(images)
    if len(names) < 2:
        raise SfmError(f"{images}: found {len(names)} image(s); SfM needs at least 2")
    if opts.camera_model not in CAMERA_MODELS:
        raise SfmError(f"camera model {opts.camera_model!r} is not one of {', '.join(CAMERA_MODELS)}")
    work.mkdir(parents=True, exist_ok=True)
    db = work / "database.db"
    if db.exists():
        db.unlink()  # a stale database would add its images twice
    seconds = {}

    t = time.perf_counter()
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    ext = pycolmap.FeatureExtractionOptions()
    ext.use_gpu = False
    ext.num_threads = opts.threads
    ext.max_image_size = opts.max_image_size
    ext.sift.max_num_features = opts.max_features
    if opts.peak_threshold > 0:
        ext.sift.peak_threshold = opts.peak_threshold
    extra = _parse_extra(opts.extra)
    _apply(reader, extra["reader"], "reader")
    _apply(ext, extra["extract"], "extract")
    with _stage("feature extraction"):
        pycolmap.extract_features(db, images, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader, extraction_options=ext, device=pycolmap.Device.cpu)
    seconds["extract"] = time.perf_counter() - t

    t = time.perf_counter()
    match = pycolmap.FeatureMatchingOptions()
    match.use_gpu = False
    match.num_threads = opts.threads
    verify = pycolmap.TwoViewGeometryOptions()
    _apply(match, extra["match"], "match")
    _apply(verify, extra["verify"], "verify")
    with _stage("exhaustive matching"):
        pycolmap.match_exhaustive(db, matching_options=match, verification_options=verify, device=pycolmap.Device.cpu)
    seconds["match"] = time.perf_counter() - t

    with pycolmap.Database.open(db) as d:
        n_images = d.num_images()
        keypoints = d.num_keypoints() / max(n_images, 1)
        _, inliers = d.read_two_view_geometry_num_inliers()
        verified = int(sum(1 for n in inliers if n >= 15))

    t = time.perf_counter()
    mapper = pycolmap.IncrementalPipelineOptions()
    mapper.num_threads = opts.threads
    mapper.random_seed = opts.seed
    mapper.mapper.random_seed = opts.seed
    mapper.triangulation.random_seed = opts.seed
    mapper.mapper.init_min_num_inliers = opts.init_min_inliers
    mapper.mapper.abs_pose_min_num_inliers = opts.abs_pose_min_inliers
    _apply(mapper, extra["map"], "map")
    (work / "sparse").mkdir(exist_ok=True)
    with _stage("incremental mapping"):
        recs = pycolmap.incremental_mapping(db, images, work / "sparse", mapper)
    seconds["map"] = time.perf_counter() - t

    models = sorted(recs.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()), reverse=True)
    return {
        "reconstruction": models[0] if models else None,
        "models": [r.num_reg_images() for r in models],
        "images": n_images,
        "keypoints": keypoints,
        "verified_pairs": verified,
        "seconds": seconds,
    }


def copy_capture(scene: Path, dst: Path) -> list[str]:
    """Copy the scene's images and 2D labels (symbolic links resolved) into ``dst``; return what was copied."""
    copied = []
    for pattern in COPY:
        for src in sorted(scene.glob(pattern)):
            if src.is_dir():
                shutil.copytree(src, dst / src.name, symlinks=False)
            elif src.is_file():
                shutil.copyfile(src, dst / src.name)
            else:
                continue
            copied.append(src.name)
    return copied


def run_sfm(scene: Path, out: Path, opts: SfmOptions, work: Path | None = None, overwrite: bool = False) -> dict:
    """SfM on ``scene/images`` -> the COLMAP capture ``out`` (see the module docstring); returns the summary."""
    from pcf_gs.atomic import atomic_dir

    scene, out = Path(scene), Path(out)
    images = scene / "images"
    if not images.is_dir():
        raise SfmError(f"{scene}: no images/ folder")
    if out.resolve() == scene.resolve():
        raise SfmError("--out must differ from the scene (the scene's own sparse/ would be replaced)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SfmError(f"{out}: exists and is not empty (--overwrite to replace it)")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pcf-gs-sfm-") as tmp:
        res = reconstruct(images, Path(work) if work else Path(tmp), opts)
        rec = res["reconstruction"]
        summary = {
            "scene": str(scene),
            "out": str(out),
            "images": res["images"],
            "registered": rec.num_reg_images() if rec is not None else 0,
            "models": res["models"],
            "points": rec.num_points3D() if rec is not None else 0,
            "mean_reprojection_error": float(rec.compute_mean_reprojection_error()) if rec is not None else None,
            "mean_track_length": float(rec.compute_mean_track_length()) if rec is not None else None,
            "mean_keypoints": round(res["keypoints"], 1),
            "verified_pairs": res["verified_pairs"],
            "seconds": {k: round(v, 2) for k, v in res["seconds"].items()},
            "options": {k: v for k, v in vars(opts).items() if k != "verbose"},
            "pycolmap": import_pycolmap().__version__,
        }
        summary["registered_fraction"] = summary["registered"] / max(summary["images"], 1)
        if rec is None:
            raise SfmFailed("no reconstruction: too few verified matches for an initial pair "
                            f"({res['keypoints']:.0f} SIFT keypoints per image, "
                            f"{res['verified_pairs']} verified pairs); "
                            "needs more texture, resolution or overlap", summary)
        need = max(3, int(np.ceil(opts.min_registered * summary["images"])))
        if summary["registered"] < need:
            raise SfmFailed(f"only {summary['registered']} of {summary['images']} images registered "
                            f"(models: {res['models']}); --min-registered {opts.min_registered} needs {need}", summary)
        cam = rec.cameras[next(iter(rec.cameras))]
        summary["camera"] = {"model": cam.model_name, "width": cam.width, "height": cam.height,
                             "params": [float(v) for v in cam.params]}
        all_names = set(_image_names(images))
        summary["unregistered"] = sorted(all_names - {rec.images[i].name for i in rec.reg_image_ids()})
        with atomic_dir(out, overwrite=overwrite) as dst:
            summary["copied"] = copy_capture(scene, dst)
            sparse = dst / "sparse" / "0"
            sparse.mkdir(parents=True)
            rec.write_binary(str(sparse))
    summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    return summary


class SfmFailed(SfmError):
    """SfM ran but gave no usable model; ``summary`` holds what it found."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


# ------------------------------------------------------------------------------------------------ comparison


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising sum |s R src_i + t - dst_i|² (Umeyama 1991); src, dst [N,3], N >= 3."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(D) @ S) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - s * R @ mu_s
    return s, R, t


def _focal(cam: colmap.Camera) -> tuple[float, float]:
    """(geometric mean focal length, fy / fx) in pixels."""
    K, _ = cam.intrinsics()
    return float(np.sqrt(K[0, 0] * K[1, 1])), float(K[1, 1] / K[0, 0])


def _rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angles (degrees) of rotation matrices [..., 3, 3]."""
    return np.degrees(np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def _relative_rotation_errors(Rs: np.ndarray, Rk: np.ndarray) -> np.ndarray:
    """For every image pair i < j: the angle between SfM's relative rotation Ri^T Rj and the known one.

    Needs no alignment (the frames cancel), so it separates SfM's own rotation error from how
    well the centres fix the similarity.
    """
    rel_s = np.einsum("iba,jbc->ijac", Rs, Rs)  # Rs_i^T Rs_j
    rel_k = np.einsum("iba,jbc->ijac", Rk, Rk)
    i, j = np.triu_indices(len(Rs), k=1)
    return _rotation_angle_deg(np.einsum("nba,nbc->nac", rel_k[i, j], rel_s[i, j]))


def compare_cameras(sfm: colmap.Model, known: colmap.Model) -> dict:
    """Errors of the SfM cameras against the known ones, matched by image name, after Umeyama on the centres."""
    known_by_name = {im.name: im for im in known.images.values()}
    pairs = [(im, known_by_name[im.name]) for im in sfm.images.values() if im.name in known_by_name]
    if len(pairs) < 3:
        raise SfmError(f"only {len(pairs)} SfM image(s) share a name with the known cameras; need 3 to align")
    pairs.sort(key=lambda p: p[0].name)
    c2w_s = np.stack([a.c2w() for a, _ in pairs])
    c2w_k = np.stack([b.c2w() for _, b in pairs])
    s, R, t = umeyama(c2w_s[:, :3, 3], c2w_k[:, :3, 3])
    centres = s * c2w_s[:, :3, 3] @ R.T + t
    all_known = np.stack([im.c2w()[:3, 3] for im in known.images.values()])
    radius = float(np.linalg.norm(all_known - all_known.mean(0), axis=1).max())
    centre_err = np.linalg.norm(centres - c2w_k[:, :3, 3], axis=1) / radius
    rot = np.einsum("nji,jk,nkl->nil", c2w_k[:, :3, :3], R, c2w_s[:, :3, :3])  # R_known^T R R_sfm
    rot_err = _rotation_angle_deg(rot)
    rel_err = _relative_rotation_errors(c2w_s[:, :3, :3], c2w_k[:, :3, :3])
    fs = np.array([_focal(sfm.cameras[a.camera_id]) for a, _ in pairs])
    fk = np.array([_focal(known.cameras[b.camera_id]) for _, b in pairs])
    focal, aspect = fs[:, 0] / fk[:, 0], fs[:, 1] / fk[:, 1]

    def stats(x):
        return {"mean": float(x.mean()), "median": float(np.median(x)), "max": float(x.max())}

    return {
        "matched": len(pairs),
        "scale": s,
        "known_radius": radius,
        "rotation_deg": stats(rot_err),
        "relative_rotation_deg": stats(rel_err),
        "centre_rel": stats(centre_err),
        "focal_ratio": stats(focal),
        "aspect_ratio": stats(aspect),
        "per_image": {a.name: {"rotation_deg": float(r), "centre_rel": float(c)}
                      for (a, _), r, c in zip(pairs, rot_err, centre_err)},
    }


def compare_dirs(sfm_sparse: Path, known: Path) -> dict:
    """:func:`compare_cameras` for two COLMAP sparse folders (or capture roots holding ``sparse/``)."""
    def model(p: Path) -> colmap.Model:
        d = colmap.find_sparse_dir(p) or p
        return colmap.read_model(d)

    return compare_cameras(model(Path(sfm_sparse)), model(Path(known)))


# ------------------------------------------------------------------------------------------------ CLI


def print_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    sec = summary["seconds"]
    err = summary["mean_reprojection_error"]
    trk = summary["mean_track_length"]
    tab = Table(title=f"SfM: {summary['scene']}", show_header=False)
    tab.add_column("", style="bold")
    tab.add_column("", justify="right")
    rows = [
        ("registered images", f"{summary['registered']} / {summary['images']}"
                              f" ({100 * summary['registered_fraction']:.0f}%)"),
        ("models (registered each)", ", ".join(str(m) for m in summary["models"][:6]) or "none"),
        ("3D points", str(summary["points"])),
        ("mean reprojection error", "-" if err is None else f"{err:.3f} px"),
        ("mean track length", "-" if trk is None else f"{trk:.2f}"),
        ("SIFT keypoints / image", f"{summary['mean_keypoints']:.0f}"),
        ("verified image pairs", str(summary["verified_pairs"])),
        ("time extract / match / map", " / ".join(f"{sec.get(k, 0):.1f}" for k in ("extract", "match", "map")) + " s"),
        ("time total", f"{sec.get('total', sum(sec.values())):.1f} s"),
    ]
    for row in rows:
        tab.add_row(*row)
    console.print(tab)
    cmp = summary.get("comparison")
    if cmp:
        tab = Table(title=f"cameras vs known ({cmp['matched']} images, Umeyama on centres)")
        for col in ("", "mean", "median", "max"):
            tab.add_column(col, justify="right")
        for key, label, fmt in (("rotation_deg", "rotation error (deg)", "{:.3f}"),
                                ("relative_rotation_deg", "pairwise rel. rotation (deg)", "{:.3f}"),
                                ("centre_rel", "centre error / cam. radius", "{:.4f}"),
                                ("focal_ratio", "focal SfM / known", "{:.4f}"),
                                ("aspect_ratio", "fy/fx SfM / known", "{:.4f}")):
            tab.add_row(label, *(fmt.format(cmp[key][k]) for k in ("mean", "median", "max")))
        console.print(tab)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/sfm.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", type=Path, help="folder with images/ (a COLMAP capture, or just images)")
    p.add_argument("--out", type=Path, required=True, help="the COLMAP capture to write (images, labels, sparse/0)")
    p.add_argument("--camera-model", default="SIMPLE_RADIAL", choices=CAMERA_MODELS,
                   help="the one shared camera's model (default: SIMPLE_RADIAL, COLMAP's own: one focal length and "
                        "k1; SIMPLE_PINHOLE for distortion-free images; PINHOLE's separate fx, fy can drift apart "
                        "in weak geometry)")
    p.add_argument("--max-features", type=int, default=8192, help="SIFT features per image (default: 8192)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every stage (default: 2)")
    p.add_argument("--peak-threshold", type=float, default=0.0,
                   help="SIFT peak threshold; lower finds more features in flat images (default: COLMAP's 0.0067)")
    p.add_argument("--max-image-size", type=int, default=-1, help="SIFT downsizes larger images (default: full size)")
    p.add_argument("--init-min-inliers", type=int, default=100,
                   help="verified matches the initial image pair needs (default: COLMAP's 100)")
    p.add_argument("--abs-pose-min-inliers", type=int, default=30,
                   help="2D-3D inliers to register a further image (default: COLMAP's 30)")
    p.add_argument("--min-registered", type=float, default=0.5,
                   help="fail when fewer than this fraction of the images register (default: 0.5)")
    p.add_argument("--colmap", action="append", default=[], metavar="STAGE.FIELD=VALUE",
                   help="any further pycolmap option; STAGE: reader (ImageReaderOptions), extract "
                        "(FeatureExtractionOptions), match (FeatureMatchingOptions), verify (TwoViewGeometryOptions), "
                        "map (IncrementalPipelineOptions); e.g. map.mapper.init_min_tri_angle=8 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="COLMAP's random seed (default: 0)")
    p.add_argument("--known", type=Path, default=None,
                   help="capture or sparse folder with the true cameras to compare with "
                        "(default: the scene's own sparse/ if it has one)")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison with known cameras")
    p.add_argument("--work", type=Path, default=None,
                   help="keep the database and all models here (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=None, help="write the summary here (default: OUT/sfm.json)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from pcf_gs.atomic import write_json_atomic
    from pcf_gs.errors import DataError

    args = parse_args(argv)
    opts = SfmOptions(camera_model=args.camera_model, max_features=args.max_features, threads=args.threads,
                      peak_threshold=args.peak_threshold, max_image_size=args.max_image_size,
                      init_min_inliers=args.init_min_inliers, abs_pose_min_inliers=args.abs_pose_min_inliers,
                      min_registered=args.min_registered, seed=args.seed, verbose=args.verbose,
                      extra=tuple(args.colmap))
    summary = None
    try:
        summary = run_sfm(args.scene, args.out, opts, work=args.work, overwrite=args.overwrite)
        known = args.known
        if known is None and colmap.find_sparse_dir(args.scene) is not None:
            known = args.scene
        if known is not None and not args.no_compare:
            cmp = compare_dirs(args.out, known)
            summary["comparison"] = {k: v for k, v in cmp.items() if k != "per_image"}
            summary["comparison"]["known"] = str(known)
            summary["comparison"]["per_image"] = cmp["per_image"]
    except SfmError as e:
        if isinstance(e, SfmFailed):
            print_summary(e.summary)
            if args.json:
                write_json_atomic(args.json, {**e.summary, "error": str(e)})
        print(f"tools/sfm.py: {e}", file=sys.stderr)
        return e.status
    except DataError as e:
        print(f"tools/sfm.py: {e}", file=sys.stderr)
        return 1
    print_summary(summary)
    write_json_atomic(args.json or args.out / "sfm.json", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
