"""Segmentation at scale: the streamed, indexed and sparse paths give what the dense ones gave.

The references below are the pre-streaming computations (every view's pixels kept, greedy
suppression against every alive node, argmax over every prototype, dense [N, L] votes), kept
here so that the scalable code is checked against them, not against itself.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pcf_gs.lift.pp_kernel import activate_var, pairwise_pp_log_kernel, pp_log_kernel
from pcf_gs.segment import mvoa
from pcf_gs.segment.gaussian_labels import VoteTable, _add_view_votes_grad, add_view_votes, blend_votes
from pcf_gs.segment.mvoa import Nodes, PixelSample, PrototypeIndex, associate, kernel_radius, refine_prototypes
from tests.conftest import load_tool


# ---- references: the dense computations the scalable ones replace ----

def dense_assign(mu, var, pm, pv):
    lk = pairwise_pp_log_kernel(mu, var, pm, pv)
    v, j = lk.max(1)
    return j, torch.exp(v)


def dense_associate(nodes: Nodes, T: float, score_threshold: float = 0.0, min_views: int = 1) -> torch.Tensor:
    order = torch.argsort(nodes.score, descending=True, stable=True)
    alive = torch.ones(len(nodes), dtype=torch.bool)
    logT = np.log(max(T, 1e-12))
    protos = []
    for idx in order.tolist():
        if not alive[idx]:
            continue
        if float(nodes.score[idx]) < score_threshold:
            break
        protos.append(idx)
        rest = torch.nonzero(alive).squeeze(1)
        lk = pp_log_kernel(nodes.mu[rest], nodes.var[rest], nodes.mu[idx][None], nodes.var[idx][None])
        alive[rest[lk >= logT]] = False
        alive[idx] = False
    protos = torch.tensor(protos, dtype=torch.long)
    if min_views > 1 and len(protos):
        best, _ = dense_assign(nodes.mu, nodes.var, nodes.mu[protos], nodes.var[protos])
        seen = torch.zeros(len(protos), int(nodes.view.max()) + 1, dtype=torch.bool)
        seen[best, nodes.view] = True
        protos = protos[seen.sum(1) >= min_views]
    return protos


def dense_refine(nodes: Nodes, protos: torch.Tensor, rounds: int):
    mu, var = nodes.mu[protos].clone(), nodes.var[protos].clone()
    w = nodes.size.to(mu.dtype)
    prev = None
    for _ in range(rounds if len(protos) else 0):
        best, _ = dense_assign(nodes.mu, nodes.var, mu, var)
        if prev is not None and bool((best == prev).all()):
            break
        prev = best
        tot = torch.zeros(len(mu)).index_add_(0, best, w)
        ok = tot > 0
        mu_new = torch.zeros_like(mu).index_add_(0, best, nodes.mu * w[:, None])
        var_new = torch.zeros_like(var).index_add_(0, best, nodes.var * w[:, None])
        mu[ok] = mu_new[ok] / tot[ok, None]
        var[ok] = var_new[ok] / tot[ok, None]
    return mu, var


def random_nodes(M=1000, n_obj=30, E=8, seed=0) -> Nodes:
    """Clustered nodes whose variances span four octaves (several index bands), plus stray ones."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_obj, E, generator=g) * 2.5
    obj = torch.randint(0, n_obj, (M,), generator=g)
    mu = centres[obj] + 0.15 * torch.randn(M, E, generator=g)
    mu[: M // 50] = torch.randn(M // 50, E, generator=g) * 4  # strays, far from every object
    var = (0.02 * 2.0 ** (4 * torch.rand(n_obj, 1, generator=g)))[obj] * (1 + 0.2 * torch.rand(M, E, generator=g))
    return Nodes(mu, var, torch.rand(M, generator=g), torch.randint(0, 40, (M,), generator=g), torch.arange(M),
                 torch.randint(10, 300, (M,), generator=g))


# ---- MVOA ----

def test_kernel_radius_holds_every_pair_above_the_level():
    g = torch.Generator().manual_seed(1)
    spread = 10 ** (3 * torch.rand(20000, 1, generator=g) - 2)  # pairs from 0.01 to 10 apart
    a_mu = torch.randn(20000, 8, generator=g)
    b_mu = a_mu + spread * torch.randn(20000, 8, generator=g)
    a_var = torch.exp(torch.randn(20000, 8, generator=g))
    b_var = a_var * torch.exp(0.3 * torch.randn(20000, 8, generator=g))
    lk = pp_log_kernel(a_mu, a_var, b_mu, b_var).double().numpy()
    dist = (a_mu - b_mu).norm(dim=1).double().numpy()
    A = (a_var.max(1).values + b_var.max(1).values).double().numpy()
    for level in (-0.1, -0.7, -3.0, -20.0):
        inside = lk >= level
        assert inside.any() and (~inside).any()
        assert np.all(dist[inside] <= kernel_radius(level, A[inside]))


@pytest.mark.parametrize("P", [40, 300])
def test_indexed_assign_equals_every_pair(P):
    nodes = random_nodes()
    g = torch.Generator().manual_seed(P)
    pick = torch.randperm(len(nodes), generator=g)[:P]
    pm, pv = nodes.mu[pick].clone(), nodes.var[pick].clone()
    pm[5], pv[5] = pm[2], pv[2]  # an exact duplicate: ties go to the lower index
    pv[7] *= 50  # one very wide prototype
    mu = torch.cat([nodes.mu, pm[:10], torch.randn(200, 8, generator=g) * 10])  # on prototypes; far from all
    var = torch.cat([nodes.var, pv[:10], torch.full((200, 8), 0.05)])
    j_ref, k_ref = dense_assign(mu, var, pm, pv)
    j, k = PrototypeIndex(pm, pv).assign(mu, var, chunk=1000)
    assert torch.equal(j, j_ref)
    assert torch.allclose(k, k_ref, rtol=1e-6, atol=0)
    assert 5 not in j.tolist()
    # the hint only sizes the search
    j2, _ = PrototypeIndex(pm, pv).assign(mu, var, hint=torch.randint(0, P, (len(mu),), generator=g))
    assert torch.equal(j2, j_ref)


@pytest.mark.parametrize("T, score_threshold, min_views", [(0.5, 0.3, 2), (0.9, 0.0, 3), (0.05, 0.0, 1)])
def test_indexed_suppression_equals_dense_greedy(T, score_threshold, min_views):
    nodes = random_nodes()
    protos, T_used = associate(nodes, threshold=T, score_threshold=score_threshold, min_views=min_views)
    assert T_used == T
    ref = dense_associate(nodes, T, score_threshold, min_views)
    assert len(ref) > 16  # the indexed assign takes part
    assert torch.equal(protos, ref)
    mu, var = refine_prototypes(nodes, protos, rounds=10)
    mu_ref, var_ref = dense_refine(nodes, ref, rounds=10)
    assert torch.equal(mu, mu_ref) and torch.equal(var, var_ref)


def test_adaptive_threshold_groups_views_as_masks_did():
    nodes = random_nodes(M=600)
    per_view = []
    for v in torch.unique(nodes.view):
        sel = nodes.view == v
        mu, var = nodes.mu[sel] * 0.5, nodes.var[sel]
        k = torch.exp(pairwise_pp_log_kernel(mu, var, mu, var))
        k.fill_diagonal_(-1.0)
        per_view.append(float(k.max(1).values.mean()))
    assert mvoa.adaptive_threshold(nodes) == float(np.mean(per_view))


def test_pixel_sample_is_bounded_uniform_and_made_of_offered_rows():
    rows = torch.arange(20000, dtype=torch.float32)
    parts = list(rows.split(777))
    s = PixelSample(500, seed=3)
    for v, part in enumerate(parts):
        s.add(part[:, None].repeat(1, 3), torch.ones(len(part), 3), batch=v)
    mu, var = s.tensors()
    assert mu.shape == (500, 3) and var.shape == (500, 3)
    picked = mu[:, 0].long()
    assert len(torch.unique(picked)) == 500 and bool((mu[:, 0] == mu[:, 1]).all())
    assert 7000 < float(picked.float().mean()) < 13000  # uniform over 0..19999, mean 10000 (sd ~260)
    # the stream split in two (two processes) and merged: the same sample, in the same order
    a, b = PixelSample(500, seed=3), PixelSample(500, seed=3)
    for v, part in enumerate(parts):
        (a if v < 9 else b).add(part[:, None].repeat(1, 3), torch.ones(len(part), 3), batch=v)
    a.absorb(b)
    assert torch.equal(a.tensors()[0], mu)
    small = PixelSample(10)
    small.add(torch.ones(4, 2), torch.ones(4, 2), batch=0)
    assert small.tensors()[0].shape == (4, 2) and PixelSample(5).tensors()[0].shape == (0, 3)


# ---- votes ----

def test_vote_table_argmax_equals_dense():
    g = torch.Generator().manual_seed(0)
    N, L = 500, 7
    dense = torch.zeros(N, L)
    t = VoteTable(N, L)
    for _ in range(5):
        gi = torch.randint(0, N - 50, (2000,), generator=g)  # the last 50 Gaussians get no vote
        li = torch.randint(0, L, (2000,), generator=g)
        w = torch.randint(1, 4, (2000,), generator=g).float() / 4  # exact sums: ties happen
        dense.index_put_((gi, li), w, accumulate=True)
        t.add(gi, li, w)
        if t.buffered() > 4000:
            t.fold()
    ref = dense.argmax(1)
    ref[dense.max(1).values <= 0] = -1
    assert np.array_equal(t.argmax(), ref.numpy())
    assert (t.argmax()[-50:] == -1).all()


def small_scene(n_gaussians=8000, views=12, size=48, objects=20):
    tool = load_tool("bench_segment_scale")
    run, scene = tool.synthetic_scene(n_gaussians, views, size, n_objects=objects, sh_degree=1)
    run.config.render.backend = "cpu"
    return run, scene


def test_pixel_votes_equal_gradient_votes():
    run, scene = small_scene()
    N, L = run.params["means"].shape[0], 40
    by_pixels, by_grad = VoteTable(N, L), VoteTable(N, L)
    views = {}
    for i in run.train_ids[:4]:
        lab = torch.from_numpy(scene.frames[i].instances.astype(np.int64)) % L
        lab[:3] = -1  # some pixels without a label
        views[i] = lab
        add_view_votes(by_pixels, run, i, lab, "cpu", {"eps2d": 0.3})
        from pcf_gs.lift.model import activated_geometry

        vm, K = run.view(i)
        _add_view_votes_grad(by_grad, *activated_geometry(run.params, detach=True), vm, K, run.width, run.height,
                             lab, "cpu", {"eps2d": 0.3}, budget=3 * N)  # three labels per pass
    dense = blend_votes(run, views, L, "cpu", {"eps2d": 0.3})
    for t in (by_pixels, by_grad):
        t.fold()
        g, lab = t.keys // L, t.keys % L
        assert torch.allclose(t.vals, dense[g, lab], rtol=1e-4, atol=1e-6)
        assert len(t.keys) == int((dense > 0).sum())
    ref = dense.argmax(1)
    ref[dense.max(1).values <= 0] = -1
    assert np.array_equal(by_pixels.argmax(), ref.numpy()) and np.array_equal(by_grad.argmax(), ref.numpy())


# ---- the whole pipeline ----

def test_one_render_gives_what_two_gave():
    """render_view_inputs (embedding and classes in one render) equals render_view_features + pixel_classes."""
    import pcf_gs.segment.pipeline as pl

    run, scene = small_scene(views=4)
    for semantics in ("vote", "learned"):
        run.config.segment.semantics = semantics
        classes = pl.gaussian_classes(run, scene, run.config)
        for i in range(3):
            f = pl.render_view_features(run, i, run.config)
            g = pl.render_view_inputs(run, i, run.config, classes)
            assert torch.equal(g["mu"], f["mu"]) and torch.equal(g["var"], f["var"])
            assert torch.equal(g["classes"], classes.pixel_classes(run, i, f, run.config))
            assert g["meta"] is not None


def test_streamed_segment_equals_the_dense_pipeline(tmp_path, monkeypatch):
    """Prototypes, pixel labels and Gaussian labels of ``segment_scene`` (streamed in chunks of 3 views,
    indexed MVOA even with few prototypes, sparse votes) equal the pre-streaming computation's."""
    import pcf_gs.segment.pipeline as pl

    monkeypatch.setattr(mvoa, "_DENSE_PROTOS", 0)  # the index path for every assign
    run, scene = small_scene()
    cfg = run.config
    cfg.segment.chunk_views = 3
    is_thing = scene.classes.is_thing_array()
    # reference: every view's mask pixels kept, dense MVOA, dense [N, P + C] votes
    classes = pl.gaussian_classes(run, scene, cfg)
    emb = pl.embed_train_views(run, scene, cfg, progress=False, classes=classes)
    nodes = mvoa.build_nodes(emb.mu, emb.var, emb.ids, min_pixels=cfg.segment.min_pixels)
    sc = cfg.segment
    ref = dense_associate(nodes, sc.threshold, sc.score_threshold, sc.min_views)
    pm, pv = dense_refine(nodes, ref, sc.refine_rounds)
    P, C = len(pm), len(is_thing)
    assert P >= 5
    view_labels, ref_ins = {}, {}
    for i in run.train_ids:
        f = pl.render_view_features(run, i, cfg)
        sem = classes.by_shares().pixel_classes(run, i, f, cfg)  # the Gaussian labels vote with the shares' classes
        th = torch.from_numpy(is_thing)[sem]
        lab = P + sem
        lab[th] = dense_assign(f["mu"][th], f["var"][th], pm, pv)[0]
        view_labels[i] = lab
    for i in run.test_ids:
        f = pl.render_view_features(run, i, cfg)
        th = torch.from_numpy(is_thing)[classes.pixel_classes(run, i, f, cfg)]
        ins = torch.zeros(th.shape, dtype=torch.long)
        ins[th] = dense_assign(f["mu"][th], f["var"][th], pm, pv)[0] + 1
        ref_ins[run.frames[i]] = ins.numpy()
    votes = blend_votes(run, view_labels, P + C, "cpu", {"eps2d": 0.3})
    vote = votes.argmax(1).numpy()
    seen = (votes.max(1).values > 0).numpy()
    assert 0 < (~seen).sum() < len(seen) // 2  # some Gaussians no pixel sees: they take the direct prototype
    own_var = activate_var(run.params["inst_var"], run.spec.var_floor)
    best = dense_assign(run.params["inst_mu"], own_var, pm, pv)[0].numpy()
    voted_thing, voted_stuff = seen & (vote < P), seen & (vote >= P)
    best[voted_thing] = vote[voted_thing]
    sem_g = classes.logits.argmax(1).numpy()
    sem_g[voted_stuff] = vote[voted_stuff] - P
    sem_g[voted_thing] = 1  # the only thing class
    ref_inst_g = np.where(is_thing[sem_g], best + 1, 0)

    # streamed
    protos = pl.find_prototypes(pl.collect_nodes(run, scene, cfg, progress=False, classes=classes), cfg)
    assert torch.equal(protos.mu, pm) and torch.equal(protos.var, pv)
    info = pl.segment_scene(run, scene, cfg, tmp_path / "seg", split="test", progress=False)
    assert info["prototypes"] == P and info["nodes"] == len(nodes)
    for name, ins in ref_ins.items():
        got = cv2.imread(str(tmp_path / "seg" / "pred_surrogateid" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(got, ins), name
    assert np.array_equal(np.load(tmp_path / "seg" / "gaussian_instance_ids.npy"), ref_inst_g)
    assert np.array_equal(np.load(tmp_path / "seg" / "gaussian_semantic_ids.npy"), sem_g)

    # the chunk size changes memory, not results
    cfg.segment.chunk_views = 1
    pl.segment_scene(run, scene, cfg, tmp_path / "seg1", split="test", progress=False)
    for f in ("gaussian_instance_ids.npy", "gaussian_semantic_ids.npy"):
        assert np.array_equal(np.load(tmp_path / "seg1" / f), np.load(tmp_path / "seg" / f))
    seg1 = json.loads((tmp_path / "seg1" / "segment.json").read_text())
    assert seg1["prototypes"] == P
