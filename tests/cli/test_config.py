"""Config: presets, --set overrides with types, saved resolved config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pcf_gs.config import Config, apply_overrides, config_from_dict, config_to_yaml, load_config, save_config
from pcf_gs.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_mirrors_dataclasses():
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert data == Config().to_dict()


def test_every_preset_loads():
    for p in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(str(p))
        assert isinstance(cfg, Config)


def test_preset_by_name_and_overrides():
    cfg = load_config("cpu_fast", ["train.iterations=123", "model.embedding=deterministic", "train.temperature=0.5"])
    assert cfg.train.iterations == 123
    assert cfg.model.embedding == "deterministic"
    assert cfg.train.temperature == 0.5
    assert cfg.data.max_size == 128  # from the preset
    assert cfg.train.w_cross == Config().train.w_cross  # untouched default


def test_override_order_last_wins():
    cfg = load_config(None, ["seed=1", "seed=7"])
    assert cfg.seed == 7


@pytest.mark.parametrize(
    "text,needle",
    [
        ("train.iterations=1.5", "integer"),
        ("train.iterations=abc", "integer"),
        ("model.embedding=fuzzy", "not one of"),
        ("train.itterations=3", "did you mean 'iterations'"),
        ("nosection.x=1", "unknown key"),
        ("train", "section.key=value"),
        ("train.=3", "section.key=value"),
        ("data.normalize=maybe", "true/false"),
    ],
)
def test_bad_overrides(text, needle):
    with pytest.raises(UserError, match=None) as e:
        load_config(None, [text])
    assert needle in str(e.value)


def test_float_accepts_ints_and_exponents():
    cfg = apply_overrides(Config(), ["train.lr_means=1e-3", "train.tau=1"])
    assert cfg.train.lr_means == 1e-3 and isinstance(cfg.train.tau, float)


def test_unknown_preset_lists_available():
    with pytest.raises(UserError) as e:
        load_config("does_not_exist")
    assert "cpu_fast" in str(e.value) and "default" in str(e.value)


def test_bad_preset_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  iterations: [1, 2\n")
    with pytest.raises(UserError) as e:
        load_config(str(p))
    assert str(p) in str(e.value)
    p.write_text("train:\n  nope: 1\n")
    with pytest.raises(UserError) as e:
        load_config(str(p))
    assert "nope" in str(e.value) and str(p) in str(e.value)


@given(
    it=st.integers(min_value=1, max_value=10**7),
    t=st.floats(min_value=1e-6, max_value=1e3, allow_nan=False),
    emb=st.sampled_from(["probabilistic", "deterministic"]),
    norm=st.booleans(),
)
def test_yaml_round_trip(it, t, emb, norm):
    cfg = apply_overrides(
        Config(), [f"train.iterations={it}", f"train.temperature={t!r}", f"model.embedding={emb}", f"data.normalize={norm}"]
    )
    back = config_from_dict(yaml.safe_load(config_to_yaml(cfg)))
    assert back == cfg


def test_save_config_atomic(tmp_path):
    p = tmp_path / "run" / "config.yaml"
    save_config(Config(), p)
    assert yaml.safe_load(p.read_text()) == Config().to_dict()
    assert [x.name for x in p.parent.iterdir()] == ["config.yaml"]


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    from pcf_gs.atomic import atomic_dir, write_text_atomic

    write_text_atomic(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask
    os.chmod(tmp_path / "a.txt", 0o640)
    write_text_atomic(tmp_path / "a.txt", "y")  # replacing keeps the file's mode
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    with atomic_dir(tmp_path / "d") as d:
        (d / "f").write_text("z")
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~mask
