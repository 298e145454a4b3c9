"""Drive the viewer from headless Chromium: the end-to-end test and the README screenshot use this.

Uses playwright's Python client with the system's Chromium (Debian's
``chromium`` package; ``PCF_GS_CHROMIUM`` overrides the path) — playwright
never downloads a browser here. Streamed frames are counted on the real
websocket (viser sends each frame as a JPEG in a binary message), so a test
waits for an image that was actually received rather than for a timer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

JPEG_SOI = b"\xff\xd8\xff"


def find_chromium() -> str | None:
    """Path of a Chromium executable: $PCF_GS_CHROMIUM, else chromium / chromium-browser on PATH."""
    env = os.environ.get("PCF_GS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def start_viewer(target: str | Path, *args: str, timeout: float = 90.0, env: dict | None = None,
                 log_path: str | Path | None = None) -> tuple[subprocess.Popen, str]:
    """Run ``python -m pcf_gs view TARGET --port 0 ARGS`` and return (process, URL) once it listens."""
    cmd = [sys.executable, "-m", "pcf_gs", "view", str(target), "--port", "0", *args]
    log = open(log_path, "w+") if log_path else None  # noqa: SIM115 - closed with the process by the caller
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log or subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    lines = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        m = re.search(r"open (http://\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the viewer did not start:\n" + "".join(lines))


class ViewerPage:
    """One headless Chromium tab on the viewer (use as a context manager)."""

    def __init__(self, url: str, width: int = 1280, height: int = 720, chromium: str | None = None):
        self.url, self.width, self.height = url, width, height
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise RuntimeError("no Chromium found (apt-get install chromium, or set PCF_GS_CHROMIUM)")
        self.frames = 0  # JPEG frames received on the websocket
        self._pw = self._browser = self.page = None

    def __enter__(self) -> "ViewerPage":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=self.chromium, headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--ignore-gpu-blocklist"],
        )
        self.page = self._browser.new_page(viewport={"width": self.width, "height": self.height})

        def on_ws(ws):
            ws.on("framereceived", self._on_frame)

        self.page.on("websocket", on_ws)
        self.page.goto(self.url)
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            if self._pw is not None:
                self._pw.stop()

    def _on_frame(self, payload) -> None:
        if isinstance(payload, (bytes, bytearray)) and JPEG_SOI in payload:
            self.frames += 1

    # -------------------------------------------------------------- waiting
    def wait_for_frames(self, after: int, timeout: float = 60.0, settle_ms: int = 400) -> int:
        """Wait until more than ``after`` frames were received, then ``settle_ms`` more for the
        browser to draw it (and for any follow-up frame); returns the frame count."""
        deadline = time.monotonic() + timeout
        while self.frames <= after:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no streamed image within {timeout:.0f} s ({self.frames} frames so far)")
            self.page.wait_for_timeout(50)
        self.page.wait_for_timeout(settle_ms)
        return self.frames

    def _wait_quiet(self, quiet_ms: int, timeout: float, busy=lambda: False) -> bool:
        """Poll until no frame arrived for ``quiet_ms`` and ``busy()`` is false; False on timeout."""
        deadline = time.monotonic() + timeout
        last, since = self.frames, time.monotonic()
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(100)
            if self.frames != last:
                last, since = self.frames, time.monotonic()
            elif (time.monotonic() - since) * 1000 >= quiet_ms and not busy():
                return True
        return False

    def wait_until_idle(self, quiet_ms: int = 800, timeout: float = 30.0) -> int:
        """Wait until no frame arrived for ``quiet_ms`` (the full-resolution frame after a change)."""
        self._wait_quiet(quiet_ms, timeout)
        return self.frames

    def wait_until_rendered(self, after: int, timeout: float = 120.0, quiet_ms: int = 300) -> int:
        """Wait for a frame after ``after`` and then until the viewer reports no full frame in
        progress and no frame arrived for ``quiet_ms``: the image on screen is the final one."""
        self.wait_for_frames(after, timeout=timeout, settle_ms=0)
        stats = self.page.get_by_text(re.compile(r"(full|moving): \d+×\d+")).first

        def busy() -> bool:
            try:
                return "rendering" in stats.inner_text(timeout=1000)
            except Exception:  # noqa: BLE001 - the panel is re-rendering
                return True

        if not self._wait_quiet(quiet_ms, timeout, busy):
            raise TimeoutError(f"the viewer kept rendering for {timeout:.0f} s")
        self.page.wait_for_timeout(200)  # let the browser draw it
        return self.frames

    def wait_for_screenshot(self, predicate, timeout: float = 60.0, every_ms: int = 250,
                            save_failed: str | Path | None = None) -> np.ndarray:
        """Take screenshots until ``predicate(image)`` holds (browser rendering: the splats are drawn
        by the page, nothing is streamed to count); returns that screenshot. On timeout the last
        screenshot is written to ``save_failed`` (if given)."""
        deadline = time.monotonic() + timeout
        while True:
            img = self.screenshot()
            if predicate(img):
                return img
            if time.monotonic() > deadline:
                if save_failed:
                    import cv2

                    cv2.imwrite(str(save_failed), img[:, :, ::-1])
                raise TimeoutError(f"the page did not show what was expected within {timeout:.0f} s")
            self.page.wait_for_timeout(every_ms)

    def wait_for_text(self, pattern: str, timeout: float = 20.0) -> str:
        """The first text node of the page matching the regular expression ``pattern``."""
        loc = self.page.get_by_text(re.compile(pattern)).first
        loc.wait_for(timeout=timeout * 1000)
        return loc.inner_text()

    # -------------------------------------------------------------- actions
    def dismiss_notifications(self) -> None:
        """Close notifications (e.g. Chromium's 'software WebGL' warning) that cover the image."""
        for btn in self.page.locator(".mantine-Notification-root button").all():
            try:
                btn.click(timeout=1000)
            except Exception:  # noqa: BLE001 - gone already
                pass

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(x, y)

    def click_button(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).click()

    def set_checkbox(self, label: str, checked: bool = True) -> None:
        """Tick (or clear) the panel's checkbox labelled ``label``."""
        self.page.get_by_label(label, exact=True).set_checked(checked)

    def image_region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the canvas not covered by the control panel, in CSS pixels."""
        x1 = self.width
        for sel in (".mantine-Paper-root", "[class*='floating']"):
            boxes = [b for b in (el.bounding_box() for el in self.page.locator(sel).all()) if b]
            right = [b for b in boxes if b["x"] > self.width / 2 and b["height"] > self.height / 3]
            if right:
                x1 = int(min(b["x"] for b in right)) - 4
                break
        return 0, 0, max(x1, 1), self.height

    def screenshot(self, path: str | Path | None = None) -> np.ndarray:
        """The page as an [H, W, 3] uint8 RGB array (also written to ``path`` if given)."""
        import cv2

        png = self.page.screenshot(path=str(path) if path else None)
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        return img[:, :, ::-1].copy()


# --------------------------------------------------------------------------- #
# reading object colours off a screenshot


def classify_object_pixels(img: np.ndarray, colors: dict[int, tuple[int, int, int]], min_value: int = 60,
                           max_dist: float = 28.0) -> np.ndarray:
    """[H, W] int: the object whose display colour (possibly darkened towards black at edges,
    as alpha blending over a black background does) each pixel shows; 0 = none of them.

    A pixel is compared with the segment from black to each colour; the closest within
    ``max_dist`` (RGB units) wins. Pixels darker than ``min_value`` count as background.
    """
    ids = np.array(list(colors), dtype=np.int64)
    cols = np.array([colors[i] for i in ids], dtype=np.float32)  # [O,3]
    px = img.reshape(-1, 3).astype(np.float32)
    t = np.clip((px @ cols.T) / (cols * cols).sum(1), 0.0, 1.0)  # [P,O] position along black -> colour
    d = np.linalg.norm(px[:, None, :] - t[..., None] * cols[None], axis=-1)
    best = d.argmin(1)
    ok = (d[np.arange(len(px)), best] <= max_dist) & (px.max(1) >= min_value) & (t[np.arange(len(px)), best] > 0.6)
    out = np.where(ok, ids[best], 0)
    return out.reshape(img.shape[:2])


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel of ``mask`` farthest from its border."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    return int(x), int(y)
