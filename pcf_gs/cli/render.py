"""``pcf-gs render RUN --out DIR``: render a trained run, or any splat PLY, with the run's cameras."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from pcf_gs.atomic import atomic_dir, write_json_atomic
from pcf_gs.errors import UserError
from pcf_gs.data.images import imread
from pcf_gs.lift.model import render_features, render_rgb
from pcf_gs.lift.run import Run
from pcf_gs.progress import progress_bar
from pcf_gs.splats.export import splats_to_params


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render a trained run, or any splat PLY, with the run's cameras")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (rgb/, alpha/, depth/, and semantics/ without --splats)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test")
    p.add_argument("--splats", "--ply", dest="splats", metavar="FILE",
                   help="render this splat file (any format of docs/formats.md, world frame, e.g. an edited scene) instead of the run's model; --ply is an alias")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ply = Path(args.splats) if args.splats else None
    res = render_run(Path(args.run), Path(args.out), split=args.split, progress=not args.quiet, ply=ply)
    psnr = f", PSNR {res['psnr']:.2f} dB" if res["psnr"] is not None else ""
    what = f" of {ply}" if ply else ""
    print(f"rendered {res['frames']} {args.split} views{what} to {args.out}{psnr}")
    return 0


@torch.no_grad()
def render_run(run_dir: Path, out: Path, split: str = "test", overwrite: bool = True, progress: bool = True, backend: str = "auto",
               ply: Path | None = None) -> dict:
    """Write OUT/rgb/<frame>.png, alpha/<frame>.png, semantics/<frame>.png (16-bit class ids),
    depth/<frame>.png (16-bit, millimetres in the original world units) and
    OUT/metrics.json (PSNR against the frames' images when the data folder is still there).

    With ``ply`` the splats of that file (world frame, any format :func:`~pcf_gs.splats.formats.read_splats` reads, e.g. an edited
    scene) are rendered with the run's cameras instead of the run's model; there
    are no semantics then (rgb/, alpha/, depth/ only)."""
    run = Run.load(run_dir)
    params, sh_degree = run.params, run.spec.sh_degree
    if ply is not None:
        from pcf_gs.splats.formats import read_splats

        s = read_splats(ply)
        if len(s) == 0:
            raise UserError("has no Gaussians to render", ply)
        params = splats_to_params(s, run.normalization)
        sh_degree = int(round(np.sqrt(s.shN.shape[1] + 1))) - 1
    ids = run.split_ids(split)
    if not ids:
        raise UserError(f"the run's scene has no {split} frames", run_dir)
    W, H = run.width, run.height
    scale = run.normalization.scale
    root = run.root
    raster = run.config.render.kw()
    psnrs = {}
    with atomic_dir(out, overwrite=overwrite) as tmp, progress_bar("render", len(ids), enabled=progress) as advance:
        for d in ("rgb", "alpha", "depth") + (("semantics",) if ply is None else ()):
            (tmp / d).mkdir()
        for i in ids:
            name = run.frames[i]
            vm, K = run.view(i)
            rgb, alpha, depth, _ = render_rgb(params, vm, K, W, H, sh_degree, backend=backend, with_depth=True, **raster)
            img = (rgb[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(str(tmp / "rgb" / f"{name}.png"), img[:, :, ::-1])
            cv2.imwrite(str(tmp / "alpha" / f"{name}.png"), (alpha[0, :, :, 0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            if ply is None:
                feats = render_features(params, run.spec, vm, K, W, H, backend=backend, slow=False, **raster)
                cv2.imwrite(str(tmp / "semantics" / f"{name}.png"), feats["semantics"][0].argmax(-1).numpy().astype(np.uint16))
            dmm = np.clip(depth[0, :, :, 0].numpy() / scale * 1000.0, 0, 65535).astype(np.uint16)
            cv2.imwrite(str(tmp / "depth" / f"{name}.png"), dmm)
            src = root / "color" / f"{name}.png"
            if src.is_file():
                try:  # the PSNR's reference only: a corrupt one is left out, quietly
                    gt = imread(src, cv2.IMREAD_COLOR)
                except UserError:
                    gt = None
                if gt is not None:
                    gt = cv2.resize(gt[:, :, ::-1], (W, H), interpolation=cv2.INTER_AREA).astype(np.float64) / 255
                    mse = np.mean((img.astype(np.float64) / 255 - gt) ** 2)
                    psnrs[name] = float(-10 * np.log10(max(mse, 1e-12)))
            advance()
        summary = {"split": split, "frames": len(ids), "ply": None if ply is None else str(ply), "psnr": float(np.mean(list(psnrs.values()))) if psnrs else None, "psnr_per_frame": psnrs}
        write_json_atomic(tmp / "metrics.json", summary)
    return summary
