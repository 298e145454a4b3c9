"""2D panoptic predictions beside a capture's images: COCO panoptic, instance maps, confidence.

Layouts, in the scene root next to ``images/`` (COLMAP, nerfstudio)::

    panoptic/<key>.png      COCO panoptic PNG: RGB, segment id = R + 256 G + 256² B, 0 = unlabelled
    panoptic.json           {"categories": [{"id", "name", "isthing"}, ...],
                             "annotations": [{"file_name": "<key>.png", "segments_info":
                                              [{"id", "category_id", "score"?}, ...]}, ...]}
                            (what Detectron2, Mask2Former, OneFormer and panopticapi write)
    instances/<key>.png     instance maps only (e.g. SAM's automatic masks): 16-bit ids, 0 = none
    confidence/<key>.png    optional per-pixel confidence: uint8 (/255) or uint16 (/65535) PNG,
                            or <key>.npy float in [0, 1]
    panoptic_gt/<key>.png   optional ground truth in the COCO panoptic format, where a thing
    panoptic_gt.json        segment's id is its instance id, the same in every view

``<key>`` is the image's path relative to ``images/`` without its extension
(``0001`` or ``cam0/0001``), so predictions are found by image stem.

Class tables:

- COCO panoptic: dense id 0 is "unlabeled" (void: never supervised, left out
  of evaluation), then the JSON's categories in id order as 1..K, thing or
  stuff from ``isthing``.
- instance maps: 0 "background" (stuff), 1 "object" (thing), as Messy Rooms.

Per view the loader returns semantics [H,W] (dense class ids), instances
[H,W] (thing segments numbered 1..n; 0 = stuff or none) and a confidence
[H,W] in [0,1]: the confidence map if given, else the segment's ``score`` if
every segment has one, else 1; always 0 on unlabelled pixels. Images without
a prediction get confidence 0 everywhere: they still train appearance but
no semantics or instances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pcf_gs.data import images as imgio
from pcf_gs.data.loading import read_json
from pcf_gs.data.scene import ClassInfo, ClassTable
from pcf_gs.errors import DataError

PANOPTIC = "panoptic"
INSTANCES = "instances"
CONFIDENCE = "confidence"
GROUND_TRUTH = "panoptic_gt"
STUFF_ID_BASE = 1 << 23  # encode_panoptic: stuff segments get STUFF_ID_BASE + category (thing ids stay below)


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 RGB -> [H,W] int64 segment ids (COCO: R + 256 G + 256² B)."""
    c = rgb.astype(np.int64)
    return c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """[H,W] ids < 2^24 -> [H,W,3] uint8 RGB (inverse of :func:`rgb_to_id`)."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def read_panoptic_png(path: Path) -> np.ndarray:
    """[H,W] int64 segment ids of a COCO panoptic PNG."""
    a = imgio.imread(path, what="panoptic PNG")
    if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
        raise DataError(f"a COCO panoptic PNG must be 8-bit RGB, got shape {a.shape} {a.dtype}", path)
    return rgb_to_id(a[..., 2::-1])  # BGR(A) -> RGB


def read_confidence(path: Path) -> np.ndarray:
    """[H,W] float32 in [0, 1] from a uint8/uint16 PNG or a float ``.npy``."""
    if path.suffix == ".npy":
        return imgio.read_npy(path, "confidence")
    a = imgio.imread(path, what="confidence PNG")
    if a.ndim != 2 or a.dtype not in (np.uint8, np.uint16):
        raise DataError("a confidence PNG must be a single-channel 8- or 16-bit image", path)
    return (a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 65535.0)).clip(0, 1)


@dataclass
class _CocoPanoptic:
    """One COCO panoptic folder + JSON: categories and per-file segments."""

    folder: Path
    json_path: Path
    category_ids: list[int]  # dense class d (1..K) is category_ids[d - 1]
    classes: ClassTable
    segments: dict[str, dict[int, dict]]  # key -> segment id -> segment info

    @classmethod
    def open(cls, folder: Path, json_path: Path) -> "_CocoPanoptic":
        d = read_json(json_path, obj=True)
        cats, anns = d.get("categories"), d.get("annotations")
        if not isinstance(cats, list) or not cats:
            raise DataError('no "categories" list', json_path)
        if not isinstance(anns, list):
            raise DataError('no "annotations" list', json_path)
        try:
            cats = sorted(cats, key=lambda c: int(c["id"]))
            cat_ids = [int(c["id"]) for c in cats]
            infos = [ClassInfo(0, "unlabeled", False)] + [
                ClassInfo(i + 1, str(c.get("name", f"category_{c['id']}")), bool(c.get("isthing", 0)))
                for i, c in enumerate(cats)
            ]
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise DataError(f"bad category entry ({type(e).__name__}: {e})", json_path) from None
        if len(set(cat_ids)) != len(cat_ids):
            raise DataError("duplicate category ids", json_path)
        segments: dict[str, dict[int, dict]] = {}
        for a in anns:
            try:
                key = str(Path(str(a["file_name"])).with_suffix("").as_posix())
                segs = {int(s["id"]): s for s in a["segments_info"]}
                for s in segs.values():
                    int(s["category_id"])
            except (KeyError, TypeError, ValueError, OverflowError) as e:
                raise DataError(f"bad annotation entry ({type(e).__name__}: {e})", json_path) from None
            if not (folder / f"{key}.png").is_file():
                raise DataError(f"annotation for {key}.png but {folder.name}/{key}.png does not exist", json_path)
            segments[key] = segs
        return cls(folder, json_path, cat_ids, ClassTable(infos), segments)

    def read(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, float] | None]:
        """(segment ids [H,W], dense classes [H,W], thing mask [H,W], scores per segment id or None).
        The thing mask is False on ``iscrowd`` segments: they carry a class but no instance."""
        path = self.folder / f"{key}.png"
        seg = read_panoptic_png(path)
        info = self.segments.get(key)
        if info is None:
            raise DataError(f"no annotation for {key}.png in {self.json_path.name}", path)
        present = np.unique(seg)
        missing = [int(i) for i in present if i != 0 and int(i) not in info]
        if missing:
            raise DataError(f"segment id {missing[0]} is not in {self.json_path.name} ({len(missing)} missing)", path)
        dense_of = {c: i + 1 for i, c in enumerate(self.category_ids)}
        lut_ids = np.array(sorted(info), dtype=np.int64)
        try:
            lut_cls = np.array([dense_of[int(info[i]["category_id"])] for i in lut_ids], dtype=np.int32)
        except KeyError as e:
            raise DataError(f"a segment of {key}.png has category {e} not in categories", self.json_path) from None
        thing = self.classes.is_thing_array()
        crowd_ids = np.array(sorted(i for i, s in info.items() if s.get("iscrowd")), dtype=np.int64)
        idx = np.searchsorted(lut_ids, seg).clip(0, max(len(lut_ids) - 1, 0))
        labelled = (seg != 0) & (lut_ids[idx] == seg) if len(lut_ids) else np.zeros(seg.shape, bool)
        sem = np.where(labelled, lut_cls[idx] if len(lut_ids) else 0, 0).astype(np.int32)
        scores = None
        if info and all("score" in s for s in info.values()):
            scores = {int(i): float(s["score"]) for i, s in info.items()}
        crowd = np.isin(seg, crowd_ids) if len(crowd_ids) else np.zeros(seg.shape, bool)
        return np.where(labelled, seg, 0), sem, labelled & thing[sem] & ~crowd, scores


def _renumber(ids: np.ndarray) -> np.ndarray:
    """Ids > 0 -> 1..n in increasing order, 0 kept. [H,W] int32."""
    u, inv = np.unique(ids, return_inverse=True)
    out = inv.reshape(ids.shape).astype(np.int32)
    return out if u[0] == 0 else out + 1


@dataclass
class PredictionSource:
    """The 2D predictions of a capture: kind, class table, and a reader by image key."""

    root: Path
    kind: str  # "coco_panoptic" or "instances"
    classes: ClassTable
    _coco: _CocoPanoptic | None = None
    _keys: set[str] = field(default_factory=set)

    def has(self, key: str) -> bool:
        return key in self._keys

    def read(self, key: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(semantics [H,W] int32, instances [H,W] int32, confidence [H,W] float32) at the image's
        size (width x height of the image the predictions were made on; resized if the aspect ratio
        matches, otherwise an error)."""
        if self.kind == "coco_panoptic":
            path = self.root / PANOPTIC / f"{key}.png"
            seg, sem, thing, scores = self._coco.read(key)
            ins = _renumber(np.where(thing, seg, 0))
            labelled = seg != 0
            if scores is not None:
                ids = np.array(sorted(scores), dtype=np.int64)
                val = np.array([scores[i] for i in ids], dtype=np.float32)
                conf = np.where(labelled, val[np.searchsorted(ids, seg).clip(0, len(ids) - 1)], 0.0)
            else:
                conf = labelled.astype(np.float32)
        else:
            path = self.root / INSTANCES / f"{key}.png"
            raw = imgio.read_id_png(path, "instance map").astype(np.int64)
            ins = _renumber(raw)
            sem = (raw > 0).astype(np.int32)
            conf = np.ones(raw.shape, np.float32)
        sem = imgio.fit_label_map(sem, width, height, path)
        ins = imgio.fit_label_map(ins, width, height, path)
        conf = imgio.fit_label_map(conf.astype(np.float32), width, height, path)
        conf_path = _confidence_path(self.root, key)
        if conf_path is not None:
            c = imgio.fit_label_map(read_confidence(conf_path), width, height, conf_path, nearest=False)
            conf = np.where(conf > 0, c, 0.0) if self.kind == "coco_panoptic" else c
        return sem, ins, conf.astype(np.float32)


def _confidence_path(root: Path, key: str) -> Path | None:
    for ext in (".png", ".npy"):
        p = root / CONFIDENCE / f"{key}{ext}"
        if p.is_file():
            return p
    return None


def find_predictions(root: Path) -> PredictionSource | None:
    """The predictions beside ``root``'s images: COCO panoptic first, then instance maps; None if neither."""
    root = Path(root)
    if (root / PANOPTIC).is_dir() or (root / f"{PANOPTIC}.json").is_file():
        if not (root / f"{PANOPTIC}.json").is_file():
            raise DataError(f"{PANOPTIC}/ has no {PANOPTIC}.json beside it (COCO panoptic layout)", root / PANOPTIC)
        if not (root / PANOPTIC).is_dir():
            raise DataError(f"{PANOPTIC}.json has no {PANOPTIC}/ folder of PNGs beside it", root / f"{PANOPTIC}.json")
        coco = _CocoPanoptic.open(root / PANOPTIC, root / f"{PANOPTIC}.json")
        return PredictionSource(root, "coco_panoptic", coco.classes, coco, set(coco.segments))
    if (root / INSTANCES).is_dir():
        keys = {p.relative_to(root / INSTANCES).with_suffix("").as_posix() for p in (root / INSTANCES).rglob("*.png")}
        classes = ClassTable([ClassInfo(0, "background", False), ClassInfo(1, "object", True)])
        return PredictionSource(root, "instances", classes, None, keys)
    return None


@dataclass
class GroundTruthSource:
    """Ground truth in the COCO panoptic format (``panoptic_gt/`` + ``panoptic_gt.json``)."""

    coco: _CocoPanoptic

    @property
    def classes(self) -> ClassTable:
        return self.coco.classes

    def has(self, key: str) -> bool:
        return key in self.coco.segments

    def read(self, key: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """(semantics [H,W] int32 dense classes, instances [H,W] int32: a thing segment's id, 0 elsewhere)."""
        path = self.coco.folder / f"{key}.png"
        seg, sem, thing, _ = self.coco.read(key)
        ins = np.where(thing, seg, 0).astype(np.int32)
        return imgio.fit_label_map(sem, width, height, path), imgio.fit_label_map(ins, width, height, path)


def find_ground_truth(root: Path) -> GroundTruthSource | None:
    root = Path(root)
    if not (root / f"{GROUND_TRUTH}.json").is_file():
        return None
    return GroundTruthSource(_CocoPanoptic.open(root / GROUND_TRUTH, root / f"{GROUND_TRUTH}.json"))


# ---------------------------------------------------------------------------------------------- writing


def encode_panoptic(
    sem: np.ndarray, ins: np.ndarray, is_thing: np.ndarray, category_ids: list[int], keep_ids: bool = False,
    scores: dict[int, float] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Dense semantics [H,W] (0 = unlabelled, d -> ``category_ids[d-1]``) and instances [H,W]
    (0 = none) -> (segment ids [H,W] int64, segments_info).

    A thing segment is one instance id (its category the most common class under it); a stuff
    segment is one stuff class's pixels without an instance (a thing class's pixels without an
    instance become one ``iscrowd`` segment: its class, no instance). ``keep_ids``: a thing segment keeps
    its instance id (ground truth, consistent across views; ids must be < 2^23) and a stuff segment
    is ``STUFF_ID_BASE + category``; otherwise segments are numbered 1..n. ``scores``: instance id
    -> score, written as the segment's ``score``."""
    sem = np.asarray(sem, dtype=np.int64)
    ins = np.asarray(ins, dtype=np.int64)
    seg = np.zeros(sem.shape, np.int64)
    infos: list[dict] = []
    thing_px = (ins > 0) & (sem > 0) & is_thing[sem]
    for i in np.unique(ins[thing_px]):
        m = thing_px & (ins == i)
        d = int(np.bincount(sem[m]).argmax())
        sid = int(i) if keep_ids else len(infos) + 1
        if keep_ids and sid >= STUFF_ID_BASE:
            raise ValueError(f"instance id {sid} too large for a panoptic PNG")
        seg[m] = sid
        infos.append({"id": sid, "category_id": category_ids[d - 1], "iscrowd": 0, "area": int(m.sum()),
                      **({"score": float(scores[int(i)])} if scores and int(i) in scores else {})})
    rest = (sem > 0) & ~thing_px  # stuff, and thing-class pixels without an instance (a crowd segment)
    for d in np.unique(sem[rest]):
        m = rest & (sem == d)
        sid = STUFF_ID_BASE + int(d) if keep_ids else len(infos) + 1
        seg[m] = sid
        infos.append({"id": sid, "category_id": category_ids[int(d) - 1], "iscrowd": int(bool(is_thing[d])),
                      "area": int(m.sum())})
    return seg, infos


def write_coco_panoptic(root: Path, name: str, entries: Iterable[tuple[str, np.ndarray, list[dict]]],
                        categories: list[dict]) -> None:
    """Write ``root/<name>/<key>.png`` and ``root/<name>.json`` (COCO panoptic).

    entries: (key, segment ids [H,W] < 2^24, segments_info), consumed one at a time (a generator keeps
    one image in memory); categories: [{"id", "name", "isthing"}].
    The JSON is written last and atomically, so a reader never sees annotations without PNGs."""
    from pcf_gs.atomic import write_json_atomic

    root = Path(root)
    anns = []
    for image_id, (key, seg, infos) in enumerate(entries):
        p = root / name / f"{key}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(p), id_to_rgb(seg)[..., ::-1]):
            raise DataError("cannot write panoptic PNG", p)
        anns.append({"image_id": image_id, "file_name": f"{key}.png", "segments_info": infos})
    write_json_atomic(root / f"{name}.json", {"categories": categories, "annotations": anns})


def coco_categories(classes: ClassTable) -> list[dict]:
    """COCO categories for every class of a class table: class d becomes category d + 1 (COCO keeps
    0 for unlabelled), so pass ``sem + 1`` and ``category_ids = [c["id"] for c in categories]`` to
    :func:`encode_panoptic`."""
    return [{"id": c.id + 1, "name": c.name, "isthing": int(c.thing)} for c in classes.classes]
