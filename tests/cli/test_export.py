"""`pcf-gs export` and `segment --export`: the converted tree, objects.json, bad input, atomic outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcf_gs.cli import build_parser, main
from pcf_gs.splats import formats as F
from pcf_gs.splats.export import export_objects
from pcf_gs.splats.ply import Splats


def make_segment_export(out, n: int = 400, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    s = Splats(rng.normal(size=(n, 3)).astype(np.float32), rng.normal(-3, 0.3, (n, 3)).astype(np.float32),
               rng.normal(size=(n, 4)).astype(np.float32), rng.normal(2, 1, n).astype(np.float32),
               rng.normal(0, 0.4, (n, 1, 3)).astype(np.float32), rng.normal(0, 0.05, (n, 15, 3)).astype(np.float32),
               {"inst_mu": rng.normal(size=(n, 3)).astype(np.float32), "inst_var": np.ones((n, 3), np.float32)})
    inst = rng.integers(0, 4, n)
    sem = np.where(inst > 0, 1, rng.integers(0, 2, n) * 2)
    return export_objects(out, s, inst, sem, ["wall", "chair", "floor"], np.array([False, True, False]))


def test_export_writes_the_tree(tmp_path, capsys):
    table = make_segment_export(tmp_path / "seg")
    out = tmp_path / "out"
    assert main(["-q", "export", str(tmp_path / "seg"), "--format", "spz,glb", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "spz: " in printed and "dropped: instance_id" in printed
    t = json.loads((out / "objects.json").read_text())
    assert [o["id"] for o in t["objects"]] == [o["id"] for o in table]
    for o, o0 in zip(t["objects"], table):
        stem = o0["file"][: -len(".ply")]
        assert o["file"] == stem + ".spz" and o["files"] == {"spz": stem + ".spz", "glb": stem + ".glb"}
        assert {k: v for k, v in o.items() if k not in ("file", "files")} == {k: v for k, v in o0.items() if k != "file"}
        assert len(F.read_splats(out / o["file"])) == o["num_gaussians"]
        assert (out / o["files"]["glb"]).is_file()
    for name in ("scene.spz", "scene_labeled.glb", "stuff/wall.spz", "stuff/wall.glb", "stuff/floor.spz"):
        assert (out / name).is_file(), name
    assert not (out / "scene_labeled.spz").exists()
    assert t["exports"]["spz"]["scene"] == "scene.spz" and "instance_id" in t["exports"]["spz"]["dropped"]
    assert t["exports"]["glb"]["scene"] == "scene_labeled.glb" and t["exports"]["glb"]["dropped"] == []
    lab = F.read_splats(out / "scene_labeled.glb")
    assert {"instance_id", "semantic_id", "inst_mu", "inst_var"} <= set(lab.extra)
    # into the source folder itself: the PLY files stay, the new ones join them
    assert main(["-q", "export", str(tmp_path / "seg"), "--format", "sog", "--out", str(tmp_path / "seg")]) == 0
    t2 = json.loads((tmp_path / "seg" / "objects.json").read_text())
    assert t2["objects"][0]["file"].endswith(".sog") and t2["objects"][0]["files"]["sog"] == t2["objects"][0]["file"]
    assert (tmp_path / "seg" / "scene_labeled.ply").is_file() and (tmp_path / "seg" / "scene.sog").is_file()


def test_export_a_single_file(tmp_path):
    make_segment_export(tmp_path / "seg")
    assert main(["-q", "export", str(tmp_path / "seg" / "objects" / "1_chair.ply"), "-f", "splat,gsplat-ckpt",
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "1_chair.splat").is_file() and (tmp_path / "o" / "1_chair.pt").is_file()


@pytest.mark.parametrize("case", ["missing", "empty_dir", "bad_json", "missing_object", "bad_format", "bad_file"])
def test_bad_source_is_exit_2_and_one_line(tmp_path, capsys, case):
    src = tmp_path / "seg"
    fmt = "spz"
    if case == "missing":
        src = tmp_path / "nope"
    elif case == "empty_dir":
        src.mkdir()
    elif case == "bad_json":
        make_segment_export(src)
        (src / "objects.json").write_text("{not json")
    elif case == "missing_object":
        make_segment_export(src)
        (src / "objects" / "1_chair.ply").unlink()
    elif case == "bad_format":
        make_segment_export(src)
        fmt = "spz,obj"
    elif case == "bad_file":
        src = tmp_path / "x.spz"
        src.write_bytes(b"garbage")
    capsys.readouterr()
    assert main(["export", str(src), "--format", fmt, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pcf-gs export: error: ")
    assert "Traceback" not in err
    if case != "bad_format":
        assert str(src) in err or str(src / "objects.json") in err


def test_failure_keeps_existing_outputs(tmp_path):
    make_segment_export(tmp_path / "seg")
    out = tmp_path / "out"
    assert main(["-q", "export", str(tmp_path / "seg"), "--format", "spz", "--out", str(out)]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "seg" / "objects" / "2_chair.ply").write_bytes(b"ply\nbroken")
    assert main(["-q", "export", str(tmp_path / "seg"), "--format", "spz", "--out", str(out)]) == 2
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # inputs are all read before anything is written


def test_render_takes_splats_and_keeps_ply_as_alias():
    p = build_parser()
    a = p.parse_args(["render", "run", "--out", "o", "--splats", "x.spz"])
    b = p.parse_args(["render", "run", "--out", "o", "--ply", "x.ply"])
    assert a.splats == "x.spz" and b.splats == "x.ply"
    c = p.parse_args(["segment", "run", "--out", "o", "--export", "spz,glb"])
    assert c.export == "spz,glb"


def test_segment_export_and_run_export_on_a_tiny_run(tiny_mr, tmp_path, capsys):
    import cv2

    from tests.lift.test_train import FAST

    root, _ = tiny_mr
    run, seg = tmp_path / "run", tmp_path / "seg"
    assert main(["-q", "train", str(root), "--out", str(run), *FAST]) == 0
    assert main(["-q", "segment", str(run), "--out", str(seg), "--split", "all", "--export", "spz,gsplat-ckpt"]) == 0
    t = json.loads((seg / "objects.json").read_text())
    assert (seg / "scene_labeled.ply").is_file() and (seg / "scene.spz").is_file() and (seg / "scene_labeled.pt").is_file()
    assert json.loads((seg / "segment.json").read_text())["export_formats"] == ["ply", "spz", "gsplat-ckpt"]
    for o in t["objects"]:
        assert (seg / o["files"]["spz"]).is_file() and (seg / o["file"]).is_file()
    # the run folder: its scene in world frame
    assert main(["-q", "export", str(run), "--format", "spz,ply", "--out", str(tmp_path / "x")]) == 0
    a, b = F.read_splats(tmp_path / "x" / "scene.ply"), F.read_splats(tmp_path / "x" / "scene.spz")
    assert "inst_mu" in a.extra and np.abs(a.means - b.means).max() < 1e-3
    # render --splats an SPZ: the same images as the PLY up to SPZ's quantisation
    assert main(["-q", "render", str(run), "--splats", str(tmp_path / "x" / "scene.ply"), "--out", str(tmp_path / "r0"), "--split", "all"]) == 0
    assert main(["-q", "render", str(run), "--splats", str(tmp_path / "x" / "scene.spz"), "--out", str(tmp_path / "r1"), "--split", "all"]) == 0
    i0 = cv2.imread(str(tmp_path / "r0" / "rgb" / "0.png")).astype(int)
    i1 = cv2.imread(str(tmp_path / "r1" / "rgb" / "0.png")).astype(int)
    assert np.abs(i0 - i1).mean() < 3
    capsys.readouterr()
    assert main(["export", str(run), "--format", "nope", "--out", str(tmp_path / "y")]) == 2


def test_view_loads_an_exported_tree_of_any_format(tmp_path):
    from pcf_gs.viewer.target import load_target

    make_segment_export(tmp_path / "seg")
    assert main(["-q", "export", str(tmp_path / "seg"), "--format", "glb,spz", "--out", str(tmp_path / "out")]) == 0
    v = load_target(tmp_path / "out")  # scene_labeled.glb: labels kept
    assert v.instance_ids is not None and len(v) == 400
    assert len(load_target(tmp_path / "out" / "objects" / "1_chair.spz")) > 0
