"""A capture (COLMAP binary and text, nerfstudio) and a Panoptic Lifting sample go through info -> train -> segment --export-ply -> eval with no conversion step,
and COLMAP (binary, text) and nerfstudio copies of one scene train to the same result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcf_gs.cli import main
from pcf_gs.synth import SynthOptions, generate_scene
from pcf_gs.synth.layouts import write_layout
from tests.data.panoptic_lifting_sample import write_panoptic_lifting_sample
from tests.lift.test_train import FAST


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture_e2e")
    generate_scene(root / "mos", SynthOptions(objects=4, frames=9, width=32, height=32, seed=5, points=600),
                   progress=False)
    out = {}
    for layout in ("colmap", "colmap-text", "nerfstudio", "panoptic_lifting"):
        scene = root / layout
        if layout == "panoptic_lifting":
            write_panoptic_lifting_sample(scene, root / "mos")
        else:
            write_layout(root / "mos", scene, layout)
        run, seg = root / f"{layout}_run", root / f"{layout}_seg"
        assert main(["-q", "info", str(scene)]) == 0
        assert main(["-q", "train", str(scene), "--out", str(run), "--config", "cpu_fast", *FAST]) == 0
        assert main(["-q", "segment", str(run), "--out", str(seg), "--export-ply"]) == 0
        assert main(["-q", "eval", str(run), "--data", str(scene), "--pred", str(seg)]) == 0
        out[layout] = (scene, run, seg, json.loads((seg / "metrics.json").read_text()))
    return out


def test_every_layout_goes_through_the_pipeline(results):
    for layout, (_, _, seg, m) in results.items():
        assert set(m) >= {"pq", "sq", "rq", "miou", "psnr"}, layout
        assert np.isfinite(m["psnr"]) and 0 <= m["pq"] <= 100
        objects = json.loads((seg / "objects.json").read_text())
        assert (seg / "scene_labeled.ply").is_file() and isinstance(objects, (list, dict))


def test_layouts_train_to_the_same_result(results):
    ref = results["colmap"][3]
    for layout in ("colmap-text", "nerfstudio"):
        m = results[layout][3]
        assert m["psnr"] == pytest.approx(ref["psnr"], abs=1e-3), layout
        assert m["pq"] == pytest.approx(ref["pq"], abs=1e-6), layout


def test_export_is_in_the_capture_frame(results):
    from plyfile import PlyData

    from pcf_gs.data.colmap import read_model

    scene, _, seg, _ = results["colmap"]
    model = read_model(scene / "sparse" / "0")
    v = PlyData.read(str(seg / "scene_labeled.ply"))["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], 1)
    centres = np.stack([im.c2w()[:3, 3] for im in model.images.values()])
    radius = np.linalg.norm(centres - centres.mean(0), axis=1).max()
    # the splats start at the model's points3D and stay around them, in the model's frame and units
    # (in the normalised frame they would be moved by the camera centroid and shrunk by 1/radius)
    assert np.abs(np.median(xyz, 0) - np.median(model.points, 0)).max() < 0.1 * radius
    assert 0.7 < xyz.std(0).mean() / model.points.std(0).mean() < 1.4
