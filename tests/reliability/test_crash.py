"""Crash safety (docs/reliability.md): SIGKILL at seeded random moments.

- ``train`` killed and resumed (``--resume``; a fresh start if it died before writing anything) ends with
  a checkpoint equal, tensor for tensor, to an uninterrupted run's, and the same metrics log.
- ``segment``, ``render``, ``export`` and ``edit`` killed leave their output as it was before or complete,
  never a mix.
- A second ``train`` on the same run folder is refused; a full disk is a one-line error that keeps the
  last good checkpoint.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from pcf_gs.cli import main
from pcf_gs.lift.checkpoint import load_checkpoint
from tests.lift.test_train import FAST
from tests.reliability.helpers import run, run_killed, same, tree

# more checkpoints than FAST's: more chances for a kill to land inside a checkpoint write
TRAIN = [*FAST, "--set", "train.checkpoint_every=4", "--set", "device=cpu"]


def _metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"}
            for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _kill_and_resume(root: Path, tmp: Path, trials: int, kills_per_trial: int, seed: int) -> None:
    ref = tmp / "ref"
    rc, seconds, err = run("train", root, "--out", ref, *TRAIN)
    assert rc == 0, err
    want = load_checkpoint(ref)
    rng = random.Random(seed)
    for t in range(trials):
        out = tmp / f"killed{t}"
        for _ in range(kills_per_trial):
            resume = ["--resume"] if (out / "config.yaml").exists() else []
            rc = run_killed("train", root, "--out", out, *TRAIN, *resume, after=rng.uniform(0.1, 1.0) * seconds)
            assert rc in (None, 0)
        while True:  # resume until it finishes (an uninterrupted resume always does)
            resume = ["--resume"] if (out / "config.yaml").exists() else []
            rc, _, err = run("train", root, "--out", out, *TRAIN, *resume)
            assert rc == 0, err
            break
        got = load_checkpoint(out)
        same(want, got, "checkpoint")
        assert _metrics(out) == _metrics(ref)
        assert not list(out.glob(".checkpoint.*"))  # no temporary left behind


def test_train_killed_and_resumed_matches_uninterrupted(tiny_mr, tmp_path):
    root, _ = tiny_mr
    _kill_and_resume(root, tmp_path, trials=2, kills_per_trial=1, seed=19)


@pytest.mark.slow
def test_train_killed_and_resumed_matches_uninterrupted_many(tiny_mr, tmp_path):
    root, _ = tiny_mr
    _kill_and_resume(root, tmp_path, trials=6, kills_per_trial=3, seed=1919)


# ----------------------------------------------------------------------------- outputs of the other commands


@pytest.fixture
def trained(tiny_mr, tmp_path):
    root, _ = tiny_mr
    run_dir = tmp_path / "run"
    assert main(["-q", "train", str(root), "--out", str(run_dir), *FAST]) == 0
    return run_dir


def _commands(run_dir: Path, tmp: Path) -> dict:
    """name -> (argv producing OUT, OUT, argv producing the source it needs first or None)."""
    seg = tmp / "seg_src"
    return {
        "segment": (["segment", run_dir, "--out", tmp / "out_segment", "--export-ply", "--split", "all"], tmp / "out_segment", None),
        "render": (["render", run_dir, "--out", tmp / "out_render", "--split", "all"], tmp / "out_render", None),
        "export": (["export", seg, "--format", "spz,glb,splat", "--out", tmp / "out_export"], tmp / "out_export",
                   ["segment", run_dir, "--out", seg, "--export-ply", "--split", "test"]),
        "edit": (["edit", seg / "scene_labeled.ply", "--out", tmp / "out_edit.ply",
                  "--box=-1e3,-1e3,-1e3,1e3,1e3,1e3", "--translate", "box=0.1,0,0"], tmp / "out_edit.ply",
                 ["segment", run_dir, "--out", seg, "--export-ply", "--split", "test"]),
    }


def _snapshot(out: Path) -> dict:
    if out.is_file():
        return {"": out.read_bytes()}
    # names only for folders: segment.json and metrics.json hold timings, so bytes differ run to run
    return {k: b"" for k in tree(out)}


def _old_or_new(name: str, trained: Path, tmp: Path, trials: int, seed: int) -> None:
    argv, out, prep = _commands(trained, tmp)[name]
    if prep is not None:
        assert main(["-q", *map(str, prep)]) == 0
    rc, seconds, err = run(*argv)  # the complete output
    assert rc == 0, err
    new = _snapshot(out)
    # an older complete output that the command replaces (a folder) or overwrites (a file)
    if out.is_dir():
        (out / "OLD").write_text("the previous output\n")
        old = _snapshot(out)
        if name != "export":  # export adds to OUT: the finished output keeps OLD
            new = {k: v for k, v in old.items() if k != "OLD"}
        else:
            new = old
    else:
        out.write_bytes(b"old")
        old = {"": b"old"}
    rng = random.Random(seed)
    for _ in range(trials):
        rc = run_killed(*argv, after=rng.uniform(0.2, 1.0) * seconds)
        got = _snapshot(out)
        assert got in (old, new), f"{name}: a mix after SIGKILL: {sorted(set(got) ^ set(old))[:5]}"
        assert rc in (None, 0)
        if got == new and out.is_dir() and name != "export":
            (out / "OLD").write_text("the previous output\n")  # start the next trial from an old output again
        elif got == new and out.is_file():
            out.write_bytes(b"old")
    stray = [p.name for p in out.parent.glob(f".{out.name}.*")]
    rc, _, err = run(*argv)  # the next run cleans what a killed one left
    assert rc == 0, err
    assert not [p.name for p in out.parent.glob(f".{out.name}.*") if p.is_dir()], stray


@pytest.mark.parametrize("name", ["segment", "render", "export", "edit"])
def test_killed_command_leaves_old_or_complete_output(name, trained, tmp_path):
    _old_or_new(name, trained, tmp_path, trials=1, seed=19)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["segment", "render", "export", "edit"])
def test_killed_command_leaves_old_or_complete_output_many(name, trained, tmp_path):
    _old_or_new(name, trained, tmp_path, trials=6, seed=1919)


# ----------------------------------------------------------------------------- lock, full disk


def test_second_train_on_the_same_run_is_refused(tiny_mr, tmp_path, capsys):
    from pcf_gs.lift.trainer import run_lock

    root, _ = tiny_mr
    out = tmp_path / "run"
    with run_lock(out):  # as a running `pcf-gs train` holds it
        capsys.readouterr()
        assert main(["-q", "train", str(root), "--out", str(out), *FAST]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "another pcf-gs train" in err and str(out) in err
        assert not (out / "checkpoint.pt").exists()
    assert main(["-q", "train", str(root), "--out", str(out), *FAST]) == 0  # released: trains


def test_failed_train_leaves_no_lock_file_or_empty_run_folder(tmp_path, capsys):
    from pcf_gs.lift.trainer import run_lock

    bad = tmp_path / "no_scene"
    fresh = tmp_path / "fresh"
    assert main(["-q", "train", str(bad), "--out", str(fresh), *FAST]) == 2
    assert not fresh.exists()  # created for the lock, removed with it
    old = tmp_path / "old"
    old.mkdir()
    (old / "keep.txt").write_text("x")
    assert main(["-q", "train", str(bad), "--out", str(old), *FAST]) == 2
    assert sorted(p.name for p in old.iterdir()) == ["keep.txt"]
    with run_lock(old):
        assert (old / ".lock").read_text().strip().isdigit()
    assert not (old / ".lock").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if p.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({p.stderr.strip() or 'mount failed'}; needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_is_one_line_and_keeps_the_checkpoint(tiny_mr, small_tmpfs, capsys):
    import shutil

    root, _ = tiny_mr
    run_dir = small_tmpfs / "run"
    assert main(["-q", "train", str(root), "--out", str(run_dir), *FAST]) == 0
    before = (run_dir / "checkpoint.pt").read_bytes()
    free = shutil.disk_usage(small_tmpfs).free
    # leave room for about half a checkpoint: the next one cannot be written beside the old
    (small_tmpfs / "filler").write_bytes(b"\0" * max(free - len(before) // 2, 0))
    capsys.readouterr()
    rc = main(["-q", "train", str(root), "--out", str(run_dir), "--resume", "--set", "train.iterations=40"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "No space left" in err, err
    assert (run_dir / "checkpoint.pt").read_bytes() == before  # the last good checkpoint, intact
    assert load_checkpoint(run_dir)["step"] == 24
    assert not list(run_dir.glob(".checkpoint.*"))


class _Payload:
    """Runs code when unpickled: what a hostile 'checkpoint' would carry."""

    def __reduce__(self):
        return (Path.touch, (Path(_Payload.target),))


def test_checkpoint_with_code_is_refused_and_runs_nothing(trained, tmp_path, capsys):
    """``torch.load(weights_only=True)``: a checkpoint holding a pickled callable is refused in one line,
    and the callable never runs; real checkpoints (numpy RNG state included) still load."""
    import torch

    run_dir = trained
    ck = load_checkpoint(run_dir)  # a real one loads
    assert ck["step"] > 0
    _Payload.target = str(tmp_path / "pwned")
    ck["config"] = {"x": _Payload()}
    torch.save(ck, run_dir / "checkpoint.pt")
    assert main(["-q", "segment", str(run_dir), "--out", str(tmp_path / "seg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to load" in err[0] and "checkpoint.pt" in err[0], err
    assert not (tmp_path / "pwned").exists()
