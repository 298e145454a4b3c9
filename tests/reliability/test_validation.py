"""Validation at the edges (docs/reliability.md): settings by range, readers by what they read.
Every failure is one line on stderr naming the setting or the file, exit code 2, nothing else on fd 2."""

from __future__ import annotations

import dataclasses
import json
import struct
import typing

import cv2
import numpy as np
import pytest

from pcf_gs.cli import main
from pcf_gs.config import Config, Range, field_range, load_config
from pcf_gs.errors import UserError


def one_line(capfd, rc, *needles) -> str:
    """The command failed with exit code 2 and printed exactly one line, on fd 2 (C libraries included)."""
    out, err = capfd.readouterr()
    err = err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_every_number_declares_its_range():
    for section in dataclasses.fields(Config):
        cls = section.type if isinstance(section.type, type) else typing.get_type_hints(Config)[section.name]
        owners = [(cls, f.name) for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else [(Config, section.name)]
        for owner, name in owners:
            tp = typing.get_type_hints(owner)[name]
            if tp in (int, float):
                assert isinstance(field_range(owner, name), Range), f"{section.name}.{name} has no Range"


@pytest.mark.parametrize("text,needle", [
    ("train.iterations=-1", "train.iterations=-1: must be >= 1"),
    ("train.iterations=0", "must be >= 1"),
    ("data.test_fraction=1e308", "must be < 1"),
    ("data.test_fraction=-0.1", "must be >= 0"),
    ("data.downscale=-2", "must be >= 1"),
    ("train.pixels_per_view=-1", "must be >= 1"),
    ("train.lr_means=0", "must be > 0"),
    ("train.lr_means=.inf", "finite"),
    ("train.w_cross=.nan", "finite"),
    ("train.balanced_sampling=1.5", "must be <= 1"),
    ("model.init_opacity=1", "must be < 1"),
    ("segment.score_threshold=-0.5", "must be >= 0"),
    ("train.max_gaussians=-5", "must be >= 0"),
    ("seed=-1", "must be >= 0"),
])
def test_out_of_range_settings(text, needle):
    with pytest.raises(UserError) as e:
        load_config(None, [text])
    assert needle in str(e.value) and str(e.value).startswith(f"--set {text}")


def test_presets_and_saved_configs_are_checked_too(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  iterations: -1\n")
    with pytest.raises(UserError, match="train.iterations: must be >= 1"):
        load_config(str(p))


@pytest.mark.parametrize("flag", ["0", "-2"])
def test_downscale_flag_shares_the_check(tiny_mr, capfd, flag):
    root, _ = tiny_mr
    one_line(capfd, main(["-q", "info", str(root), "--downscale", flag]), f"--downscale {flag}: must be >= 1")


def test_huge_downscale_names_the_scene(tiny_mr, capfd):
    root, _ = tiny_mr
    one_line(capfd, main(["-q", "info", str(root), "--set", "data.downscale=1000000000"]), str(root), "1x1")


def test_corrupt_png_is_one_line_without_libpng_noise(tiny_mr, capfd):
    root, _ = tiny_mr
    p = root / "color" / "2.png"
    ok, buf = cv2.imencode(".png", (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8))
    b = bytearray(buf.tobytes())
    i = b.find(b"IDAT")
    b[i + 10:i + 40] = bytes(30)  # zeroed deflate data: libpng complains on fd 2 from C
    p.write_bytes(bytes(b))
    capfd.readouterr()
    err = one_line(capfd, main(["-q", "info", str(root)]), str(p))
    assert err.startswith("pcf-gs info: error:")


def test_odd_sized_first_frame_is_the_one_named(tiny_mr, capfd):
    root, _ = tiny_mr
    cv2.imwrite(str(root / "color" / "0.png"), np.zeros((1, 1, 3), np.uint8))
    capfd.readouterr()
    err = one_line(capfd, main(["-q", "info", str(root)]), str(root / "color" / "0.png"), "1x1")
    assert "1.png" not in err


def test_overflowing_intrinsics_are_one_line(tiny_mr, capfd):
    root, _ = tiny_mr
    meta = json.loads((root / "metadata.json").read_text())
    meta["camera"]["K"][0][0] = -1e300
    (root / "metadata.json").write_text(json.dumps(meta))
    one_line(capfd, main(["-q", "info", str(root)]), str(root / "metadata.json"), "camera.K")


# ----------------------------------------------------------------------------- splat files


def _ply(tmp_path):
    from pcf_gs.splats.ply import Splats, write_ply

    rng = np.random.default_rng(0)
    N = 40
    s = Splats(rng.normal(size=(N, 3)).astype(np.float32), rng.normal(size=(N, 3)).astype(np.float32) - 3,
               rng.normal(size=(N, 4)).astype(np.float32), rng.normal(size=N).astype(np.float32),
               rng.normal(size=(N, 1, 3)).astype(np.float32), np.zeros((N, 3, 3), np.float32))
    p = tmp_path / "s.ply"
    write_ply(p, s)
    return p


def test_ply_header_with_fewer_vertices_than_the_file(tmp_path, capfd):
    p = _ply(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"element vertex 40", b"element vertex 30"))
    one_line(capfd, main(["-q", "edit", str(p), "--out", str(tmp_path / "o.ply"), "--box=0,0,0,1,1,1",
                          "--translate", "box=1,0,0"]), str(p), "header")
    assert not (tmp_path / "o.ply").exists()


def test_ply_big_endian_header_on_little_endian_data(tmp_path, capfd):
    p = _ply(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"format binary_little_endian 1.0", b"format binary_big_endian 1.0"))
    one_line(capfd, main(["-q", "edit", str(p), "--out", str(tmp_path / "o.ply"), "--box=0,0,0,1,1,1",
                          "--translate", "box=1,0,0"]), str(p), "byte order")


def test_truncated_and_padded_splat_files(tmp_path):
    from pcf_gs.splats.formats import read_splats, write_splats
    from pcf_gs.splats.ply import read_ply

    s, _ = read_ply(_ply(tmp_path))
    for ext in (".glb", ".ply"):
        p = tmp_path / f"x{ext}"
        write_splats(p, s)
        p.write_bytes(p.read_bytes() + b"\0" * 8)
        with pytest.raises(UserError, match=str(p)):
            read_splats(p)


def test_colmap_bin_with_bytes_past_its_count(tmp_path):
    from pcf_gs.data.colmap import read_cameras_bin

    p = tmp_path / "cameras.bin"
    rec = struct.pack("<iiQQ", 1, 1, 32, 24) + struct.pack("<4d", 30, 30, 16, 12)
    p.write_bytes(struct.pack("<Q", 1) + rec + rec)  # two records, the count says one
    with pytest.raises(UserError, match="bytes after the cameras"):
        read_cameras_bin(p)
