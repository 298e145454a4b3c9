"""`pcf-gs segment`: view-consistent panoptic labels for any view, per-Gaussian labels, per-object export.

:func:`run_segment` loads a run and its scene, then :func:`segment_scene` runs four steps, one
function each. Every pass over the views streams: a view is rendered, reduced to what the step
keeps (node statistics, votes folded into a sparse table every ``segment.chunk_views`` views), and
dropped, so memory does not grow with the number of views beyond a few numbers per 2D mask
(docs/scale.md). ``segment --distributed`` shares the views among processes
(:mod:`pcf_gs.segment.distributed`).

1. :func:`collect_nodes`: render (mu, var) for every training view and reduce the pixels of each
   2D instance mask (the 2D model's masks) to a node (:class:`~pcf_gs.segment.mvoa.NodeBuilder`), or,
   for HDBSCAN, to a bounded random sample of pixels.
2. :func:`find_prototypes`: one prototype per object — MVOA (:mod:`pcf_gs.segment.mvoa`) on
   the masks of >= ``segment.min_pixels`` pixels, or, the Contrastive Lift baseline, HDBSCAN
   on sampled thing pixels. Classes per Gaussian (:func:`gaussian_classes`,
   ``segment.semantics``): ``vote`` (default) gives each Gaussian the distribution of the 2D
   classes of the training pixels it blends into (weights = blending weights; a multi-view
   majority that averages out view-inconsistent mask noise); ``learned`` takes the semantic
   head's softmax.
3. :func:`label_views`: pixels of the requested views. Semantic = argmax of the blended
   per-Gaussian class probabilities; thing pixels take the prototype of highest PP kernel
   (instance = index + 1); stuff pixels get instance 0. Writes the label maps and overlays.
4. :func:`label_gaussians` (+ :func:`write_gaussian_labels`): semantic = argmax of their class
   probabilities; thing Gaussians take an instance by ``gaussian_labels``:
   - ``direct``: the prototype of highest K against the Gaussian's own N(mu, var);
   - ``vote`` (default): the pixel labels of all training views voted back onto the Gaussians
     with their blending weights (:mod:`pcf_gs.segment.gaussian_labels`, a sparse
     :class:`~pcf_gs.segment.gaussian_labels.VoteTable`). Stuff pixels vote
     their class in the same pass, so thing vs stuff is voted too; Gaussians that never show in
     any pixel keep their logits and ``direct``. Measured cleaner (docs/results.md, "Gaussian
     labels"): an exported object rendered alone puts a median 2% of its visible alpha on
     neighbouring objects, against 10% with ``direct``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from pcf_gs.atomic import atomic_dir, write_json_atomic
from pcf_gs.config import Config, apply_overrides
from pcf_gs.data.scene import ClassTable
from pcf_gs.errors import UserError
from pcf_gs.lift.model import activated_geometry, render_features, render_rgb
from pcf_gs.lift.run import Run
from pcf_gs.progress import progress_bar
from pcf_gs.segment.distributed import Group
from pcf_gs.segment.gaussian_labels import (
    VoteTable,
    add_view_votes,
    gaussian_labels_direct,
    gaussian_semantics_vote,
    majority,
    render_semantics,
)
from pcf_gs.segment.mvoa import NodeBuilder, PixelSample, assigner, associate, hdbscan_prototypes, refine_prototypes
from pcf_gs.splats.export import distinct_colors, export_objects, params_to_splats

log = logging.getLogger("pcf_gs")


@torch.no_grad()
def render_view_features(run: Run, i: int, cfg: Config, rgb: bool = False) -> dict:
    """Rendered features of view i, each [H, W, D]: mu, var (embedding), semantics (class probabilities);
    with ``rgb`` also rgb [H, W, 3] in [0, 1] (unclamped)."""
    vm, K = run.view(i)
    W, H = run.width, run.height
    backend, raster = cfg.render.backend, cfg.render.kw()
    f = render_features(run.params, run.spec, vm, K, W, H, backend=backend, slow=False, semantic_probs=True, **raster)
    out = {k: v[0] for k, v in f.items()}
    if rgb:
        out["rgb"] = render_rgb(run.params, vm, K, W, H, run.spec.sh_degree, backend=backend, **raster)[0][0]
    return out


@dataclass
class MaskEmbeddings:
    """Rendered embeddings of the training views' 2D instance-mask pixels, one entry per view (all of them in
    memory: for tools that reuse them; ``segment`` streams them into a :class:`NodeCollector`)."""

    mu: list[torch.Tensor] = field(default_factory=list)  # [M_v, E]
    var: list[torch.Tensor] = field(default_factory=list)  # [M_v, E]
    ids: list[torch.Tensor] = field(default_factory=list)  # [M_v] the 2D model's instance id (> 0)


@dataclass
class Prototypes:
    """One embedding per object; index k is instance k + 1 in the outputs."""

    mu: torch.Tensor  # [P, E]
    var: torch.Tensor  # [P, E]
    scores: list  # [P] MVOA concentration score, None with HDBSCAN
    info: dict  # for segment.json: nodes, threshold (MVOA)

    def __len__(self) -> int:
        return len(self.mu)

    @cached_property
    def assign(self):
        """(mu, var [n, E]) -> (index [n], K [n]) of the highest-K prototype (:func:`~pcf_gs.segment.mvoa.assign`,
        its index built once)."""
        return assigner(self.mu, self.var)


@dataclass
class GaussianClasses:
    """Per-Gaussian classes (``segment.semantics``) and how a view's pixel classes follow from them."""

    logits: torch.Tensor  # [N, C]; with ``vote`` the log of the voted probabilities
    voted: torch.Tensor | None  # [N, C] voted probabilities (``vote``, by ``segment.vote_rule``), None with ``learned``
    shares: torch.Tensor | None = None  # [N, C] the vote's class shares (``vote``), None with ``learned``

    def by_shares(self) -> "GaussianClasses":
        """These classes with the vote's shares as the blended probabilities (``segment.vote_rule=share``).

        :func:`label_gaussians` votes with them: with majority classes, an object's rim pixels turn thing and
        vote its prototype onto the room's Gaussians behind them. On the 400-step run of
        tests/lift/test_train_e2e.py that cost 2 of 6 exported objects 0.07-0.11 of their rendered mass on
        themselves; on a 25-object v2 model it changed nothing (on-object share 0.932 against 0.926)."""
        if self.shares is None:
            return self
        return GaussianClasses(self.logits, self.shares, self.shares)

    def pixel_classes(self, run: Run, i: int, feats: dict, cfg: Config) -> torch.Tensor:
        """[H, W] class ids of view i (``feats``: :func:`render_view_features` of that view)."""
        if self.voted is not None:
            return render_semantics(run, i, self.voted, cfg.render.backend, cfg.render.kw()).argmax(-1)
        return feats["semantics"].argmax(-1)


def view_at(run: Run, i: int, size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(viewmats [1,4,4], Ks [1,3,3], width, height) of frame i rendered at ``size`` (width, height; None: the
    run's size). Every resize of the loaders scales K per axis, so K at another size is K scaled by the ratio."""
    vm, K = run.view(i)
    if size is None or tuple(size) == (run.width, run.height):
        return vm, K, run.width, run.height
    W, H = int(size[0]), int(size[1])
    K = K.clone()
    K[:, 0] *= W / run.width
    K[:, 1] *= H / run.height
    return vm, K, W, H


def scaled_kw(cfg: Config, run: Run, W: int, H: int) -> dict:
    """``cfg.render.kw()`` for a render at W x H of a run trained at another size: the 2D blur ``eps2d`` (px²)
    scaled by the pixel area ratio, so the footprints cover the same part of the view as in training. At the
    same blur in pixels, Gaussians fitted to cover the training pixels leave speckle between them."""
    kw = cfg.render.kw()
    kw["eps2d"] = kw["eps2d"] * (W / run.width) * (H / run.height)
    return kw


def output_sizes(run: Run, scene, ids: list[int], cfg: Config) -> dict[int, tuple[int, int]]:
    """The size of each output view's label maps by ``segment.resolution`` (frame id -> (width, height))."""
    if cfg.segment.resolution == "train":
        return {}
    return {i: scene.frames[i].source_size for i in ids if scene.frames[i].source_size is not None}


@torch.no_grad()
def render_view_inputs(run: Run, i: int, cfg: Config, classes: GaussianClasses,
                       size: tuple[int, int] | None = None) -> dict:
    """View i's embedding and classes from one render: mu, var [H, W, E], ``classes`` [H, W] (argmax of the
    blended per-Gaussian class probabilities: ``classes.voted``, else the semantic head's softmax) and ``meta``
    (a CPU render's projection and tile lists, for :func:`pcf_gs.render.rasterize.pixel_contributions`; None
    on gsplat).

    The channels of :func:`~pcf_gs.lift.model.render_features` (``semantic_probs``, no slow copies) with the
    voted probabilities in the class channels: equal, value for value, to :func:`render_view_features` then
    :meth:`GaussianClasses.pixel_classes`, which take two renders (tests/segment/test_streaming.py). ``size``:
    (width, height) to render at (:func:`view_at`); the run's size by default."""
    from pcf_gs.lift.pp_kernel import activate_var
    from pcf_gs.render import rasterize

    p = run.params
    prob = run.spec.embedding == "probabilistic"
    probs = classes.voted if classes.voted is not None else torch.softmax(p["semantics"], dim=1)
    cols = torch.cat([probs, p["inst_mu"]] + ([p["inst_var"]] if prob else []), dim=1).detach()
    means, quats, scales, opac = activated_geometry(p, detach=True)
    vm, K, W, H = view_at(run, i, size)
    out, _, meta = rasterize(means, quats, scales, opac, cols, vm, K, W, H, backend=cfg.render.backend,
                             **scaled_kw(cfg, run, W, H))
    out = out[0]
    C, E = probs.shape[1], p["inst_mu"].shape[1]
    mu = out[..., C : C + E]
    var = activate_var(out[..., C + E :], run.spec.var_floor) if prob else torch.full_like(mu, run.spec.deterministic_var)
    return {"mu": mu, "var": var, "classes": out[..., :C].argmax(-1), "meta": meta if "cpu_bins" in meta else None}


def view_chunks(ids: list[int], size: int):
    """``ids`` in consecutive chunks of at most ``size`` views (``segment.chunk_views``)."""
    for k in range(0, len(ids), max(1, size)):
        yield ids[k : k + size]


def mask_pixels(run: Run, scene, cfg: Config, progress: bool = True, classes: GaussianClasses | None = None,
                views: list[int] | None = None):
    """Yield (mu [M_v, E], var [M_v, E], 2D instance ids [M_v]) of each training view's 2D instance-mask
    pixels (valid pixels only), rendering one view at a time; with ``segment.node_pixels=thing`` only those
    whose class by ``classes`` (required then) is a thing. ``views``: those frame ids instead of the training views."""
    thing_only = cfg.segment.node_pixels == "thing"
    if thing_only and classes is None:
        raise ValueError("node_pixels=thing needs the per-Gaussian classes")
    is_thing = torch.from_numpy(scene.classes.is_thing_array())
    views = list(run.train_ids) if views is None else views
    with progress_bar("embed train views", len(views), enabled=progress) as adv:
        for i in views:
            # with the classes at hand, one render gives the classes too (``thing``)
            f = render_view_inputs(run, i, cfg, classes) if classes is not None else render_view_features(run, i, cfg)
            fr = scene.frames[i]
            m = torch.from_numpy(fr.instances > 0)
            if fr.valid is not None:
                m &= torch.from_numpy(fr.valid)
            if thing_only:
                m &= is_thing[f["classes"]]
            yield f["mu"][m], f["var"][m], torch.from_numpy(fr.instances.astype(np.int64))[m]
            adv()


def embed_train_views(run: Run, scene, cfg: Config, progress: bool = True,
                      classes: GaussianClasses | None = None) -> MaskEmbeddings:
    """Every training view's :func:`mask_pixels`, all kept (memory grows with the views; ``segment`` uses
    :func:`collect_nodes`)."""
    emb = MaskEmbeddings()
    for mu, var, ids in mask_pixels(run, scene, cfg, progress, classes):
        emb.mu.append(mu)
        emb.var.append(var)
        emb.ids.append(ids)
    return emb


class NodeCollector:
    """What step 2 keeps of the training views as they stream by (:meth:`add`, one view at a time): the
    MVOA nodes (:class:`~pcf_gs.segment.mvoa.NodeBuilder`, 2E + 4 numbers per 2D mask), or for HDBSCAN a
    uniform sample of at most ``segment.hdbscan_samples`` mask pixels (:class:`~pcf_gs.segment.mvoa.PixelSample`)."""

    def __init__(self, cfg: Config, first_view: int = 0):
        sc = cfg.segment
        self.views = first_view  # index (among the training views) of the next view added
        self.builder = NodeBuilder(sc.min_pixels) if sc.clustering == "mvoa" else None
        self.sample = None if self.builder else PixelSample(sc.hdbscan_samples, seed=cfg.seed)

    def add(self, mu: torch.Tensor, var: torch.Tensor, ids: torch.Tensor) -> None:
        """The next training view's mask pixels: mu, var [M_v, E], 2D instance ids [M_v]."""
        if self.builder is not None:
            self.builder.add(self.views, mu, var, ids)
        else:
            self.sample.add(mu, var, self.views)
        self.views += 1

    def absorb(self, other: "NodeCollector") -> None:
        """Append another collector's views (the views after this one's: another process's share)."""
        if self.builder is not None:
            self.builder.absorb(other.builder)
        else:
            self.sample.absorb(other.sample)
        self.views = other.views


def collect_nodes(run: Run, scene, cfg: Config, progress: bool = True, classes: GaussianClasses | None = None,
                  group: Group | None = None) -> NodeCollector | None:
    """Step 1: every training view's :func:`mask_pixels`, reduced as they are rendered. On several processes
    (``group``) each takes its share of the views; rank 0 gets them all in view order, the others None."""
    group = group or Group()
    views, first = group.share(list(run.train_ids))
    nodes = NodeCollector(cfg, first)
    for mu, var, ids in mask_pixels(run, scene, cfg, progress, classes, views):
        nodes.add(mu, var, ids)
    parts = group.gather(nodes)
    if parts is None:
        return None
    for other in parts[1:]:
        parts[0].absorb(other)
    return parts[0]


def find_prototypes(emb: NodeCollector | MaskEmbeddings, cfg: Config) -> Prototypes:
    """Step 2: object prototypes by ``segment.clustering`` (MVOA or HDBSCAN), from the streamed
    :class:`NodeCollector` (or kept :class:`MaskEmbeddings`, fed to one)."""
    if isinstance(emb, MaskEmbeddings):
        col = NodeCollector(cfg)
        for mu, var, ids in zip(emb.mu, emb.var, emb.ids):
            col.add(mu, var, ids)
        emb = col
    sc = cfg.segment
    if sc.clustering == "mvoa":
        nodes = emb.builder.nodes()
        protos, T = associate(nodes, threshold=sc.threshold, score_threshold=sc.score_threshold, min_views=sc.min_views)
        mu, var = refine_prototypes(nodes, protos, sc.refine_rounds)
        return Prototypes(mu, var, nodes.score[protos].tolist(), {"nodes": len(nodes), "threshold": T})
    mu, var = emb.sample.tensors()
    mu, var = hdbscan_prototypes(mu, var, sc.hdbscan_samples, sc.hdbscan_min_cluster_size, seed=cfg.seed)
    return Prototypes(mu, var, [None] * len(mu), {})


def gaussian_classes(run: Run, scene, cfg: Config, group: Group | None = None) -> GaussianClasses:
    """Per-Gaussian classes: the training views' 2D classes voted (``vote``) or the semantic head (``learned``).
    On several processes (``group``) each votes from its share of the views and the votes are summed."""
    if cfg.segment.semantics == "vote":
        group = group or Group()
        shares = gaussian_semantics_vote(run, scene, cfg.render.backend, cfg.render.kw(),
                                         views=group.share(list(run.train_ids))[0], reduce=group.all_sum)
        probs = majority(shares) if cfg.segment.vote_rule == "majority" else shares
        return GaussianClasses(probs.clamp_min(1e-12).log(), probs, shares)
    return GaussianClasses(run.params["semantics"].detach(), None)


def colorize(sem: np.ndarray, ins: np.ndarray, rgb: np.ndarray, palette: np.ndarray, is_thing: np.ndarray) -> np.ndarray:
    """Overlay for people: things in their instance colour, stuff darkened, blended with the render.

    sem, ins [H, W] ids; rgb [H, W, 3] in [0, 1]; palette [>= P + 1, 3] uint8. Returns [H, W, 3] uint8 RGB.
    """
    H, W = sem.shape
    col = np.zeros((H, W, 3), np.float32)
    thing = ins > 0
    col[thing] = palette[np.clip(ins[thing], 0, len(palette) - 1)] / 255.0
    col[~thing] = rgb[~thing] * 0.35
    out = 0.6 * col + 0.4 * rgb
    out[thing] = 0.7 * col[thing] + 0.3 * rgb[thing]
    edges = np.zeros_like(thing)
    edges[:, 1:] |= ins[:, 1:] != ins[:, :-1]  # instance boundaries in white
    edges[1:, :] |= ins[1:, :] != ins[:-1, :]
    out[edges] = 1.0
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def instance_map(feats: dict, sem: torch.Tensor, protos: Prototypes, is_thing: np.ndarray) -> torch.Tensor:
    """[H, W] instance ids of one view: thing pixels (by class map ``sem`` [H, W]) take the prototype of
    highest K (index + 1), the rest 0. ``feats``: :func:`render_view_features` of the view."""
    thing = torch.from_numpy(is_thing)[sem]
    ins = torch.zeros(sem.shape, dtype=torch.long)
    if len(protos) and bool(thing.any()):
        idx, _ = protos.assign(feats["mu"][thing], feats["var"][thing])
        ins[thing] = idx + 1
    return ins


def label_views(run: Run, ids: list[int], out: Path, protos: Prototypes, classes: GaussianClasses,
                is_thing: np.ndarray, palette: np.ndarray, cfg: Config, progress: bool = True,
                sizes: dict[int, tuple[int, int]] | None = None) -> None:
    """Step 3: pixel labels of views ``ids``, written as OUT/pred_semantics/<frame>.png (class ids),
    OUT/pred_surrogateid/<frame>.png (instance = prototype index + 1, 0 = stuff), both uint16,
    and OUT/vis/<frame>.png (:func:`colorize`); view i at ``sizes[i]`` (width, height) when given
    (:func:`output_sizes`), else at the run's size."""
    sizes = sizes or {}
    for d in ("pred_semantics", "pred_surrogateid", "vis"):
        (out / d).mkdir(exist_ok=True)  # on several processes, each labels its share into the same folders
    with progress_bar("segment views", len(ids), enabled=progress) as adv:
        for i in ids:
            f = render_view_inputs(run, i, cfg, classes, sizes.get(i))
            sem = f["classes"]
            ins = instance_map(f, sem, protos, is_thing)
            name = run.frames[i]
            cv2.imwrite(str(out / "pred_semantics" / f"{name}.png"), sem.numpy().astype(np.uint16))
            cv2.imwrite(str(out / "pred_surrogateid" / f"{name}.png"), ins.numpy().astype(np.uint16))
            vm, K, W, H = view_at(run, i, sizes.get(i))
            rgb = render_rgb(run.params, vm, K, W, H, run.spec.sh_degree, backend=cfg.render.backend,
                             **scaled_kw(cfg, run, W, H))[0][0]
            vis = colorize(sem.numpy(), ins.numpy(), rgb.clamp(0, 1).numpy(), palette, is_thing)
            cv2.imwrite(str(out / "vis" / f"{name}.png"), vis[:, :, ::-1])
            adv()


def label_gaussians(run: Run, protos: Prototypes, classes: GaussianClasses, is_thing: np.ndarray, mode: str,
                    cfg: Config, progress: bool = False, group: Group | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Step 4: (instance ids [N] int32, 0 = stuff / none; class ids [N]) per Gaussian, by ``mode``
    ("vote" or "direct", see the module docstring). On several processes (``group``) each votes from its
    share of the views; rank 0 sums the votes and returns the labels, the others None."""
    group = group or Group()
    sem_g = classes.logits.argmax(1).numpy()
    thing_g = is_thing[sem_g]
    N = len(sem_g)
    if mode == "vote" and len(protos):
        # one vote over P prototypes + C classes: thing pixels vote their prototype, stuff pixels
        # their class, so a Gaussian's thing/stuff status comes from the pixels it shows up in too
        # (its own logits alone left ghosts of objects behind on removal)
        P, C = len(protos), len(is_thing)
        pixel_classes = classes.by_shares()  # see GaussianClasses.by_shares
        table = VoteTable(N, P + C)
        views = group.share(list(run.train_ids))[0]
        with progress_bar("vote Gaussian labels", len(views), enabled=progress) as adv:
            for chunk in view_chunks(views, cfg.segment.chunk_views):
                for i in chunk:
                    f = render_view_inputs(run, i, cfg, pixel_classes)
                    th = torch.from_numpy(is_thing)[f["classes"]]
                    lab = P + f["classes"]
                    if bool(th.any()):
                        lab[th] = protos.assign(f["mu"][th], f["var"][th])[0]
                    # the blending weights from the same render's projection and tile lists
                    add_view_votes(table, run, i, lab, cfg.render.backend, cfg.render.kw(), reuse=f["meta"])
                    adv()
                table.fold()  # the chunk's votes into the table: the buffer never holds more than a chunk
        tables = group.gather(table)
        if tables is None:
            return None
        for other in tables[1:]:
            table.absorb(other)
        vote = table.argmax()
        del table, tables
        seen = vote >= 0
        best = np.full(N, -1, dtype=np.int64)  # the direct prototype, for the Gaussians no pixel sees
        if not seen.all():
            best[~seen] = gaussian_labels_direct(run.params, run.spec, protos.mu, protos.var, torch.from_numpy(~seen))[0]
        voted_thing = seen & (vote < P)
        voted_stuff = seen & (vote >= P)
        best[voted_thing] = vote[voted_thing]
        sem_g[voted_stuff] = vote[voted_stuff] - P
        thing_logits = classes.logits.masked_fill(~torch.from_numpy(is_thing)[None], float("-inf"))
        sem_g[voted_thing] = thing_logits.argmax(1).numpy()[voted_thing]
        thing_g = is_thing[sem_g]
    elif not group.is_main:
        return None
    elif len(protos):
        best, _ = gaussian_labels_direct(run.params, run.spec, protos.mu, protos.var)
    else:
        best = np.full(len(sem_g), -1)
    inst_g = np.where(thing_g & (best >= 0), best + 1, 0).astype(np.int32)
    return inst_g, sem_g


def write_gaussian_labels(run: Run, out: Path, inst_g: np.ndarray, sem_g: np.ndarray, protos: Prototypes,
                          palette: np.ndarray, classes: ClassTable, export_ply: bool) -> int | None:
    """OUT/gaussian_instance_ids.npy, gaussian_semantic_ids.npy ([N] int32); with ``export_ply`` also
    the world-frame splat files of :func:`pcf_gs.splats.export.export_objects`. Returns the number of
    exported objects (None without ``export_ply``). ``classes``: the scene's class table."""
    exported = None
    if export_ply:
        splats = params_to_splats(run.params, run.spec, run.normalization)
        table = export_objects(
            out, splats, inst_g, sem_g, classes.names, classes.is_thing_array(),
            scores={k + 1: s for k, s in enumerate(protos.scores) if s is not None},
            colors={k: palette[k].tolist() for k in range(1, len(palette))},
        )
        exported = len(table)
    np.save(out / "gaussian_instance_ids.npy", inst_g)
    np.save(out / "gaussian_semantic_ids.npy", sem_g.astype(np.int32))
    return exported


class _StageClock:
    """Wall seconds per stage of ``run_segment`` (``laps``: stage name -> seconds, in order), for segment.json."""

    def __init__(self):
        import time

        self._now = time.perf_counter
        self._t = self._now()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._now()
        self.laps[name] = round(t - self._t, 3)
        self._t = t


def run_segment(
    run_dir: Path,
    out: Path,
    split: str = "test",
    clustering: str | None = None,
    export_ply: bool = False,
    data: Path | None = None,
    overrides: list[str] | None = None,
    gaussian_labels: str = "vote",
    progress: bool = True,
    export_formats: list[str] | None = None,
    distributed: bool = False,
) -> dict | None:
    """Segment run directory ``run_dir`` into ``out`` (replaced atomically); returns what OUT/segment.json holds
    (with ``seconds``: wall time per stage: load, classes, render_nodes, clustering, label_views,
    label_gaussians, export). ``export_formats`` (e.g. ["spz", "glb"]): also write the exported tree
    in those formats (:func:`pcf_gs.splats.export.export_formats`); implies ``export_ply``, whose PLY
    files are always kept. ``distributed``: one of the processes ``torchrun`` started, each taking a share
    of the views (:mod:`pcf_gs.segment.distributed`); rank 0 returns the info, the others None."""
    from pcf_gs.data import load_scene

    if export_formats:
        from pcf_gs.splats.formats import parse_formats

        parse_formats(",".join(export_formats))  # a bad name fails before any work
        export_ply = True

    group, ok = Group(), False
    if distributed:
        from pcf_gs.segment.distributed import init_group

        group = init_group()
    try:
        clock = _StageClock()
        run = Run.load(run_dir)
        cfg = apply_overrides(run.config, overrides)
        if clustering:
            cfg.segment.clustering = clustering
        root = Path(data) if data else run.root
        if not root.exists():
            raise UserError("the run's data folder is gone; pass --data DATA", root)
        # no ground truth: segment never reads it, and every view's maps would stay in memory
        scene = load_scene(root, dataclasses.replace(cfg.data, load_ground_truth=False),
                           progress=progress and group.is_main)
        if [f.name for f in scene.frames] != run.frames:
            raise UserError("frames differ from the ones the run was trained on", root)
        clock.lap("load")
        info = segment_scene(run, scene, cfg, out, split, export_ply, gaussian_labels, progress, export_formats,
                             run_name=str(run_dir), clock=clock, group=group)
        ok = True
        return info
    finally:
        if distributed:
            from pcf_gs.segment.distributed import close_group

            close_group(group, ok=ok)


def segment_scene(run: Run, scene, cfg: Config, out: Path, split: str = "test", export_ply: bool = False,
                  gaussian_labels: str = "vote", progress: bool = True, export_formats: list[str] | None = None,
                  run_name: str = "", clock: _StageClock | None = None, group: Group | None = None) -> dict | None:
    """:func:`run_segment` on a loaded run and scene (the scene's frames must be the run's): writes ``out``
    (replaced atomically) and returns what OUT/segment.json holds. With a ``group`` of processes, every one
    calls this with the same arguments; rank 0 writes ``out``'s shared files and returns, the others None."""
    clock = clock or _StageClock()
    group = group or Group()
    progress = progress and group.is_main
    is_thing = scene.classes.is_thing_array()
    ids_out = run.split_ids(split)
    classes = gaussian_classes(run, scene, cfg, group)
    clock.lap("classes")
    nodes = collect_nodes(run, scene, cfg, progress, classes, group)
    clock.lap("render_nodes")
    found = None
    if group.is_main:
        protos = find_prototypes(nodes, cfg)
        found = (protos.mu, protos.var, protos.scores, protos.info)
    del nodes
    protos = Prototypes(*group.broadcast(found))
    clock.lap("clustering")
    info: dict = {"clustering": cfg.segment.clustering, **protos.info, "prototypes": int(len(protos))}
    palette = distinct_colors(len(protos) + 1)
    info["semantics"] = cfg.segment.semantics
    info["resolution"] = cfg.segment.resolution
    if group.world > 1:
        info["processes"] = group.world

    def write(tmp: Path) -> None:
        label_views(run, group.share(ids_out)[0], tmp, protos, classes, is_thing, palette, cfg, progress,
                    output_sizes(run, scene, ids_out, cfg))
        group.barrier()  # every process's label maps are in before rank 0 may rename the folder
        clock.lap("label_views")
        labels = label_gaussians(run, protos, classes, is_thing, gaussian_labels, cfg, progress, group)
        clock.lap("label_gaussians")
        if labels is None:
            return
        inst_g, sem_g = labels
        info["gaussian_labels"] = gaussian_labels
        exported = write_gaussian_labels(run, tmp, inst_g, sem_g, protos, palette, scene.classes, export_ply)
        if export_formats:
            from pcf_gs.splats.export import export_formats as convert

            fmts = [f for f in export_formats if f.strip().lower() != "ply"]
            if fmts:
                convert(tmp, tmp, fmts, progress=progress)
            info["export_formats"] = ["ply"] + [f for f in fmts]
        clock.lap("export")
        if exported is not None:
            info["objects_exported"] = exported
        info.update(split=split, frames=len(ids_out), run=run_name, seconds=clock.laps)
        write_json_atomic(tmp / "segment.json", info)

    if not group.is_main:
        write(Path(group.broadcast(None)))  # into rank 0's temporary folder
        return None
    with atomic_dir(out, overwrite=True) as tmp:
        group.broadcast(str(tmp))
        write(tmp)
    return info
