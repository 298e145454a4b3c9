"""Files that ship inside the package: the YAML presets and the demo scene.

Both are package data (``pcf_gs/configs/*.yaml``, ``pcf_gs/assets/demo/``) found
through :mod:`importlib.resources`, so an editable checkout, ``pip install .``
and a wheel in a fresh venv all find them, from any working directory. (The
repository root keeps ``configs`` and ``assets`` as links to the same folders.)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pcf_gs.errors import UserError


def _package_dir(*parts: str) -> Path:
    """A folder of package data as a real path (packages are installed unzipped)."""
    ref = resources.files("pcf_gs").joinpath(*parts)
    path = Path(str(ref))
    if not path.is_dir():
        raise UserError(f"package data {'/'.join(parts)}/ is missing from the pcf-gs installation (reinstall pcf-gs)", path)
    return path


def presets_dir() -> Path:
    """The shipped YAML presets (``default``, ``cpu_fast``, ...)."""
    return _package_dir("configs")


def demo_scene_dir() -> Path:
    """The shipped demo scene (Messy Rooms layout, made by ``pcf-gs synth``)."""
    path = _package_dir("assets", "demo")
    if not (path / "metadata.json").is_file():
        raise UserError("the demo scene has no metadata.json (reinstall pcf-gs)", path)
    return path
