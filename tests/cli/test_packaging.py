"""The presets and the demo scene ship inside the package and are found from any folder.

(CI also builds the wheel, installs it into a clean venv and runs every command
outside the checkout: tools/check_wheel.sh.)
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

from pcf_gs.config import available_presets, load_config
from pcf_gs.resources import demo_scene_dir, presets_dir

REPO = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def test_package_data_globs_cover_every_shipped_file():
    """Every file under pcf_gs/configs and pcf_gs/assets matches a package-data pattern,
    so a wheel or a non-editable install carries it."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pcf_gs"]
    pkg = REPO / "pcf_gs"
    shipped = [p for d in ("configs", "assets") for p in (pkg / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert shipped
    missing = [str(p.relative_to(pkg)) for p in shipped
               if not any(fnmatch.fnmatchcase(p.relative_to(pkg).as_posix(), pat) and
                          p.relative_to(pkg).as_posix().count("/") == pat.count("/") for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_resources_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PCF_GS_CONFIG_DIR", raising=False)
    assert presets_dir().is_relative_to(REPO / "pcf_gs") and (presets_dir() / "default.yaml").is_file()
    assert {"default", "cpu_fast"} <= set(available_presets())
    assert load_config("cpu_fast").data.max_size == 128
    assert (demo_scene_dir() / "metadata.json").is_file()
    assert demo_scene_dir().is_relative_to(REPO / "pcf_gs")
