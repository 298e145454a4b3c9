"""Semantic classes voted onto Gaussians from the training views' 2D labels (segment.semantics=vote)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch


def two_blob_scene(labels_per_view):
    """(run, scene): two opaque Gaussians left and right of a 16x8 camera looking down +z; one label map per view."""
    from pcf_gs.config import Config
    from pcf_gs.data.scene import ClassInfo, ClassTable, Normalization
    from pcf_gs.lift.model import ModelSpec
    from pcf_gs.lift.run import Run

    params = {
        "means": torch.tensor([[-0.5, 0.0, 2.0], [0.5, 0.0, 2.0]]),
        "quats": torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]),
        "scales": torch.full((2, 3), float(np.log(0.15))),
        "opacities": torch.full((2,), 6.0),
        "semantics": torch.tensor([[0.0, 3.0, 0.0], [0.0, 3.0, 0.0]]),  # the head says class 1 for both
    }
    W, H, V = 16, 8, len(labels_per_view)
    K = torch.tensor([[8.0, 0, 8], [0, 8.0, 4], [0, 0, 1]])
    run = Run(params=params, spec=ModelSpec(num_classes=3), c2w=torch.eye(4)[None].repeat(V, 1, 1), K=K[None].repeat(V, 1, 1),
              width=W, height=H, frames=[f"{v:03d}" for v in range(V)], train_ids=list(range(V)), test_ids=[],
              normalization=Normalization(), classes=ClassTable([ClassInfo(c, f"class {c}", c > 0) for c in range(3)]), root=Path("."), format="synth",
              config=Config())
    frames = []
    for left, right in labels_per_view:
        sem = np.zeros((H, W), np.int32)
        sem[:, :8], sem[:, 8:] = left, right
        frames.append(SimpleNamespace(semantics=sem, valid=None, confidence=None))
    scene = SimpleNamespace(classes=SimpleNamespace(num_classes=3), frames=frames)
    return run, scene


def two_blob_setup(labels_per_view):
    """The vote's class shares [2, 3] of :func:`two_blob_scene`."""
    from pcf_gs.segment.gaussian_labels import gaussian_semantics_vote

    return gaussian_semantics_vote(*two_blob_scene(labels_per_view), "cpu", {"eps2d": 0.3})


def test_semantic_vote_is_a_multiview_majority():
    # left Gaussian: class 2 in two views, 0 in one; right: class 0 everywhere (the head said 1 for both)
    p = two_blob_setup([(2, 0), (2, 0), (0, 0)])
    assert p.shape == (2, 3) and torch.allclose(p.sum(1), torch.ones(2))
    assert p.argmax(1).tolist() == [2, 0]
    assert float(p[0, 2]) == pytest.approx(2 / 3, abs=0.02) and float(p[1, 0]) > 0.95


def test_majority_rule_is_one_hot_of_the_vote():
    # segment.vote_rule=majority (the default): the left Gaussian, class 2 in two views of three, is class 2
    # outright, so a view blending it with the room's Gaussians is not pulled towards class 0 by the missed view
    from pcf_gs.config import Config, apply_overrides
    from pcf_gs.errors import UserError
    from pcf_gs.segment.gaussian_labels import majority

    share = two_blob_setup([(2, 0), (2, 0), (0, 0)])
    major = majority(share)
    assert torch.equal(major, torch.nn.functional.one_hot(share.argmax(1), 3).float())
    assert major.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    with pytest.raises(UserError, match="vote_rule"):
        apply_overrides(Config(), ["segment.vote_rule=mean"])


@pytest.mark.parametrize("rule", ["majority", "share"])
def test_segment_reads_the_vote_rule_from_its_config(rule):
    from pcf_gs.config import apply_overrides
    from pcf_gs.segment.gaussian_labels import majority
    from pcf_gs.segment.pipeline import gaussian_classes

    run, scene = two_blob_scene([(2, 0), (2, 0), (0, 0)])
    cfg = apply_overrides(run.config, ["render.eps2d=0.3", f"segment.vote_rule={rule}"])
    classes = gaussian_classes(run, scene, cfg)
    share = two_blob_setup([(2, 0), (2, 0), (0, 0)])
    assert torch.equal(classes.shares, share)
    assert torch.equal(classes.voted, majority(share) if rule == "majority" else share)
    assert classes.voted.argmax(1).tolist() == [2, 0]
