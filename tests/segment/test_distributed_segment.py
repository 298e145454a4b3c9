"""``segment`` on 2 processes (gloo) writes what 1 process writes."""

from __future__ import annotations

import json
import os
import socket

import cv2
import numpy as np
import torch

from pcf_gs.cli import main


def _scene(clustering: str):
    from tests.conftest import load_tool

    run, scene = load_tool("bench_segment_scale").synthetic_scene(8000, 8, 48, n_objects=20, sh_degree=1)
    sc = run.config.segment
    run.config.render.backend = "cpu"
    sc.chunk_views, sc.clustering = 2, clustering
    sc.hdbscan_samples, sc.hdbscan_min_cluster_size = 500, 10  # fewer than the mask pixels: the merged sample is cut
    return run, scene


def _worker(rank: int, world: int, port: int, out: str, clustering: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from pathlib import Path

    from pcf_gs.segment.distributed import close_group, init_group
    from pcf_gs.segment.pipeline import segment_scene

    group = init_group(timeout_s=300)
    run, scene = _scene(clustering)
    info = segment_scene(run, scene, run.config, Path(out), split="all", progress=False, group=group)
    assert (info is None) == (rank != 0)
    close_group(group)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_what_one_writes(tmp_path):
    from pcf_gs.segment.pipeline import segment_scene

    clustering = "mvoa"  # HDBSCAN's pixel sample, split and merged: test_streaming.py
    one, two = tmp_path / f"one_{clustering}", tmp_path / f"two_{clustering}"
    run, scene = _scene(clustering)
    segment_scene(run, scene, run.config, one, split="all", progress=False)
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(two), clustering), nprocs=2)
    a, b = json.loads((one / "segment.json").read_text()), json.loads((two / "segment.json").read_text())
    assert b.pop("processes") == 2
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    for d in ("pred_semantics", "pred_surrogateid"):
        names = sorted(p.name for p in (one / d).iterdir())
        assert names == sorted(p.name for p in (two / d).iterdir()) and len(names) == 8
        for n in names:
            assert np.array_equal(cv2.imread(str(one / d / n), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(two / d / n), cv2.IMREAD_UNCHANGED)), (clustering, d, n)
    for f in ("gaussian_instance_ids.npy", "gaussian_semantic_ids.npy"):
        assert np.array_equal(np.load(one / f), np.load(two / f)), (clustering, f)


def test_distributed_outside_torchrun_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert main(["-q", "segment", str(tmp_path), "--out", str(tmp_path / "o"), "--distributed"]) == 2
    assert "torchrun" in capsys.readouterr().err
