"""What the viewer shows: a splat scene with optional per-Gaussian labels, loaded from any target.

``load_target(path)`` accepts

=========================  ==================================================================
target                     what is read
=========================  ==================================================================
run directory              ``checkpoint.pt`` (Gaussians, classes, cameras); labels from
                           ``RUN/segment/`` or a sibling ``segment/`` when its per-Gaussian
                           IDs match the checkpoint (``pcf-gs segment`` output)
demo output                ``OUT/run`` + ``OUT/segment`` (what ``pcf-gs demo`` writes)
segmentation output        ``scene_labeled.ply`` + ``objects.json`` (``segment --export-ply``);
                           without the PLY, ``gaussian_*_ids.npy`` + the run named in
                           ``segment.json``
PLY file                   any 3DGS PLY; a labelled one (``instance_id``, ``semantic_id``,
                           ``inst_var_*`` columns) with an ``objects.json`` beside it gets
                           its labels back, any other shows RGB only
=========================  ==================================================================

Everything is held in the original world frame (the frame of the exported
PLY files), so the viewer's exports line up with ``segment --export-ply``.
Nothing here touches torch rendering or viser: it is plain data, unit-tested
on its own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pcf_gs.errors import UserError
from pcf_gs.splats.export import distinct_colors
from pcf_gs.splats.formats import read_splats
from pcf_gs.splats.ply import Splats

if TYPE_CHECKING:
    from pcf_gs.lift.run import Run

log = logging.getLogger("pcf_gs")

STUFF = 0  # instance id of stuff / unlabelled Gaussians


@dataclass
class ObjectInfo:
    """One row of the objects panel (the same fields as ``objects.json``)."""

    id: int
    cls: str
    num_gaussians: int
    color: tuple[int, int, int]  # uint8 RGB, the colour objects.json gives the object

    def label(self) -> str:
        return f"#{self.id} {self.cls} ({self.num_gaussians:,} Gaussians)"


@dataclass
class CameraPreset:
    """A camera to jump to (a training/test view, or one made from the scene's extent).

    ``c2w`` [4,4] camera-to-world, OpenCV axes (x right, y down, z forward), world units;
    ``fov_y`` vertical field of view in radians; ``aspect`` width / height.
    """

    name: str
    c2w: np.ndarray
    fov_y: float
    aspect: float = 1.0


@dataclass
class ViewScene:
    """A splat scene as the viewer sees it.

    Attributes:
        splats: the Gaussians, world frame, N of them (the export source).
        sh_degree: SH degree the colours use (from the number of ``f_rest`` coefficients).
        instance_ids: [N] int32 object id per Gaussian (0 = stuff / none), or None (no labels).
        semantic_ids: [N] int32 class per Gaussian, or None.
        variance: [N] float32 activated instance-embedding variance (mean over the
            embedding dimensions), or None (deterministic embedding or a plain PLY).
        class_names: class index -> name ([] when unknown).
        objects: the objects panel rows, sorted by id.
        cameras: camera presets (the first is the initial view).
        up: [3] world up direction (unit vector).
        source: one-line description of where it came from.
        notes: things the user should know (e.g. why a mode is unavailable).
        version: bumped on every live update (train --viewer), so renderers drop caches.
        raster: the rasterizer keywords the model was trained with (a run's ``render.kw()``: eps2d,
            rasterize_mode); gsplat's defaults for splat files, which do not record them.
    """

    splats: Splats
    sh_degree: int = 0
    instance_ids: np.ndarray | None = None
    semantic_ids: np.ndarray | None = None
    variance: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    objects: list[ObjectInfo] = field(default_factory=list)
    cameras: list[CameraPreset] = field(default_factory=list)
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))
    source: str = ""
    notes: list[str] = field(default_factory=list)
    version: int = 0
    raster: dict = field(default_factory=lambda: {"eps2d": 0.3, "rasterize_mode": "classic"})

    def __len__(self) -> int:
        return len(self.splats)

    @property
    def has_instances(self) -> bool:
        return self.instance_ids is not None

    @property
    def has_semantics(self) -> bool:
        return self.semantic_ids is not None

    @property
    def has_variance(self) -> bool:
        return self.variance is not None

    def object(self, oid: int) -> ObjectInfo | None:
        for o in self.objects:
            if o.id == oid:
                return o
        return None

    def object_colors(self) -> np.ndarray:
        """[max_id + 1, 3] uint8 colour table indexed by instance id (row 0 unused)."""
        n = max([o.id for o in self.objects], default=0) + 1
        if self.instance_ids is not None and len(self.instance_ids):
            n = max(n, int(self.instance_ids.max()) + 1)
        table = distinct_colors(n)  # export_objects' fallback palette
        for o in self.objects:
            table[o.id] = o.color
        return table

    def class_name(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) else f"class {c}"


# --------------------------------------------------------------------------- #
# building blocks


def sh_degree_of(splats: Splats) -> int:
    """SH degree from the coefficient count: S - 1 = (d + 1)^2 - 1 rest coefficients."""
    s = splats.shN.shape[1] + 1
    d = int(round(np.sqrt(s))) - 1
    if (d + 1) ** 2 != s:
        raise UserError(f"{splats.shN.shape[1]} SH rest coefficients per channel is not (d+1)^2-1 for any degree")
    return d


def objects_table(instance_ids: np.ndarray, semantic_ids: np.ndarray | None, class_names: list[str],
                  colors: dict[int, tuple[int, int, int]] | None = None) -> list[ObjectInfo]:
    """Objects panel rows from per-Gaussian labels (class = majority semantic id, as export_objects)."""
    ids = sorted(int(i) for i in np.unique(instance_ids) if i > 0)
    palette = distinct_colors(max(ids, default=0) + 1)
    out = []
    for i in ids:
        m = instance_ids == i
        if semantic_ids is not None:
            sem = int(np.bincount(semantic_ids[m].clip(0)).argmax())
            name = class_names[sem] if sem < len(class_names) else str(sem)
        else:
            name = "object"
        col = tuple(int(c) for c in (colors or {}).get(i, palette[i]))
        out.append(ObjectInfo(i, name, int(m.sum()), col))  # type: ignore[arg-type]
    return out


def read_objects_json(path: Path) -> dict[int, dict]:
    """id -> row of an ``objects.json`` (empty if the file is missing or unreadable)."""
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text())["objects"]
        return {int(r["id"]): r for r in rows}
    except (ValueError, KeyError, TypeError) as e:
        log.warning("%s: ignored (%s)", path, e)
        return {}


def up_from_cameras(c2w: np.ndarray) -> np.ndarray:
    """World up as the mean of the cameras' up vectors (-y in OpenCV), unit length."""
    up = -np.asarray(c2w)[:, :3, 1].mean(0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-6 else np.array([0.0, -1.0, 0.0])


def orbit_camera(center: np.ndarray, radius: float, up: np.ndarray, fov_y: float = np.radians(50.0),
                 name: str = "overview") -> CameraPreset:
    """A camera looking at ``center`` from ``radius`` away, tilted 25 degrees down, ``up`` up."""
    up = up / np.linalg.norm(up)
    side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    back = np.cross(side, up)
    direction = np.cos(np.radians(25)) * back + np.sin(np.radians(25)) * up  # from centre to camera
    pos = center + radius * direction
    fwd = (center - pos) / np.linalg.norm(center - pos)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, pos
    return CameraPreset(name, c2w, float(fov_y))


def extent_camera(means: np.ndarray, up: np.ndarray) -> CameraPreset:
    """An overview camera from the Gaussians' robust extent (median centre, 90th-percentile radius)."""
    if len(means) == 0:
        return orbit_camera(np.zeros(3), 3.0, up)
    c = np.median(means, axis=0)
    r = float(np.percentile(np.linalg.norm(means - c, axis=1), 90)) or 1.0
    return orbit_camera(c, 2.2 * r, up)


def cameras_of_run(run: Run) -> tuple[list[CameraPreset], np.ndarray]:
    """Camera presets (world frame) of a run's training and test views, and the up vector [3]."""
    c2w = run.normalization.scene_to_world_c2w(np.asarray(run.c2w, dtype=np.float64))
    K = np.asarray(run.K, dtype=np.float64)
    W, H = run.width, run.height
    test = set(run.test_ids)
    cams = []
    for i, name in enumerate(run.frames):
        fov = 2 * np.arctan(0.5 * H / K[i, 1, 1])
        split = "test" if i in test else "train"
        cams.append(CameraPreset(f"{split} view {name}", c2w[i], float(fov), W / H))
    return cams, up_from_cameras(c2w)


def empty_scene(note: str = "") -> ViewScene:
    """A scene with no Gaussians (a placeholder until the first live update)."""
    z = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    s = Splats(z(0, 3), z(0, 3), z(0, 4), z(0), z(0, 1, 3), z(0, 0, 3))
    return ViewScene(splats=s, source=note, notes=[], cameras=[], up=np.array([0.0, 0.0, 1.0]))


# --------------------------------------------------------------------------- #
# loaders


def from_run(run: Run, instance_ids: np.ndarray | None = None,
             semantic_ids: np.ndarray | None = None, object_rows: dict[int, dict] | None = None,
             source: str = "") -> ViewScene:
    """A scene from a run's model (a checkpoint, or a live Trainer's via :meth:`Run.from_params`).

    The params are in the normalised scene frame; they are moved to the world frame
    with ``run.normalization`` (:func:`pcf_gs.splats.export.params_to_splats`).
    instance_ids, semantic_ids: [N] per Gaussian; semantic ids default to the argmax of the Gaussians' logits.
    """
    from pcf_gs.splats.export import params_to_splats

    spec = run.spec
    splats = params_to_splats(run.params, spec, run.normalization)
    names = run.classes.names
    if semantic_ids is None:
        semantic_ids = run.params["semantics"].detach().cpu().argmax(1).numpy().astype(np.int32)
    variance = None
    notes = []
    if spec.embedding == "probabilistic":
        variance = splats.extra["inst_var"].mean(1).astype(np.float32)
    else:
        notes.append("deterministic embedding: no variance to show")
    objects: list[ObjectInfo] = []
    if instance_ids is not None:
        colors = {i: tuple(r["color"]) for i, r in (object_rows or {}).items() if "color" in r}
        objects = objects_table(instance_ids, semantic_ids, names, colors)
    else:
        notes.append("no segmentation yet: run `pcf-gs segment RUN --out RUN/segment` for objects")
    cams, up = cameras_of_run(run)
    return ViewScene(
        splats=splats, sh_degree=spec.sh_degree, instance_ids=instance_ids, semantic_ids=semantic_ids,
        variance=variance, class_names=names, objects=objects, cameras=cams, up=up, source=source, notes=notes,
        raster=run.config.render.kw(),
    )


def _segment_labels(seg: Path, n: int) -> tuple[np.ndarray | None, np.ndarray | None, dict[int, dict]]:
    """Per-Gaussian (instance, semantic) ids of a segment folder if they match ``n`` Gaussians."""
    ip, sp = seg / "gaussian_instance_ids.npy", seg / "gaussian_semantic_ids.npy"
    if not ip.is_file():
        return None, None, {}
    inst = np.load(ip).astype(np.int32)
    if len(inst) != n:
        log.warning("%s: %d labels for %d Gaussians (the run changed after segmenting); labels ignored", ip, len(inst), n)
        return None, None, {}
    sem = np.load(sp).astype(np.int32) if sp.is_file() else None
    if sem is not None and len(sem) != n:
        sem = None
    return inst, sem, read_objects_json(seg / "objects.json")


def _segment_is_of(seg: Path, run: Path) -> bool:
    """Whether ``seg/segment.json`` names ``run`` (by folder name: the path was as typed then)."""
    try:
        return Path(json.loads((seg / "segment.json").read_text())["run"]).name == run.name
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_run_dir(run: Path, segment: Path | None = None) -> ViewScene:
    """A run directory (``checkpoint.pt``), with labels from ``segment`` or RUN/segment when present."""
    from pcf_gs.lift.run import Run

    loaded = Run.load(run)
    n = len(loaded.params["means"])
    inst = sem = None
    rows: dict[int, dict] = {}
    candidates = [segment] if segment is not None else [run / "segment", run.parent / "segment"]
    used = None
    for seg in candidates:
        if seg == run.parent / "segment" and not _segment_is_of(seg, run):
            continue  # a sibling segment/ made from another run
        if seg is not None and seg.is_dir():
            inst, sem, rows = _segment_labels(seg, n)
            if inst is not None:
                used = seg
                break
    src = f"run {run}" + (f" + labels from {used}" if used else "")
    return from_run(loaded, inst, sem, rows, source=src)


def _run_of_segment(seg: Path) -> Path | None:
    """The run a segment folder was made from (``segment.json``'s ``run``), if it still exists."""
    p = seg / "segment.json"
    if not p.is_file():
        return None
    try:
        run = Path(json.loads(p.read_text())["run"])
    except (ValueError, KeyError, TypeError):
        return None
    for cand in (run, seg.parent / run.name, seg.parent / "run"):
        if (cand / "checkpoint.pt").is_file():
            return cand
    return None


def load_ply_file(path: Path, objects_json: Path | None = None, run: Path | None = None) -> ViewScene:
    """Any splat file (:func:`~pcf_gs.splats.formats.read_splats`: PLY, SPZ, SOG, glb, ...); labels when
    it has ``instance_id``/``semantic_id`` columns (PLY, glb and gsplat checkpoints can carry them).

    Class names and cameras come from ``run`` (a run directory) when given;
    object colours from ``objects_json`` (default: ``objects.json`` beside the file).
    """
    splats = read_splats(path)
    inst = splats.extra.get("instance_id")
    sem = splats.extra.get("semantic_id")
    var = splats.extra.get("inst_var")
    notes = []
    names: list[str] = []
    cams: list[CameraPreset] = []
    up = None
    if run is not None:
        from pcf_gs.lift.run import Run

        loaded = Run.load(run)
        names = loaded.classes.names
        cams, up = cameras_of_run(loaded)
    rows = read_objects_json(objects_json if objects_json is not None else path.parent / "objects.json")
    if not names and rows and sem is not None:
        k = int(sem.max()) + 1 if len(sem) else 0
        names = [f"class {c}" for c in range(k)]
        for r in rows.values():
            if 0 <= int(r.get("semantic_id", -1)) < k:
                names[int(r["semantic_id"])] = str(r["class"])
    objects: list[ObjectInfo] = []
    if inst is None:
        notes.append("plain 3DGS PLY: RGB and depth only (no pcf-gs labels in this file)")
    else:
        colors = {i: tuple(r["color"]) for i, r in rows.items() if "color" in r}
        objects = objects_table(inst, sem, names, colors)
    if up is None:
        up = np.array([0.0, -1.0, 0.0])  # the 3DGS / COLMAP habit
    cams = cams or [extent_camera(splats.means, up)]
    return ViewScene(
        splats=splats, sh_degree=sh_degree_of(splats), instance_ids=inst, semantic_ids=sem,
        variance=None if var is None else var.mean(1).astype(np.float32), class_names=names, objects=objects,
        cameras=cams, up=up, source=f"PLY {path}", notes=notes,
        **({"raster": loaded.config.render.kw()} if run is not None else {}),
    )


def load_target(target: str | Path) -> ViewScene:
    """Load whatever ``pcf-gs view TARGET`` was given (see the module docstring)."""
    t = Path(target)
    if not t.exists():
        raise UserError("not found (expected a run directory, a segment output or a splat file)", t)
    if t.is_dir() and (t / "meta.json").is_file() and not (t / "objects.json").is_file():  # an unbundled SOG
        return load_ply_file(t / "meta.json")
    if t.is_file():
        from pcf_gs.splats.formats import format_of

        try:
            format_of(t, reading=True)
        except UserError:
            raise UserError("not a splat file (expected a run directory, a segment output or a .ply/.spz/.sog/.glb/.splat/.pt file)", t) from None
        seg = t.parent
        return load_ply_file(t, run=_run_of_segment(seg) if (seg / "segment.json").is_file() else None)
    if (t / "checkpoint.pt").is_file():
        return load_run_dir(t)
    if (t / "run" / "checkpoint.pt").is_file():  # pcf-gs demo output
        seg = t / "segment"
        return load_run_dir(t / "run", seg if seg.is_dir() else None)
    if (t / "scene_labeled.ply").is_file():
        return load_ply_file(t / "scene_labeled.ply", t / "objects.json", run=_run_of_segment(t))
    if (t / "objects.json").is_file():  # a `pcf-gs export` tree in another format
        from pcf_gs.splats.formats import FORMATS

        for stem in ("scene_labeled", "scene"):
            for f in FORMATS.values():
                if (t / (stem + f.ext)).is_file():
                    return load_ply_file(t / (stem + f.ext), t / "objects.json", run=_run_of_segment(t))
    if (t / "gaussian_instance_ids.npy").is_file():
        run = _run_of_segment(t)
        if run is None:
            raise UserError("segment output without scene_labeled.ply and its run is gone "
                            "(re-run `pcf-gs segment --export-ply`)", t)
        return load_run_dir(run, t)
    raise UserError("nothing to view here (no checkpoint.pt, scene_labeled.ply or gaussian_instance_ids.npy)", t)
