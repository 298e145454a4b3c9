"""Before/after images and measurements of object editing on the demo scene: remove an object, move it.

    python tools/edit_demo.py                                # trains assets/demo first (cpu_fast, ~7 min on 2 cores)
    python tools/edit_demo.py --run RUN --segment SEG        # an existing run and its `segment --export-ply` folder
    python tools/edit_demo.py --set train.iterations=800 ... # a shorter demo run (overrides as in `pcf-gs train`)

The edits go through the CLI's code path (``pcf_gs.splats.edit_script.run_edit`` on
SEG/scene_labeled.ply, i.e. ``pcf-gs edit --remove K`` and ``--translate
K=dx,dy,dz``); the original and edited PLYs are rendered with the run's
cameras as ``pcf-gs render --ply`` does. The object is the one with the largest
rendered footprint in the run's test views (or ``--object``); the move is
sideways in that view, by 1.2 object widths (or ``--offset``).

Writes to --out (default docs/): edit_remove.png and edit_move.png (before |
after, rendered at --upscale x the run's resolution) and edit_demo.json, the
issue-8 measurements over the test views, where k's footprint is the pixels
whose rendered instance label (per-Gaussian labels blended like colour,
argmax, alpha >= 0.5) is k, dilated by 2 px:

- remove: PSNR outside the footprint against the unedited render; fraction of
  k's former pixels still labelled k; mean alpha there (what lies behind shows);
- extract: share of the extracted object's alpha mass outside the footprint
  (parts of k hidden behind other objects in the full scene count as outside);
- move: PSNR outside the old and new footprints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import binary_dilation

from pcf_gs.atomic import atomic_path, write_json_atomic
from pcf_gs.lift.model import activated_geometry, render_rgb
from pcf_gs.lift.run import Run
from pcf_gs.render import rasterize
from pcf_gs.splats import edit as E
from pcf_gs.splats.edit_script import parse_ops, run_edit
from pcf_gs.splats.export import splats_to_params
from pcf_gs.splats.ply import Splats, read_ply

REPO = Path(__file__).resolve().parent.parent  # the default --out is the checkout's docs/


class Views:
    """Renders world-frame splat sets with one run's cameras (optionally upscaled)."""

    def __init__(self, run: Path):
        self.run = Run.load(run)
        self.norm = self.run.normalization
        self.eps2d = self.run.config.render.eps2d
        self.W, self.H = self.run.width, self.run.height

    def camera(self, i: int, up: int = 1):
        vm, K = self.run.view(i)
        K = K.clone()
        K[:, :2] *= up
        return vm, K, self.W * up, self.H * up

    @torch.no_grad()
    def rgb(self, s: Splats, i: int, up: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(rgb [h,w,3] in [0,1], alpha [h,w]) of view i."""
        vm, K, w, h = self.camera(i, up)
        deg = int(round(np.sqrt(s.shN.shape[1] + 1))) - 1
        rgb, alpha, _, _ = render_rgb(splats_to_params(s, self.norm), vm, K, w, h, deg, eps2d=self.eps2d)
        return rgb[0].clamp(0, 1).numpy(), alpha[0, :, :, 0].numpy()

    @torch.no_grad()
    def labels(self, s: Splats, i: int, n_ids: int) -> np.ndarray:
        """[H,W] instance label (argmax of blended one-hot per-Gaussian IDs), -1 where alpha < 0.5."""
        vm, K, w, h = self.camera(i)
        means, quats, scales, opac = activated_geometry(splats_to_params(s, self.norm))
        onehot = torch.nn.functional.one_hot(torch.from_numpy(s.extra["instance_id"].astype(np.int64)), n_ids).float()
        out, alpha, _ = rasterize(means, quats, scales, opac, onehot, vm, K, w, h, eps2d=self.eps2d)
        lab = out[0].argmax(-1).numpy()
        return np.where(alpha[0, :, :, 0].numpy() >= 0.5, lab, -1)


def psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else float(-10 * np.log10(mse))


def side_by_side(a: np.ndarray, b: np.ndarray, left: str, right: str) -> np.ndarray:
    """[h, 2w+gap, 3] uint8 BGR with captions."""
    h, w, _ = a.shape
    gap = max(4, w // 64)
    img = np.full((h + 28, 2 * w + gap, 3), 255, np.uint8)
    for x, im, text in ((0, a, left), (w + gap, b, right)):
        img[28:, x : x + w] = (im[:, :, ::-1] * 255 + 0.5).astype(np.uint8)
        cv2.putText(img, text, (x + 4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return img


def write_png(path: Path, img: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"could not write {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="trained run directory (default: train assets/demo into WORK/run)")
    ap.add_argument("--segment", help="its `pcf-gs segment --export-ply` folder (default: WORK/segment)")
    ap.add_argument("--work", default="/tmp/pcf_gs_edit_demo", help="folder for the demo run (if trained) and edited PLYs")
    ap.add_argument("--out", default=str(REPO / "docs"), help="where the PNGs and edit_demo.json go (default docs/)")
    ap.add_argument("--object", type=int, help="object ID to edit (default: the largest in the test views)")
    ap.add_argument("--offset", help="dx,dy,dz for the move (default: sideways in the chosen view, 1.2 object widths)")
    ap.add_argument("--upscale", type=int, default=3, help="render the images at this multiple of the run's resolution")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="training override when the demo is trained here (e.g. --set train.iterations=800)")
    args = ap.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    if args.run is None:
        from pcf_gs.cli.demo import run_demo

        if not (work / "segment" / "scene_labeled.ply").is_file():
            run_demo(work, "cpu_fast", args.overrides, resume=(work / "run" / "checkpoint.pt").exists())
        run, seg = work / "run", work / "segment"
    else:
        run = Path(args.run)
        seg = Path(args.segment) if args.segment else run / "segment"
    src = seg / "scene_labeled.ply"
    s, _ = read_ply(src)
    ids = E.object_ids(s)
    if not ids:
        print(f"{src}: no objects to edit", file=sys.stderr)
        return 1
    table = {o["id"]: o for o in json.loads((seg / "objects.json").read_text())["objects"]} if (seg / "objects.json").is_file() else {}
    V = Views(run)
    views = V.run.split_ids("test") or V.run.split_ids("all")
    n_ids = max(ids) + 1
    lab0 = {i: V.labels(s, i, n_ids) for i in views}
    if not any((lab0[i] > 0).any() for i in views):  # nothing labelled in the test views: use every view
        views = V.run.split_ids("all")
        lab0 = {i: V.labels(s, i, n_ids) for i in views}
    def inside(m: np.ndarray) -> bool:  # the footprint does not touch the image border
        return not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())

    # (object, view) with the largest footprint that lies wholly inside the image (else the largest)
    area = {(j, i): int((lab0[i] == j).sum()) for j in ids for i in views}
    whole = {key: a for key, a in area.items() if a > 0 and inside(lab0[key[1]] == key[0])}
    area = {key: whole.get(key, 0) for key in area} if whole else area
    k = args.object if args.object is not None else max(ids, key=lambda j: max(area[(j, i)] for i in views))
    if k not in ids:
        print(f"object {k} is not in {src} (objects: {ids})", file=sys.stderr)
        return 1
    view = max(views, key=lambda i: area[(k, i)])

    # the move: sideways in the chosen view, by 1.2 object widths
    if args.offset:
        offset = [float(v) for v in args.offset.split(",")]
    else:
        c2w_world = V.norm.scene_to_world_c2w(V.run.c2w[view].numpy())
        right = c2w_world[:3, 0] / np.linalg.norm(c2w_world[:3, 0])
        proj = s.means[s.extra["instance_id"] == k] @ right
        width = float(np.percentile(proj, 95) - np.percentile(proj, 5)) if len(proj) > 1 else 0.1
        offset = (1.2 * max(width, 1e-3) * right).tolist()
    edits = work / "edits"
    removed_ply, moved_ply = edits / "removed.ply", edits / "moved.ply"
    run_edit(src, removed_ply, parse_ops([("remove", str(k))]))
    run_edit(src, moved_ply, parse_ops([("translate", f"{k}=" + ",".join(f"{v:.6g}" for v in offset))]))
    removed, moved = read_ply(removed_ply)[0], read_ply(moved_ply)[0]
    extracted = E.extract(s, k)

    # measurements over the views
    se_out = n_out = se_mv = n_mv = 0.0
    still = former = 0
    alpha_in, mass_out, mass = [], 0.0, 0.0
    for i in views:
        foot = binary_dilation(lab0[i] == k, iterations=2)
        rgb0, _ = V.rgb(s, i)
        rgb1, a1 = V.rgb(removed, i)
        se_out += float(((rgb1 - rgb0)[~foot] ** 2).sum())
        n_out += 3 * float((~foot).sum())
        inner = lab0[i] == k
        still += int((V.labels(removed, i, n_ids)[inner] == k).sum())
        former += int(inner.sum())
        if inner.any():
            alpha_in.append(float(a1[inner].mean()))
        _, ae = V.rgb(extracted, i)
        mass_out += float(ae[~foot].sum())
        mass += float(ae.sum())
        rgb2, _ = V.rgb(moved, i)
        both = foot | binary_dilation(V.labels(moved, i, n_ids) == k, iterations=2)
        se_mv += float(((rgb2 - rgb0)[~both] ** 2).sum())
        n_mv += 3 * float((~both).sum())
    cls = table.get(k, {}).get("class", "object")
    res = {
        "run": str(run), "segment": str(seg), "object": k, "class": cls, "view": V.run.frames[view],
        "views": [V.run.frames[i] for i in views], "offset": [round(v, 5) for v in offset],
        "train_iterations": V.run.config.train.iterations,
        "remove": {
            "psnr_outside_footprint_db": round(psnr(se_out / max(n_out, 1)), 2),
            "still_k_fraction": still / max(former, 1),
            "former_pixels": former,
            "mean_alpha_inside_after": round(float(np.mean(alpha_in)), 4) if alpha_in else None,
        },
        "extract": {"alpha_mass_outside_fraction": round(mass_out / max(mass, 1e-12), 5)},
        "move": {"psnr_outside_footprints_db": round(psnr(se_mv / max(n_mv, 1)), 2)},
    }

    # before/after images
    up = max(1, args.upscale)
    before = V.rgb(s, view, up)[0]
    write_png(out / "edit_remove.png", side_by_side(before, V.rgb(removed, view, up)[0], "before",
                                                      f"after: pcf-gs edit --remove {k}"))
    write_png(out / "edit_move.png", side_by_side(before, V.rgb(moved, view, up)[0], "before",
                                                    f"after: --translate {k}=" + ",".join(f"{v:.2f}" for v in offset)))
    write_json_atomic(out / "edit_demo.json", res)
    r = res["remove"]
    print(f"object {k} ({cls}), view {res['view']}, {len(views)} views:")
    print(f"  remove : PSNR outside footprint {r['psnr_outside_footprint_db']} dB, still k {100 * r['still_k_fraction']:.2f}% "
          f"of {former} px, alpha inside after {r['mean_alpha_inside_after']}")
    print(f"  extract: {100 * res['extract']['alpha_mass_outside_fraction']:.2f}% of the alpha mass outside the footprint")
    print(f"  move   : PSNR outside both footprints {res['move']['psnr_outside_footprints_db']} dB")
    print(f"wrote {out / 'edit_remove.png'}, {out / 'edit_move.png'}, {out / 'edit_demo.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
