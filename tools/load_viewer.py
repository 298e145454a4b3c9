"""Load and soak test of the browser viewer: N simulated clients orbiting the camera for T seconds.

    python tools/load_viewer.py --clients 4 --seconds 60 [--ply FILE] [--gaussians 20000] [--json out.json]
    python tools/load_viewer.py --soak --minutes 30 --clients 4      # clients come and go for 30 minutes

One :class:`pcf_gs.viewer.app.ViewerApp` is started in this process on a free loopback port; each client
is a thread speaking viser's own websocket protocol (subprotocol ``viser-v<version>``; messages are
msgpack dicts, the server's frames are zstd-compressed msgpack batches): it sends a
``ViewerCameraMessage`` orbiting the scene every ``1/--rate`` seconds and counts the
``BackgroundImageMessage`` frames it gets back. Reported: frames/s per client, the process's RSS
before the clients connect, while they are connected and after they left (the server's per-client
render loops are counted too: after every disconnect there must be none left).

The clients run in the server's process (to see its per-client state directly); their own cost is a
websocket, a zstd decompress and a msgpack decode per frame. ``--soak``: clients connect, orbit for
a random 5..60 s and disconnect, over and over for ``--minutes``; RSS is sampled every 10 s and
the report gives its growth per hour after the first five minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `pcf-gs view` runs

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_ply(path: Path, n: int, seed: int = 0) -> Path:
    import numpy as np

    from pcf_gs.splats.ply import Splats, write_ply

    rng = np.random.default_rng(seed)
    s = Splats(rng.normal(0, 1, (n, 3)).astype(np.float32), rng.uniform(-4, -2.5, (n, 3)).astype(np.float32),
               rng.normal(0, 1, (n, 4)).astype(np.float32), rng.normal(0, 1, n).astype(np.float32),
               rng.normal(0, 0.5, (n, 1, 3)).astype(np.float32), np.zeros((n, 0, 3), np.float32),
               {"instance_id": rng.integers(0, 8, n).astype(np.int32), "semantic_id": rng.integers(0, 3, n).astype(np.int32)})
    write_ply(path, s)
    return path


class Client(threading.Thread):
    """One simulated browser: orbit the camera, count the images that come back."""

    def __init__(self, port: int, seconds: float, rate: float, width: int, height: int, phase: float):
        super().__init__(daemon=True)
        self.port, self.seconds, self.rate, self.w, self.h, self.phase = port, seconds, rate, width, height, phase
        self.frames = 0
        self.bytes = 0
        self.error: str | None = None
        self.elapsed = 0.0

    def _camera(self, t: float) -> dict:
        a = self.phase + 0.5 * t
        pos = (4 * math.cos(a), 1.0, 4 * math.sin(a))
        # camera looking at the origin (OpenCV: +z forward, -y up): rotation from the look-at frame
        import numpy as np
        from scipy.spatial.transform import Rotation

        z = -np.array(pos) / np.linalg.norm(pos)
        x = np.cross(z, [0, -1, 0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        xyzw = Rotation.from_matrix(np.stack([x, y, z], 1)).as_quat()
        return {"type": "ViewerCameraMessage", "wxyz": [float(xyzw[3]), *map(float, xyzw[:3])], "position": list(pos),
                "fov": 1.0, "near": 0.01, "far": 100.0, "image_height": self.h, "image_width": self.w,
                "look_at": [0.0, 0.0, 0.0], "up_direction": [0.0, -1.0, 0.0]}

    def _count(self, raw: bytes, dctx) -> None:
        import msgspec.msgpack

        clen = int.from_bytes(raw[8:16], "little")
        inner = msgspec.msgpack.decode(dctx.decompress(raw[16:16 + clen], max_output_size=int.from_bytes(raw[:8], "little")))
        for m in inner.get("messages", ()):
            if isinstance(m, dict) and m.get("type") == "BackgroundImageMessage":
                self.frames += 1
        self.bytes += len(raw)

    def run(self) -> None:
        import msgspec.msgpack
        import viser
        import zstandard
        from websockets.sync.client import connect

        dctx = zstandard.ZstdDecompressor()
        t0 = time.monotonic()
        try:
            with connect(f"ws://127.0.0.1:{self.port}", subprotocols=[f"viser-v{viser.__version__}"], max_size=None,
                         open_timeout=30) as ws:
                next_send = t0
                while (t := time.monotonic()) - t0 < self.seconds:
                    if t >= next_send:
                        ws.send(msgspec.msgpack.encode(self._camera(t - t0)))
                        next_send = t + 1.0 / self.rate
                    try:
                        raw = ws.recv(timeout=max(0.001, next_send - time.monotonic()))
                    except TimeoutError:
                        continue
                    if isinstance(raw, bytes):
                        self._count(raw, dctx)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            self.error = f"{type(e).__name__}: {e}"
        self.elapsed = time.monotonic() - t0


def start_app(ply: Path):
    from pcf_gs.viewer.app import ViewerApp
    from pcf_gs.viewer.target import load_target

    import logging

    logging.getLogger("viser").setLevel(logging.ERROR)
    return ViewerApp(load_target(ply), "127.0.0.1", 0, export_dir=Path(ply).parent / "exports", max_side=256)


def wait_loops(app, n: int, timeout: float = 20.0) -> int:
    t_end = time.monotonic() + timeout
    while len(app._loops) != n and time.monotonic() < t_end:
        time.sleep(0.1)
    return len(app._loops)


def load(app, clients: int, seconds: float, rate: float, size: int) -> dict:
    port = app.server.get_port()
    rss0 = rss_mb()
    cs = [Client(port, seconds, rate, size, size, 2 * math.pi * i / clients) for i in range(clients)]
    for c in cs:
        c.start()
    connected = wait_loops(app, clients, timeout=30)
    time.sleep(seconds / 2)
    rss_mid = rss_mb()
    for c in cs:
        c.join(seconds + 60)
    left = wait_loops(app, 0)
    return {
        "clients": clients, "seconds": seconds, "camera_updates_per_s": rate, "image_px": size,
        "connected": connected, "loops_after_disconnect": left,
        "fps_per_client": [round(c.frames / max(c.elapsed, 1e-9), 2) for c in cs],
        "mb_per_client": [round(c.bytes / 1e6, 2) for c in cs],
        "errors": [c.error for c in cs if c.error],
        "rss_mb": {"before": round(rss0, 1), "during": round(rss_mid, 1), "after": round(rss_mb(), 1)},
    }


def soak(app, clients: int, minutes: float, rate: float, size: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    port = app.server.get_port()
    t0 = time.monotonic()
    samples, active, sessions, errors = [], [], 0, []
    while time.monotonic() - t0 < minutes * 60:
        active = [c for c in active if c.is_alive()]
        while len(active) < clients:
            c = Client(port, rng.uniform(5, 60), rate, size, size, rng.uniform(0, 6.3))
            c.start()
            active.append(c)
            sessions += 1
        samples.append((time.monotonic() - t0, rss_mb()))
        time.sleep(10)
    for c in active:
        c.join(120)
    late = [(t, r) for t, r in samples if t >= 300] or samples
    growth = (late[-1][1] - late[0][1]) / max((late[-1][0] - late[0][0]) / 3600, 1e-9) if len(late) > 1 else 0.0
    return {"minutes": minutes, "clients": clients, "sessions": sessions, "errors": errors,
            "loops_after_disconnect": wait_loops(app, 0), "rss_mb_samples": [[round(t), round(r, 1)] for t, r in samples],
            "rss_growth_mb_per_hour": round(growth, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=10.0, help="camera updates per second per client (default 10)")
    ap.add_argument("--size", type=int, default=256, help="client viewport, square pixels (default 256)")
    ap.add_argument("--ply", type=Path, help="scene (default: random Gaussians, --gaussians of them)")
    ap.add_argument("--gaussians", type=int, default=20000)
    ap.add_argument("--soak", action="store_true", help="clients come and go for --minutes")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pcf-load-") as tmp:
        ply = a.ply or make_ply(Path(tmp) / "scene.ply", a.gaussians)
        app = start_app(ply)
        try:
            res = soak(app, a.clients, a.minutes, a.rate, a.size) if a.soak else load(app, a.clients, a.seconds, a.rate, a.size)
        finally:
            app.stop()
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    ok = not res["errors"] and res["loops_after_disconnect"] == 0 and (a.soak or res["connected"] == a.clients)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
