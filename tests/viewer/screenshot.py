"""Screenshot of the viewer in headless Chromium (the README's picture), with the test's tooling.

    python -m tests.viewer.screenshot demo_out --out docs/viewer.png [--mode instance] [--overlay] [--select]

Run from the repository root (``tests`` is not installed with the package).

Starts ``pcf-gs view TARGET`` on a free port, opens it in Debian's Chromium
(:mod:`tests.viewer.browser`), waits for the streamed image, optionally turns
on the RGB overlay and clicks the object covering most of the image (so the
panel shows a selection), waits for the full-resolution frame and saves the page.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tests.viewer.browser import ViewerPage, classify_object_pixels, interior_point, start_viewer


def object_colors(target: Path) -> dict[int, tuple[int, int, int]]:
    from pcf_gs.viewer.target import load_target

    scene = load_target(target)
    return {o.id: o.color for o in scene.objects}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", type=Path, help="run directory, segment output or PLY file")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--mode", default="instance", choices=["rgb", "semantic", "instance", "uncertainty", "depth"])
    ap.add_argument("--overlay", action="store_true", help="blend the mode over RGB")
    ap.add_argument("--select", action="store_true", help="click the largest object so the panel shows a selection")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--max-res", type=int, default=1024)
    args = ap.parse_args()

    colors = object_colors(args.target) if args.select else {}
    proc, url = start_viewer(args.target, "--mode", args.mode, "--max-res", str(args.max_res))
    try:
        with ViewerPage(url, args.width, args.height) as page:
            page.wait_for_frames(0, timeout=120)
            page.dismiss_notifications()
            page.wait_until_rendered(0)
            if args.select and colors:
                x0, y0, x1, y1 = page.image_region()
                lab = classify_object_pixels(page.screenshot()[y0:y1, x0:x1], colors)
                ids, counts = np.unique(lab[lab > 0], return_counts=True)
                if len(ids):
                    # a well-visible object near the middle of the image
                    centre = np.array([(x1 - x0) / 2, (y1 - y0) / 2])
                    big = [int(i) for i, c in zip(ids, counts) if c >= min(1000, counts.max())]
                    points = {i: interior_point(lab == i) for i in big}
                    target = min(big, key=lambda i: np.linalg.norm(np.array(points[i]) - centre))
                    x, y = points[target]
                    n = page.frames
                    page.click(x0 + x, y0 + y)
                    print(page.wait_for_text(r"Selected: object #\d+"))
                    page.wait_until_rendered(n)  # the highlight
            if args.overlay:
                n = page.frames
                page.set_checkbox("Overlay on RGB")
                page.wait_until_rendered(n)
            page.dismiss_notifications()
            page.page.wait_for_timeout(1000)  # the notification's closing animation
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(args.out)
        print(json.dumps({"screenshot": str(args.out), "url": url}))
    finally:
        proc.terminate()
        proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
