"""2D panoptic predictions for a capture: a Hugging Face Mask2Former / MaskFormer / OneFormer
checkpoint over ``SCENE/images``, written in the COCO panoptic layout that
:mod:`pcf_gs.data.predictions` reads (``panoptic/<key>.png`` + ``panoptic.json``).

- Images: every ``*.png|*.jpg|*.jpeg`` under ``images/`` (recursively, case-insensitive extension,
  hidden files skipped); an image's key is its path relative to ``images/`` without extension.
- Model: ``AutoImageProcessor`` (OneFormer: ``AutoProcessor``, for its "panoptic" task input) and
  ``AutoModelForUniversalSegmentation``, from a local folder or a hub id found in the local
  Hugging Face cache (``local_files_only`` unless ``allow_download``).
- Post-processing: the processor's ``post_process_panoptic_segmentation`` with ``label_ids_to_fuse``
  = the stuff classes (one segment per stuff class and image), ``target_sizes`` = the image's own
  size. The mask logits are first cropped to the image's part of the padded batch (the processor
  pads every image of a batch to the largest, and to a multiple of 32; the post-processing would
  otherwise stretch that padding into the image).
- Categories: label id ``l`` -> category ``l + 1`` (0 is unlabelled in COCO PNGs), names from
  ``config.id2label``; a segment's ``score`` is the query's class probability (a fused stuff
  segment: the highest of its queries).

Thing or stuff per class (:func:`resolve_things`), first that applies:

1. ``thing_classes`` / ``stuff_classes`` given by the user (names or label ids);
2. the checkpoint's own metadata: OneFormer processors carry ``metadata["thing_ids"]``;
3. a known label set: COCO panoptic (133), ADE20K-150 panoptic, Cityscapes (19), recognised when
   the model has as many classes and at least 80% of the names agree position by position
   (Mask2Former's configs have names but no thing/stuff flag);
4. otherwise every class is a thing (each segment its own instance; nothing is fused), with a
   warning: a stuff class then splits into several instances, which is noisy but loses nothing.

``transformers`` is imported only here, inside the functions, so that the rest of pcf-gs works
without it (the ``predict`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import cv2
import numpy as np

from pcf_gs.errors import DataError, UserError

log = logging.getLogger("pcf_gs")

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
OUTPUT_NAME = "panoptic"  # pcf_gs.data.predictions.PANOPTIC
EXTRA_HINT = 'pcf-gs predict needs the predict extra: pip install "pcf-gs[predict]"'
MODEL_TYPES = ("mask2former", "maskformer", "oneformer")

# ----------------------------------------------------------------------------------- known label sets

COCO_PANOPTIC_THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
COCO_PANOPTIC_STUFF = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff", "floor-wood", "flower",
    "fruit", "gravel", "house", "light", "mirror-stuff", "net", "pillow", "platform", "playingfield",
    "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow", "stairs", "tent", "towel",
    "wall-brick", "wall-stone", "wall-tile", "wall-wood", "water-other", "window-blind", "window-other",
    "tree-merged", "fence-merged", "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged",
    "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged", "dirt-merged", "paper-merged",
    "food-other-merged", "building-other-merged", "rock-merged", "wall-other-merged", "rug-merged",
)
CITYSCAPES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
# ADE20K-150 in the panoptic order of Mask2Former / detectron2 (synonyms separated by ", ").
ADE20K_150 = tuple(s.strip() for s in """
wall; building; sky; floor; tree; ceiling; road, route; bed; window; grass; cabinet; sidewalk, pavement;
person; earth, ground; door; table; mountain, mount; plant; curtain; chair; car; water; painting, picture;
sofa; shelf; house; sea; mirror; rug; field; armchair; seat; fence; desk; rock, stone;
wardrobe, closet, press; lamp; tub; rail; cushion; base, pedestal, stand; box; column, pillar;
signboard, sign; chest of drawers, chest, bureau, dresser; counter; sand; sink; skyscraper; fireplace;
refrigerator, icebox; grandstand, covered stand; path; stairs; runway; case, display case, showcase, vitrine;
pool table, billiard table, snooker table; pillow; screen door, screen; stairway, staircase; river;
bridge, span; bookcase; blind, screen; coffee table; toilet, can, commode, crapper, pot, potty, stool, throne;
flower; book; hill; bench; countertop; stove; palm, palm tree; kitchen island; computer; swivel chair; boat;
bar; arcade machine; hovel, hut, hutch, shack, shanty; bus; towel; light; truck; tower; chandelier;
awning, sunshade, sunblind; street lamp; booth; tv; plane; dirt track; clothes; pole; land, ground, soil;
bannister, banister, balustrade, balusters, handrail; escalator, moving staircase, moving stairway;
ottoman, pouf, pouffe, puff, hassock; bottle; buffet, counter, sideboard;
poster, posting, placard, notice, bill, card; stage; van; ship; fountain;
conveyer belt, conveyor belt, conveyer, conveyor, transporter; canopy;
washer, automatic washer, washing machine; plaything, toy; pool; stool; barrel, cask; basket, handbasket;
falls; tent; bag; minibike, motorbike; cradle; oven; ball; food, solid food; step, stair;
tank, storage tank; trade name; microwave; pot; animal; bicycle; lake; dishwasher; screen; blanket, cover;
sculpture; hood, exhaust hood; sconce; vase; traffic light; tray; trash can; fan; pier; crt screen; plate;
monitor; bulletin board; shower; radiator; glass, drinking glass; clock; flag
""".split(";"))
ADE20K_150_STUFF = frozenset({
    0, 1, 2, 3, 4, 5, 6, 9, 11, 13, 16, 17, 21, 25, 26, 28, 29, 34, 40, 46, 48, 51, 52, 54, 59, 60, 61, 63, 68,
    77, 79, 84, 91, 94, 96, 99, 100, 101, 105, 106, 109, 113, 114, 117, 122, 128, 131, 140, 141, 145,
})

# name -> (class names in label order, label ids that are stuff)
KNOWN_LABEL_SETS: dict[str, tuple[tuple[str, ...], frozenset[int]]] = {
    "COCO panoptic": (COCO_PANOPTIC_THINGS + COCO_PANOPTIC_STUFF,
                      frozenset(range(len(COCO_PANOPTIC_THINGS), len(COCO_PANOPTIC_THINGS) + len(COCO_PANOPTIC_STUFF)))),
    "ADE20K-150 panoptic": (ADE20K_150, ADE20K_150_STUFF),
    "Cityscapes": (CITYSCAPES, frozenset(range(11))),
}


def _norm(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _synonyms(name: str) -> set[str]:
    """A class name's normalised forms: the whole name and each comma-separated synonym."""
    return {_norm(name)} | {_norm(s) for s in str(name).split(",") if s.strip()}


def match_label_set(names: list[str]) -> str | None:
    """The known label set ``names`` is (same length, >= 80% of the names agree by position), or None."""
    for ds, (table, _) in KNOWN_LABEL_SETS.items():
        if len(names) == len(table):
            agree = sum(bool(_synonyms(n) & _synonyms(t)) for n, t in zip(names, table))
            if agree >= 0.8 * len(table):
                return ds
    return None


def parse_class_list(spec: str, names: list[str], option: str) -> set[int]:
    """Comma-separated class names (any synonym, case-insensitive) or label ids -> label ids."""
    out: set[int] = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.isdigit():
            if int(item) >= len(names):
                raise UserError(f"{option}: label id {item} is out of range (the model has {len(names)} classes)")
            out.add(int(item))
            continue
        hits = [i for i, n in enumerate(names) if _norm(item) in _synonyms(n)]
        if not hits:
            shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
            raise UserError(f"{option}: the model has no class {item!r} (its classes: {shown})")
        out.update(hits)
    return out


def resolve_things(
    names: list[str], thing_classes: str | None = None, stuff_classes: str | None = None,
    thing_ids: list[int] | None = None,
) -> tuple[list[bool], str]:
    """(is-thing flag per label id, where it came from); see the module docstring for the order."""
    if thing_classes is not None and stuff_classes is not None:
        raise UserError("give --thing-classes or --stuff-classes, not both")
    if thing_classes is not None:
        sel = parse_class_list(thing_classes, names, "--thing-classes")
        return [i in sel for i in range(len(names))], "--thing-classes"
    if stuff_classes is not None:
        sel = parse_class_list(stuff_classes, names, "--stuff-classes")
        return [i not in sel for i in range(len(names))], "--stuff-classes"
    if thing_ids is not None:
        ids = {int(i) for i in thing_ids}
        return [i in ids for i in range(len(names))], "the checkpoint's thing_ids"
    ds = match_label_set(names)
    if ds is not None:
        stuff = KNOWN_LABEL_SETS[ds][1]
        return [i not in stuff for i in range(len(names))], f"the {ds} label set"
    return [True] * len(names), "fallback"


# ------------------------------------------------------------------------------------------ images


def find_images(images_dir: Path) -> list[tuple[str, Path]]:
    """(key, path) of every image under ``images_dir``, sorted by key; keys must be unique."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError("no images/ folder (pcf-gs predict reads SCENE/images/)", images_dir)
    found: dict[str, Path] = {}
    for p in sorted(images_dir.rglob("*")):
        rel = p.relative_to(images_dir)
        if p.suffix.lower() not in IMAGE_EXTS or any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        key = rel.with_suffix("").as_posix()
        if key in found:
            raise DataError(f"two images share the key {key!r}: {found[key].name} and {p.name}", p.parent)
        found[key] = p
    if not found:
        raise DataError(f"no images ({', '.join('*' + e for e in IMAGE_EXTS)}) found", images_dir)
    return sorted(found.items())


def _shrink(rgb: np.ndarray, max_size: int | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    if not max_size or max(h, w) <= max_size:
        return rgb
    s = max_size / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------- model


def import_transformers():
    """The ``transformers`` module, or a one-line :class:`UserError` naming the extra."""
    try:
        import transformers
    except ImportError:
        raise UserError(EXTRA_HINT) from None
    return transformers


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but torch sees no CUDA device (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def _not_found(name: str) -> UserError:
    return UserError(
        f"model {name!r} is neither a local folder nor (completely) in the local Hugging Face cache: download it first "
        f"(hf download {name}, or huggingface-cli download {name} with an older huggingface_hub), "
        "pass --allow-download, or pass a local folder with the saved model and processor")


@contextlib.contextmanager
def _quiet_transformers(tf, quiet: bool) -> Iterator[None]:
    """transformers' warnings and weight-loading bars off while loading (restored after)."""
    if not quiet:
        yield
        return
    hf_log = tf.utils.logging
    verbosity, bars = hf_log.get_verbosity(), hf_log.is_progress_bar_enabled()
    hf_log.set_verbosity_error()
    hf_log.disable_progress_bar()
    try:
        yield
    finally:
        hf_log.set_verbosity(verbosity)
        if bars:
            hf_log.enable_progress_bar()


def _size_get(size, key: str):
    if size is None:
        return None
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


@dataclass
class PanopticModel:
    """A loaded panoptic checkpoint: processor, model, device and its category table."""

    name: str
    kind: str  # config.model_type: mask2former, maskformer, oneformer
    processor: object
    model: object
    device: object
    names: list[str]
    is_thing: list[bool]
    thing_source: str

    @classmethod
    def load(
        cls, name: str, device: str = "auto", allow_download: bool = False, thing_classes: str | None = None,
        stuff_classes: str | None = None, quiet: bool = True,
    ) -> "PanopticModel":
        tf = import_transformers()
        dev = resolve_device(device)
        local = Path(name).expanduser()
        is_dir = local.is_dir()
        src = str(local) if is_dir else name
        kw = {"local_files_only": not allow_download}
        if is_dir and not (local / "config.json").is_file():  # (transformers 4.x would guess a type from the name)
            raise UserError("not a Hugging Face model folder (no config.json; save_pretrained writes one)", local)
        with _quiet_transformers(tf, quiet):
            try:
                config = tf.AutoConfig.from_pretrained(src, **kw)
            except Exception as e:  # noqa: BLE001 - hub/IO errors of many kinds: all mean "no model here"
                if is_dir:
                    raise UserError(f"not a Hugging Face model folder (no readable config.json; {_first_line(e)})",
                                    local) from e
                if allow_download:
                    raise UserError(f"cannot get model {name!r} from the Hugging Face hub ({_first_line(e)})") from e
                raise _not_found(name) from e
            kind = getattr(config, "model_type", "?")
            if kind not in MODEL_TYPES:
                raise UserError(f"model {name!r} is a {kind!r} model; pcf-gs predict runs Mask2Former, MaskFormer "
                                "or OneFormer panoptic checkpoints")
            try:
                if kind == "oneformer":  # its processor also tokenizes the task input
                    processor = tf.AutoProcessor.from_pretrained(src, **kw)
                else:
                    processor = tf.AutoImageProcessor.from_pretrained(src, **kw)
                model = tf.AutoModelForUniversalSegmentation.from_pretrained(src, **kw)
            except Exception as e:  # noqa: BLE001
                where = f"folder {str(local)!r}" if is_dir else repr(name)
                if not is_dir and not allow_download and isinstance(e, OSError):
                    raise _not_found(name) from e
                raise UserError(f"cannot load the model or its processor from {where} ({_first_line(e)})") from e
        id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
        if not id2label or sorted(id2label) != list(range(len(id2label))):
            raise UserError(f"model {name!r}: config.id2label must name the labels 0..K-1")
        names = [id2label[i] for i in range(len(id2label))]
        image_proc = getattr(processor, "image_processor", processor)
        meta = getattr(image_proc, "metadata", None)
        thing_ids = meta.get("thing_ids") if isinstance(meta, dict) else None
        is_thing, source = resolve_things(names, thing_classes, stuff_classes, thing_ids)
        model.to(dev).eval()
        return cls(name, kind, processor, model, dev, names, is_thing, source)

    @property
    def categories(self) -> list[dict]:
        """COCO categories: label id l is category l + 1."""
        return [{"id": i + 1, "name": n, "isthing": int(t)} for i, (n, t) in enumerate(zip(self.names, self.is_thing))]

    @property
    def stuff_ids(self) -> set[int]:
        return {i for i, t in enumerate(self.is_thing) if not t}

    def _size_override(self, max_size: int | None):
        """The processor's resize target capped at ``max_size`` on the longer side (None: unchanged)."""
        if not max_size:
            return None
        size = getattr(getattr(self.processor, "image_processor", self.processor), "size", None)
        se, le = _size_get(size, "shortest_edge"), _size_get(size, "longest_edge")
        h, w = _size_get(size, "height"), _size_get(size, "width")
        if se:
            le = min(int(le or max_size), max_size)
            return {"shortest_edge": min(int(se), le - 1), "longest_edge": le}  # transformers 4.x: strictly shorter
        if h and w:
            s = min(1.0, max_size / max(h, w))
            return {"height": max(1, round(h * s)), "width": max(1, round(w * s))}
        return None

    def predict(self, images: list[np.ndarray], threshold: float = 0.5,
                max_size: int | None = None) -> list[tuple[np.ndarray, list[dict]]]:
        """RGB uint8 images [H,W,3] -> per image (segment ids [H,W] int64 at the image's size,
        COCO segments_info with ``score``)."""
        import torch

        sizes = [im.shape[:2] for im in images]
        batch = [_shrink(im, max_size) for im in images]
        kw = {"return_tensors": "pt"}
        size = self._size_override(max_size)
        if size is not None:
            kw["size"] = size
        if self.kind == "oneformer":
            kw["task_inputs"] = ["panoptic"] * len(batch)
        inputs = self.processor(images=batch, **kw)
        pixel_mask = inputs.get("pixel_mask")
        inputs = inputs.to(self.device)
        try:
            with torch.inference_mode():
                outputs = self.model(**inputs)
                return postprocess(self.processor, outputs, pixel_mask, sizes, self.stuff_ids, threshold,
                                   resize_logits=self.kind == "oneformer")
        except torch.cuda.OutOfMemoryError:
            raise UserError(f"out of GPU memory with {len(images)} image(s) of up to {max(max(s) for s in sizes)} px "
                            "per batch: lower --batch-size or set --max-size") from None


def postprocess(processor, outputs, pixel_mask, sizes: list[tuple[int, int]], stuff_ids: set[int],
                threshold: float = 0.5, resize_logits: bool = False) -> list[tuple[np.ndarray, list[dict]]]:
    """The processor's panoptic post-processing, one image at a time: the mask logits cropped to the
    image's region of the padded batch (``pixel_mask`` [B,Hp,Wp], 1 = image), the queries the
    post-processing would drop (no object, score <= threshold) left out first, segments at ``sizes``.
    ``resize_logits``: resize the logits here rather than through ``target_sizes`` (OneFormer, whose
    transformers 5 post-processing resizes with torchvision)."""
    import torch

    cls_logits, mask_logits = outputs.class_queries_logits, outputs.masks_queries_logits
    hm, wm = mask_logits.shape[-2:]
    results = []
    for i, (h, w) in enumerate(sizes):
        cl, m = cls_logits[i:i + 1], mask_logits[i:i + 1]
        scores, labels = cl[0].softmax(-1).max(-1)
        keep = (labels != cl.shape[-1] - 1) & (scores > threshold)
        if not bool(keep.any()):
            results.append((np.zeros((h, w), np.int64), []))
            continue
        cl, m = cl[:, keep], m[:, keep]
        if pixel_mask is not None:
            pm = pixel_mask[i].bool()
            hp, wp = pm.shape
            vh, vw = int(pm.any(dim=1).sum()), int(pm.any(dim=0).sum())
            ch = min(hm, max(1, math.ceil(vh * hm / hp - 1e-6)))
            cw = min(wm, max(1, math.ceil(vw * wm / wp - 1e-6)))
            m = m[..., :ch, :cw]
        if resize_logits:
            m = torch.nn.functional.interpolate(m.float(), size=(h, w), mode="bilinear", align_corners=False)
        out = SimpleNamespace(class_queries_logits=cl, masks_queries_logits=m)
        r = processor.post_process_panoptic_segmentation(
            out, threshold=threshold, label_ids_to_fuse=set(stuff_ids),
            target_sizes=None if resize_logits else [(h, w)])[0]
        seg = r["segmentation"]
        seg = np.zeros((h, w), np.int64) if seg is None else seg.cpu().numpy().astype(np.int64).clip(0, None)
        area = np.bincount(seg.ravel())
        infos: dict[int, dict] = {}
        for s in r["segments_info"]:  # a fused stuff segment is listed once per query: keep the best score
            sid = int(s["id"])
            if sid <= 0 or sid >= len(area) or area[sid] == 0:
                continue
            score = float(s.get("score", 1.0))
            if sid in infos:
                infos[sid]["score"] = max(infos[sid]["score"], score)
                continue
            infos[sid] = {"id": sid, "category_id": int(s["label_id"]) + 1, "iscrowd": 0, "area": int(area[sid]),
                          "score": score}
        seg[~np.isin(seg, list(infos))] = 0
        results.append((seg, [infos[k] for k in sorted(infos)]))
    return results


# ------------------------------------------------------------------------------------------ output


def _existing_outputs(out: Path) -> list[Path]:
    return [p for p in (out / OUTPUT_NAME, out / f"{OUTPUT_NAME}.json") if p.exists() or p.is_symlink()]


def _commit(staging: Path, out: Path, overwrite: bool) -> None:
    """Move ``staging/panoptic`` and ``staging/panoptic.json`` onto ``out``; the old ones are removed only
    once the new ones are in place, and put back if a move fails."""
    names = (OUTPUT_NAME, f"{OUTPUT_NAME}.json")
    existing = _existing_outputs(out)
    if existing and not overwrite:  # appeared while the model ran
        raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{OUTPUT_NAME}.", suffix=".old", dir=out))
    moved_old: list[str] = []
    placed: list[str] = []
    try:
        for n in reversed(names):  # the JSON first: a reader never sees a JSON without its PNGs
            if (out / n).exists() or (out / n).is_symlink():
                os.replace(out / n, old / n)
                moved_old.append(n)
        for n in names:  # PNGs first, the JSON last
            os.replace(staging / n, out / n)
            placed.append(n)
    except BaseException:
        for n in reversed(placed):
            with contextlib.suppress(OSError):
                os.replace(out / n, staging / n)
        for n in reversed(moved_old):
            with contextlib.suppress(OSError):
                os.replace(old / n, out / n)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def run_predict(
    scene: Path, model: str, out: Path | None = None, overwrite: bool = False, device: str = "auto",
    batch_size: int | None = None, max_size: int | None = None, allow_download: bool = False,
    thing_classes: str | None = None, stuff_classes: str | None = None, threshold: float = 0.5,
    progress: bool = True,
) -> dict:
    """Predict every image of ``scene/images`` and write ``<out>/panoptic/`` + ``<out>/panoptic.json``
    (``out`` defaults to ``scene``). Nothing is replaced unless the whole run succeeds."""
    from pcf_gs.data import images as imgio
    from pcf_gs.data.predictions import write_coco_panoptic
    from pcf_gs.progress import progress_bar

    scene = Path(scene)
    if not scene.is_dir():
        raise DataError("scene folder not found", scene)
    out = Path(out) if out is not None else scene
    if out.exists() and not out.is_dir():
        raise UserError("--out must be a folder", out)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if max_size is not None and max_size < 64:
        raise UserError(f"--max-size must be >= 64 pixels, got {max_size}")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--threshold must be in [0, 1], got {threshold}")
    existing = _existing_outputs(out)
    if existing and not overwrite:
        raise UserError(f"{existing[0]} exists; pass --overwrite to replace it")
    images = find_images(scene / "images")

    pm = PanopticModel.load(model, device, allow_download, thing_classes, stuff_classes,
                            quiet=not log.isEnabledFor(logging.DEBUG))
    if pm.thing_source == "fallback":
        log.warning("%s: no thing/stuff information for its %d classes: treating every class as a thing "
                    "(give --stuff-classes or --thing-classes to fix)", model, len(pm.names))
    if batch_size is None:
        batch_size = 4 if pm.device.type == "cuda" else 1
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    stats = {"segments": 0, "things": 0, "empty": 0}

    def load(batch):
        return [imgio.read_rgb(p) for _, p in batch]

    def entries(advance):
        with ThreadPoolExecutor(1) as pool:  # read the next batch while the model runs
            nxt = pool.submit(load, batches[0])
            for b, batch in enumerate(batches):
                rgbs = nxt.result()
                if b + 1 < len(batches):
                    nxt = pool.submit(load, batches[b + 1])
                for (key, _), (seg, infos) in zip(batch, pm.predict(rgbs, threshold, max_size)):
                    stats["segments"] += len(infos)
                    stats["things"] += sum(pm.is_thing[s["category_id"] - 1] for s in infos)
                    stats["empty"] += not infos
                    yield key, seg, infos
                    advance()

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{OUTPUT_NAME}.", suffix=".tmp", dir=out))
    try:
        with progress_bar(f"predict ({pm.device.type})", len(images), progress) as advance:
            # a generator: one image's segment map in memory at a time, not the whole capture's
            write_coco_panoptic(staging, OUTPUT_NAME, entries(advance), pm.categories)
        _commit(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "images": len(images), "out": str(out), "model": model, "kind": pm.kind, "device": str(pm.device),
        "classes": len(pm.names), "thing_classes": sum(pm.is_thing), "thing_source": pm.thing_source,
        **stats,
    }
