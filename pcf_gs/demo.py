"""``pcf-gs demo``: the pipeline on the scene shipped in ``assets/demo``.

For now it loads the scene and reports what it holds; training,
segmentation and export join as they land.
"""

from __future__ import annotations

from pathlib import Path

from pcf_gs.config import Config, save_config
from pcf_gs.errors import UserError
from pcf_gs.io_utils import write_json_atomic


def demo_scene_path() -> Path:
    """The shipped demo scene (repo checkout or editable install)."""
    for base in (Path(__file__).resolve().parent.parent, Path.cwd()):
        p = base / "assets" / "demo"
        if (p / "metadata.json").is_file():
            return p
    raise UserError("demo scene not found (expected assets/demo/ in the pcf-gs checkout)")


def run_demo(out: Path, cfg: Config, data: Path | None = None, quiet: bool = False) -> int:
    from pcf_gs.data import load_scene
    from pcf_gs.report import print_scene_summary

    data = data or demo_scene_path()
    scene = load_scene(data, cfg.data, progress=not quiet)
    if out.exists() and not out.is_dir():
        raise UserError("exists and is not a folder", out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    summary = scene.summary()
    write_json_atomic(out / "scene_summary.json", summary)
    print_scene_summary(summary)
    print(f"demo: wrote {out / 'config.yaml'} and {out / 'scene_summary.json'}")
    return 0
