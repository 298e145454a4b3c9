"""Bad input: one line naming the path and the problem, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pcf_gs.cli import main


def run_cli(capsys, *argv):
    rc = main(["-q", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def test_missing_folder(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "info", tmp_path / "nope")
    assert_one_line_error(rc, err, tmp_path / "nope", "not found")


def test_unknown_layout(capsys, tmp_path):
    (tmp_path / "x").mkdir()
    rc, _, err = run_cli(capsys, "info", tmp_path / "x")
    assert_one_line_error(rc, err, "no known scene layout")


def test_empty_color_folder(capsys, tiny_mr):
    root, _ = tiny_mr
    for p in (root / "color").iterdir():
        p.unlink()
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "color", "no images")


def test_frame_count_mismatch_names_folder(capsys, tiny_mr):
    root, _ = tiny_mr
    (root / "detic_instance" / "3.npy").unlink()
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "detic_instance", "3.npy")


def test_missing_prediction_folder(capsys, tiny_mr):
    root, _ = tiny_mr
    shutil.rmtree(root / "detic_semantic")
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "detic_semantic", "missing folder")


def test_label_map_other_aspect_is_an_error(capsys, tiny_mr):
    root, info = tiny_mr
    np.save(root / "detic_semantic" / "2.npy", np.zeros((info["H"], info["H"]), np.uint8))
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "detic_semantic" / "2.npy", "aspect ratio")


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda m: m["camera"]["positions"][1].__setitem__(0, float("nan")), "non-finite"),
        (lambda m: m["camera"]["quaternions"].__setitem__(2, [0, 0, 0, 0]), "quaternions[2] is zero"),
        (lambda m: m["camera"].pop("K"), '"K"'),
        (lambda m: m["camera"]["positions"].pop(), "positions"),
        (lambda m: m["camera"].__setitem__("K", [[0, 0, 0.5], [0, 0.9, 0.5], [0, 0, 1]]), "focal"),
    ],
)
def test_bad_poses(capsys, tiny_mr, mutate, needle):
    root, _ = tiny_mr
    meta = json.loads((root / "metadata.json").read_text())
    mutate(meta)
    # json.dumps writes NaN, as Python's json does for real files
    (root / "metadata.json").write_text(json.dumps(meta))
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "metadata.json", needle)


def test_invalid_json(capsys, tiny_mr):
    root, _ = tiny_mr
    (root / "metadata.json").write_text("{not json")
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "metadata.json", "not valid JSON")


def test_unreadable_image(capsys, tiny_mr):
    root, _ = tiny_mr
    (root / "color" / "4.png").write_bytes(b"\x89PNG garbage")
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "color" / "4.png", "cannot read image")


def test_corrupt_npy(capsys, tiny_mr):
    root, _ = tiny_mr
    (root / "instance" / "0.npy").write_bytes(b"nope")
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "instance" / "0.npy", "cannot read .npy")


def test_semantic_id_out_of_range(capsys, tiny_mr):
    root, info = tiny_mr
    np.save(root / "detic_semantic" / "1.npy", np.full((info["H"], info["W"]), 5, np.uint8))
    rc, _, err = run_cli(capsys, "info", root)
    assert_one_line_error(rc, err, root / "detic_semantic" / "1.npy", "semantic id 5")


def test_debug_shows_traceback(tmp_path):
    from pcf_gs.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "-q", "info", str(tmp_path / "nope")])


def test_bad_override_is_one_line(capsys, tiny_mr):
    root, _ = tiny_mr
    rc, _, err = run_cli(capsys, "info", root, "--set", "data.downscale=abc")
    assert_one_line_error(rc, err, "data.downscale", "integer")
    rc, _, err = run_cli(capsys, "info", root, "--set", "data.downscal=2")
    assert_one_line_error(rc, err, "unknown key", "downscale")


def test_demo_does_not_destroy_outputs_on_bad_input(capsys, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("keep me")
    rc, _, err = run_cli(capsys, "demo", "--out", out, "--data", tmp_path / "missing")
    assert_one_line_error(rc, err, "not found")
    assert (out / "config.yaml").read_text() == "keep me"
