"""``pcf-gs predict SCENE --model NAME``: 2D panoptic predictions for a capture's images
(Mask2Former / OneFormer through Hugging Face transformers), written as ``SCENE/panoptic/`` +
``SCENE/panoptic.json``. See :mod:`pcf_gs.predict` and docs/predict.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="2D panoptic predictions for a capture's images (Mask2Former / OneFormer, needs the predict extra)",
        description="Run a Hugging Face Mask2Former / MaskFormer / OneFormer panoptic checkpoint over every image "
        "under SCENE/images/ and write SCENE/panoptic/<key>.png + SCENE/panoptic.json (COCO panoptic), the layout "
        "pcf-gs train reads. Needs the predict extra: pip install \"pcf-gs[predict]\".")
    p.add_argument("scene", metavar="SCENE", help="capture folder with images/ (COLMAP, nerfstudio)")
    p.add_argument("--model", required=True, metavar="NAME",
                   help="hub id in the local Hugging Face cache (e.g. facebook/mask2former-swin-large-coco-panoptic, "
                   "after `hf download NAME`) or a local folder with the saved model and processor")
    p.add_argument("--out", metavar="DIR", help="write DIR/panoptic/ and DIR/panoptic.json instead of into SCENE")
    p.add_argument("--overwrite", action="store_true", help="replace existing panoptic/ + panoptic.json (only once the new ones are complete)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the model runs (default: auto = cuda if available)")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per forward pass (default: 4 on cuda, 1 on cpu)")
    p.add_argument("--max-size", type=int, metavar="PX",
                   help="cap the longer side of the model's input at PX pixels (faster; masks are still written at each image's own size)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum class score of a segment (default: 0.5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stuff-classes", metavar="LIST",
                   help="comma-separated class names or label ids that are stuff (the rest are things); "
                   "default: from the checkpoint or a known label set (COCO panoptic, ADE20K, Cityscapes), else all things")
    g.add_argument("--thing-classes", metavar="LIST", help="comma-separated class names or label ids that are things (the rest are stuff)")
    p.add_argument("--allow-download", action="store_true", help="let transformers download a hub model that is not in the local cache")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pcf_gs.predict import run_predict

    info = run_predict(
        Path(args.scene), args.model, out=Path(args.out) if args.out else None, overwrite=args.overwrite,
        device=args.device, batch_size=args.batch_size, max_size=args.max_size, allow_download=args.allow_download,
        thing_classes=args.thing_classes, stuff_classes=args.stuff_classes, threshold=args.threshold,
        progress=not args.quiet,
    )
    empty = f", {info['empty']} without any" if info["empty"] else ""
    print(f"predicted {info['images']} images with {info['model']} ({info['kind']}, {info['device']}): "
          f"{info['segments']} segments ({info['things']} things){empty}; {info['thing_classes']} of "
          f"{info['classes']} classes are things ({info['thing_source']}) -> {Path(info['out']) / 'panoptic.json'}")
    return 0
