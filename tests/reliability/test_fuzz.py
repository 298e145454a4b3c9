"""Seeded slices of the input fuzzer (tools/fuzz_inputs.py): every input kind without a trained run, and the
kinds after training (a mutated run for segment, segment output and ground truth for eval, a scene for a
2-step train) on one tiny run (the long run is the tool). Fail on a traceback, crash, hang, a multi-line
error or a damaged input/output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    """tools/NAME.py as a module (registered in sys.modules: its dataclasses need that)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_fuzz_slice_has_no_traceback_crash_hang_or_damage(tmp_path):
    # the fuzzer forks per case, so it runs in its own process (pytest's own state stays out of it)
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "fuzz_inputs.py"), "--cases", "40", "--seed", "7", "--kinds", "fast",
         "--seeds", str(tmp_path / "seeds"), "--timeout", "30", "--json", str(tmp_path / "fuzz.json")],
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "40 cases" in p.stdout


def test_fuzz_slice_after_training(tmp_path):
    kinds = "segment_run,eval_pred,eval_gt,train_scene"
    p = subprocess.run(
        [sys.executable, str(REPO / "tools" / "fuzz_inputs.py"), "--cases", "12", "--seed", "5", "--kinds", kinds,
         "--seeds", str(tmp_path / "seeds"), "--timeout", "60", "--json", str(tmp_path / "fuzz.json")],
        env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    assert "12 cases" in p.stdout


@pytest.fixture(scope="module")
def fuzz_seeds(tmp_path_factory):
    """The fuzzer's valid seeds with its tiny trained run (built once for the module)."""
    return load_tool("fuzz_inputs").build_seeds(tmp_path_factory.mktemp("fuzz") / "seeds", with_run=True)


@pytest.mark.parametrize("where,key,value,says", [
    ("spec", "__fuzz__", 1, "model spec"),
    ("params", "inst_mu", "x", "inst_mu is not a float32 tensor"),
    ("params", "means", float("nan"), "NaN or infinite"),
    ("scene", "K", None, "scene record K"),
    ("scene", "train_ids", [0, 999], "split ids"),
])
def test_damaged_checkpoint_is_one_line(fuzz_seeds, tmp_path, capsys, where, key, value, says):
    import torch

    from pcf_gs.cli import main
    from pcf_gs.lift.checkpoint import save_checkpoint

    ck = torch.load(fuzz_seeds / "run" / "checkpoint.pt", weights_only=False)
    if isinstance(value, float):
        ck[where][key] = ck[where][key].clone()
        ck[where][key].view(-1)[3] = value
    else:
        ck[where][key] = value
    run = tmp_path / "bad"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", ck)
    capsys.readouterr()
    assert main(["-q", "segment", str(run), "--out", str(tmp_path / "seg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged checkpoint" in err[0] and says in err[0], err
    assert not (tmp_path / "seg").exists()


def test_classify():
    F = load_tool("fuzz_inputs")
    c = F.Case(0, "ply", cmd="edit")
    assert F.classify(c, 0, None, "") == "ok"
    assert F.classify(c, 2, None, "pcf-gs edit: error: x.ply: bad\n") == "error"
    assert F.classify(c, 2, None, "pcf-gs edit: error: x\nmore\n") == "bad-error"
    assert F.classify(c, 2, None, "") == "bad-error"
    assert F.classify(c, 1, None, "Traceback (most recent call last):\n  ...\nValueError: x\n") == "traceback"
    assert F.classify(c, None, 11, "") == "crash"
    assert F.classify(c, None, None, "") == "hang"


NASTY = ["../../escape", "..", ".", "/etc/passwd", "a/b/c", "a\\..\\..\\b", "nul\0byte", "x" * 300, "CON", "nul",
         "PRN.txt", "COM1", "", " ", "-rf", ".hidden", "ä€😀", "a:b*c?d\"e<f>g|h", "\n\r\t", "a" * 255 + ".ply"]


@pytest.mark.parametrize("label", NASTY)
def test_viewer_export_stays_in_its_folder(tmp_path, label):
    from pcf_gs.viewer.export import export_view
    from pcf_gs.viewer.view_renderer import DisplayState

    scene = load_tool("fuzz_inputs").viewer_scene_with_label(label, n=4)
    out = tmp_path / "deep" / "exports"
    out.mkdir(parents=True)
    path = export_view(scene, DisplayState(), 1, out)
    assert path.parent == out and path.is_file() and len(path.name) <= 100
    assert not path.name.startswith(".") and "\0" not in path.name
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == [path]


def test_safe_names_are_distinct_and_bounded():
    from pcf_gs.splats.export import _safe

    assert _safe("chair") == "chair" and _safe("dining table") == "dining_table"
    assert _safe("CON") == "_CON" and _safe("nul.txt") == "_nul.txt" and _safe("..") == "class"
    a, b = _safe("x" * 200 + "a"), _safe("x" * 200 + "b")
    assert a != b and len(a) == len(b) == 64


def test_segment_export_names_stay_inside_and_distinct(tmp_path):
    """Class names with separators, ``..`` and names that collide once made safe (or differ only in case): every
    file lands in objects/ or stuff/, none overwrites another, objects.json lists them all."""
    import json

    import numpy as np

    from pcf_gs.splats.export import export_objects
    from pcf_gs.splats.ply import Splats

    names = ["../../evil", "a/b", "a_b", "Wall", "wall", "..", "x/../../y"]
    thing = np.array([True, False, False, False, False, False, True])
    n = 14
    rng = np.random.default_rng(0)
    splats = Splats(rng.normal(size=(n, 3)).astype(np.float32), np.full((n, 3), -3, np.float32),
                    np.tile(np.float32([1, 0, 0, 0]), (n, 1)), np.ones(n, np.float32),
                    np.zeros((n, 1, 3), np.float32), np.zeros((n, 0, 3), np.float32), {})
    sem = np.repeat(np.arange(7), 2)
    inst = np.where(thing[sem], sem + 1, 0)
    out = tmp_path / "deep" / "seg"
    export_objects(out, splats, inst, sem, names, thing)
    files = sorted(p.relative_to(out).as_posix() for p in tmp_path.rglob("*.ply"))
    assert all(f == "scene_labeled.ply" or f.startswith(("objects/", "stuff/")) and f.count("/") == 1 for f in files)
    meta = json.loads((out / "objects.json").read_text())
    listed = sorted([o["file"] for o in meta["objects"]] + [s["file"] for s in meta["stuff"]])
    assert listed == sorted(f for f in files if f != "scene_labeled.ply")
    assert len({f.lower() for f in listed}) == len(listed) == 7  # none overwrote another, even ignoring case
    assert [s["class"] for s in meta["stuff"]] == ["a/b", "a_b", "Wall", "wall", ".."]


@pytest.mark.parametrize("host,exposed", [("127.0.0.1", False), ("localhost", False), ("::1", False), ("127.0.1.1", False),
                                          ("0.0.0.0", True), ("::", True), ("192.168.1.5", True), ("myhost", True)])
def test_exposure_warning(host, exposed):
    from pcf_gs.cli.args import exposure_warning

    w = exposure_warning(host, "viewer_exports")
    assert (w is not None) == exposed
    if w:
        assert "\n" not in w and "Export" in w and "viewer_exports" in w and host in w


def test_view_on_all_interfaces_prints_one_warning_line(monkeypatch, capsys):
    import pcf_gs.viewer.app as app
    from pcf_gs.cli import main

    monkeypatch.setattr(app, "serve", lambda *a, **k: None)
    assert main(["view", "x.ply", "--host", "0.0.0.0", "--export-dir", "exp"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pcf-gs view: warning:") and "exp/" in err[0]
    assert main(["view", "x.ply"]) == 0
    assert capsys.readouterr().err == ""


def test_train_viewer_on_all_interfaces_prints_the_warning(monkeypatch, capsys, tmp_path):
    import pcf_gs.viewer.live as live
    from pcf_gs.cli import main
    from pcf_gs.errors import UserError

    def stub(*a, **k):
        raise UserError("stub viewer")

    monkeypatch.setattr(live, "LiveTrainingViewer", stub)
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--viewer", "--host", "::"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("pcf-gs train: warning: --host :: is not loopback") and "viewer_exports/" in err[0]
    assert err[1] == "pcf-gs train: error: stub viewer"
