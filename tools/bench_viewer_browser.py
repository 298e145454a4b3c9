"""Benchmark the viewer's two render modes in headless Chromium: browser (WebGL splats) vs server (streamed images).

    python tools/bench_viewer_browser.py [--gaussians 100000 1000000] [--seconds 8]
                                         [--viewport 1280 720] [--out bench_viewer_browser.json]

For every scene size it writes a random 3DGS PLY (the Gaussians of
``tools/bench_viewer.py``: spread over a view frustum, SH degree 3), starts
``python -m pcf_gs view PLY --render browser|server`` on it and opens it in
headless Chromium (the system's Chromium, software WebGL through SwiftShader,
as ``tests/viewer/test_viewer_browser.py``). Then it orbits the camera by
dragging the mouse over the canvas for ``--seconds`` and counts

- browser mode: frames the page draws (``requestAnimationFrame`` callbacks
  counted in the page; viser's canvas redraws on every animation frame, and with
  software WebGL an animation frame waits for the previous draw) and the bytes
  received on the websocket until the splats are on screen (the scene, sent
  once; every colour / visibility change re-sends 32 bytes per visible Gaussian);
- server mode: streamed images received per second while dragging (what the
  user sees move) and the bytes per image, plus the page's own frame rate.

It prints a table and writes JSON. Machine load (other jobs) changes the
numbers: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

RAF_COUNTER = """() => {
  window.__pcf_frames = 0; window.__pcf_run = true;
  const tick = () => { window.__pcf_frames++; if (window.__pcf_run) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""


def write_scene(n: int, out: Path) -> Path:
    from bench_viewer import make_scene

    from pcf_gs.splats.ply import write_ply

    path = out / f"bench_{n}.ply"
    if not path.exists():
        write_ply(path, make_scene(n).splats, extra=False)
    return path


class ByteCounter:
    def __init__(self, page):
        self.bytes = 0
        self.messages = 0
        self.jpeg_frames = 0
        self.jpeg_bytes = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._on))

    def _on(self, payload) -> None:
        size = len(payload) if isinstance(payload, (bytes, bytearray)) else len(str(payload).encode())
        self.bytes += size
        self.messages += 1
        if isinstance(payload, (bytes, bytearray)) and b"\xff\xd8\xff" in payload:
            self.jpeg_frames += 1
            self.jpeg_bytes += size


def canvas_drawn(page, threshold: int = 40, timeout_ms: float = 120_000) -> float:
    """Share of the canvas area (left of the panel) that is not background in a screenshot
    (a screenshot waits for the page's next frame: -1.0 when none came within ``timeout_ms``)."""
    import cv2
    import numpy as np

    try:
        png = page.screenshot(timeout=timeout_ms)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: the page drew no frame
        return -1.0
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    w = img.shape[1]
    region = img[:, : int(w * 0.7)]
    return float((region.max(2) > threshold).mean())


def orbit_drag(page, seconds: float, width: int, height: int) -> None:
    """Drag the mouse in circles over the canvas (viser orbits the camera) for ``seconds``."""
    import math

    cx, cy, r = width * 0.35, height * 0.5, min(width, height) * 0.12
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        a = 2 * math.pi * k / 60
        page.mouse.move(cx + r * math.cos(a), cy + r * math.sin(a), steps=1)
        page.wait_for_timeout(16)
        k += 1
    page.mouse.up()


def measure(ply: Path, n: int, render: str, seconds: float, viewport: tuple[int, int], load_timeout: float) -> dict:
    from tests.viewer.browser import ViewerPage, start_viewer

    width, height = viewport
    t0 = time.monotonic()
    proc, url = start_viewer(ply, "--render", render, "--max-res", "256", timeout=300)
    row = {"gaussians": n, "render": render, "viewport": f"{width}x{height}"}
    try:
        with ViewerPage(url, width=width, height=height) as vp:
            page = vp.page
            counter = ByteCounter(page)
            page.reload()  # count the bytes from the first message (the listener is attached now)
            t_load = time.monotonic()
            deadline = t_load + load_timeout
            if render == "browser":
                while counter.bytes < n * 32 and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
                t_bytes = time.monotonic() - t_load
                while 0 <= canvas_drawn(page) < 0.02 and time.monotonic() < deadline:
                    page.wait_for_timeout(200)
                row["seconds_to_first_draw"] = time.monotonic() - t_load
                row["seconds_to_receive"] = t_bytes
                row["scene_bytes"] = counter.bytes
            else:
                while counter.jpeg_frames == 0 and time.monotonic() < deadline:
                    page.wait_for_timeout(100)
                page.wait_for_timeout(1500)
                row["seconds_to_first_draw"] = time.monotonic() - t_load
                row["scene_bytes"] = counter.bytes
            row["drawn_share"] = canvas_drawn(page)
            vp.dismiss_notifications()
            page.evaluate(RAF_COUNTER)
            f0, j0, b0 = 0, counter.jpeg_frames, counter.jpeg_bytes
            t = time.monotonic()
            orbit_drag(page, seconds, width, height)
            dt = time.monotonic() - t
            raf = page.evaluate("() => { window.__pcf_run = false; return window.__pcf_frames; }")
            row["page_fps"] = (raf - f0) / dt
            jf = counter.jpeg_frames - j0
            row["images_per_s"] = jf / dt
            row["bytes_per_image"] = (counter.jpeg_bytes - b0) / max(jf, 1)
            row["fps"] = row["page_fps"] if render == "browser" else row["images_per_s"]
            row["drag_seconds"] = dt
            # at rest: frames per second the page draws with nothing moving
            page.wait_for_timeout(1500)
            page.evaluate(RAF_COUNTER)
            page.wait_for_timeout(5000)
            row["page_fps_rest"] = page.evaluate("() => { window.__pcf_run = false; return window.__pcf_frames; }") / 5.0
        row["alive"] = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except Exception:  # noqa: BLE001
            proc.kill()
    row["total_seconds"] = time.monotonic() - t0
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gaussians", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--renders", nargs="+", default=["browser", "server"], choices=["browser", "server"])
    ap.add_argument("--seconds", type=float, default=8.0, help="how long to orbit per measurement")
    ap.add_argument("--viewport", type=int, nargs=2, default=[1280, 720])
    ap.add_argument("--load-timeout", type=float, default=240.0)
    ap.add_argument("--workdir", default="/tmp/pcf_gs_bench_viewer_browser")
    ap.add_argument("--out", default="bench_viewer_browser.json")
    args = ap.parse_args()

    from tests.viewer.browser import find_chromium

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set PCF_GS_CHROMIUM)")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.gaussians:
        t = time.perf_counter()
        ply = write_scene(n, work)
        print(f"scene {n:,} Gaussians: {ply} ({ply.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t:.1f} s)",
              flush=True)
        for render in args.renders:
            load = os.getloadavg()[0]
            row = measure(ply, n, render, args.seconds, tuple(args.viewport), args.load_timeout)
            row["load_avg_before"] = load
            rows.append(row)
            print(f"  {render:<8} {row['fps']:6.1f} frames/s moving (page {row['page_fps']:.1f}/s, at rest "
                  f"{row['page_fps_rest']:.1f}/s), first draw {row['seconds_to_first_draw']:.1f} s, "
                  f"scene {row['scene_bytes'] / 2**20:.1f} MiB, load {load:.1f}", flush=True)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"viewer in headless Chromium (SwiftShader WebGL), {args.viewport[0]}×{args.viewport[1]}")
    for c in ("Gaussians", "render", "frames/s moving", "page frames/s at rest", "first draw s",
              "scene MiB", "KiB per image"):
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(f"{r['gaussians']:,}", r["render"], f"{r['fps']:.1f}", f"{r['page_fps_rest']:.1f}",
                      f"{r['seconds_to_first_draw']:.1f}", f"{r['scene_bytes'] / 2**20:.2f}",
                      f"{r['bytes_per_image'] / 1024:.0f}" if r["render"] == "server" else "-")
    Console().print(table)
    meta = {"chromium": chromium, "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg": os.getloadavg(), "seconds": args.seconds, "viewport": args.viewport}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
