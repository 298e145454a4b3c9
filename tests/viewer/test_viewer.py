"""The viewer without a browser: loading targets, the render call per mode, picking,
visibility, export, adaptive resolution, error handling, live training."""

from __future__ import annotations

import json
import math
import re
import threading
import time

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from pcf_gs.cli import main
from pcf_gs.errors import UserError
from pcf_gs.geometry import quat_to_rotmat
from pcf_gs.sh import rgb_to_sh0
from pcf_gs.splats.ply import Splats, read_ply
from pcf_gs.viewer.app import ViewerApp
from pcf_gs.viewer.export import export_view
from pcf_gs.viewer.live import LiveTrainingViewer
from pcf_gs.viewer.view_renderer import (
    AdaptiveResolution,
    Camera,
    DisplayState,
    ViewRenderer,
    available_modes,
)
from pcf_gs.viewer.render_loop import ClientLoop, RenderExecutor
from pcf_gs.viewer.target import CameraPreset, ViewScene, load_target, objects_table

W, H = 64, 48
FOV = math.radians(60)
F = 0.5 * H / math.tan(0.5 * FOV)  # focal length in pixels at W x H
RED, BLUE = (220, 40, 40), (40, 60, 230)


def blob_scene(labels: bool = True, seed: int = 0) -> ViewScene:
    """Camera at the origin looking +z; object 1 (a blob) left, object 2 right, both at z=3,
    in front of a grey wall (stuff, |x|, |y| <= 1) at z=5; SH degree 1."""
    rng = np.random.default_rng(seed)
    b1 = rng.normal([-0.5, 0, 3], 0.06, (300, 3))
    b2 = rng.normal([0.5, 0, 3], 0.06, (300, 3))
    g = np.linspace(-1, 1, 25)
    wall = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    wall = np.concatenate([wall, np.full((len(wall), 1), 5.0)], 1)
    means = np.concatenate([b1, b2, wall]).astype(np.float32)
    n1, n2, nw = len(b1), len(b2), len(wall)
    N = len(means)
    scales = np.log(np.concatenate([np.full((n1 + n2, 3), 0.05), np.full((nw, 3), 0.06)])).astype(np.float32)
    quats = np.tile([1.0, 0, 0, 0], (N, 1)).astype(np.float32)
    opac = np.full(N, 3.0, np.float32)  # sigmoid ~ 0.95
    rgb = np.concatenate([np.tile(np.array([0.8, 0.3, 0.2]), (n1, 1)), np.tile([0.2, 0.7, 0.3], (n2, 1)),
                          np.full((nw, 3), 0.5)]).astype(np.float32)
    sh0 = rgb_to_sh0(torch.from_numpy(rgb)).numpy()[:, None, :]
    shN = np.zeros((N, 3, 3), np.float32)
    inst = np.array([1] * n1 + [2] * n2 + [0] * nw, np.int32)
    sem = np.array([1] * (n1 + n2) + [0] * nw, np.int32)
    var = np.concatenate([np.full(n1, 2.0), np.full(n2, 0.05), np.full(nw, 0.3)]).astype(np.float32)
    splats = Splats(means, scales, quats, opac, sh0, shN, {"inst_var": np.tile(var[:, None], (1, 3))})
    cams = [CameraPreset("front", np.eye(4), FOV, W / H)]
    if not labels:
        return ViewScene(splats=splats, sh_degree=1, cameras=cams, source="blobs")
    names = ["background", "foreground"]
    objs = objects_table(inst, sem, names, {1: RED, 2: BLUE})
    return ViewScene(splats=splats, sh_degree=1, instance_ids=inst, semantic_ids=sem, variance=var, class_names=names,
                     objects=objs, cameras=cams, source="blobs")


CAM = Camera(np.eye(4), FOV)
P1 = (W / 2 + F * (-0.5 / 3), H / 2)  # pixel of object 1's centre
P2 = (W / 2 + F * (0.5 / 3), H / 2)
PWALL = (W / 2, H / 2 + F * (0.6 / 5))  # wall, below the blobs
PEMPTY = (1.5, 1.5)  # outside the wall


def px(img, p):
    return img[int(p[1]), int(p[0])].astype(int)


@pytest.fixture(scope="module")
def renderer():
    return ViewRenderer(blob_scene(), device="cpu")


# --------------------------------------------------------------------------- render


def test_every_mode_renders(renderer):
    imgs = {}
    for mode in available_modes(renderer.scene):
        img, info = renderer.render(CAM, DisplayState(mode=mode), W, H)
        assert img.shape == (H, W, 3) and img.dtype == np.uint8, mode
        assert info.gaussians == len(renderer.scene) and info.seconds > 0
        imgs[mode] = img
    assert set(imgs) == {"rgb", "semantic", "instance", "uncertainty", "depth"}
    # instance colours are objects.json's; stuff shows its own colour darkened (0.35)
    assert np.abs(px(imgs["instance"], P1) - RED).max() < 25
    assert np.abs(px(imgs["instance"], P2) - BLUE).max() < 25
    assert np.abs(px(imgs["instance"], PWALL) - 0.35 * 0.5 * 255).max() < 12
    assert np.abs(px(imgs["rgb"], P1) - [204, 76, 51]).max() < 25
    assert (px(imgs["rgb"], PEMPTY) == 0).all()  # black background
    # depth: near is bright; uncertainty: high variance (object 1) brighter than low (object 2)
    assert px(imgs["depth"], P1).sum() > px(imgs["depth"], PWALL).sum() + 100
    assert px(imgs["uncertainty"], P1).sum() > px(imgs["uncertainty"], P2).sum() + 150
    # semantic: both objects share a class colour, the wall another
    assert np.abs(px(imgs["semantic"], P1) - px(imgs["semantic"], P2)).max() < 25
    assert np.abs(px(imgs["semantic"], P1) - px(imgs["semantic"], PWALL)).max() > 40


def test_overlay_blends_the_mode_over_rgb(renderer):
    rgb, _ = renderer.render(CAM, DisplayState(mode="rgb"), W, H)
    inst, _ = renderer.render(CAM, DisplayState(mode="instance"), W, H)
    over, _ = renderer.render(CAM, DisplayState(mode="instance", overlay=True, overlay_opacity=0.5), W, H)
    assert np.abs(over.astype(int) - (rgb.astype(int) + inst.astype(int)) / 2).max() <= 2


def test_sh_colours_follow_the_view_direction():
    scene = blob_scene()
    scene.splats.shN[:, 0, :] = 1.0  # degree-1 term along y
    r = ViewRenderer(scene, device="cpu")
    a, _ = r.render(CAM, DisplayState(), W, H)
    b, _ = ViewRenderer(blob_scene(), device="cpu").render(CAM, DisplayState(), W, H)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 10


def test_isolate_hide_recolour(renderer):
    iso, info = renderer.render(CAM, DisplayState(mode="rgb", hidden=frozenset({0, 2})), W, H)
    assert info.gaussians == 300
    assert px(iso, P1).sum() > 150 and (px(iso, P2) == 0).all() and (px(iso, PWALL) == 0).all()
    hid, _ = renderer.render(CAM, DisplayState(mode="rgb", hidden=frozenset({1})), W, H)
    assert np.abs(px(hid, P1) - 127).max() < 15  # the wall shows through where object 1 was
    rec, _ = renderer.render(CAM, DisplayState(mode="rgb", recolors=((2, (0, 255, 0)),)), W, H)
    assert np.abs(px(rec, P2) - [0, 255, 0]).max() < 25
    inst, _ = renderer.render(CAM, DisplayState(mode="instance", recolors=((2, (0, 255, 0)),)), W, H)
    assert np.abs(px(inst, P2) - [0, 255, 0]).max() < 25


def test_selection_is_highlighted(renderer):
    for mode in ("rgb", "depth"):
        plain, _ = renderer.render(CAM, DisplayState(mode=mode), W, H)
        hl, _ = renderer.render(CAM, DisplayState(mode=mode, highlight=2), W, H)
        assert np.abs(px(hl, P2) - px(plain, P2)).max() <= 2, mode  # the selection keeps its brightness
        assert px(hl, P1).sum() < 0.6 * px(plain, P1).sum(), mode  # the rest is dimmed
        assert px(hl, PWALL).sum() < 0.6 * px(plain, PWALL).sum(), mode


def test_pick_returns_the_object_under_the_pixel(renderer):
    st = DisplayState()
    assert renderer.pick(CAM, st, *P1, W, H) == 1
    assert renderer.pick(CAM, st, *P2, W, H) == 2
    assert renderer.pick(CAM, st, *PWALL, W, H) == 0  # stuff
    assert renderer.pick(CAM, st, *PEMPTY, W, H) is None  # empty space
    assert renderer.pick(CAM, st, -5, 3, W, H) is None  # off the image
    # at another resolution the same screen point picks the same object
    assert renderer.pick(CAM, st, P1[0] * 4, P1[1] * 4, W * 4, H * 4) == 1
    # a hidden object cannot be picked: what is behind it is
    assert renderer.pick(CAM, DisplayState(hidden=frozenset({1})), *P1, W, H) == 0


def test_modes_that_need_labels_are_explained():
    r = ViewRenderer(blob_scene(labels=False), device="cpu")
    assert available_modes(r.scene) == ["rgb", "depth"]
    for mode in ("semantic", "instance", "uncertainty"):
        with pytest.raises(ValueError, match="needs"):
            r.render(CAM, DisplayState(mode=mode), W, H)
    assert r.pick(CAM, DisplayState(), *P1, W, H) is None
    img, _ = r.render(CAM, DisplayState(mode="depth"), W, H)
    assert img.shape == (H, W, 3)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_fused_sh_matches_gsplat(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    from pcf_gs.render.cpu_sh import sh_to_rgb

    g = torch.Generator().manual_seed(degree)
    means = torch.randn(500, 3, generator=g)
    coeffs = torch.randn(500, 16, 3, generator=g) * 0.3
    campos = torch.tensor([0.3, -2.0, 0.5])
    S = (degree + 1) ** 2
    ref = (_spherical_harmonics(degree, means - campos, coeffs[:, :S]) + 0.5).clamp_min(0)
    assert torch.allclose(sh_to_rgb(means, coeffs, campos, degree), ref, atol=2e-5)


def test_frustum_culling_keeps_what_reaches_the_image(renderer):
    """Looking away from the wall's centre: culled and unculled renders agree."""
    c2w = np.eye(4)
    c2w[:3, 3] = [3.0, 0.0, 0.0]  # shifted right: both objects and part of the wall leave the view
    cam = Camera(c2w, FOV)
    img, info = renderer.render(cam, DisplayState(), W, H)
    assert info.gaussians < len(renderer.scene)
    full = ViewRenderer(renderer.scene, device="cpu")
    full._in_frustum = lambda *a: None
    ref, info2 = full.render(cam, DisplayState(), W, H)
    assert info2.gaussians == len(renderer.scene) and np.abs(img.astype(int) - ref.astype(int)).max() <= 1
    assert img.max() > 50  # the wall's edge is in view


def test_camera_conventions():
    assert np.allclose(quat_to_rotmat([1, 0, 0, 0]), np.eye(3))
    # 90 degrees about y: the camera's z (forward) points along world +x
    c = Camera.from_wxyz_position([math.cos(math.pi / 4), 0, math.sin(math.pi / 4), 0], [1, 2, 3], FOV)
    assert np.allclose(c.c2w[:3, 2], [1, 0, 0], atol=1e-9) and np.allclose(c.c2w[:3, 3], [1, 2, 3])
    K = c.K(200, 100)
    assert K[0, 0] == K[1, 1] == pytest.approx(50 / math.tan(FOV / 2)) and (K[0, 2], K[1, 2]) == (100, 50)


def test_adaptive_resolution():
    res = AdaptiveResolution(max_side=1024, moving_side=256, lod_side=128, min_detail=0.05, target_fps=10)
    assert res.size(1600, 900, moving=False) == (1024, 576)  # capped, aspect kept
    assert res.size(800, 600, moving=False) == (800, 600)  # canvas smaller than the cap
    assert res.size(1600, 900, moving=True) == (256, 144) and res.frame_detail(True) == 1.0
    for _ in range(4):  # slow frames while moving: smaller images first ...
        res.record(0.5, moving=True)
    assert res.size(1600, 900, moving=True) == (128, 72) and res.frame_detail(True) == 1.0
    for _ in range(30):  # ... then fewer Gaussians, not below min_detail
        res.record(0.5, moving=True)
    assert res.size(1600, 900, moving=True) == (128, 72) and res.frame_detail(True) == pytest.approx(0.05)
    assert res.frame_detail(False) == 1.0 and res.size(1600, 900, moving=False) == (1024, 576)  # at rest: all
    res.record(5.0, moving=False)  # frames at rest do not steer
    for _ in range(60):  # fast frames: detail comes back first, then resolution
        res.record(0.01, moving=True)
    assert res.size(1600, 900, moving=True) == (256, 144) and res.frame_detail(True) == 1.0


def test_level_of_detail_draws_the_most_important_gaussians_first(renderer):
    full, info = renderer.render(CAM, DisplayState(), W, H)
    part, info_part = renderer.render(CAM, DisplayState(), W, H, detail=0.3)
    assert info_part.gaussians == math.ceil(0.3 * len(renderer.scene)) < info.gaussians
    v = renderer._visible(DisplayState())
    imp = (v.opacities * v.scales.amax(-1) ** 2).numpy()
    assert np.all(np.diff(imp) <= 1e-12)  # stored in decreasing importance: the preview is a prefix
    assert part.shape == full.shape and (part != full).any()


# --------------------------------------------------------------------------- scenes


def test_load_run_segment_and_ply_targets(viewer_run, tmp_path):
    seg = viewer_run / "segment"
    rows = {o["id"]: o for o in json.loads((seg / "objects.json").read_text())["objects"]}
    run_scene = load_target(viewer_run)
    assert run_scene.has_instances and run_scene.has_semantics and run_scene.has_variance
    assert run_scene.class_names == ["background", "foreground"] and len(run_scene.cameras) == 32
    for o in run_scene.objects:  # same ids, colours and sizes as objects.json
        assert list(o.color) == rows[o.id]["color"] and o.num_gaussians == rows[o.id]["num_gaussians"], o
    seg_scene = load_target(seg)
    assert len(seg_scene) == len(run_scene) and seg_scene.sh_degree == run_scene.sh_degree
    assert np.array_equal(seg_scene.instance_ids, run_scene.instance_ids)
    assert np.allclose(seg_scene.splats.means, run_scene.splats.means, atol=1e-5)  # both in the world frame
    assert [o.color for o in seg_scene.objects] == [o.color for o in run_scene.objects]
    assert len(seg_scene.cameras) == 32  # from the run named in segment.json
    assert np.allclose(seg_scene.cameras[0].c2w, run_scene.cameras[0].c2w)
    ply_scene = load_target(seg / "scene_labeled.ply")
    assert ply_scene.has_instances and len(ply_scene.objects) == len(rows)
    # demo layout: OUT/run + OUT/segment
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "run").symlink_to(viewer_run)
    (demo / "segment").symlink_to(seg)
    assert load_target(demo).has_instances
    # a per-object file is plain 3DGS: RGB and depth only
    obj = next((seg / "objects").glob("*.ply"))
    plain = load_target(obj)
    assert not plain.has_instances and available_modes(plain) == ["rgb", "depth"] and plain.notes
    img, _ = ViewRenderer(plain, device="cpu").render(Camera(plain.cameras[0].c2w, plain.cameras[0].fov_y),
                                                      DisplayState(), 32, 24)
    assert img.max() > 0  # the overview camera sees the object


def test_ply_from_another_tool_shows_rgb(tmp_path):
    """Only the properties 3DGS requires, degree-0 colour, no normals: RGB and depth."""
    s = blob_scene(labels=False).splats
    cols = {"x": s.means[:, 0], "y": s.means[:, 1], "z": s.means[:, 2], "opacity": s.opacities}
    cols.update({f"f_dc_{i}": s.sh0[:, 0, i] for i in range(3)})
    cols.update({f"scale_{i}": s.scales[:, i] for i in range(3)})
    cols.update({f"rot_{i}": s.quats[:, i] for i in range(4)})
    data = np.empty(len(s), dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        data[k] = v
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "other.ply"))
    scene = load_target(tmp_path / "other.ply")
    assert scene.sh_degree == 0 and available_modes(scene) == ["rgb", "depth"]
    img, _ = ViewRenderer(scene, device="cpu").render(CAM, DisplayState(), W, H)
    assert np.abs(px(img, P1) - [204, 76, 51]).max() < 25


def test_bad_targets_are_user_errors(tmp_path, capsys):
    with pytest.raises(UserError, match="not found"):
        load_target(tmp_path / "nope")
    with pytest.raises(UserError, match="nothing to view"):
        load_target(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="not a splat file"):
        load_target(tmp_path / "x.txt")
    assert main(["view", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcf-gs view: error:") and err.count("\n") == 1


def test_help_mentions_viewer_options(capsys):
    for argv, want in ((["view", "--help"], "--port"), (["train", "--help"], "--viewer")):
        with pytest.raises(SystemExit):
            main(argv)
        assert want in capsys.readouterr().out


# --------------------------------------------------------------------------- export


def test_export_selection_and_visible_state(tmp_path):
    scene = blob_scene()
    st = DisplayState(hidden=frozenset({0}), recolors=((2, (0, 255, 0)),))
    sel = export_view(scene, st, 1, tmp_path)
    assert sel.name == "1_foreground.ply"
    s1, _ = read_ply(sel)
    assert len(s1) == 300 and not s1.extra  # plain 3DGS layout, like objects/<id>_<class>.ply
    assert np.array_equal(s1.means, scene.splats.means[:300])
    vis = export_view(scene, st, None, tmp_path)
    sv, _ = read_ply(vis)
    assert len(sv) == 600 and set(np.unique(sv.extra["instance_id"])) == {1, 2}  # the wall was hidden
    green = sv.extra["instance_id"] == 2
    assert np.allclose(sv.sh0[green, 0] * 0.28209479177387814 + 0.5, [0, 1, 0], atol=1e-5)  # recolour baked
    assert np.all(sv.shN[green] == 0) and np.array_equal(sv.sh0[~green], scene.splats.sh0[:300])
    back = load_target(vis)  # reopens with labels
    assert back.has_instances and {o.id for o in back.objects} == {1, 2}
    with pytest.raises(ValueError, match="select an object"):
        export_view(scene, st, 0, tmp_path)


# --------------------------------------------------------------------------- app


def test_executor_runs_jobs_in_the_pumping_thread():
    ex = RenderExecutor()
    assert ex.call(lambda: threading.current_thread().name) == threading.current_thread().name
    ex.set_pumped(True)
    out = []
    t = threading.Thread(target=lambda: out.append(ex.call(lambda: threading.current_thread().name)), name="tab")
    t.start()
    deadline = time.monotonic() + 10
    while not out and time.monotonic() < deadline:
        ex.pump()
        time.sleep(0.01)
    t.join(5)
    assert out == [threading.current_thread().name]  # ran here, not in the tab's thread
    ex.set_pumped(False)


class _FakeCamera:
    def __init__(self):
        self.wxyz, self.position, self.fov = np.array([1.0, 0, 0, 0]), np.zeros(3), FOV
        self.image_width, self.image_height = W, H
        self.callbacks = []

    def on_update(self, cb):
        self.callbacks.append(cb)


class _FakeClient:
    client_id = 7

    def __init__(self):
        self.camera = _FakeCamera()
        self.images, self.notes = [], []
        self.scene = self

    def set_background_image(self, img, **kw):
        self.images.append(img)

    def add_notification(self, title, body, **kw):
        self.notes.append((title, body))


@pytest.fixture
def app():
    a = ViewerApp(blob_scene(), port=0, device="cpu", mode="instance")
    yield a
    a.stop()


def test_render_errors_are_shown_and_the_server_goes_on(app, monkeypatch):
    client = _FakeClient()
    loop = ClientLoop(app, client)
    client.camera.callbacks[0](client.camera)  # a camera message arrives
    loop._tick()
    assert len(client.images) == 1 and client.images[0].shape[2] == 3
    assert app.state.mode == "instance" and app.last_error is None

    def boom(*a, **k):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(app.renderer, "render", boom)
    app.update_state(overlay=True)
    loop._alive = True
    t = threading.Thread(target=loop._run, daemon=True)
    t.start()  # the real loop: it must survive the error
    deadline = time.monotonic() + 10
    while app.last_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "kernel exploded" in app.last_error
    assert app.gui_error.visible and "kernel exploded" in app.gui_error.content
    assert client.notes and "kernel exploded" in client.notes[0][1]
    monkeypatch.undo()
    app.update_state(overlay=False)  # the next frame works again and clears the error
    while app.last_error is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert app.last_error is None and not app.gui_error.visible and len(client.images) >= 2
    assert t.is_alive()
    loop.stop()
    t.join(5)


def test_app_actions_select_isolate_recolour(app, tmp_path):
    app.select(2)
    assert "object #2 (foreground), 300 Gaussians" in app.gui_selection.content
    assert app.state.highlight == 2
    assert app.gui_select.value.startswith("#2 ")
    app.isolate()
    assert app.state.hidden == frozenset({0, 1})
    app.show_all()
    assert app.state.hidden == frozenset()
    app.hide()
    assert app.state.hidden == frozenset({2})
    app.recolor((1, 2, 3))
    assert dict(app.state.recolors) == {2: (1, 2, 3)}
    app.export_dir = tmp_path
    assert app.export(selection=True).name == "2_foreground.ply"
    app.select(0)
    assert "background" in app.gui_selection.content
    with pytest.raises(ValueError, match="select an object"):
        app.isolate()
    app.gui_select.value = app.scene.objects[0].label()  # the dropdown selects too
    assert app.selected == 1


def test_live_viewer_follows_training(tiny_mr, tmp_path):
    from tests.lift.test_train import FAST

    from pcf_gs.lift.trainer import run_training

    root, _ = tiny_mr
    live = LiveTrainingViewer(port=0, update_seconds=0.0)
    app = live.app
    assert len(app.scene) == 0
    trainers, threads, got = [], [], []

    def tab_asks_for_a_frame():
        got.append(app.executor.call(
            lambda: (threading.current_thread().name, app.renderer.render(CAM, app.state, 16, 12)[0].shape)))

    def on_step(tr):
        trainers.append(tr)
        live.on_step(tr)
        if tr.step == 10:  # a tab asks for a frame mid-training: the training thread renders it
            threads.append(threading.Thread(target=tab_asks_for_a_frame))
            threads[-1].start()

    try:
        res = run_training(root, tmp_path / "run", None, list(FAST[1::2]), progress=False, on_step=on_step)
        threads[0].join(10)
        assert res["steps"] == 24 and live.updates >= 20
        assert got and got[0][0] == threading.main_thread().name and got[0][1] == (12, 16, 3)
        live.finish(trainers[-1])
        sc = app.scene
        assert len(sc) == len(trainers[-1].params["means"]) and sc.source.startswith("training: step 24")
        assert "semantic" in available_modes(sc) and "instance" not in available_modes(sc)
        assert len(sc.cameras) == 5
        img, _ = app.renderer.render(Camera(sc.cameras[0].c2w, sc.cameras[0].fov_y), DisplayState(), 32, 24)
        assert img.shape == (24, 32, 3)
    finally:
        live.stop()


def test_train_viewer_cli_serves_until_ctrl_c(tiny_mr, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.lift.test_train import FAST

    root, _ = tiny_mr
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "pcf_gs", "-q", "train", str(root), "--out", str(tmp_path / "run"), "--viewer",
         "--port", "0", *FAST], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy(),
        # a test run started in the background inherits SIGINT ignored (as shells do for `cmd &`); a user's
        # terminal has the default disposition, which the child gets back here
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "stays up" in line:
                break
        out = "".join(lines)
        assert re.search(r"live viewer at http://localhost:\d+", out), out
        assert "trained 24 steps" in out and proc.poll() is None
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:  # show where it hangs (faulthandler dumps every thread on SIGABRT)
            proc.send_signal(signal.SIGABRT)
            pytest.fail("no exit after Ctrl-C:\n" + proc.communicate(timeout=10)[0][-8000:])
        assert rc == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
