"""Boundary / interior pixel sets and the rendered-variance ratio (PCF-Lift Fig. 5)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pcf_gs.lift.model
from pcf_gs.config import RenderConfig
from pcf_gs.evaluation.diagnostics import boundary_uncertainty, instance_boundaries

# what boundary_uncertainty reads of a Run when the renderer is faked
FAKE_RUN = SimpleNamespace(params=None, spec=None, config=SimpleNamespace(render=RenderConfig(backend="cpu")))


def square_scene(size=12, lo=2, hi=8):
    ins = np.zeros((size, size), np.int32)
    ins[lo:hi, lo:hi] = 3
    sem = (ins > 0).astype(np.int32)
    return ins, sem


def test_square_ring_and_core():
    ins, sem = square_scene()  # a 6x6 object at rows/cols 2..7
    b, i = instance_boundaries(ins, sem, band=1)
    ring = np.zeros_like(b)
    ring[2:8, 2:8] = True
    ring[3:7, 3:7] = False
    assert (b == ring).all()  # the object's outermost pixels (8-connected to the background)
    core = np.zeros_like(i)
    core[4:6, 4:6] = True
    assert (i == core).all()  # at least 2 pixels from anything else


def test_touching_objects_share_a_boundary():
    ins = np.zeros((8, 12), np.int32)
    ins[:, :6] = 1
    ins[:, 6:] = 2
    sem = np.ones_like(ins)
    b, i = instance_boundaries(ins, sem, band=1)
    assert b[:, 5].all() and b[:, 6].all() and b.sum() == 16  # the two columns where they meet
    assert not i[:, 4:8].any() and i[:, :4].all() and i[:, 8:].all()


def test_no_things_no_pixels():
    z = np.zeros((5, 5), np.int32)
    b, i = instance_boundaries(z, z)
    assert not b.any() and not i.any()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 3))
def test_sets_are_disjoint_things_and_rename_invariant(seed, band):
    rng = np.random.default_rng(seed)
    ins = rng.integers(0, 4, (6, 7)).repeat(3, 0).repeat(3, 1).astype(np.int32)  # blocky random labels
    sem = (ins > 0).astype(np.int32)
    b, i = instance_boundaries(ins, sem, band)
    assert not (b & i).any()
    assert not ((b | i) & (ins == 0)).any()
    perm = np.array([0, 70000, 5, 2])  # renaming ids (beyond 16 bits too) changes nothing
    b2, i2 = instance_boundaries(perm[ins].astype(np.int64), sem, band)
    assert (b == b2).all() and (i == i2).all()


def test_ratio_of_a_known_variance_map(monkeypatch):
    ins, sem = square_scene()
    b, i = instance_boundaries(ins, sem)
    var = np.where(b, 0.6, 0.2).astype(np.float32)  # 3x more variance on the boundary
    frame = SimpleNamespace(gt_instances=ins, gt_semantics=sem, c2w=np.eye(4), K=np.eye(3), width=12, height=12)
    scene = SimpleNamespace(split=lambda s: [frame, frame], root="scene")

    def fake_render(params, spec, vm, K, W, H, **kw):
        return {"var": torch.from_numpy(np.repeat(var[None, :, :, None], 3, -1))}

    monkeypatch.setattr(pcf_gs.lift.model, "render_features", fake_render)
    r = boundary_uncertainty(FAKE_RUN, scene)
    assert r["boundary"] == pytest.approx(0.6) and r["interior"] == pytest.approx(0.2)
    assert r["ratio"] == pytest.approx(3.0)
    assert r["boundary_pixels"] == 2 * b.sum() and r["interior_pixels"] == 2 * i.sum()

    assert r["object_ratio_median"] == pytest.approx(3.0) and r["objects_higher"] == 1.0


def test_per_object_ratio_is_not_swamped_by_a_big_object(monkeypatch):
    # object 1: a big square, boundary variance *lower* than its interior; objects 2, 3: small, higher
    ins = np.zeros((40, 40), np.int64)
    ins[2:30, 2:30] = 1
    ins[32:38, 2:8] = 2
    ins[32:38, 20:26] = 3
    sem = (ins > 0).astype(np.int64)
    b, i = instance_boundaries(ins, sem)
    var = np.full((40, 40), 1.0, np.float32)
    var[b & (ins == 1)] = 0.5
    var[b & (ins > 1)] = 2.0
    frame = SimpleNamespace(gt_instances=ins, gt_semantics=sem, c2w=np.eye(4), K=np.eye(3), width=40, height=40)
    scene = SimpleNamespace(split=lambda s: [frame], root="scene")
    monkeypatch.setattr(pcf_gs.lift.model, "render_features",
                        lambda *a, **kw: {"var": torch.from_numpy(np.repeat(var[None, :, :, None], 3, -1))})
    r = boundary_uncertainty(FAKE_RUN, scene)
    assert r["ratio"] < 1  # pooled over pixels the big object's interior wins
    assert r["objects"] == 3 and r["object_ratio_median"] == pytest.approx(2.0)
    assert r["objects_higher"] == pytest.approx(2 / 3)
