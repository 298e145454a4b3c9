"""The browser viewer's app: a viser server, its GUI panel, the display state and its handlers.

Built on viser directly (not nerfview): the render loop, adaptive resolution
and error handling are ours. A failing render is caught per frame, logged
with its traceback and shown in the panel (and as a notification); the server
and the other tabs go on. nerfview 0.1.3 ends the process with ``os._exit`` on
such errors, one reason not to build on it.

Each connected tab gets a :class:`~pcf_gs.viewer.render_loop.ClientLoop`; all
render and picking calls go through the app's
:class:`~pcf_gs.viewer.render_loop.RenderExecutor`.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from pcf_gs.viewer.browser_splats import RENDER_LABELS, RENDERS, BrowserSplats, browser_unsupported
from pcf_gs.viewer.view_renderer import MODE_LABELS, Camera, DisplayState, ViewRenderer, available_modes
from pcf_gs.viewer.render_loop import ClientLoop, RenderExecutor
from pcf_gs.viewer.target import STUFF, CameraPreset, ViewScene

log = logging.getLogger("pcf_gs.viewer")

NO_SELECTION = "(none)"


class ViewerApp:
    """A viser server showing one :class:`ViewScene`.

    Args:
        scene: what to show (:func:`pcf_gs.viewer.target.load_target`; replace with :meth:`set_scene`).
        host, port: where to listen (port 0: any free port; a busy port moves to the next free one).
        mode: initial render mode (``rgb``, ``semantic``, ``instance``, ``uncertainty``, ``depth``).
        device: torch device for rendering (default: CUDA when available, else CPU).
        export_dir: where "Export" writes PLY files (they are also sent to the browser).
        max_side, moving_side: long side of the image at rest / at most while moving (pixels).
        render: ``server`` (images rendered here and streamed) or ``browser`` (the splats are sent
            to the browser, which draws them with WebGL: RGB from SH band 0, semantic, instance;
            see :mod:`pcf_gs.viewer.browser_splats`).
    """

    def __init__(self, scene: ViewScene, host: str = "127.0.0.1", port: int = 8080, *, mode: str = "rgb",
                 device=None, export_dir: str | Path = "viewer_exports", max_side: int = 1024,
                 moving_side: int = 256, verbose: bool = False, render: str = "server"):
        import viser

        if render not in RENDERS:
            raise ValueError(f"unknown render {render!r} (one of {', '.join(RENDERS)})")

        self.renderer = ViewRenderer(scene, device=device)
        if mode not in available_modes(scene):
            mode = "rgb"
        self.state = DisplayState(mode=mode)
        self.selected: int | None = None
        self.generation = 0  # bumped on every state / scene change the loops must re-render for
        self.executor = RenderExecutor()
        self.export_dir = Path(export_dir)
        self.max_side, self.moving_side = int(max_side), int(moving_side)
        self.frames_sent = 0
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._loops: dict[int, ClientLoop] = {}
        self._last_error_note = (None, 0.0)
        self.render = "server"
        self.server = viser.ViserServer(host=host, port=port, label="pcf-gs", verbose=verbose)
        self.server.scene.world_axes.visible = False
        self._apply_scene_camera(scene)
        self._build_gui()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self.server.scene.on_click()(self._on_click)
        self.splats = BrowserSplats(self.server.scene)
        if render == "browser":
            self.set_render("browser")

    # ------------------------------------------------------------- properties
    @property
    def scene(self) -> ViewScene:
        return self.renderer.scene

    @property
    def url(self) -> str:
        host = self.server.get_host()
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else host
        return f"http://{shown}:{self.server.get_port()}"

    def stop(self) -> None:
        for loop in list(self._loops.values()):
            loop.stop()
        self.server.stop()

    # ------------------------------------------------------------------ state
    def _bump(self) -> None:
        with self._lock:
            self.generation += 1
        for loop in list(self._loops.values()):
            loop.kick()

    def update_state(self, **kw) -> None:
        with self._lock:
            self.state = replace(self.state, **kw)
            if self.render == "browser":
                reason = browser_unsupported(self.state.mode, self.state.overlay)
                if reason:  # depth, uncertainty and the overlay are drawn on the server
                    self._switch_render("server", note=f"{reason}: switched to server rendering")
                else:
                    self._show_splats()
        self._bump()

    # ------------------------------------------------------------ render mode
    def set_render(self, render: str) -> None:
        """Switch between ``server`` rendering (streamed images) and ``browser`` rendering
        (WebGL splats). Browser rendering shows RGB (SH band 0), semantic and instance: from
        another mode it switches to RGB, and the overlay is switched off."""
        if render not in RENDERS:
            raise ValueError(f"unknown render {render!r} (one of {', '.join(RENDERS)})")
        with self._lock:
            if render == "browser" and browser_unsupported(self.state.mode, self.state.overlay):
                self.state = replace(self.state, mode="rgb", overlay=False)
                self.gui_mode.value = MODE_LABELS["rgb"]
                self.gui_overlay.value = False
            self._switch_render(render)
        self._bump()

    def _switch_render(self, render: str, note: str = "") -> None:
        self.render = render
        if render == "browser":
            self._show_splats()
        else:
            self.splats.remove()
            self.gui_stats.content = note
        if self.gui_render.value != RENDER_LABELS[render]:
            self.gui_render.value = RENDER_LABELS[render]

    def _show_splats(self) -> None:
        t = time.perf_counter()
        n = self.splats.show(self.scene, self.state)
        self.gui_stats.content = (
            f"browser: {n:,} Gaussians sent ({n * 32 / 2**20:.1f} MiB, {(time.perf_counter() - t) * 1000:.0f} ms); "
            "RGB is SH band 0 (no view-dependent colour)"
        )

    def set_scene(self, scene: ViewScene) -> None:
        """Show another scene (live training): keeps the mode when the new scene has it."""
        first_real = not self.scene.cameras or len(self.scene) == 0
        self.renderer.set_scene(scene)  # no kernels: swaps tensors under the renderer's lock
        with self._lock:
            if self.state.mode not in available_modes(scene):
                self.state = replace(self.state, mode="rgb")
            if self.selected is not None and scene.object(self.selected) is None:
                self.selected = None
        if self.render == "browser":
            with self._lock:
                self._show_splats()
        if first_real and scene.cameras:
            self._apply_scene_camera(scene)
            for loop in list(self._loops.values()):
                self._move_client(loop.client, scene.cameras[0])
        self._refresh_gui()
        self._bump()

    # ----------------------------------------------------------------- camera
    def _scene_center(self, scene: ViewScene) -> np.ndarray:
        m = scene.splats.means
        return np.median(m, axis=0) if len(m) else np.zeros(3)

    def _look_at(self, scene: ViewScene, preset: CameraPreset) -> np.ndarray:
        pos, fwd = preset.c2w[:3, 3], preset.c2w[:3, 2]
        d = float((self._scene_center(scene) - pos) @ fwd)
        if not np.isfinite(d) or d <= 1e-3:
            d = 1.0
        return pos + fwd * d

    def _apply_scene_camera(self, scene: ViewScene) -> None:
        self.server.scene.set_up_direction(tuple(float(x) for x in scene.up))
        if scene.cameras:
            p = scene.cameras[0]
            ic = self.server.initial_camera
            ic.position = tuple(float(x) for x in p.c2w[:3, 3])
            ic.look_at = tuple(float(x) for x in self._look_at(scene, p))
            ic.up = tuple(float(x) for x in scene.up)
            ic.fov = float(p.fov_y)

    def _move_client(self, client, preset: CameraPreset) -> None:
        with client.atomic():
            client.camera.fov = float(preset.fov_y)
            client.camera.up_direction = tuple(float(x) for x in self.scene.up)
            client.camera.position = tuple(float(x) for x in preset.c2w[:3, 3])
            client.camera.look_at = tuple(float(x) for x in self._look_at(self.scene, preset))

    # -------------------------------------------------------------------- GUI
    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.configure_theme(dark_mode=True, show_logo=False, show_share_button=False)  # no public share tunnel
        self.gui_info = gui.add_markdown("")
        self.gui_error = gui.add_markdown("", visible=False)
        with gui.add_folder("Display"):
            self.gui_render = gui.add_dropdown(
                "Render", [RENDER_LABELS[r] for r in RENDERS], initial_value=RENDER_LABELS["server"],
                hint="server: images rendered here, every mode; browser: the splats drawn by the browser "
                     "(WebGL; RGB without view-dependent colour, semantic, instance)")
            self.gui_mode = gui.add_dropdown("Mode", [MODE_LABELS["rgb"]], initial_value=MODE_LABELS["rgb"])
            self.gui_overlay = gui.add_checkbox("Overlay on RGB", False)
            self.gui_opacity = gui.add_slider("Overlay opacity", 0.0, 1.0, 0.05, 0.5)
            self.gui_max_side = gui.add_slider("Resolution", 128, 2048, 64, int(np.clip(self.max_side, 128, 2048)),
                                               hint="long side of the image when the camera rests (pixels)")
            self.gui_moving = gui.add_slider("Moving resolution", 64, 1024, 32, self.moving_side,
                                             hint="long side at most while the camera moves (lowered to keep 10 fps)")
            self.gui_view = gui.add_dropdown("Go to view", ["(choose)"])
            self.gui_stats = gui.add_markdown("")
        with gui.add_folder("Objects"):
            self.gui_objects_note = gui.add_markdown("")
            self.gui_select = gui.add_dropdown("Selected", [NO_SELECTION])
            self.gui_selection = gui.add_markdown("Click an object in the image to select it.")
            self.gui_isolate = gui.add_button("Isolate")
            self.gui_hide = gui.add_button("Hide")
            self.gui_show_all = gui.add_button("Show all")
            self.gui_color = gui.add_rgb("Colour", (255, 64, 64))
            self.gui_recolor = gui.add_button("Recolour")
            self.gui_reset_colors = gui.add_button("Reset colours")
            self.gui_export_sel = gui.add_button("Export selection")
            self.gui_export_vis = gui.add_button("Export visible")
            with gui.add_folder("List", expand_by_default=False):
                self.gui_list = gui.add_markdown("")

        def guarded(fn):
            def wrapper(event):
                try:
                    fn(event)
                except Exception as e:  # noqa: BLE001 - a GUI action must never kill the server
                    self.report_error(e, getattr(event, "client", None), where="GUI action")
            return wrapper

        label_to_mode = {v: k for k, v in MODE_LABELS.items()}
        label_to_render = {v: k for k, v in RENDER_LABELS.items()}
        self.gui_render.on_update(guarded(lambda e: label_to_render[self.gui_render.value] != self.render
                                          and self.set_render(label_to_render[self.gui_render.value])))
        self.gui_mode.on_update(guarded(lambda e: self.update_state(mode=label_to_mode[self.gui_mode.value])))
        self.gui_overlay.on_update(guarded(lambda e: self.update_state(overlay=bool(self.gui_overlay.value))))
        self.gui_opacity.on_update(guarded(lambda e: self.update_state(overlay_opacity=float(self.gui_opacity.value))))
        self.gui_max_side.on_update(guarded(lambda e: self._set_sides()))
        self.gui_moving.on_update(guarded(lambda e: self._set_sides()))
        self.gui_view.on_update(guarded(self._on_view))
        self.gui_select.on_update(guarded(self._on_select_dropdown))
        self.gui_isolate.on_click(guarded(lambda e: self.isolate()))
        self.gui_hide.on_click(guarded(lambda e: self.hide()))
        self.gui_show_all.on_click(guarded(lambda e: self.show_all()))
        self.gui_recolor.on_click(guarded(lambda e: self.recolor(tuple(int(c) for c in self.gui_color.value))))
        self.gui_reset_colors.on_click(guarded(lambda e: self.update_state(recolors=())))
        self.gui_export_sel.on_click(guarded(lambda e: self._export(e.client, selection=True)))
        self.gui_export_vis.on_click(guarded(lambda e: self._export(e.client, selection=False)))
        self._refresh_gui()

    def _set_sides(self) -> None:
        self.max_side, self.moving_side = int(self.gui_max_side.value), int(self.gui_moving.value)
        self._bump()

    def _refresh_gui(self) -> None:
        sc = self.scene
        notes = "".join(f"\n- {n}" for n in sc.notes)
        self.gui_info.content = (
            f"**pcf-gs viewer** · {len(sc):,} Gaussians · {self.renderer.backend}\n\n{sc.source}" + notes
        )
        modes = available_modes(sc)
        signature = (tuple(modes), tuple(o.label() for o in sc.objects), tuple(c.name for c in sc.cameras))
        if signature == getattr(self, "_gui_signature", None):
            return  # live updates: only the info line changed (keeps open dropdowns open)
        self._gui_signature = signature
        self.gui_mode.options = tuple(MODE_LABELS[m] for m in modes)
        self.gui_mode.value = MODE_LABELS[self.state.mode]
        self.gui_view.options = ("(choose)",) + tuple(c.name for c in sc.cameras)
        labelled = sc.has_instances
        for h in (self.gui_select, self.gui_isolate, self.gui_hide, self.gui_show_all, self.gui_recolor,
                  self.gui_reset_colors, self.gui_export_sel, self.gui_color):
            h.disabled = not labelled
        self.gui_objects_note.content = (
            f"{len(sc.objects)} objects" if labelled else "No object labels in this scene: "
            "segment a run (`pcf-gs segment RUN --out RUN/segment --export-ply`) to pick objects."
        )
        self.gui_select.options = (NO_SELECTION,) + tuple(o.label() for o in sc.objects)
        rows = "\n".join(f"| {o.id} | {o.cls} | {o.num_gaussians:,} |" for o in sc.objects)
        self.gui_list.content = "| id | class | #Gaussians |\n|---|---|---|\n" + rows if sc.objects else "(none)"
        self._show_selection()

    def _show_selection(self) -> None:
        sel = self.selected
        o = None if sel is None else self.scene.object(sel)
        if o is None:
            self.gui_select.value = NO_SELECTION
        else:
            self.gui_select.value = o.label()
        if sel is None:
            text = "Selected: nothing. Click an object in the image to select it."
        elif sel == STUFF:
            text = "Selected: nothing (background / stuff at that point)."
        elif o is None:
            text = f"Selected: object #{sel}"
        else:
            text = f"Selected: object #{o.id} ({o.cls}), {o.num_gaussians:,} Gaussians"
        self.gui_selection.content = text

    def _on_view(self, event) -> None:
        name = self.gui_view.value
        for p in self.scene.cameras:
            if p.name == name:
                clients = [event.client] if event.client is not None else list(self.server.get_clients().values())
                for c in clients:
                    self._move_client(c, p)
                break

    def _on_select_dropdown(self, event) -> None:
        v = self.gui_select.value
        oid = None
        for o in self.scene.objects:
            if o.label() == v:
                oid = o.id
        if oid != self.selected and not (oid is None and self.selected == STUFF):
            self.select(oid)

    # ------------------------------------------------------- object actions
    def select(self, oid: int | None) -> None:
        """Select object ``oid`` (0: stuff was clicked, None: nothing); it is highlighted."""
        with self._lock:
            self.selected = oid
        self._show_selection()
        self.update_state(highlight=oid if oid else None)
        log.info("selected %s", oid)

    def _all_ids(self) -> set[int]:
        return {o.id for o in self.scene.objects} | {STUFF}

    def isolate(self, oid: int | None = None) -> None:
        """Hide everything but object ``oid`` (default: the selection), stuff included."""
        oid = self.selected if oid is None else oid
        if oid is None or oid == STUFF:
            raise ValueError("select an object first (click it in the image)")
        self.update_state(hidden=frozenset(self._all_ids() - {oid}))

    def hide(self, oid: int | None = None) -> None:
        oid = self.selected if oid is None else oid
        if oid is None:
            raise ValueError("select an object first (click it in the image)")
        self.update_state(hidden=self.state.hidden | {oid})

    def show_all(self) -> None:
        self.update_state(hidden=frozenset())

    def recolor(self, rgb: tuple[int, int, int], oid: int | None = None) -> None:
        oid = self.selected if oid is None else oid
        if oid is None or oid == STUFF:
            raise ValueError("select an object first (click it in the image)")
        rec = dict(self.state.recolors)
        rec[oid] = tuple(int(c) for c in rgb)
        self.update_state(recolors=tuple(sorted(rec.items())))

    def export(self, selection: bool) -> Path:
        """Write the selected object, or every visible Gaussian, as a PLY (recolours baked in).

        The selection is written in the plain 3DGS layout (like ``objects/<id>_<class>.ply``),
        the visible set in the labelled layout of ``scene_labeled.ply`` (it reopens with labels).
        """
        from pcf_gs.viewer.export import export_view

        return export_view(self.scene, self.state, self.selected if selection else None, self.export_dir)

    def _export(self, client, selection: bool) -> None:
        path = self.export(selection)
        msg = f"{path} ({path.stat().st_size / 2**20:.1f} MiB)"
        log.warning("exported %s", msg)
        if client is not None:
            client.add_notification("Exported", f"Saved on the server: {msg}", auto_close_seconds=8.0)
            client.send_file_download(path.name, path.read_bytes())

    # ------------------------------------------------------------- clients
    def _on_connect(self, client) -> None:
        loop = ClientLoop(self, client)
        with self._lock:
            self._loops[client.client_id] = loop
        loop.start()

    def _on_disconnect(self, client) -> None:
        with self._lock:
            loop = self._loops.pop(client.client_id, None)
        if loop is not None:
            loop.stop()

    def _on_click(self, event) -> None:
        try:
            client = event.client
            cam = client.camera
            W, H = int(cam.image_width), int(cam.image_height)
            state = self.state
            if self.render == "browser" and event.ray_origin is not None:
                # the browser's click ray, picked against the Gaussians as the server would draw them
                pixel = float(cam.fov) / max(H, 1)  # the angle one screen pixel spans
                oid = self.executor.call(lambda: self.renderer.pick_ray(
                    event.ray_origin, event.ray_direction, state, pixel))
            else:
                x, y = event.screen_pos[0] * W, event.screen_pos[1] * H
                camera = Camera.from_wxyz_position(cam.wxyz, cam.position, cam.fov)
                oid = self.executor.call(lambda: self.renderer.pick(camera, state, x, y, W, H))
            self.select(oid)
        except Exception as e:  # noqa: BLE001
            self.report_error(e, getattr(event, "client", None), where="picking")

    # ---------------------------------------------------------------- errors
    def report_error(self, e: BaseException, client=None, where: str = "render") -> None:
        """Log an error with its traceback, show it in the panel and as a notification."""
        msg = f"{type(e).__name__}: {e}"
        last, when = self._last_error_note
        if msg != last or time.monotonic() - when > 10:
            log.error("viewer %s failed: %s\n%s", where, msg, "".join(traceback.format_exception(e)))
            self._last_error_note = (msg, time.monotonic())
            if client is not None:
                try:
                    client.add_notification(f"{where.capitalize()} error", msg, color="red", auto_close_seconds=10.0)
                except Exception:  # noqa: BLE001 - the client may be gone
                    pass
        self.gui_error.content = f"**{where.capitalize()} error** ({time.strftime('%H:%M:%S')}): `{msg}`  \nSee the server log."
        self.gui_error.visible = True
        self.last_error = msg

    def clear_error(self) -> None:
        if self.last_error is not None:
            self.gui_error.visible = False
            self.last_error = None



def serve(target: str | Path, host: str = "127.0.0.1", port: int = 8080, *, mode: str = "rgb",
          device=None, export_dir: str | Path = "viewer_exports", max_side: int = 1024,
          wait: bool = True, on_ready: Callable[[ViewerApp], None] | None = None,
          render: str = "server") -> ViewerApp:
    """`pcf-gs view`: load TARGET, start the server, print the URL, serve until Ctrl-C."""
    from pcf_gs.viewer.target import load_target
    from pcf_gs.viewer.view_renderer import mode_unavailable_reason
    from pcf_gs.errors import UserError

    scene = load_target(target)
    reason = mode_unavailable_reason(scene, mode)
    if reason:
        raise UserError(f"--mode {mode}: {reason}", target)
    if render not in RENDERS:
        raise UserError(f"--render {render}: one of {', '.join(RENDERS)}")
    if render == "browser" and browser_unsupported(mode, False):
        raise UserError(f"--render browser --mode {mode}: {browser_unsupported(mode, False)}; use --render server")
    app = ViewerApp(scene, host, port, mode=mode, device=device, export_dir=export_dir, max_side=max_side,
                    render=render)
    try:  # the server's threads must be stopped on every way out, or the process would not exit
        where = app.renderer.backend if render == "server" else "rendered in the browser (WebGL)"
        print(f"pcf-gs viewer: {scene.source} ({len(scene):,} Gaussians, {where})", flush=True)
        port = app.server.get_port()
        print(f"pcf-gs viewer: open {app.url}  (remote: ssh -L {port}:localhost:{port} HOST)", flush=True)
        if on_ready is not None:
            on_ready(app)
        if wait:
            while True:  # short sleeps: the kernel may deliver Ctrl-C to a server thread, and Python
                time.sleep(0.2)  # only runs the handler when the main thread wakes up
    except KeyboardInterrupt:
        pass
    except BaseException:
        app.stop()
        raise
    if wait:
        app.stop()
    return app
