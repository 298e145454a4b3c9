"""Typed configuration: dataclasses, YAML presets and ``--set`` overrides.

A config is a :class:`Config` made of one dataclass per section. It is built
in three layers, each overriding the previous one:

1. the dataclass defaults below (``configs/default.yaml`` mirrors them);
2. a YAML preset chosen with ``--config NAME|PATH`` (NAME looks in ``configs/``);
3. repeated ``--set section.key=value`` overrides (values parsed as YAML).

Every number declares its valid range next to its type, ``Annotated[int, Range(ge=1)]``;
:func:`_update`, which ``--set``, presets, saved configs and the data flags
(``--downscale``) all go through, checks it (and that every float is finite).
Unknown sections or keys, values of the wrong type and values out of range are
user errors. The resolved config is saved with every run (:func:`save_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from pcf_gs.errors import UserError
from pcf_gs.resources import presets_dir
from pcf_gs.atomic import write_text_atomic


@dataclass(frozen=True)
class Range:
    """The valid interval of a numeric setting: ``ge``/``gt`` (>=, >) and ``le``/``lt`` (<=, <), each
    optional. Floats must also be finite; integers must fit in a signed 64-bit integer (torch and numpy
    take them)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, value: float) -> str | None:
        """Why ``value`` is out of range (e.g. "must be >= 1"), or None if it is fine."""
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            return "is too large"
        for bound, ok, op in ((self.ge, value >= (self.ge or 0), ">="), (self.gt, value > (self.gt or 0), ">"),
                              (self.le, value <= (self.le or 0), "<="), (self.lt, value < (self.lt or 0), "<")):
            if bound is not None and not ok:
                return f"must be {op} {bound:g}" if isinstance(bound, float) else f"must be {op} {bound}"
        return None

    def describe(self) -> str:
        parts = [f"{op} {b}" for b, op in ((self.ge, ">="), (self.gt, ">"), (self.le, "<="), (self.lt, "<")) if b is not None]
        return " and ".join(parts) or "any"


@dataclass
class DataConfig:
    """How a scene folder is read."""

    format: Literal["auto", "messy_rooms", "colmap", "nerfstudio", "panoptic_lifting"] = "auto"
    downscale: Annotated[int, Range(ge=1)] = 1
    """Integer factor images are shrunk by on load (label maps: nearest)."""
    max_size: Annotated[int, Range(ge=0)] = 0
    """If > 0, further shrink so the longer image side is at most this (pixels)."""
    test_fraction: Annotated[float, Range(ge=0, lt=1)] = 0.2
    """Messy Rooms: fraction of frames (the last ones) held out (layouts with a split file use it)."""
    test_every: Annotated[int, Range(ge=0)] = 8
    """COLMAP / nerfstudio: every n-th image (by name: 0, n, 2n, ...) is a test view, as in gsplat and
    3DGS; 0 = no test views. A nerfstudio split list in transforms.json wins."""
    skip_missing: bool = False
    """COLMAP / nerfstudio: train without images that the poses list but the disk lacks (else an error)."""
    normalize: bool = True
    """Centre and scale the scene so cameras fit in a unit sphere; recorded to undo on export."""
    load_ground_truth: bool = True


@dataclass
class ModelConfig:
    """Per-Gaussian attributes."""

    embedding: Literal["probabilistic", "deterministic"] = "probabilistic"
    """probabilistic: N(mu, diag(var)) with the PP kernel (PCF-Lift);
    deterministic: mu only with an RBF kernel of fixed variance (Contrastive Lift)."""
    embed_dim: Annotated[int, Range(ge=1, le=64)] = 8
    """Dimensions N of the instance embedding (PCF-Lift and its released code: 3). 8: fewer small objects
    merge into their neighbours in the embedding (the limit at 50-100 objects: MVOA with ground-truth
    prototypes scores no better, docs/results.md). PQ^scene, paper noise, W = 9, 3 seeds each: 84.5 -> 87.5
    (25 objects), 76.0 -> 80.2 (50), 67.5 -> 72.9 (100); better on all 9 scenes (+1.1 to +6.4).
    The feature render carries 4N + classes channels; on the sampled-pixel CPU path that costs little."""
    var_floor: Annotated[float, Range(ge=0)] = 0.01
    """Minimum variance: var = ELU(raw) + 1 + var_floor."""
    deterministic_var: Annotated[float, Range(gt=0)] = 0.5
    """Fixed isotropic variance used by the deterministic embedding."""
    sh_degree: Annotated[int, Range(ge=0, le=3)] = 3
    init_points: Annotated[int, Range(ge=1)] = 20000
    """Random initial Gaussians when the format has no SfM points."""
    init_opacity: Annotated[float, Range(gt=0, lt=1)] = 0.1


@dataclass
class RenderConfig:
    backend: Literal["auto", "cpu", "gsplat"] = "auto"
    eps2d: Annotated[float, Range(ge=0)] = 0.3
    """2D blur added to every projected covariance (px^2)."""
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    """gsplat's ``rasterize_mode``: "antialiased" scales opacities by sqrt(det S / det(S + eps2d I)) (Mip-Splatting's
    2D filter), for scenes viewed at other resolutions than trained. Used by every render of the run (train,
    segment, eval, viewer), so set it before training."""

    def kw(self) -> dict:
        """The rasterizer keywords of every render of the run: ``rasterize(..., **cfg.render.kw())``."""
        return {"eps2d": self.eps2d, "rasterize_mode": self.rasterize_mode}


@dataclass
class TrainConfig:
    """Optimisation schedule and loss weights (PCF-Lift Eqs. 2-6)."""

    iterations: Annotated[int, Range(ge=1)] = 30000
    warmup_iterations: Annotated[int, Range(ge=0)] = 5000
    """Appearance + semantics only until here."""
    cross_view_start: Annotated[int, Range(ge=0)] = 20000
    """The cross-view loss (Eq. 5) is on from here to the end."""
    views_per_step: Annotated[int, Range(ge=1)] = 1
    """View groups per step (a view; in the cross-view stage a neighbouring pair), over all processes: the loss is
    their mean. With ``pcf-gs train --distributed`` on R processes each renders views_per_step / R of them (it
    must divide evenly), and R processes give the run of one process (:mod:`pcf_gs.lift.distributed`)."""
    pixels_per_view: Annotated[int, Range(ge=1)] = 1024
    semantic_pixels: Annotated[int, Range(ge=0)] = 2048
    """Valid pixels per view drawn for the semantic loss. The feature render (semantics and embeddings) then
    composites only those and the instance pixels (:func:`pcf_gs.render.rasterize.rasterize_pixels`, on CPU),
    reusing the colour pass's projection and tile lists, instead of every pixel. 0: every valid pixel, from a
    dense render (also used when ``densify_feature_grad`` needs geometry gradients)."""
    balanced_sampling: Annotated[float, Range(ge=0, le=1)] = 0.25
    """Fraction of the instance-loss pixels drawn per 2D instance (uniform over instances) rather than
    uniformly over thing pixels, so small objects get samples too (uniform sampling gives a 30-pixel object
    among 4000 thing pixels ~2 of 512). 0.25 on the v2 grid (W = 9, 3 seeds): (f) PQ^scene +1.4 on average,
    25 objects level, 100 objects 74.9 +- 3.6 -> 77.8 +- 0.5; 0.5 had cost 25 objects 10 PQ on one seed with
    ``embed_dim`` 3 (docs/results.md). 0: the released code's uniform sampling."""
    temperature: Annotated[float, Range(gt=0)] = 1.0
    """Softmax temperature of the pixel contrastive loss (Eq. 2; released code: 1). Lower sharpens the
    separation but is not a free win (prob + MVOA, PQ^scene): 0.2 gave 100 objects 32.6 -> 39.0 but 25
    objects fell to 54.1; 0.1 collapsed at 100 objects (9.8). docs/results.md. Used only with
    ``balanced_temperature=false``."""
    balanced_temperature: bool = True
    """Per anchor pixel, the temperature at which perfectly separated embeddings give its positives half the
    softmax mass, 1/t = max(1, log(negatives / positives)) (:func:`pcf_gs.lift.losses.pixel_contrastive_loss`);
    ``temperature`` is then unused. Follows the number and size of the objects in view, not the scene.
    On (default; false = the fixed ``temperature``): PQ^scene 81.9 -> 84.5, 70.8 -> 76.0, 63.4 -> 67.5 at
    25 / 50 / 100 objects (paper noise, 3 seeds each; better on all 9 scenes, +1.8 to +8.2; docs/results.md)."""
    w_semantic: Annotated[float, Range(ge=0)] = 0.1
    w_contrastive: Annotated[float, Range(ge=0)] = 1.0
    w_concentration: Annotated[float, Range(ge=0)] = 0.1
    w_reg: Annotated[float, Range(ge=0)] = 0.001
    w_cross: Annotated[float, Range(ge=0)] = 0.05
    tau: Annotated[float, Range(ge=0, le=1)] = 0.9
    ema_momentum: Annotated[float, Range(ge=0, le=1)] = 0.9
    ssim_lambda: Annotated[float, Range(ge=0, le=1)] = 0.2
    detach_geometry: bool = True
    """Instance and semantic losses update only their own attributes."""
    lr_means: Annotated[float, Range(gt=0)] = 1.6e-4
    lr_scales: Annotated[float, Range(gt=0)] = 5e-3
    lr_quats: Annotated[float, Range(gt=0)] = 1e-3
    lr_opacities: Annotated[float, Range(gt=0)] = 5e-2
    lr_sh0: Annotated[float, Range(gt=0)] = 2.5e-3
    lr_shN: Annotated[float, Range(gt=0)] = 1.25e-4
    lr_semantic: Annotated[float, Range(gt=0)] = 5e-3
    lr_embedding: Annotated[float, Range(gt=0)] = 2e-2
    """Adam step of the instance embeddings (mu and var). The previous 5e-3 left objects merged on a 25-object
    synthetic scene: 2e-2 gave +7.6 PQ^scene with probabilistic embeddings and MVOA, +8.4 with HDBSCAN, and
    +12 to +14 with deterministic embeddings (docs/results.md)."""
    densify: bool = True
    strategy: Literal["default", "mcmc"] = "default"
    """Densification: gsplat's DefaultStrategy (clone/split/prune), or MCMCStrategy (CUDA only)."""
    densify_from: Annotated[int, Range(ge=0)] = 500
    densify_until: Annotated[int, Range(ge=0)] = 15000
    densify_every: Annotated[int, Range(ge=1)] = 100
    grow_grad2d: Annotated[float, Range(gt=0)] = 0.0002
    absgrad: bool = False
    """AbsGS: the densification statistic sums each pixel's absolute 2D-mean gradient (gsplat's ``absgrad``), so
    gradients of opposite sign no longer cancel on large Gaussians. Raise ``grow_grad2d`` with it (gsplat uses 0.0008)."""
    densify_feature_grad: Annotated[float, Range(ge=0)] = 0.0
    """Weight of the instance/semantic render's 2D-mean gradient added to the colour render's in the densification
    statistic (0 = colour only, as 3DGS). With detached geometry the feature losses never move the Gaussians, so
    without it a Gaussian straddling two objects is split only if the colour asks; 1 = the gradient the total
    loss would have on the 2D means."""
    opacity_reset_every: Annotated[int, Range(ge=1)] = 3000
    max_gaussians: Annotated[int, Range(ge=0)] = 0
    """Cap on the number of Gaussians (0 = none); growth pauses at the cap."""
    sh_increase_every: Annotated[int, Range(ge=1)] = 1000
    """Raise the SH degree in use by one every this many steps (3DGS)."""
    cross_view_neighbours: Annotated[int, Range(ge=1)] = 4
    """The second view of a cross-view pair is one of this many nearest cameras."""
    cross_view_min_samples: Annotated[int, Range(ge=0)] = 10
    """A 2D instance enters the cross-view loss when more than this many of the step's sampled pixels
    (``pixels_per_view``) fall on it: its centroid is a mean over samples, not over the mask."""
    max_nonfinite_steps: Annotated[int, Range(ge=1)] = 20
    """Stop after this many consecutive steps with a non-finite loss."""
    checkpoint_every: Annotated[int, Range(ge=1)] = 2000
    log_every: Annotated[int, Range(ge=1)] = 100


@dataclass
class SegmentConfig:
    clustering: Literal["mvoa", "hdbscan"] = "mvoa"
    min_pixels: Annotated[int, Range(ge=0)] = 10
    """MVOA: smallest 2D mask (pixels) that becomes a node."""
    node_pixels: Literal["mask", "thing"] = "mask"
    """MVOA: the pixels of a 2D mask that make its node: all of them (``mask``), or only those the model renders
    as a thing class (``thing``, the released code), which keeps boundary-noise pixels on the room out of the
    node means."""
    threshold: Annotated[float, Range(le=1)] = 0.5
    """MVOA suppression threshold T; < 0 means adaptive (the released code). The adaptive T rises with object
    density (0.71 at 25 objects, 0.85 at 100 on synthetic scenes) and then keeps one object's nodes from different
    views apart: a fixed 0.5 gave +6 to +12 PQ^scene at 25 and 100 objects (docs/results.md)."""
    score_threshold: Annotated[float, Range(ge=0, le=1)] = 0.9
    """MVOA: nodes with a concentration score below this cannot become prototypes (0 = the paper: any node)."""
    min_views: Annotated[int, Range(ge=1)] = 2
    """MVOA: a prototype must be the best match of nodes from at least this many training views (1 = off)."""
    refine_rounds: Annotated[int, Range(ge=0)] = 10
    """MVOA: after association, move each prototype to the pixel-weighted mean of its member nodes, up to this
    many rounds (k-means with the PP kernel; stops when no node changes prototype; 0 = the paper's single-view
    prototypes). +0.4 to +6 PQ^scene on 8 of 9 trained models measured, -3.5 on one (docs/results.md)."""
    hdbscan_samples: Annotated[int, Range(ge=1)] = 20000
    hdbscan_min_cluster_size: Annotated[int, Range(ge=2)] = 50
    semantics: Literal["vote", "learned"] = "vote"
    """Pixel/Gaussian classes: ``vote`` = the training views' 2D classes voted onto the Gaussians by blending
    weight (a multi-view majority; foreground IoU 86.0 against ``learned``'s 72.4 on a 25-object scene), ``learned`` = the semantic head."""
    vote_rule: Literal["majority", "share"] = "majority"
    """With ``semantics=vote``: each Gaussian takes its vote's most frequent class (``majority``, one-hot) or the
    vote's class shares (``share``, the rule before 2026-12), which the views then blend
    (:func:`~pcf_gs.segment.gaussian_labels.gaussian_semantics_vote`). ``majority``: +0.8 PQ^scene on
    average over the 9 v2 grid models of (f), +0.0 to +2.4 per scene, the most at 100 objects (docs/results.md).
    The label maps use it; the Gaussian labels (``--gaussian-labels vote``) vote from the shares' pixel classes
    (``GaussianClasses.by_shares``: majority classes worsened the exported objects of a short toy run)."""
    resolution: Literal["native", "train"] = "native"
    """Size of the label maps ``segment`` writes: ``native``, each view's image size before ``data.downscale`` /
    ``data.max_size`` (the splats render at any size: the cameras' K is scaled), which is what the ground truth
    and the official scorers use; ``train``, the size the run was trained at."""
    chunk_views: Annotated[int, Range(ge=1)] = 8
    """Views per chunk in segment's passes over the views (docs/scale.md): each view is rendered and reduced (to
    node statistics, or to votes), and a chunk's votes are buffered, then folded into the per-Gaussian table.
    The buffer, about chunk_views x pixels x Gaussians per pixel x 12 bytes (17 MB per view at 256^2), is what
    this bounds: peak memory grows with it, never with the number of views (docs/scale.md, docs/benchmarks.md)."""


@dataclass
class Config:
    seed: Annotated[int, Range(ge=0, lt=2**32)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- #
# locating presets


def config_dirs() -> list[Path]:
    """Folders searched for ``--config NAME``: $PCF_GS_CONFIG_DIR, ./configs, the presets shipped in the package."""
    dirs = []
    if os.environ.get("PCF_GS_CONFIG_DIR"):
        dirs.append(Path(os.environ["PCF_GS_CONFIG_DIR"]))
    dirs.append(Path.cwd() / "configs")
    dirs.append(presets_dir())
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def available_presets() -> list[str]:
    names: set[str] = set()
    for d in config_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def resolve_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        if not p.is_file():
            raise UserError("config file not found", p)
        return p
    for d in config_dirs():
        cand = d / f"{name_or_path}.yaml"
        if cand.is_file():
            return cand
    raise UserError(
        f"unknown config preset {name_or_path!r}; available: {', '.join(available_presets()) or 'none'}"
    )


# --------------------------------------------------------------------------- #
# dataclass introspection: config files here, generated flags in pcf_gs.cli.synth


def typed_fields(cls) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved annotation) of every field of a dataclass (class or instance);
    string annotations (``from __future__ import annotations``) are evaluated."""
    hints = _hints(cls if isinstance(cls, type) else type(cls), False)
    return [(f, hints[f.name]) for f in fields(cls)]


@functools.lru_cache(maxsize=None)
def _hints(cls: type, extras: bool) -> dict:
    # evaluating string annotations is slow and every --set / config load asks for each field
    return typing.get_type_hints(cls, include_extras=extras)


def field_range(cls, name: str) -> Range | None:
    """The :class:`Range` declared on field ``name`` of dataclass ``cls`` (``Annotated[T, Range(...)]``), or None."""
    tp = _hints(cls if isinstance(cls, type) else type(cls), True)[name]
    if typing.get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if isinstance(m, Range)), None)
    return None


def check_range(value: Any, rng: Range | None) -> str | None:
    """Why ``value`` breaks ``rng`` (or, with no range, why a float is unusable), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return (rng or Range()).violation(value)


def check_setting(key: str, value: Any) -> Any:
    """Coerce and range-check one setting ``section.key`` (the CLI flags' path into the same check);
    raises UserError("must be >= 1")-style messages without a prefix."""
    cfg = Config()
    _update(cfg, _nest(key.split("."), value), "")
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def type_kind(tp) -> tuple[str, tuple]:
    """What an annotation is: ("any", ()), ("literal", choices), ("union", members, None
    type excluded; ``X | None`` and ``Optional[X]`` included), ("list" | "tuple",
    (element type,)), or ("plain", (tp,)) for anything else (bool, int, float, str, ...)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any", ()
    if origin is Literal:
        return "literal", typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return "union", tuple(a for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        return origin.__name__, (typing.get_args(tp) or (Any,))[:1]
    return "plain", (tp,)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str) -> Any:
    """Convert a YAML-parsed ``value`` to the annotated type ``tp`` or raise UserError."""
    kind, args = type_kind(tp)
    if kind == "any":
        return value
    if kind == "literal":
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if kind == "union":
        if value is None and type(None) in typing.get_args(tp):
            return None
        errors = []
        for a in args:
            try:
                return _coerce(value, a, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{where}: bad value {value!r}")
    if kind in ("list", "tuple"):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        seq = [_coerce(v, args[0], where) for v in value]
        return seq if kind == "list" else tuple(seq)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise UserError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (isinstance(value, float) and not math.isfinite(value)) or int(value) != value):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise UserError(f"{where}: cannot set a value of type {_type_name(tp)}")


def _unknown(key: str, known: list[str], where: str) -> UserError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserError(f"{where}: unknown key {key!r}{hint}")


# settings that existed once and were never read: accepted (and ignored) in old runs' config.yaml / checkpoints
RETIRED = {"render.near_plane", "render.far_plane", "train.batch_views"}


def _update(obj: Any, values: dict, where: str) -> None:
    if not isinstance(values, dict):
        raise UserError(f"{where}: expected a mapping, got {values!r}")
    hints = {f.name: tp for f, tp in typed_fields(obj)}
    names = list(hints)
    for key, val in values.items():
        if f"{where}.{key}" in RETIRED:
            continue
        if key not in names:
            raise _unknown(str(key), names, where)
        cur = getattr(obj, key)
        sub = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(cur):
            _update(cur, val if val is not None else {}, sub)
        else:
            value = _coerce(val, hints[key], sub)
            why = check_range(value, field_range(obj, key))
            if why:
                raise UserError(f"{sub}: {why}")
            setattr(obj, key, value)


def _nest(path: list[str], value: Any) -> dict:
    nested: Any = value
    for part in reversed(path):
        nested = {part: nested}
    return nested


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into (["section", "key"], parsed value)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cfg: Config, overrides: list[str] | None) -> Config:
    for text in overrides or []:
        path, value = parse_override(text)
        if ".".join(path) in RETIRED:
            raise UserError(f"--set {text}: {'.'.join(path)} was never used and has been removed")
        try:
            _update(cfg, _nest(path, value), "")
        except UserError as e:
            raise UserError(f"--set {text}: {str(e).split(': ', 1)[-1]}") from None
    return cfg


def load_config(preset: str | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the preset (name in ``configs/`` or a YAML path), then ``--set`` overrides."""
    cfg = Config()
    if preset:
        path = resolve_preset(preset)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise UserError(f"not valid YAML ({str(e).splitlines()[0]})", path) from None
        except UnicodeDecodeError:
            raise UserError("not valid YAML (not UTF-8 text)", path) from None
        except OSError as e:
            raise UserError(f"cannot read ({e.strerror or e})", path) from None
        try:
            _update(cfg, data, "")
        except UserError as e:
            raise UserError(str(e), path) from None
    return apply_overrides(cfg, overrides)


def config_from_dict(data: dict) -> Config:
    cfg = Config()
    _update(cfg, data, "")
    return cfg


def config_to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the fully resolved config (atomically)."""
    write_text_atomic(path, config_to_yaml(cfg))
