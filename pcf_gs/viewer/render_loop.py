"""The render loop: one thread per browser tab, and the executor every render call goes through.

Threads: viser runs its asyncio server in a thread of its own; each connected
tab has a :class:`ClientLoop` thread that renders when the camera or the
display state changes — reduced-resolution preview frames while the camera
moves, one full frame once it rests. Render calls go through
:class:`RenderExecutor`, which runs them one at a time; while ``pcf-gs train
--viewer`` trains, the executor hands them to the training thread, which runs
them between steps (the numba kernels of the viewer and of training then never
compete for the cores).
"""

from __future__ import annotations

import queue
import threading
import time
import warnings
from concurrent.futures import Future
from typing import TYPE_CHECKING, Callable, TypeVar

from pcf_gs.viewer.view_renderer import AdaptiveResolution, Camera

if TYPE_CHECKING:
    from pcf_gs.viewer.app import ViewerApp

T = TypeVar("T")
REST_SECONDS = 0.25  # the camera counts as resting this long after its last update
RENDERING = "rendering full frame…"


class RenderExecutor:
    """Runs render calls one at a time: directly under a lock, or — while ``pumped`` —
    queued for another thread (the training loop) that calls :meth:`pump` between steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode_lock = threading.Lock()
        self._pumped = False
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()

    def call(self, fn: Callable[[], T], timeout: float = 300.0) -> T:
        with self._mode_lock:
            if self._pumped:
                fut: Future = Future()
                self._jobs.put((fn, fut))
            else:
                fut = None  # type: ignore[assignment]
        if fut is None:
            with self._lock:
                return fn()
        return fut.result(timeout=timeout)

    def set_pumped(self, pumped: bool) -> None:
        """Switch between direct calls and calls run by :meth:`pump` (queued jobs are run when leaving)."""
        with self._mode_lock:
            self._pumped = pumped
        if not pumped:
            self.pump()

    def pump(self, max_jobs: int = 8) -> int:
        """Run queued render calls in the calling thread; returns how many ran."""
        n = 0
        while n < max_jobs:
            try:
                fn, fut = self._jobs.get_nowait()
            except queue.Empty:
                break
            if fut.set_running_or_notify_cancel():
                try:
                    with self._lock:
                        fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                    fut.set_exception(e)
            n += 1
        return n


# A tab may close between that check and the send: viser then warns on stderr, per frame, that the image will
# never be delivered; true and harmless. (A process-wide filter: catch_warnings is not thread-safe.)
warnings.filterwarnings("ignore", message="Queued a BackgroundImageMessage on a closed connection")


class ClientLoop:
    """Renders for one browser tab: preview frames while its camera moves, a full frame at rest."""

    def __init__(self, app: ViewerApp, client):
        self.app, self.client = app, client
        self.res = AdaptiveResolution(max_side=app.max_side, moving_side=app.moving_side)
        self._wake = threading.Event()
        self._alive = True
        self._cam_seq = 0
        self._moved_at = 0.0
        self._rendered: tuple | None = None  # (camera seq, generation) of the last frame
        self._rendered_full = False
        self._last_stats = 0.0
        self._bg_cleared = False  # browser rendering: the streamed image was taken away
        client.camera.on_update(self._on_camera)
        self._thread = threading.Thread(target=self._run, name=f"pcf-gs-view-{client.client_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._alive = False
        self._wake.set()

    def kick(self) -> None:
        self._wake.set()

    def _on_camera(self, _camera) -> None:
        self._cam_seq += 1
        self._moved_at = time.monotonic()
        self._wake.set()

    def _run(self) -> None:
        while self._alive:
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            if not self._alive:
                break
            try:
                self._tick()
            except Exception as e:  # noqa: BLE001 - never let a frame kill the loop or the server
                self.app.report_error(e, self.client)

    def _tick(self) -> None:
        app = self.app
        if app.render == "browser":  # the browser draws the splats itself: no images, and the last one goes
            if not self._bg_cleared:
                self.client.scene.set_background_image(None)
                self._bg_cleared = True
            self._rendered = None
            return
        self._bg_cleared = False
        if self._cam_seq == 0:
            return  # no camera message yet
        key = (self._cam_seq, app.generation)
        moving = time.monotonic() - self._moved_at < REST_SECONDS
        if key == self._rendered and (self._rendered_full or moving):
            return
        camera_changed = self._rendered is None or key[0] != self._rendered[0]
        preview = (moving and camera_changed) or self._rendered is None  # the first frame comes quickly
        self._rendered = key  # also on failure: retry only when something changes
        self._rendered_full = not preview
        cam = self.client.camera
        camera = Camera.from_wxyz_position(cam.wxyz, cam.position, cam.fov)
        self.res.max_side, self.res.moving_side = app.max_side, app.moving_side
        W, H = self.res.size(cam.image_width, cam.image_height, moving=preview)
        detail = self.res.frame_detail(moving=preview)
        state = app.state
        if not preview:  # a full frame can take a while on a CPU: say so (tests wait for it too)
            app.gui_stats.content = app.gui_stats.content.split(" · ")[0] + " · " + RENDERING
        img, info = app.executor.call(lambda: app.renderer.render(camera, state, W, H, detail=detail))
        self.res.record(info.seconds, moving=preview)
        if not self._alive:
            return  # the tab closed while this frame rendered
        self.client.scene.set_background_image(img, format="jpeg", jpeg_quality=75 if preview else 90)
        app.frames_sent += 1
        app.clear_error()
        now = time.monotonic()
        if not preview or now - self._last_stats > 0.5:
            self._last_stats = now
            app.gui_stats.content = (
                f"{'moving' if preview else 'full'}: {info.width}×{info.height}, "
                f"{info.seconds * 1000:.0f} ms, {info.gaussians:,} Gaussians drawn"
                + (f" ({detail:.0%} detail)" if detail < 1 else "")
            )

