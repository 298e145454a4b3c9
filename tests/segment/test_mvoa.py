"""MVOA on hand-made embeddings: one prototype per object, adaptive T, labelling, scale."""

from __future__ import annotations

import time

import numpy as np
import pytest

import torch

from pcf_gs.segment.mvoa import Nodes, adaptive_threshold, assign, associate, build_nodes, hdbscan_prototypes, refine_prototypes


def make_views(n_obj=5, n_views=4, px=40, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_obj, 3, generator=g) * 3
    mus, vars_, labs = [], [], []
    for v in range(n_views):
        perm = torch.randperm(n_obj, generator=g) + 100 * v + 1  # per-view 2D ids
        mu = torch.cat([centers[o] + noise * torch.randn(px, 3, generator=g) for o in range(n_obj)])
        lab = torch.cat([torch.full((px,), int(perm[o])) for o in range(n_obj)])
        mus.append(mu)
        vars_.append(torch.full_like(mu, 0.05))
        labs.append(lab)
    return centers, mus, vars_, labs


def test_one_prototype_per_object():
    centers, mus, vars_, labs = make_views()
    nodes = build_nodes(mus, vars_, labs, min_pixels=10)
    assert len(nodes) == 5 * 4
    protos, T = associate(nodes)
    assert 0 < T < 1
    assert len(protos) == 5
    idx, k = assign(torch.cat(mus), torch.cat(vars_), nodes.mu[protos], nodes.var[protos])
    # every object's pixels get one prototype, different objects different prototypes
    per_obj = idx.reshape(4, 5, 40)
    for o in range(5):
        assert per_obj[:, o].unique().numel() == 1
    assert per_obj[0, :, 0].unique().numel() == 5


def test_min_pixels_and_scores():
    _, mus, vars_, labs = make_views(n_views=1)
    labs[0][:35] = 999  # mask of 35 pixels stays; add a 3-pixel mask that must be dropped
    labs[0][35:38] = 777
    nodes = build_nodes(mus, vars_, labs, min_pixels=10)
    assert 777 not in nodes.label.tolist()
    assert torch.all(nodes.score > 0) and torch.all(nodes.score <= 1)


def test_fixed_threshold_and_score_threshold():
    _, mus, vars_, labs = make_views()
    nodes = build_nodes(mus, vars_, labs)
    protos, T = associate(nodes, threshold=0.5)
    assert T == 0.5 and len(protos) == 5
    protos, _ = associate(nodes, score_threshold=1.01)
    assert len(protos) == 0


def test_merged_masks_do_not_become_objects():
    """A 2D mask that merges two objects (half its pixels on each) scores low; with the score
    threshold it cannot become a spurious third object, and a one-view object is dropped by min_views."""
    centers, mus, vars_, labs = make_views(n_obj=2, n_views=4)
    g = torch.Generator().manual_seed(1)
    merged = torch.cat([centers[0] + 0.05 * torch.randn(20, 3, generator=g), centers[1] + 0.05 * torch.randn(20, 3, generator=g)])
    mus[0] = torch.cat([mus[0], merged])
    vars_[0] = torch.cat([vars_[0], torch.full_like(merged, 0.05)])
    labs[0] = torch.cat([labs[0], torch.full((40,), 555)])
    lone = torch.tensor([[9.0, 9.0, 9.0]]) + 0.05 * torch.randn(30, 3, generator=g)  # seen in view 1 only
    mus[1] = torch.cat([mus[1], lone])
    vars_[1] = torch.cat([vars_[1], torch.full_like(lone, 0.05)])
    labs[1] = torch.cat([labs[1], torch.full((30,), 556)])
    nodes = build_nodes(mus, vars_, labs)
    merged_score = float(nodes.score[nodes.label == 555])
    assert merged_score < 0.5 < float(nodes.score[nodes.label != 555].min())
    assert len(associate(nodes, threshold=0.5)[0]) == 4  # the paper's MVOA: merged node and lone object too
    assert len(associate(nodes, threshold=0.5, score_threshold=0.9)[0]) == 3
    protos, _ = associate(nodes, threshold=0.5, score_threshold=0.9, min_views=2)
    assert len(protos) == 2 and 556 not in nodes.label[protos].tolist()


def test_adaptive_threshold_single_node_views():
    _, mus, vars_, labs = make_views(n_obj=1)
    nodes = build_nodes(mus, vars_, labs)
    assert adaptive_threshold(nodes) == 0.9  # no same-view pairs: fallback


def test_50k_nodes_in_seconds():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(100, 3, generator=g) * 5
    M = 50_000
    obj = torch.randint(0, 100, (M,), generator=g)
    from pcf_gs.segment.mvoa import Nodes

    nodes = Nodes(
        mu=centers[obj] + 0.05 * torch.randn(M, 3, generator=g),
        var=torch.full((M, 3), 0.05),
        score=torch.rand(M, generator=g),
        view=torch.randint(0, 500, (M,), generator=g),
        label=torch.arange(M),
        size=torch.full((M,), 50),
    )
    t = time.time()
    protos, T = associate(nodes, threshold=0.5)
    assert time.time() - t < 60  # catastrophe guard only (shared 2-core CI); seconds when idle
    assert 90 <= len(protos) <= 110


def test_hdbscan_baseline_finds_clusters():
    centers, mus, vars_, labs = make_views(px=100)
    pm, pv = hdbscan_prototypes(torch.cat(mus), torch.cat(vars_), n_samples=2000, min_cluster_size=30)
    assert pm.shape[0] == 5


def _nodes(mu, var, size):
    n = len(mu)
    return Nodes(mu, var, torch.ones(n), torch.arange(n), torch.ones(n, dtype=torch.long), torch.tensor(size))


def test_refine_moves_prototypes_to_weighted_member_means():
    # two well-separated groups of nodes; the greedy prototype of each is an off-centre member
    mu = torch.tensor([[0.0, 0, 0], [0.4, 0, 0], [0.2, 0.2, 0], [10, 0, 0], [10.6, 0, 0]], dtype=torch.float64)
    var = torch.tensor([[0.1] * 3, [0.3] * 3, [0.2] * 3, [0.1] * 3, [0.5] * 3], dtype=torch.float64)
    nodes = _nodes(mu, var, [10, 30, 20, 10, 30])
    protos = torch.tensor([1, 3])
    pm, pv = refine_prototypes(nodes, protos, rounds=10)
    w = torch.tensor([10.0, 30, 20], dtype=torch.float64)
    assert torch.allclose(pm[0], (mu[:3] * w[:, None]).sum(0) / w.sum())
    assert torch.allclose(pv[0], (var[:3] * w[:, None]).sum(0) / w.sum())
    assert torch.allclose(pm[1], (mu[3:] * torch.tensor([[10.0], [30]], dtype=torch.float64)).sum(0) / 40)
    # zero rounds: the greedy prototypes themselves; inputs untouched
    pm0, pv0 = refine_prototypes(nodes, protos, rounds=0)
    assert torch.equal(pm0, mu[protos]) and torch.equal(pv0, var[protos])


def test_refine_keeps_count_when_a_prototype_loses_its_members():
    mu = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5, 5, 5]])
    var = torch.full((3, 3), 0.1)
    nodes = _nodes(mu, var, [10, 10, 10])
    # a duplicated prototype: ties go to the first copy, so the second starts with no members
    pm, pv = refine_prototypes(nodes, torch.tensor([0, 2, 0]), rounds=1)
    assert pm.shape == (3, 3) and torch.isfinite(pm).all() and torch.isfinite(pv).all()
    assert torch.allclose(pm[0], mu[:2].mean(0)) and torch.equal(pm[2], mu[0]) and torch.equal(pm[1], mu[2])


def test_node_pixels_thing_keeps_only_pixels_rendered_as_things(monkeypatch):
    """segment.node_pixels=thing (the released code): mask pixels the model renders as stuff stay out of the nodes."""
    from types import SimpleNamespace

    import pcf_gs.segment.pipeline as pl
    from pcf_gs.config import Config

    H = W = 4
    inst = np.zeros((H, W), np.int32)
    inst[:, :2], inst[:, 2:] = 1, 2
    mu = torch.arange(H * W, dtype=torch.float32).reshape(H, W, 1).repeat(1, 1, 3)
    sem = torch.ones(H, W, dtype=torch.long)
    sem[:, 1] = 0  # column 1: boundary noise the model renders as the room
    monkeypatch.setattr(pl, "render_view_inputs",
                        lambda run, i, cfg, classes: {"mu": mu, "var": torch.ones(H, W, 3), "classes": sem})
    classes = SimpleNamespace()
    scene = SimpleNamespace(frames=[SimpleNamespace(instances=inst, valid=None)],
                            classes=SimpleNamespace(is_thing_array=lambda: np.array([False, True])))
    run = SimpleNamespace(train_ids=[0])
    cfg = Config()
    full = pl.embed_train_views(run, scene, cfg, progress=False, classes=classes)
    assert len(full.ids[0]) == 16
    cfg.segment.node_pixels = "thing"
    kept = pl.embed_train_views(run, scene, cfg, progress=False, classes=classes)
    assert len(kept.ids[0]) == 12 and sorted(set(kept.ids[0].tolist())) == [1, 2]
    assert not any(int(v) % W == 1 for v in kept.mu[0][:, 0])  # no pixel of column 1
    with pytest.raises(ValueError):
        pl.embed_train_views(run, scene, cfg, progress=False)
