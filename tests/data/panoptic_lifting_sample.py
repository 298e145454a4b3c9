"""Write a small scene in Panoptic Lifting's data layout (docs/layouts/panoptic_lifting.md).

The source is a Messy Rooms scene (by default a tiny ``pcf-gs synth`` scene), so a test can load
the same views through both loaders and compare. Files are written the way the official
preprocessing writes them (dataset/preprocessing/preprocess_scannet.py and SensorData.py of
github.com/nihalsid/panoptic-lifting):

- ``color/<f>.jpg``; ``pose/<f>.txt`` and ``intrinsic/*.txt`` as ``np.savetxt(fmt="%f")`` rows
  (ScanNet's SensorData export); K with pixel centres at integer coordinates (cx = our cx - 0.5);
- ``m2f_semantics`` (uint16 PNG), ``m2f_instance`` (uint16 PNG, ids from one counter over all
  frames, as ``map_panoptic_coco`` numbers them), ``m2f_notta_*``, ``m2f_segments``,
  ``m2f_invalid``, ``m2f_probabilities/<f>.npz`` (probability, confidence, confidence_notta);
- ``rs_semantics`` / ``rs_instance`` (8-bit PNG; 16-bit when ids need it) ground truth, with the raw
  ``semantics`` / ``instance`` folders beside them, and ``depth`` when the source has it;
- ``splits.json`` as ``create_validation_set`` makes it (every int(1/fraction)-th frame is "test");
- ``segmentation_data.pkl``: num_semantic_classes, fg_classes, bg_classes, *_instance_to_semantic
  and gt_bboxes (numpy arrays and scalars, as the official pickles hold).

Classes: by default the official "reduced ScanNet" table (22 classes, 0 = void); the source's
class 0 (background) becomes void and its thing classes become ScanNet thing classes (chair, bed,
...). ``class_map`` with ``fg_classes``/``bg_classes`` gives any other table.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np

# resources/scannet_reduced_things.csv of the official repository, "void" (stuff) prepended
_REDUCED_CSV = """wall,0
floor,0
cabinet,0
bed,1
chair,1
sofa,1
table,0
door,0
window,0
counter,0
shelves,0
curtain,0
ceiling,0
refridgerator,1
television,1
person,1
toilet,1
sink,1
lamp,0
bag,1
otherprop,0"""
REDUCED_NAMES = ["void"] + [line.split(",")[0] for line in _REDUCED_CSV.splitlines()]
REDUCED_IS_THING = [False] + [line.split(",")[1] == "1" for line in _REDUCED_CSV.splitlines()]
REDUCED_FG = [i for i, t in enumerate(REDUCED_IS_THING) if t]
REDUCED_BG = [i for i, t in enumerate(REDUCED_IS_THING) if not t]

DEFAULT_SYNTH = dict(objects=4, frames=10, width=48, height=48, seed=0, points=0)


def default_class_map(classes) -> dict[int, int]:
    """Source class id -> reduced ScanNet id: class 0 -> void, other stuff -> wall, floor, ...,
    things -> bed, chair, sofa, ... in order."""
    things = iter(REDUCED_FG)
    stuff = iter(c for c in REDUCED_BG if c != 0)
    out = {}
    for c in classes.classes:
        out[c.id] = 0 if c.id == 0 else next(things) if c.thing else next(stuff)
    return out


def _savetxt(path: Path, m: np.ndarray) -> None:
    with open(path, "w") as f:  # SensorData.save_mat_to_file
        for row in np.asarray(m, dtype=np.float64):
            np.savetxt(f, row[np.newaxis], fmt="%f")


def _png(path: Path, a: np.ndarray, dtype=None) -> None:
    a = np.asarray(a)
    if dtype is None:
        dtype = np.uint8 if a.max(initial=0) < 256 else np.uint16
    if not cv2.imwrite(str(path), a.astype(dtype)):
        raise OSError(f"cannot write {path}")


def write_panoptic_lifting_sample(
    root: Path,
    scene_dir: Path | None = None,
    *,
    synth: dict | None = None,
    class_map: dict[int, int] | None = None,
    fg_classes: list[int] | None = None,
    bg_classes: list[int] | None = None,
    test_fraction: float = 0.25,
    probabilities: bool = True,
    ground_truth: bool = True,
    jpeg_quality: int = 95,
) -> dict:
    """Convert the Messy Rooms scene ``scene_dir`` (generated next to ``root`` when None, from
    ``DEFAULT_SYNTH`` updated by ``synth``) into the Panoptic Lifting layout at ``root``.

    Returns what a test compares against: ``source`` (the Messy Rooms folder), ``stems``,
    ``train``/``test`` stems, ``class_map``, ``fg``/``bg``, ``instance_maps`` ({stem: {source
    per-view id: written m2f id}}) and ``K`` (our convention, for reference).
    """
    from pcf_gs.config import DataConfig
    from pcf_gs.data.messy_rooms import load_messy_rooms

    root = Path(root)
    if scene_dir is None:
        from pcf_gs.synth import SynthOptions, generate_scene

        scene_dir = root.parent / f"{root.name}_messy_rooms"
        if not scene_dir.exists():
            generate_scene(scene_dir, SynthOptions(**{**DEFAULT_SYNTH, **(synth or {})}), progress=False)
    scene_dir = Path(scene_dir)
    mr = load_messy_rooms(scene_dir, DataConfig(normalize=False), progress=False)

    if class_map is None:
        class_map = default_class_map(mr.classes)
        fg, bg = list(REDUCED_FG), list(REDUCED_BG)
    else:
        if fg_classes is None or bg_classes is None:
            raise ValueError("class_map needs fg_classes and bg_classes")
        fg, bg = sorted(fg_classes), sorted(bg_classes)
    cmap = np.zeros(max(class_map) + 1, dtype=np.int64)
    for k, v in class_map.items():
        cmap[k] = v

    frames = mr.frames
    K = frames[0].K.astype(np.float64)
    if any(not np.allclose(f.K, K) for f in frames):
        raise ValueError("the layout has one intrinsic_color.txt; the source's frames differ in K")
    W, H = frames[0].width, frames[0].height
    stems = [f.name for f in frames]

    dirs = ["color", "pose", "intrinsic", "m2f_semantics", "m2f_instance", "m2f_notta_semantics",
            "m2f_notta_instance", "m2f_segments", "m2f_invalid"]  # fmt: skip
    if probabilities:
        dirs.append("m2f_probabilities")
    if ground_truth:
        dirs += ["rs_semantics", "rs_instance", "semantics", "instance"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)

    K_layout = np.eye(4)
    K_layout[:3, :3] = K
    K_layout[0, 2] -= 0.5  # the layout's first pixel centre is (0, 0)
    K_layout[1, 2] -= 0.5
    _savetxt(root / "intrinsic" / "intrinsic_color.txt", K_layout)
    _savetxt(root / "intrinsic" / "intrinsic_depth.txt", K_layout)
    _savetxt(root / "intrinsic" / "extrinsic_color.txt", np.eye(4))
    _savetxt(root / "intrinsic" / "extrinsic_depth.txt", np.eye(4))

    n_cls = len(fg) + len(bg)
    n_ch = max(fg + bg) + 1  # probability channels are indexed by class id (== n_cls for 0..K-1 tables)
    instance_ctr, segment_ctr = 1, 1
    m2f_i2s: dict[int, int] = {}
    rs_i2s: dict[int, np.int64] = {0: np.int64(0)}
    instance_maps: dict[str, dict[int, int]] = {}
    for f in frames:
        stem = f.name
        cv2.imwrite(str(root / "color" / f"{stem}.jpg"), f.rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        _savetxt(root / "pose" / f"{stem}.txt", f.c2w)

        sem = cmap[f.semantics]
        ins = np.zeros_like(f.instances)
        segments = np.zeros_like(f.instances)
        imap = {}
        for u in np.unique(f.instances):
            if u == 0:
                continue
            m = f.instances == u
            imap[int(u)] = instance_ctr
            ins[m] = instance_ctr
            m2f_i2s[instance_ctr] = int(np.bincount(sem[m]).argmax())
            instance_ctr += 1
        instance_maps[stem] = imap
        for key in np.unique(sem * 65536 + ins):
            segments[(sem * 65536 + ins) == key] = segment_ctr
            segment_ctr += 1
        for pre in ("m2f", "m2f_notta"):
            _png(root / f"{pre}_semantics" / f"{stem}.png", sem, np.uint16)
            _png(root / f"{pre}_instance" / f"{stem}.png", ins, np.uint16)
        _png(root / "m2f_segments" / f"{stem}.png", segments, np.uint16)
        _png(root / "m2f_invalid" / f"{stem}.png", (sem == 0).astype(np.uint8) * 255, np.uint8)
        if probabilities:
            conf = f.confidence if f.confidence is not None else np.ones((H, W), np.float32)
            conf = conf.astype(np.float32)
            prob = np.repeat(((1.0 - conf) / n_ch)[:, :, None], n_ch, axis=2)
            np.put_along_axis(prob, sem[:, :, None], (conf + (1.0 - conf) / n_ch)[:, :, None], axis=2)
            np.savez_compressed(
                root / "m2f_probabilities" / f"{stem}.npz",
                probability=prob.astype(np.float32), confidence=conf, confidence_notta=conf,
            )
        if ground_truth:
            gsem = cmap[f.gt_semantics]
            gins = np.where(np.isin(gsem, fg), f.gt_instances, 0)  # stuff has no instances
            for u in np.unique(gins):
                if u:
                    rs_i2s[int(u)] = np.int64(np.bincount(gsem[gins == u]).argmax())
            _png(root / "rs_semantics" / f"{stem}.png", gsem)
            _png(root / "rs_instance" / f"{stem}.png", gins)
            _png(root / "semantics" / f"{stem}.png", gsem)
            _png(root / "instance" / f"{stem}.png", f.gt_instances)
        depth = scene_dir / "depth" / f"{stem}.png"
        if depth.is_file():
            (root / "depth").mkdir(exist_ok=True)
            shutil.copyfile(depth, root / "depth" / f"{stem}.png")

    ordered = sorted(stems, key=int) if all(s.isdigit() for s in stems) else sorted(stems)
    step = int(1 / test_fraction)
    test = [ordered[i] for i in range(0, len(ordered), step)]
    train = [s for s in ordered if s not in test]
    (root / "splits.json").write_text(json.dumps({"train": train, "test": test}))

    seg = {
        "num_semantic_classes": n_cls,
        "fg_classes": fg,
        "bg_classes": bg,
        "m2f_instance_to_semantic": m2f_i2s,
        "m2f_notta_instance_to_semantic": m2f_i2s,
    }
    if ground_truth:
        seg["rs_instance_to_semantic"] = rs_i2s
    desc = scene_dir / "pcf_gs_scene.json"
    if desc.is_file():
        objs = json.loads(desc.read_text()).get("objects", [])
        seg["gt_bboxes"] = {
            i: {
                "position": np.asarray(o["center"], np.float32),
                "orientation": np.asarray(o["rotation"], np.float32),
                "extent": 2 * np.asarray(o["scale"], np.float32),
                "class": np.int64(class_map.get(o["class_id"], 0)),
            }
            for i, o in enumerate(objs)
        }
    with open(root / "segmentation_data.pkl", "wb") as fh:
        pickle.dump(seg, fh)
    return {
        "source": scene_dir,
        "stems": stems,
        "train": train,
        "test": test,
        "class_map": dict(class_map),
        "fg": fg,
        "bg": bg,
        "instance_maps": instance_maps,
        "K": K,
    }
