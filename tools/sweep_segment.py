"""Segmentation settings compared on trained models, without retraining: MVOA's nodes, gate and filters.

For every trained run (a ``bench_quality`` cell's ``run/`` or any ``pcf-gs train`` output whose data folder
has ground truth), the training and test views are rendered once; every variant (a list of ``segment.*``
overrides on top of today's defaults) then finds its prototypes, labels the test views and is scored by the
official scorer of the layout (:func:`pcf_gs.evaluation.evaluate.score`, maps resized to 512² as in
``pcf-gs eval``). Same numbers as ``pcf-gs segment`` + ``pcf-gs eval``, minus the renders.

    python tools/sweep_segment.py /work/bq/runs/*/full/run --variant base= \\
        --variant thing=segment.node_pixels=thing --variant s80=segment.score_threshold=0.8 --out /work/sweep

The item ``oracle`` in a variant replaces MVOA by one prototype per ground-truth object (its mean rendered
embedding over the training views): the PQ MVOA could reach on this embedding if it found every object
exactly. ``--variant oracle=oracle`` against ``base=`` splits a model's loss into training (the embedding
does not separate the objects) and segmentation (it does, and MVOA misses them).

Every (run, variant) result is cached under ``--out`` (keyed by the overrides), so adding a variant or a run
measures only what is new. Prints PQ^scene and PQ things per variant, mean ± std over the runs of each
object count (parsed from bench_quality's scene names, ``o<N>_...``; otherwise one group), and writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


ORACLE = "oracle"  # a variant item: prototypes from the ground truth instead of MVOA (an upper bound)


def variant_key(sets: list[str]) -> str:
    return hashlib.sha1("\n".join(sets).encode()).hexdigest()[:12]


def group_of(run_dir: Path) -> str:
    m = re.search(r"(?:^|/)o(\d+)_w(\d+)(_\w+?)?_f", str(run_dir))
    return f"{m.group(1)} obj, W={m.group(2)}{m.group(3) or ''}" if m else "all"


class RenderedRun:
    """A run's training and test views rendered once: embeddings, classes and the test ground truth."""

    def __init__(self, run_dir: Path, base_sets: list[str], scale: int = 1):
        import dataclasses

        import torch

        from pcf_gs.config import apply_overrides
        from pcf_gs.data import load_scene
        from pcf_gs.data.images import resize_nearest
        from pcf_gs.evaluation.evaluate import EVAL_SIZE
        from pcf_gs.evaluation.metrics import Protocol
        from pcf_gs.lift.run import Run
        from pcf_gs.segment.pipeline import gaussian_classes, render_view_features

        self.run = Run.load(run_dir)
        self.cfg = apply_overrides(self.run.config, base_sets)
        if scale != 1:  # render and label at scale x the training resolution, from the scene loaded to match
            r = self.run
            self.run = dataclasses.replace(r, K=r.K * torch.tensor([scale, scale, 1.0])[:, None], width=r.width * scale,
                                           height=r.height * scale)
            self.cfg.data.max_size *= scale
            self.cfg.render.eps2d *= scale * scale  # the blur in px² at the new size (segment's scaled_kw)
        self.scene = load_scene(self.run.root, self.cfg.data, progress=False)
        self.is_thing = self.scene.classes.is_thing_array()
        classes = gaussian_classes(self.run, self.scene, self.cfg)
        th = torch.from_numpy(self.is_thing)
        self.train = []  # (mu [M, E], var [M, E], ids [M], rendered-as-thing [M]) per training view
        self.oracle = []  # (mu [G, E], var [G, E], ground-truth ids [G]) of the ground-truth thing pixels
        for i in self.run.train_ids:
            f = render_view_features(self.run, i, self.cfg)
            fr = self.scene.frames[i]
            m = torch.from_numpy(fr.instances > 0)
            if fr.valid is not None:
                m &= torch.from_numpy(fr.valid)
            thing = th[classes.pixel_classes(self.run, i, f, self.cfg)]
            self.train.append((f["mu"][m], f["var"][m], torch.from_numpy(fr.instances.astype(np.int64))[m], thing[m]))
            g = torch.from_numpy(th.numpy()[fr.gt_semantics] & (fr.gt_instances > 0))  # ground-truth things
            self.oracle.append((f["mu"][g], f["var"][g], torch.from_numpy(fr.gt_instances.astype(np.int64))[g]))
        self.test = []  # (feats, class map [H, W])
        gs, gi = [], []
        for i in self.run.split_ids("test"):
            f = render_view_features(self.run, i, self.cfg)
            self.test.append(({"mu": f["mu"], "var": f["var"]}, classes.pixel_classes(self.run, i, f, self.cfg)))
            fr = self.scene.frames[i]
            gs.append(resize_nearest(fr.gt_semantics, EVAL_SIZE, EVAL_SIZE).ravel())
            gi.append(resize_nearest(fr.gt_instances, EVAL_SIZE, EVAL_SIZE).ravel())
        self.gt = (np.concatenate(gs), np.concatenate(gi))
        self.protocol = Protocol.for_scene(self.scene)

    def oracle_prototypes(self):
        """One prototype per ground-truth object: the mean rendered embedding of its pixels over the training
        views. What MVOA could reach if it found every object exactly, given the trained embedding."""
        import torch

        from pcf_gs.segment.pipeline import Prototypes

        mu = torch.cat([o[0] for o in self.oracle])
        var = torch.cat([o[1] for o in self.oracle])
        ids = torch.cat([o[2] for o in self.oracle])
        uniq, inv = torch.unique(ids, return_inverse=True)
        n = torch.zeros(len(uniq)).index_add_(0, inv, torch.ones(len(ids)))[:, None]
        pm = torch.zeros(len(uniq), mu.shape[1]).index_add_(0, inv, mu) / n
        pv = torch.zeros(len(uniq), var.shape[1]).index_add_(0, inv, var) / n
        return Prototypes(pm, pv, [None] * len(uniq), {"nodes": None})

    def measure(self, sets: list[str]) -> dict:
        from pcf_gs.config import apply_overrides
        from pcf_gs.data.images import resize_nearest
        from pcf_gs.evaluation.evaluate import EVAL_SIZE, score
        from pcf_gs.segment.pipeline import MaskEmbeddings, find_prototypes, instance_map

        cfg = apply_overrides(copy.deepcopy(self.cfg), [s for s in sets if s != ORACLE])  # applies in place
        emb = MaskEmbeddings()
        for mu, var, ids, thing in self.train:
            keep = thing if cfg.segment.node_pixels == "thing" else slice(None)
            emb.mu.append(mu[keep])
            emb.var.append(var[keep])
            emb.ids.append(ids[keep])
        protos = self.oracle_prototypes() if ORACLE in sets else find_prototypes(emb, cfg)
        ps, pi = [], []
        for feats, sem in self.test:
            ins = instance_map(feats, sem, protos, self.is_thing)
            ps.append(resize_nearest(sem.numpy(), EVAL_SIZE, EVAL_SIZE).ravel())
            pi.append(resize_nearest(ins.numpy(), EVAL_SIZE, EVAL_SIZE).ravel())
        m = score(np.concatenate(ps), np.concatenate(pi), *self.gt, self.protocol, self.scene.classes.num_classes)
        out = {k: round(m[k], 2) for k in ("pq", "pq_things", "sq", "rq", "miou")}
        thing_stats = [m["per_class"][str(c)] for c in self.protocol.things if str(c) in m["per_class"]]
        out.update({k: sum(s[k] for s in thing_stats) for k in ("tp", "fp", "fn")}, prototypes=len(protos),
                   nodes=protos.info.get("nodes"), sets=sets)
        return out


def spread(xs: list[float]) -> str:
    if not xs:
        return "—"
    m = float(np.mean(xs))
    return f"{m:.1f}" + (f" ± {np.std(xs, ddof=1):.1f}" if len(xs) > 1 else "") + ("" if len(xs) == 3 else f" (n={len(xs)})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=K=V[,K=V]",
                    help="a named list of segment overrides; 'base=' is today's defaults")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sweep_segment"), help="cache folder")
    ap.add_argument("--scale", type=int, default=1, help="segment at this multiple of the training resolution")
    ap.add_argument("--json", type=Path, default=Path("sweep_segment.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_quality import segment_defaults

    variants = {}
    for v in a.variant or ["base="]:
        name, _, rest = v.partition("=")
        variants[name] = [s for s in rest.split(",") if s]
    base = segment_defaults()
    console = Console()
    results: dict = {}
    for run_dir in a.runs:
        cache = a.out / variant_key([str(run_dir.resolve())] + ([f"scale {a.scale}"] if a.scale != 1 else []))
        cache.mkdir(parents=True, exist_ok=True)
        rendered = None
        for name, sets in variants.items():
            f = cache / f"{variant_key(base + sets)}.json"
            if f.exists():
                r = json.loads(f.read_text())
            else:
                if rendered is None:
                    console.print(f"render {run_dir}")
                    rendered = RenderedRun(run_dir, base, a.scale)
                r = rendered.measure(sets)
                f.write_text(json.dumps(r) + "\n")
            results.setdefault(name, {})[str(run_dir)] = r
    groups = sorted({group_of(r) for r in a.runs}, key=lambda g: (len(g), g))
    t = Table(title="PQ^scene / PQ things (official scorer), mean ± std over runs; things TP/FP/FN summed")
    t.add_column("variant")
    for g in groups:
        t.add_column(g, justify="right")
    t.add_column("TP/FP/FN", justify="right")
    summary = {}
    for name in variants:
        row = [name]
        for g in groups:
            rs = [r for k, r in results[name].items() if group_of(Path(k)) == g]
            row.append(f"{spread([r['pq'] for r in rs])} / {spread([r['pq_things'] for r in rs])}")
            summary.setdefault(name, {})[g] = {k: [r[k] for r in rs] for k in ("pq", "pq_things", "tp", "fp", "fn")}
        tot = [sum(r[k] for r in results[name].values()) for k in ("tp", "fp", "fn")]
        row.append("/".join(map(str, tot)))
        t.add_row(*row)
    console.print(t)
    a.json.write_text(json.dumps({"variants": variants, "groups": summary, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
