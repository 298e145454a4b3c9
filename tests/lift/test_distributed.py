"""Multi-process training (torchrun, gloo): R processes x G/R view groups equal 1 process x G groups; a run
resumes with another number of processes; a lost process stops the others with one line, not a hang."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from pcf_gs.cli import main
from pcf_gs.errors import UserError
from pcf_gs.lift.checkpoint import load_checkpoint
from tests.lift.test_train import FAST

G2 = ["--set", "train.views_per_step=2", "--set", "train.grow_grad2d=2e-5"]  # some Gaussians grow, some not


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def torchrun(root, out, *extra, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N -m pcf_gs train ... --distributed`, as the README says."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "pcf_gs", "-q", "train", str(root), "--out", str(out), "--distributed", *FAST, *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())


def one(root, out, *extra) -> int:
    return main(["-q", "train", str(root), "--out", str(out), *FAST, *map(str, extra)])


def assert_same_run(a, b, atol=2e-5):
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca["step"] == cb["step"]
    assert ca["params"].keys() == cb["params"].keys()
    for k in ca["params"]:
        x, y = ca["params"][k], cb["params"][k]
        assert x.shape == y.shape, k  # the same Gaussians split, cloned and pruned
        torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=k)
    assert ca["rng"]["gen"].equal(cb["rng"]["gen"]) and ca["order"] == cb["order"]  # the same draws


def test_two_processes_equal_one_and_resume_across_counts(tiny_mr, tmp_path):
    """1 process x 2 groups, 0 -> 12 -> 24 steps (densification at 5, 10, 15, 20), against: 2 processes to 12 then
    1 to 24, and 1 process to 12 then 2 to 24."""
    root, _ = tiny_mr
    half = ["--set", "train.iterations=12"]
    ref = tmp_path / "ref"
    assert one(root, ref, *G2, *half) == 0
    a = tmp_path / "a"
    r = torchrun(root, a, *G2, *half)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(ref, a)
    recs = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in recs] == [4, 8, 12]  # one writer
    b = tmp_path / "b"
    assert one(root, b, *G2, *half) == 0
    assert one(root, ref, "--resume", "--set", "train.iterations=24") == 0
    assert one(root, a, "--resume", "--set", "train.iterations=24") == 0
    r = torchrun(root, b, "--resume", "--set", "train.iterations=24")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_run(ref, a)
    assert_same_run(ref, b)
    assert 300 < len(load_checkpoint(ref)["params"]["means"]) < 1200  # densification chose some Gaussians


def test_views_per_step_must_divide(tiny_mr, tmp_path):
    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.distributed import Dist
    from pcf_gs.lift.trainer import Trainer

    root, _ = tiny_mr
    cfg = load_config("cpu_fast", ["train.views_per_step=3"])
    scene = load_scene(root, cfg.data, progress=False)
    with pytest.raises(UserError, match="views_per_step=3 does not divide among 2"):
        Trainer(scene, cfg, tmp_path / "run", torch.device("cpu"), progress=False, dist=Dist(0, 2))


def test_step_loss_is_the_mean_of_the_shares(tiny_mr, tmp_path):
    """The loss of G = 2 groups is the mean of two processes' shares, drawn from the same streams."""
    import copy

    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.objective import step_losses
    from pcf_gs.lift.trainer import Trainer

    root, _ = tiny_mr
    cfg = load_config("cpu_fast", ["train.views_per_step=2", "model.init_points=200", "train.pixels_per_view=64",
                                   "train.warmup_iterations=0", "train.cross_view_start=0",
                                   "train.cross_view_min_samples=2"])
    scene = load_scene(root, cfg.data, progress=False)
    tr = Trainer(scene, cfg, tmp_path / "run", torch.device("cpu"), progress=False)
    tr.init_model()
    args = (tr.params, tr.spec, cfg, tr.views)
    both, metas = step_losses(*args, copy.deepcopy(tr.sampler), 5)
    first, _ = step_losses(*args, copy.deepcopy(tr.sampler), 5, share=(0, 2))
    second, _ = step_losses(*args, copy.deepcopy(tr.sampler), 5, share=(1, 2))
    assert len(metas) == 2 and "contrastive" in both and "cross_view" in both
    torch.testing.assert_close(both["total"], (first["total"] + second["total"]) / 2)
    torch.testing.assert_close(both["appearance"], (first["appearance"] + second["appearance"]) / 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_two(root, out) -> list[subprocess.Popen]:
    """Two training processes started as torchrun would (its environment variables), once both train."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**_env(), "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        cmd = [sys.executable, "-m", "pcf_gs", "-q", "train", str(root), "--out", str(out), "--distributed", *FAST,
               "--set", "train.iterations=100000", "--set", "train.views_per_step=2"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    deadline = time.time() + 180
    metrics = out / "metrics.jsonl"
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # training, in lockstep
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise AssertionError([p.communicate() for p in procs])
        time.sleep(0.2)
    return procs


@pytest.mark.parametrize("victim", [1, 0])
def test_a_killed_process_stops_the_others(tiny_mr, tmp_path, victim):
    """One of two processes is killed with SIGKILL mid-run: the other exits within a minute with one line naming
    the lost contact, not a hang."""
    root, _ = tiny_mr
    procs = _start_two(root, tmp_path / "run")
    try:
        procs[victim].send_signal(signal.SIGKILL)
        other = procs[1 - victim]
        _, err = other.communicate(timeout=60)
        assert other.returncode not in (0, None)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "lost contact with the other ranks" in lines[0], err[-2000:]
        assert "Traceback" not in err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_ctrl_c_stops_every_process_after_the_same_step(tiny_mr, tmp_path):
    """SIGINT to both processes (a terminal's Ctrl-C): they agree on the step, stop, and the first saves it."""
    root, _ = tiny_mr
    out = tmp_path / "run"
    procs = _start_two(root, out)
    try:
        for p in procs:
            p.send_signal(signal.SIGINT)
        codes = [p.wait(timeout=60) for p in procs]
        assert codes == [130, 130], [p.communicate() for p in procs]
        ck = load_checkpoint(out)
        assert ck["step"] > 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
