"""Splat formats on a trained scene: file size and render fidelity per format (issue 18's targets).

For a trained run, the whole model is written in every format of :mod:`pcf_gs.splats.formats`, read back
by our reader, and rendered with the run's test cameras. Per format: the file size and its ratio to the
PLY, the test-view PSNR against the ground-truth images, and the PSNR of its render against the PLY's
render (how far the format's quantisation moves the picture). Prints a table and writes JSON.

    python tools/bench_formats.py RUN --json bench_formats.json

Targets (issue 18): SPZ and SOG >= 8x smaller than PLY, their renders within 1 dB PSNR of the PLY's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

FORMATS = ("ply", "ply-compressed", "splat", "spz", "sog", "glb", "gsplat-ckpt")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(max(np.mean((a - b) ** 2), 1e-12)))


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a trained run (checkpoint.pt)")
    ap.add_argument("--json", type=Path, default=Path("bench_formats.json"))
    ap.add_argument("--split", default="test")
    a = ap.parse_args(argv)

    import cv2

    from pcf_gs.lift.model import render_rgb
    from pcf_gs.lift.run import Run
    from pcf_gs.splats.export import params_to_splats, splats_to_params
    from pcf_gs.splats.formats import FORMATS as REGISTRY, read_splats, write_splats

    run = Run.load(a.run)
    splats = params_to_splats(run.params, run.spec, run.normalization)
    splats.extra = {}
    ids = run.split_ids(a.split)
    W, H, eps2d = run.width, run.height, run.config.render.eps2d
    gts = {}
    for i in ids:
        img = cv2.imread(str(run.root / "color" / f"{run.frames[i]}.png"))
        if img is not None:
            gts[i] = cv2.resize(img[:, :, ::-1], (W, H), interpolation=cv2.INTER_AREA).astype(np.float64) / 255

    def render_all(s) -> dict[int, np.ndarray]:
        p = splats_to_params(s, run.normalization)
        deg = int(round(np.sqrt(s.shN.shape[1] + 1))) - 1
        out = {}
        for i in ids:
            vm, K = run.view(i)
            rgb = render_rgb(p, vm, K, W, H, deg, eps2d=eps2d)[0][0].clamp(0, 1).numpy()
            out[i] = np.round(rgb * 255) / 255  # as the PNG a render writes
        return out

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = None
        for fmt in FORMATS:
            path = Path(tmp) / f"scene{REGISTRY[fmt].ext}"
            write_splats(path, splats, extra=False)
            size = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file())
            back = read_splats(path)
            imgs = render_all(back)
            if ref is None:
                ref = imgs
            rows.append({
                "format": fmt, "bytes": size, "gaussians": len(back),
                "psnr_gt": float(np.mean([psnr(imgs[i], gts[i]) for i in gts])) if gts else None,
                "psnr_vs_ply": float(np.mean([psnr(imgs[i], ref[i]) for i in ids])) if fmt != "ply" else None,
            })
    ply_bytes = rows[0]["bytes"]
    for r in rows:
        r["ratio"] = round(ply_bytes / r["bytes"], 2)
        r["delta_psnr_gt"] = None if r["psnr_gt"] is None else round(r["psnr_gt"] - rows[0]["psnr_gt"], 3)
    t = Table(title=f"splat formats on {a.run} ({len(splats)} Gaussians, SH degree {run.spec.sh_degree}, {len(ids)} {a.split} views)")
    for c in ("format", "MB", "x smaller than PLY", "test PSNR dB", "ΔPSNR vs PLY's", "PSNR vs PLY render"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["format"], f"{r['bytes'] / 1e6:.2f}", f"{r['ratio']:.1f}", "—" if r["psnr_gt"] is None else f"{r['psnr_gt']:.2f}",
                  "—" if r["delta_psnr_gt"] is None else f"{r['delta_psnr_gt']:+.2f}",
                  "—" if r["psnr_vs_ply"] is None else f"{r['psnr_vs_ply']:.1f}")
    Console().print(t)
    a.json.write_text(json.dumps({"run": str(a.run), "gaussians": len(splats), "views": len(ids), "formats": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
