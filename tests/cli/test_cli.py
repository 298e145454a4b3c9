"""The command line: help, version, subcommands, demo, and the README's commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pcf_gs import __version__
from pcf_gs.cli import main

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["synth", "info", "predict", "train", "render", "segment", "eval", "edit", "view", "demo"]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_on_each_command(capsys, cmd):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: pcf-gs " + cmd in capsys.readouterr().out


def test_console_script_installed():
    out = subprocess.run([sys.executable, "-m", "pcf_gs", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_info_reports_scene(capsys, tiny_mr):
    root, _ = tiny_mr
    assert main(["-q", "info", str(root)]) == 0
    out = capsys.readouterr().out
    assert "messy_rooms" in out and "foreground" in out


def test_demo_pipeline_on_a_tiny_scene(capsys, tiny_mr, tmp_path):
    from tests.lift.test_train import FAST

    root, _ = tiny_mr
    out = tmp_path / "demo"
    rc = main(["-q", "demo", "--out", str(out), "--data", str(root), *FAST, "--set", "data.max_size=0"])
    assert rc == 0
    cfg = yaml.safe_load((out / "run" / "config.yaml").read_text())
    assert cfg["train"]["iterations"] == 24 and cfg["data"]["max_size"] == 0  # cpu_fast preset, then --set
    summary = json.loads((out / "scene_summary.json").read_text())
    assert summary["frames"] == 5 and summary["format"] == "messy_rooms"
    metrics = json.loads((out / "segment" / "metrics.json").read_text())
    assert set(metrics) >= {"pq", "sq", "rq", "miou", "psnr"}
    assert (out / "segment" / "objects.json").is_file()
    capsys.readouterr()
    assert main(["-q", "demo", "--out", str(out), "--data", str(root), *FAST]) == 2  # exists: needs --resume


def test_shipped_demo_scene_loads(capsys):
    assert main(["-q", "info", str(REPO / "assets" / "demo")]) == 0
    out = capsys.readouterr().out
    assert "messy_rooms" in out and "yes (12 instances)" in out


@pytest.mark.slow
def test_full_demo_runs(tmp_path):
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--out", str(out)]) == 0
    metrics = json.loads((out / "segment" / "metrics.json").read_text())
    assert metrics["pq"] > 30


def test_demo_assets_are_small():
    total = sum(p.stat().st_size for p in (REPO / "assets").rglob("*") if p.is_file())
    assert total < 8 * 2**20, f"assets/ is {total / 2**20:.1f} MB"


def _readme_block(tag: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(rf"<!-- {tag} -->.*?```(?:bash|sh)?\n(.*?)```.*?<!-- /{tag} -->", text, re.S)
    assert m, f"README has no {tag} block"
    return m.group(1).strip()


def test_readme_commands_and_ci_agree():
    test_cmd = _readme_block("test-command")
    demo_cmd = _readme_block("demo-command")
    assert "pytest" in test_cmd and "pcf-gs demo" in demo_cmd
    ci = (REPO / ".ci" / "run").read_text()
    assert "torch==2.13.0" in ci and "test-command" in ci
    for cmd in (test_cmd, demo_cmd):
        assert "torch==2.13.0" in cmd  # a fresh machine gets the CPU build, not a CUDA one
