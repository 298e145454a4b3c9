"""The typed Run: built from a checkpoint's plain dicts, old runs included."""

from __future__ import annotations

import numpy as np
import pytest

from pcf_gs.config import Config
from pcf_gs.data import load_scene
from pcf_gs.errors import UserError
from pcf_gs.lift.checkpoint import save_checkpoint
from pcf_gs.lift.model import ModelSpec, init_params
from pcf_gs.lift.run import Run, scene_record
from tests.conftest import write_tiny_messy_rooms


@pytest.fixture
def record(tmp_path):
    write_tiny_messy_rooms(tmp_path / "scene", n_frames=5)
    return scene_record(load_scene(tmp_path / "scene", progress=False))


def _checkpoint(tmp_path, record, config: dict) -> None:
    spec = ModelSpec(num_classes=2, embed_dim=3, sh_degree=0)
    params = {k: v.detach() for k, v in init_params(np.zeros((4, 3)), None, spec).items()}
    save_checkpoint(tmp_path / "run" / "checkpoint.pt",
                    {"params": params, "spec": vars(spec), "scene": record, "config": config})


def test_run_from_checkpoint(tmp_path, record):
    (tmp_path / "run").mkdir()
    # an old run's config still holds settings that were retired since: it loads
    _checkpoint(tmp_path, record, {"render": {"near_plane": 0.01, "far_plane": 1e10}, "train": {"batch_views": 1, "iterations": 7}})
    run = Run.load(tmp_path / "run")
    assert run.config.train.iterations == 7 and isinstance(run.config, Config)
    assert (run.width, run.height) == (32, 24)
    assert run.c2w.shape == (5, 4, 4) and run.K.shape == (5, 3, 3)
    assert run.split_ids("all") == list(range(5))
    assert sorted(run.split_ids("train") + run.split_ids("test")) == list(range(5))
    assert run.classes.num_classes == 2 and run.frames == record["frames"]
    assert not any(p.requires_grad for p in run.params.values())
    for i in range(5):
        vm, K = run.view(i)
        assert vm.shape == (1, 4, 4) and K.shape == (1, 3, 3)
        np.testing.assert_allclose((vm[0] @ run.c2w[i]).numpy(), np.eye(4), atol=1e-5)
    pts = np.array([[0.3, -0.2, 0.5]])
    back = run.normalization.scene_to_world_points(run.normalization.world_to_scene_points(pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    with pytest.raises(UserError, match="unknown split"):
        run.split_ids("val")


def test_run_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        Run.load(tmp_path)
