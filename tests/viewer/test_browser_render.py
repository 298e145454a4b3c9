"""Browser rendering (``pcf-gs view --render browser``) without a browser: the splat buffer sent to
viser, its colours per mode, visibility, the ray pick and the app's switching between renders."""

from __future__ import annotations

import numpy as np
import pytest

from pcf_gs.geometry import quat_to_rotmat
from pcf_gs.viewer.app import ViewerApp
from pcf_gs.viewer.browser_splats import BYTES_PER_GAUSSIAN, SplatColors, pack_geometry, world_covariances
from pcf_gs.viewer.render_loop import ClientLoop
from pcf_gs.viewer.view_renderer import HIGHLIGHT_DIM, DisplayState, ViewRenderer
from tests.viewer.test_viewer import BLUE, CAM, H, P1, P2, PEMPTY, PWALL, RED, W, _FakeClient, blob_scene


def test_covariances_are_world_frame_and_packed_as_viser_reads_them():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4)) * 3
    s = rng.normal(size=(50, 3)) * 0.5
    cov = world_covariances(q, s)
    R = quat_to_rotmat(q)
    for i in (0, 17, 49):
        ref = R[i] @ np.diag(np.exp(2 * s[i])) @ R[i].T
        np.testing.assert_allclose(cov[i], ref, rtol=1e-5, atol=1e-7)
    # a Gaussian stretched along world x stays stretched along x
    c = world_covariances(np.array([[1.0, 0, 0, 0]]), np.log([[2.0, 0.1, 0.1]]))[0]
    assert c[0, 0] == pytest.approx(4.0) and c[1, 1] == pytest.approx(0.01)
    centers = rng.normal(size=(50, 3)).astype(np.float32)
    buf = pack_geometry(centers, cov)
    assert buf.shape == (50, 8) and buf.dtype == np.uint32 and buf.nbytes == 50 * BYTES_PER_GAUSSIAN
    np.testing.assert_array_equal(buf[:, 0:3].view(np.float32), centers)
    triu = buf[:, 4:7].view(np.float16).astype(np.float32)
    np.testing.assert_allclose(triu, cov.reshape(50, 9)[:, [0, 1, 2, 4, 5, 8]], rtol=2e-3, atol=1e-6)


def test_splat_colours_per_mode_visibility_and_highlight():
    scene = blob_scene()
    c = SplatColors(scene)
    n1 = 300
    rgb = c.rgba(DisplayState(mode="rgb"))
    np.testing.assert_allclose(rgb[0, :3], [204, 77, 51], atol=2)  # SH band 0 of object 1
    assert rgb[0, 3] == round(255 / (1 + np.exp(-3.0)))
    inst = c.rgba(DisplayState(mode="instance"))
    np.testing.assert_array_equal(inst[0, :3], RED)
    np.testing.assert_array_equal(inst[n1, :3], BLUE)
    np.testing.assert_allclose(inst[-1, :3], [0.5 * 0.35 * 255] * 3, atol=1)  # stuff: darkened own colour
    sem = c.rgba(DisplayState(mode="semantic"))
    assert (sem[0, :3] == sem[n1, :3]).all() and (sem[0, :3] != sem[-1, :3]).any()
    rec = c.rgba(DisplayState(mode="rgb", recolors=((2, (1, 2, 3)),)))
    np.testing.assert_array_equal(rec[n1, :3], [1, 2, 3])
    hl = c.rgba(DisplayState(mode="instance", highlight=1))
    np.testing.assert_array_equal(hl[0, :3], RED)
    np.testing.assert_allclose(hl[n1, :3], np.array(BLUE) * (1 - HIGHLIGHT_DIM), atol=1)
    vis = c.visible_mask(DisplayState(hidden=frozenset({0, 2})))
    assert vis.sum() == n1 and vis[:n1].all()
    with pytest.raises(ValueError, match="server"):
        c.rgba(DisplayState(mode="depth"))


def test_ray_pick_matches_the_pixel_pick():
    r = ViewRenderer(blob_scene(), device="cpu")
    st = DisplayState()
    f = 0.5 * H / np.tan(0.5 * CAM.fov_y)
    for p, want in ((P1, 1), (P2, 2), (PWALL, 0), (PEMPTY, None)):
        d = np.array([(p[0] - W / 2) / f, (p[1] - H / 2) / f, 1.0])  # the ray through that pixel
        assert r.pick_ray((0, 0, 0), d, st, CAM.fov_y / H) == want, p
    assert r.pick_ray((0, 0, 0), [-0.5 / 3, 0, 1], DisplayState(hidden=frozenset({1})), 1e-3) == 0
    with pytest.raises(ValueError, match="ray direction"):
        r.pick_ray((0, 0, 0), (0, 0, 0), st)


class _Event:
    def __init__(self, client, origin, direction):
        self.client, self.ray_origin, self.ray_direction = client, origin, direction
        self.screen_pos = (0.5, 0.5)


@pytest.fixture
def app():
    a = ViewerApp(blob_scene(), port=0, device="cpu", mode="instance", render="browser")
    yield a
    a.stop()


def test_app_in_browser_mode_sends_splats_and_updates_them(app):
    sp = app.splats
    assert app.render == "browser" and sp.handle is not None
    n = len(app.scene)
    assert sp.gaussians_sent == n and sp.handle.buffer.shape == (n, 8)
    client = _FakeClient()
    loop = ClientLoop(app, client)
    client.camera.callbacks[0](client.camera)
    loop._tick()
    assert client.images == [None]  # no streamed image in browser mode (the last one is removed)
    loop._tick()
    assert client.images == [None]

    app._on_click(_Event(client, (0, 0, 0), (-0.5 / 3, 0, 1)))  # the ray through object 1
    assert app.selected == 1 and "object #1" in app.gui_selection.content
    rgba = sp.handle.buffer[:, 7:8].view(np.uint8)
    assert (rgba[300, :3] < np.array(BLUE) * 0.5 + 2).all()  # object 2 dimmed
    app.isolate()
    assert sp.gaussians_sent == 300 and sp.handle.buffer.shape == (300, 8)  # hidden ones are not sent
    updates = sp.updates
    app.update_state(overlay_opacity=0.3)  # nothing the splats show: nothing re-sent
    assert sp.updates == updates
    app.show_all()
    app.recolor((9, 9, 9))
    assert sp.gaussians_sent == n and tuple(sp.handle.buffer[0:1, 7:8].view(np.uint8)[0, :3]) == (9, 9, 9)
    app.update_state(hidden=app._all_ids())  # everything hidden: the node is hidden, not emptied
    assert sp.gaussians_sent == 0 and not sp.handle.visible
    app.show_all()
    assert sp.handle.visible

    # depth needs the server: switching to it switches the render back
    app.update_state(mode="depth")
    assert app.render == "server" and sp.handle is None
    assert app.gui_render.value.startswith("Server") and "switched to server" in app.gui_stats.content
    loop._tick()
    assert client.images[-1] is not None and client.images[-1].shape[2] == 3  # images stream again
    # back to the browser: from depth it shows RGB
    app.set_render("browser")
    assert app.render == "browser" and app.state.mode == "rgb" and sp.handle is not None
    with pytest.raises(ValueError, match="unknown render"):
        app.set_render("gpu")
    loop.stop()


def test_cli_render_flag_errors(tmp_path, capsys):
    from pcf_gs.cli import main
    from pcf_gs.splats.ply import write_ply

    ply = tmp_path / "plain.ply"
    write_ply(ply, blob_scene(labels=False).splats)
    assert main(["view", str(ply), "--render", "browser", "--mode", "depth", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--render browser --mode depth" in err[0] and "--render server" in err[0]
    with pytest.raises(SystemExit):
        main(["view", str(ply), "--render", "gpu"])
