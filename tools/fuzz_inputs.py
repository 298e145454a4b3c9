"""Fuzz every input pcf-gs reads: mutate small valid seeds, run the command that reads them, classify.

    python tools/fuzz_inputs.py --cases 1000 --seed 0 --json fuzz.json [--kinds ply,spz] [--seeds DIR]

Seeds (built once into ``--seeds``, default a temporary folder): tiny ``pcf-gs synth`` scenes in
every layout (Messy Rooms, COLMAP .bin and text, nerfstudio; Panoptic Lifting converted from the
Messy Rooms one, with JPEG colour images), a small labelled splat scene written by our own writers in
every splat format, an edit script, a config preset. A case copies one seed, mutates one of its
files (truncation, byte flips, header fields, huge/negative/NaN/inf numbers, missing/extra keys,
wrong types, empty files, directories or dangling symlinks in place of files, wrong image sizes,
non-UTF-8 ...) and runs the command that reads it (``info`` for scenes, ``edit``/``export``/
``render --splats`` for splat files, ``edit --script``, ``info --config``/``--set``).

Outcome of a case:
  ok         exit 0
  error      exit 2 and exactly one stderr line starting ``pcf-gs CMD: error:`` (what we want)
  bad-error  exit 2 but not that one line (argparse usage, extra lines)
  traceback  an uncaught exception (a bug)
  crash      killed by a signal or another exit code
  hang       still running after ``--timeout`` seconds (killed)
and, separately, ``damaged``: an input file changed, or (on error) the pre-existing output changed
or a partial output / temporary was left beside it.

Cases run in a forked child of one worker process that has imported pcf_gs, torch and the readers
(a crash or hang only kills the child); ``--subprocess`` runs ``python -m pcf_gs`` per case instead.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OUTCOMES = ("ok", "error", "bad-error", "traceback", "crash", "hang")
BAD = ("bad-error", "traceback", "crash", "hang")

SCENE_KINDS = ("messy_rooms", "colmap_bin", "colmap_text", "nerfstudio", "panoptic_lifting", "coco_panoptic", "image")
SPLAT_KINDS = ("ply", "ply_compressed", "splat", "spz", "sog", "glb", "gsplat_ckpt")
OTHER_KINDS = ("edit_script", "config_yaml", "set_value", "render_splats", "viewer_export")
# the commands after training: a mutated run (segment), segment output and ground truth (eval), a 2-step
# train on a mutated scene
RUN_KINDS = ("segment_run", "eval_pred", "eval_gt", "train_scene")
KINDS = SCENE_KINDS + SPLAT_KINDS + OTHER_KINDS + RUN_KINDS
# kinds without the trained run (it is a 2-step train, minutes on a busy CPU)
NEEDS_RUN = ("render_splats",) + RUN_KINDS
FAST_KINDS = tuple(k for k in KINDS if k not in NEEDS_RUN)

SPLAT_FILE = {"ply": "scene.ply", "ply_compressed": "scene.compressed.ply", "splat": "scene.splat", "spz": "scene.spz",
              "sog": "scene.sog", "glb": "scene.glb", "gsplat_ckpt": "scene.pt"}


# ----------------------------------------------------------------------------- seeds


def _quiet_main(argv: list[str]) -> int:
    from pcf_gs.cli import main

    return main(["-q", *argv])


def build_seeds(root: Path, with_run: bool) -> Path:
    """Write the valid seeds under ``root`` (skipped when already there)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "done").exists():
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()):
            for layout, name in (("mos", "messy_rooms"), ("colmap", "colmap_bin"), ("colmap-text", "colmap_text"),
                                 ("nerfstudio", "nerfstudio")):
                assert _quiet_main(["synth", str(root / name), "--objects", "3", "--frames", "6", "--size", "32",
                                    "--layout", layout, "--seed", "1"]) == 0
            sys.path.insert(0, str(REPO / "tests" / "data"))
            from panoptic_lifting_sample import write_panoptic_lifting_sample

            write_panoptic_lifting_sample(root / "panoptic_lifting", root / "messy_rooms", probabilities=False)
        from pcf_gs.splats.formats import FORMATS
        from pcf_gs.splats.ply import Splats

        rng = np.random.default_rng(0)
        n = 300
        s = Splats(
            means=rng.normal(0, 1, (n, 3)).astype(np.float32), scales=rng.uniform(-4, -2, (n, 3)).astype(np.float32),
            quats=rng.normal(0, 1, (n, 4)).astype(np.float32), opacities=rng.normal(0, 1, n).astype(np.float32),
            sh0=rng.normal(0, 0.5, (n, 1, 3)).astype(np.float32), shN=rng.normal(0, 0.1, (n, 3, 3)).astype(np.float32),
            extra={"instance_id": rng.integers(0, 4, n).astype(np.int32), "semantic_id": rng.integers(0, 3, n).astype(np.int32)},
        )
        sp = root / "splats"
        sp.mkdir(exist_ok=True)
        for kind, fname in SPLAT_FILE.items():
            FORMATS[kind.replace("_", "-")].write(sp / fname, s, extra=True)
        (sp / "edits.yaml").write_text(
            "- remove: 2\n- translate: {id: 1, offset: [0.5, 0, 0]}\n- rotate: '3=0,1,0,45'\n"
            "- box: [-2, -1, -1, 2, 1, 1]\n- scale: {id: box, factor: 0.5, pivot: [0, 0, 0]}\n"
            "- recolor: {id: [1, 3], rgb: '#336699', view_dependent: false}\n")
        shutil.copy(REPO / "pcf_gs" / "configs" / "cpu_fast.yaml", root / "preset.yaml")
        (root / "done").write_text("1")
    if with_run and not (root / "run" / "checkpoint.pt").exists():
        import contextlib

        with contextlib.redirect_stdout(io.StringIO()):
            assert _quiet_main(["train", str(root / "messy_rooms"), "--out", str(root / "run"), "--config", "cpu_fast",
                                *TINY_TRAIN]) == 0
            assert _quiet_main(["segment", str(root / "run"), "--out", str(root / "segment"), "--split", "all",
                                "--set", "segment.min_pixels=1"]) == 0
    return root


TINY_TRAIN = ["--set", "train.iterations=2", "--set", "model.init_points=200", "--set", "data.max_size=32"]


# ----------------------------------------------------------------------------- mutations

HUGE = ["1e308", "-1e308", "1e400", "-1e400", "nan", "NaN", ".nan", "inf", "-inf", ".inf", "-1", "-2147483649",
        "99999999999999999999999", "0", "-0", "4294967296", "1e-320", "3.5", "\"x\"", "null", "[]", "{}", "true"]


def _numbers(text: str) -> list[re.Match]:
    return list(re.finditer(r"(?<![A-Za-z_#])-?\d+(\.\d+)?(e[-+]?\d+)?", text))


def mutate_bytes(p: Path, rng: random.Random) -> str:
    data = p.read_bytes()
    op = rng.choice(["truncate", "flip", "flip", "insert", "empty", "garbage", "zero_tail", "dup"])
    if op == "truncate" and data:
        data = data[: rng.randrange(len(data))]
    elif op == "flip" and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b)) if rng.random() < 0.5 else rng.randrange(min(len(b), 256))
            b[i] ^= 1 << rng.randrange(8)
        data = bytes(b)
    elif op == "insert":
        i = rng.randrange(len(data) + 1)
        data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]
    elif op == "empty":
        data = b""
    elif op == "garbage":
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 512)))
    elif op == "zero_tail" and data:
        i = rng.randrange(len(data))
        data = data[:i] + b"\0" * (len(data) - i)
    elif op == "dup":
        data = data + data[: rng.randint(1, 64)]
    p.write_bytes(data)
    return f"bytes:{op}"


def mutate_fs(p: Path, rng: random.Random) -> str:
    op = rng.choice(["dir", "dangling_symlink", "delete", "fifo_like_empty"])
    if p.is_dir():
        shutil.rmtree(p)
    else:
        p.unlink()
    if op == "dir":
        p.mkdir()
        (p / "x").write_text("x")
    elif op == "dangling_symlink":
        p.symlink_to(p.parent / "does_not_exist_anywhere")
    elif op == "fifo_like_empty":
        p.write_bytes(b"")
    return f"fs:{op}"


def mutate_text(p: Path, rng: random.Random) -> str:
    """Numbers, keys, types and encoding of a JSON/YAML/text file."""
    raw = p.read_bytes()
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return mutate_bytes(p, rng)
    if p.suffix == ".json" and rng.random() < 0.5:
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if obj is not None:
            op = _mutate_json(obj, rng)
            p.write_text(json.dumps(obj, allow_nan=True))
            return f"json:{op}"
    op = rng.choice(["number", "number", "number", "non_utf8", "bom", "delete_line", "dup_line", "indent"])
    nums = _numbers(text)
    if op == "number" and nums:
        for _ in range(rng.randint(1, 3)):
            nums = _numbers(text)
            m = rng.choice(nums)
            text = text[: m.start()] + rng.choice(HUGE) + text[m.end():]
        p.write_text(text)
        return "text:number"
    lines = text.splitlines(keepends=True)
    if op == "non_utf8":
        i = rng.randrange(len(text) + 1)
        p.write_bytes(text[:i].encode() + rng.choice([b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80"]) + text[i:].encode())
        return "text:non_utf8"
    if op == "bom":
        p.write_bytes(b"\xef\xbb\xbf" + raw)
        return "text:bom"
    if op == "delete_line" and lines:
        del lines[rng.randrange(len(lines))]
    elif op == "dup_line" and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif op == "indent" and lines:
        i = rng.randrange(len(lines))
        lines[i] = "\t " + lines[i]
    p.write_text("".join(lines))
    return f"text:{op}"


def _containers(obj, out, depth=0):
    if isinstance(obj, dict):
        out.append(obj)
        for v in obj.values():
            _containers(v, out, depth + 1)
    elif isinstance(obj, list):
        out.append(obj)
        for v in obj[:20]:
            _containers(v, out, depth + 1)
    return out


def _mutate_json(obj, rng: random.Random) -> str:
    conts = [c for c in _containers(obj, []) if c]
    if not conts:
        return "noop"
    c = rng.choice(conts)
    keys = list(c.keys()) if isinstance(c, dict) else list(range(len(c)))
    k = rng.choice(keys)
    op = rng.choice(["delete", "extra_key", "wrong_type", "huge", "huge", "empty_container"])
    if op == "delete":
        del c[k]
    elif op == "extra_key" and isinstance(c, dict):
        c["__fuzz__"] = rng.choice([1, "x", None, [1, 2], {"a": 1}])
    elif op == "extra_key":
        c.append(rng.choice([c[k], None, "x", -1]))
    elif op == "wrong_type":
        c[k] = rng.choice([None, "x", [], {}, True, 1.5, [[1, 2], [3]], "1"])
    elif op == "huge":
        c[k] = rng.choice([1e308, -1e308, float("nan"), float("inf"), -float("inf"), -1, 2**63, -2**63 - 1, 0, 10**30])
    else:
        c[k] = [] if isinstance(c[k], list) else {} if isinstance(c[k], dict) else ""
    return op


def mutate_image(p: Path, rng: random.Random) -> str:
    import cv2
    import numpy as np

    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        return mutate_bytes(p, rng)
    op = rng.choice(["size", "size", "gray", "bitdepth", "alpha", "tiny", "ext_swap"])
    h, w = img.shape[:2]
    if op == "size":
        img = cv2.resize(img, (max(1, w + rng.choice([-7, -1, 1, 13])), max(1, h + rng.choice([-3, 0, 5]))),
                         interpolation=cv2.INTER_NEAREST)
    elif op == "gray" and img.ndim == 3:
        img = img[..., 0]
    elif op == "bitdepth":
        img = img.astype(np.uint16) * 257 if img.dtype == np.uint8 else (img // 257).astype(np.uint8)
    elif op == "alpha" and img.ndim == 3:
        img = np.concatenate([img, np.full_like(img[..., :1], 255)], -1)
    elif op == "tiny":
        img = img[:1, :1]
    if op == "ext_swap":  # a JPEG in a .png file or the other way round
        ext = ".jpg" if p.suffix.lower() == ".png" else ".png"
        ok, buf = cv2.imencode(ext, img if img.dtype == np.uint8 else (img // 257).astype(np.uint8))
        p.write_bytes(buf.tobytes())
    else:
        ok, buf = cv2.imencode(p.suffix, img if p.suffix.lower() == ".png" else img.astype(np.uint8))
        p.write_bytes(buf.tobytes())
    return f"image:{op}"


def mutate_ply_header(p: Path, rng: random.Random) -> str:
    data = p.read_bytes()
    end = data.find(b"end_header\n")
    if end < 0:
        return mutate_bytes(p, rng)
    head, body = data[: end].decode("latin1"), data[end:]
    op = rng.choice(["count", "count", "byte_order", "type", "drop_prop", "dup_prop", "format"])
    if op == "count":
        m = re.search(r"element (\w+) (\d+)", head)
        n = int(m.group(2))
        new = rng.choice([0, n - 1, n + 1, 2 * n, 2**31 - 1, 2**32 + n, 10**15, -1])
        head = head[: m.start(2)] + str(new) + head[m.end(2):]
    elif op == "byte_order":
        head = head.replace("binary_little_endian", "binary_big_endian") if "little" in head else \
            head.replace("binary_big_endian", "binary_little_endian")
    elif op in ("type", "drop_prop", "dup_prop"):
        props = list(re.finditer(r"property (\w+) (\w+)\n", head))
        if props:
            m = rng.choice(props)
            if op == "type":
                t = rng.choice(["double", "uchar", "int", "short", "list uchar float", "bogus"])
                head = head[: m.start(1)] + t + head[m.end(1):]
            elif op == "drop_prop":
                head = head[: m.start()] + head[m.end():]
            else:
                head = head[: m.start()] + m.group(0) + head[m.start():]
    else:
        head = head.replace("format binary_little_endian 1.0", rng.choice(["format ascii 1.0", "format binary 2.0"]))
    p.write_bytes(head.encode("latin1") + body)
    return f"ply_header:{op}"


def mutate_spz(p: Path, rng: random.Random) -> str:
    """Header fields inside the gzip stream: magic, version, count, SH degree, fractional bits."""
    raw = gzip.decompress(p.read_bytes())
    b = bytearray(raw)
    op = rng.choice(["count", "count", "version", "sh_degree", "frac_bits", "truncate_inner"])
    if op == "count":
        struct.pack_into("<I", b, 8, rng.choice([0, 1, 299, 301, 2**31, 2**32 - 1]))
    elif op == "version":
        struct.pack_into("<I", b, 4, rng.choice([0, 1, 3, 4, 99]))
    elif op == "sh_degree":
        b[12] = rng.choice([4, 5, 255])
    elif op == "frac_bits":
        b[13] = rng.choice([0, 31, 64, 255])
    else:
        b = b[: rng.randrange(16, len(b))]
    p.write_bytes(gzip.compress(bytes(b)))
    return f"spz:{op}"


def mutate_glb(p: Path, rng: random.Random) -> str:
    b = bytearray(p.read_bytes())
    op = rng.choice(["length", "chunk_length", "json", "version"])
    if op == "length":
        struct.pack_into("<I", b, 8, rng.choice([0, 12, len(b) - 1, len(b) + 1, 2**32 - 1]))
    elif op == "chunk_length":
        struct.pack_into("<I", b, 12, rng.choice([0, 3, len(b), 2**31]))
    elif op == "version":
        struct.pack_into("<I", b, 4, rng.choice([1, 3, 0]))
    else:  # mutate the JSON chunk in place (same length: padded with spaces)
        n = struct.unpack_from("<I", b, 12)[0]
        js = bytes(b[20:20 + n]).decode().rstrip()
        obj = json.loads(js)
        _mutate_json(obj, rng)
        new = json.dumps(obj).encode()
        if len(new) <= n:
            b[20:20 + n] = new + b" " * (n - len(new))
        else:
            return mutate_bytes(p, rng)
    p.write_bytes(bytes(b))
    return f"glb:{op}"


def mutate_sog(p: Path, rng: random.Random) -> str:
    """A member of the .sog zip: meta.json (numbers, keys) or one of the WebP images."""
    zin = zipfile.ZipFile(p)
    members = {n: zin.read(n) for n in zin.namelist()}
    zin.close()
    name = rng.choice(sorted(members))
    op = rng.choice(["member", "member", "drop", "swap"])
    if op == "drop":
        del members[name]
    elif op == "swap" and len(members) > 1:
        other = rng.choice([n for n in members if n != name])
        members[name], members[other] = members[other], members[name]
    else:
        tmp = p.parent / ("m_" + Path(name).name)
        tmp.write_bytes(members[name])
        (mutate_text if name.endswith(".json") else mutate_bytes)(tmp, rng)
        members[name] = tmp.read_bytes()
        tmp.unlink()
    with zipfile.ZipFile(p, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    return f"sog:{op}:{Path(name).name}"


def mutate_ckpt(p: Path, rng: random.Random) -> str:
    import torch

    ck = torch.load(p, weights_only=False)
    d = ck.get("splats", ck) if isinstance(ck, dict) else ck
    op = rng.choice(["drop_key", "shape", "dtype", "nan", "extra_key", "wrong_type"])
    keys = list(d.keys()) if isinstance(d, dict) else []
    if not keys:
        return mutate_bytes(p, rng)
    k = rng.choice(keys)
    if op == "drop_key":
        del d[k]
    elif op == "shape":
        d[k] = d[k][: max(0, d[k].shape[0] - rng.randint(1, 5))] if torch.is_tensor(d[k]) else d[k]
    elif op == "dtype" and torch.is_tensor(d[k]):
        d[k] = d[k].to(rng.choice([torch.float64, torch.int32, torch.float16, torch.bool]))
    elif op == "nan" and torch.is_tensor(d[k]) and d[k].is_floating_point():
        d[k] = d[k].clone()
        d[k].view(-1)[0] = rng.choice([float("nan"), float("inf"), 1e30])
    elif op == "extra_key":
        d["__fuzz__"] = torch.zeros(3)
    else:
        d[k] = rng.choice(["x", None, 3, [1, 2]])
    torch.save(ck, p)
    return f"ckpt:{op}:{k}"


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    index: int
    kind: str
    mutation: str = ""
    target: str = ""
    argv: list[str] = field(default_factory=list)
    cmd: str = ""
    outcome: str = ""
    damaged: list[str] = field(default_factory=list)
    stderr: str = ""
    seconds: float = 0.0


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _pick(rng: random.Random, files: list[Path], pattern: str) -> Path:
    c = [f for f in files if re.search(pattern, f.as_posix())]
    return rng.choice(c)


def prepare(case: Case, seeds: Path, work: Path, rng: random.Random) -> tuple[Path, Path]:
    """Copy the seed, mutate it, fill ``case.argv``; returns (input folder, outputs folder)."""
    inp, outs = work / "in", work / "outs"
    outs.mkdir(parents=True)
    k = case.kind
    # each kind: the seed to copy, the file (regex) to mutate and the mutators that fit it
    if k in SCENE_KINDS:
        src = {"messy_rooms": "messy_rooms", "colmap_bin": "colmap_bin", "colmap_text": "colmap_text",
               "nerfstudio": "nerfstudio", "panoptic_lifting": "panoptic_lifting"}.get(k)
        if k == "coco_panoptic":
            src = rng.choice(["colmap_bin", "nerfstudio"])
        elif k == "image":
            src = rng.choice(["messy_rooms", "colmap_bin", "panoptic_lifting", "nerfstudio"])
        shutil.copytree(seeds / src, inp, symlinks=True)
        files = _files(inp)
        pat, muts = {
            "messy_rooms": (r"metadata\.json|\.npy$|pcf_gs_scene\.json|points3d\.ply", [mutate_text, mutate_bytes, mutate_fs]),
            "colmap_bin": (r"sparse/.*\.bin$", [mutate_bytes, mutate_bytes, mutate_fs]),
            "colmap_text": (r"sparse/.*\.txt$", [mutate_text, mutate_text, mutate_bytes, mutate_fs]),
            "nerfstudio": (r"transforms\.json|sparse_pc\.ply", [mutate_text, mutate_text, mutate_bytes, mutate_fs]),
            "panoptic_lifting": (r"(pose|intrinsic)/.*\.txt|splits\.json|segmentation_data\.pkl|m2f_\w+/",
                                 [mutate_text, mutate_bytes, mutate_fs]),
            "coco_panoptic": (r"panoptic(_gt)?(\.json|/.*\.png)$|confidence/", [mutate_text, mutate_image, mutate_bytes, mutate_fs]),
            "image": (r"(color|images)/.*\.(png|jpg)$", [mutate_image, mutate_image, mutate_bytes, mutate_fs]),
        }[k]
        target = _pick(rng, files, pat)
        mut = rng.choice(muts)
        if mut is mutate_text and target.suffix in (".npy", ".png", ".jpg", ".bin", ".pkl", ".ply"):
            mut = mutate_bytes
        if mut is mutate_image and target.suffix not in (".png", ".jpg"):
            mut = mutate_bytes
        if k == "messy_rooms" and target.suffix == ".ply" and rng.random() < 0.5:
            mut = mutate_ply_header
        case.mutation = mut(target, rng)
        case.target = str(target.relative_to(inp))
        case.cmd, case.argv = "info", ["info", str(inp)]
        return inp, outs
    if k in SPLAT_KINDS or k == "render_splats":
        sk = rng.choice(SPLAT_KINDS) if k == "render_splats" else k
        inp.mkdir()
        fname = SPLAT_FILE[sk]
        shutil.copy(seeds / "splats" / fname, inp / fname)
        target = inp / fname
        muts = {"ply": [mutate_ply_header, mutate_ply_header, mutate_bytes], "ply_compressed": [mutate_ply_header, mutate_bytes],
                "spz": [mutate_spz, mutate_spz, mutate_bytes], "glb": [mutate_glb, mutate_glb, mutate_bytes],
                "sog": [mutate_sog, mutate_sog, mutate_bytes], "gsplat_ckpt": [mutate_ckpt, mutate_ckpt, mutate_bytes],
                "splat": [mutate_bytes]}[sk] + [mutate_fs]
        case.mutation = rng.choice(muts)(target, rng)
        case.target = fname
        if k == "render_splats":
            shutil.copytree(seeds / "run", work / "run", ignore=shutil.ignore_patterns(".lock"))
            case.cmd, case.argv = "render", ["render", str(work / "run"), "--splats", str(target), "--out", str(outs / "out")]
            (outs / "out").mkdir()
        elif rng.random() < 0.5:
            ext = rng.choice([".ply", ".spz", ".glb", ".splat"])
            case.cmd, case.argv = "edit", ["edit", str(target), "--out", str(outs / f"out{ext}"), "--remove", "2",
                                           "--translate", "1=0.1,0,0"]
            (outs / f"out{ext}").write_bytes(b"SENTINEL")
        else:
            case.cmd, case.argv = "export", ["export", str(target), "--format", "ply,spz,glb", "--out", str(outs / "out")]
            (outs / "out").mkdir()
        if case.cmd != "edit":
            (outs / "out" / "SENTINEL").write_bytes(b"SENTINEL")
        return inp, outs
    if k == "edit_script":
        inp.mkdir()
        shutil.copy(seeds / "splats" / "scene.ply", inp / "scene.ply")
        shutil.copy(seeds / "splats" / "edits.yaml", inp / "edits.yaml")
        target = inp / "edits.yaml"
        case.mutation = rng.choice([mutate_text, mutate_text, mutate_yaml, mutate_yaml, mutate_bytes, mutate_fs])(target, rng)
        case.target = "edits.yaml"
        case.cmd, case.argv = "edit", ["edit", str(inp / "scene.ply"), "--script", str(target), "--out", str(outs / "out.ply")]
        (outs / "out.ply").write_bytes(b"SENTINEL")
        return inp, outs
    if k == "config_yaml":
        inp.mkdir()
        shutil.copy(seeds / "preset.yaml", inp / "preset.yaml")
        target = inp / "preset.yaml"
        case.mutation = rng.choice([mutate_text, mutate_yaml, mutate_yaml, mutate_bytes, mutate_fs])(target, rng)
        case.target = "preset.yaml"
        case.cmd, case.argv = "info", ["info", str(seeds / "messy_rooms"), "--config", str(target)]
        return inp, outs
    if k in RUN_KINDS:
        return _prepare_run_case(case, seeds, work, inp, outs, rng)
    if k == "set_value":
        inp.mkdir()
        keys = _setting_keys()
        key = rng.choice(keys + ["nosuch.key", "train", "", "train.iterations.x", "data..format"])
        val = rng.choice(HUGE + ["", "abc", "1,2", "[1, 2]", "{a: 1}", "\udcff", "1e3", "0x10", "yes", "~", "'1'",
                                 "a" * 5000, "1=2", "\n", "auto", "cpu", "colmap"])
        case.mutation = f"set:{key}={val[:40]!r}"
        case.target = key
        case.cmd, case.argv = "info", ["info", str(seeds / "messy_rooms"), "--set", f"{key}={val}"]
        return inp, outs
    if k == "viewer_export":
        inp.mkdir()
        case.cmd, case.argv = "viewer-export", [str(outs / "exports"), rng.choice(NASTY_NAMES)]
        case.mutation = f"label:{case.argv[1][:40]!r}"
        return inp, outs
    raise ValueError(k)


def _prepare_run_case(case: Case, seeds: Path, work: Path, inp: Path, outs: Path, rng: random.Random):
    """segment_run: a mutated checkpoint/config -> segment (over an old output); eval_pred: a mutated segment
    output -> eval; eval_gt: mutated ground truth -> eval; train_scene: a mutated scene -> a 2-step train."""
    k, scene = case.kind, seeds / "messy_rooms"
    if k == "segment_run":
        shutil.copytree(seeds / "run", inp / "run", ignore=shutil.ignore_patterns(".lock"))
        if rng.random() < 0.75:
            target = inp / "run" / "checkpoint.pt"
            case.mutation = rng.choice([mutate_run_ckpt, mutate_run_ckpt, mutate_bytes, mutate_fs])(target, rng)
        else:
            target = inp / "run" / "config.yaml"
            case.mutation = rng.choice([mutate_yaml, mutate_text, mutate_fs])(target, rng)
        case.target = str(target.relative_to(inp))
        (outs / "seg").mkdir()
        (outs / "seg" / "SENTINEL").write_bytes(b"SENTINEL")
        case.cmd, case.argv = "segment", ["segment", str(inp / "run"), "--data", str(scene), "--out", str(outs / "seg")]
        return inp, outs
    if k == "train_scene":
        shutil.copytree(scene, inp, symlinks=True)
        target = _pick(rng, _files(inp), r"metadata\.json|\.npy$|\.png$|pcf_gs_scene\.json|points3d\.ply")
        mut = {".json": mutate_text, ".png": mutate_image, ".ply": mutate_ply_header}.get(target.suffix, mutate_bytes)
        case.mutation = rng.choice([mut, mut, mutate_bytes, mutate_fs])(target, rng)
        case.target = str(target.relative_to(inp))
        (outs / "run").mkdir()
        (outs / "run" / "SENTINEL").write_bytes(b"SENTINEL")
        case.cmd, case.argv = "train", ["train", str(inp), "--out", str(outs / "run"), "--config", "cpu_fast", *TINY_TRAIN]
        return inp, outs
    # eval: the run as trained, its segment output (an output: eval adds metrics.json to it) and the scene
    shutil.copytree(seeds / "run", work / "run", ignore=shutil.ignore_patterns(".lock"))
    shutil.copytree(seeds / "segment", outs / "pred")
    if k == "eval_pred":
        inp.mkdir()
        target = _pick(rng, _files(outs / "pred"), r"pred_(semantics|surrogateid)/.*\.png$")
        case.mutation = rng.choice([mutate_image, mutate_image, mutate_bytes, mutate_fs])(target, rng)
        case.target = str(target.relative_to(outs))
        data = scene
    else:
        shutil.copytree(scene, inp, symlinks=True)
        target = _pick(rng, _files(inp), r"^.*/(semantic|instance)/[^/]*$|metadata\.json")
        mut = mutate_text if target.suffix == ".json" else mutate_image if target.suffix == ".png" else mutate_bytes
        case.mutation = rng.choice([mut, mut, mutate_bytes, mutate_fs])(target, rng)
        case.target = str(target.relative_to(inp))
        data = inp
    case.cmd, case.argv = "eval", ["eval", str(work / "run"), "--data", str(data), "--pred", str(outs / "pred"),
                                   "--split", "all"]
    return inp, outs


def mutate_run_ckpt(p: Path, rng: random.Random) -> str:
    """A training checkpoint with one entry of its params, scene record or spec broken (:func:`mutate_ckpt`'s
    operations one level down), or the top level itself."""
    import torch

    ck = torch.load(p, weights_only=False)
    where = rng.choice(["params", "params", "scene", "spec", "."])
    sub = ck if where == "." else ck[where]
    k = rng.choice(list(sub))
    op = rng.choice(["drop_key", "shape", "dtype", "nan", "wrong_type", "extra_key"])
    v = sub[k]
    if op == "drop_key":
        del sub[k]
    elif op == "shape" and torch.is_tensor(v) and v.ndim:
        sub[k] = v[: max(0, v.shape[0] - rng.randint(1, 5))]
    elif op == "dtype" and torch.is_tensor(v):
        sub[k] = v.to(rng.choice([torch.float64, torch.int32, torch.float16, torch.bool]))
    elif op == "nan" and torch.is_tensor(v) and v.is_floating_point() and v.numel():
        sub[k] = v.clone()
        sub[k].view(-1)[rng.randrange(v.numel())] = rng.choice([float("nan"), float("inf"), 1e30])
    elif op == "extra_key":
        sub["__fuzz__"] = torch.zeros(3)
    else:
        sub[k] = rng.choice(["x", None, 3, [1, 2], -1])
    torch.save(ck, p)
    return f"run-ckpt:{where}:{op}:{k}"


NASTY_NAMES = ["../../escape", "../", "..", ".", "/etc/passwd", "a/b/c", "a\\..\\..\\b", "nul\0byte", "x" * 300,
               "CON", "nul", "PRN.txt", "COM1", "aux", "", " ", "-rf", ".hidden", "ä€😀", "a:b*c?d\"e<f>g|h", "..\\..\\x",
               "\n\r\t", "~", "$HOME", "%s%n", "a" * 255 + ".ply"]


def mutate_yaml(p: Path, rng: random.Random) -> str:
    import yaml

    try:
        obj = yaml.safe_load(p.read_text())
    except Exception:  # noqa: BLE001
        return mutate_bytes(p, rng)
    if obj is None:
        return mutate_bytes(p, rng)
    op = _mutate_json(obj, rng)
    p.write_text(yaml.safe_dump(obj))
    return f"yaml:{op}"


_KEYS: list[str] = []


def _setting_keys() -> list[str]:
    if not _KEYS:
        import dataclasses

        from pcf_gs.config import Config

        cfg = Config()
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if dataclasses.is_dataclass(v):
                _KEYS.extend(f"{f.name}.{g.name}" for g in dataclasses.fields(v))
            else:
                _KEYS.append(f.name)
    return _KEYS


# ----------------------------------------------------------------------------- running


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        elif p.is_file():
            out[rel] = hashlib.sha1(p.read_bytes()).hexdigest()
    return out


def viewer_scene_with_label(label: str, n: int = 10):
    """A viewer scene of n Gaussians that are all object 1, of class ``label`` (class 0: "void")."""
    import numpy as np

    from pcf_gs.splats.ply import Splats
    from pcf_gs.viewer.target import ViewScene, objects_table

    s = Splats(np.zeros((n, 3), np.float32), np.full((n, 3), -3, np.float32), np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32),
               np.zeros(n, np.float32), np.zeros((n, 1, 3), np.float32), np.zeros((n, 0, 3), np.float32))
    ids = np.ones(n, np.int32)
    return ViewScene(s, instance_ids=ids, semantic_ids=ids, class_names=["void", label],
                     objects=objects_table(ids, ids, ["void", label]))


def _viewer_export(out_dir: str, label: str) -> int:
    """The viewer's export with an object whose class name is ``label``: the file must land in out_dir."""
    from pcf_gs.viewer.export import export_view
    from pcf_gs.viewer.view_renderer import DisplayState

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = export_view(viewer_scene_with_label(label), DisplayState(), 1, out_dir)
    if Path(out_dir).resolve() not in Path(path).resolve().parents:
        print(f"wrote outside the export folder: {path}", file=sys.stderr)
        return 3
    return 0


def _child(case: Case, stderr_path: Path) -> None:
    """In the forked child: run the command with stdout to /dev/null and stderr to a file; never returns."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(fd, 2)
    rc = 1
    try:
        import resource

        lim = 6 << 30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        if case.cmd == "viewer-export":
            rc = _viewer_export(*case.argv)
        else:
            from pcf_gs.cli import main

            rc = main(["-q", *case.argv])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        rc = 1
    try:
        import threading

        threading._shutdown()  # type: ignore[attr-defined]  # pool threads finish (one may hold fd 2 redirected)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(rc or 0) & 0xFF)


def execute(case: Case, work: Path, timeout: float, use_subprocess: bool) -> tuple[int | None, int | None, str]:
    """(exit code or None, signal or None, stderr) of the case's command."""
    err = work / "stderr.txt"
    if use_subprocess and case.cmd != "viewer-export":
        import subprocess

        env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        try:
            p = subprocess.run([sys.executable, "-m", "pcf_gs", "-q", *case.argv], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return None, None, (e.stderr or b"").decode(errors="replace")
        rc = p.returncode
        return (rc, None, p.stderr.decode(errors="replace")) if rc >= 0 else (None, -rc, p.stderr.decode(errors="replace"))
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(case, err)
    t_end = time.monotonic() + timeout
    status = None
    while time.monotonic() < t_end:
        got, st = os.waitpid(pid, os.WNOHANG)
        if got:
            status = st
            break
        time.sleep(0.005)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return None, None, err.read_text(errors="replace") if err.exists() else ""
    text = err.read_text(errors="replace") if err.exists() else ""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status), text
    return os.WEXITSTATUS(status), None, text


def classify(case: Case, rc, sig, stderr: str) -> str:
    if rc is None and sig is None:
        return "hang"
    if sig is not None:
        return "crash"
    if rc == 0:
        return "ok"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc == 2:
        if len(lines) == 1 and lines[0].startswith(f"pcf-gs {case.cmd}: error:"):
            return "error"
        return "bad-error"
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    return "crash"


def run_case(case: Case, seeds: Path, base: Path, rng: random.Random, timeout: float, use_subprocess: bool) -> Case:
    work = base / f"c{case.index:05d}"
    try:
        inp, outs = prepare(case, seeds, work, rng)
    except Exception as e:  # noqa: BLE001 - a mutator that does not apply: record, skip
        case.outcome, case.stderr = "skipped", f"mutator failed: {type(e).__name__}: {e}"
        shutil.rmtree(work, ignore_errors=True)
        return case
    seeds_before = _hashes(seeds) if case.kind in ("config_yaml", "set_value", "segment_run", "eval_pred") else None
    before_in, before_out = _hashes(inp), _hashes(outs)
    t0 = time.monotonic()
    rc, sig, err = execute(case, work, timeout, use_subprocess)
    case.seconds = round(time.monotonic() - t0, 3)
    case.outcome = classify(case, rc, sig, err)
    case.stderr = err[-2000:]
    if _hashes(inp) != before_in:
        case.damaged.append("input changed")
    if seeds_before is not None and _hashes(seeds) != seeds_before:
        case.damaged.append("seed scene changed")
    if case.outcome != "ok":
        after = _hashes(outs)
        if case.cmd == "viewer-export":
            pass
        elif after != before_out:
            extra = sorted(set(after) - set(before_out))
            changed = sorted(k for k in before_out if after.get(k) != before_out[k])
            case.damaged.append(f"outputs: changed {changed[:3]} left {extra[:3]}")
    if case.cmd == "viewer-export":
        case.damaged.extend(_escaped(work, outs / "exports"))
    shutil.rmtree(work, ignore_errors=True)
    return case


def _escaped(work: Path, exports: Path) -> list[str]:
    """Files the viewer export wrote anywhere under the case folder but inside ``exports``."""
    bad = []
    for p in work.rglob("*"):
        if p.is_file() and p.name != "stderr.txt" and exports not in p.parents:
            bad.append(f"written outside the export folder: {p.relative_to(work)}")
    return bad


def fuzz(n: int, seed: int, kinds: tuple[str, ...], seeds: Path, timeout: float = 60.0, use_subprocess: bool = False,
         log=None, minutes: float | None = None, jsonl: Path | None = None) -> list[Case]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: F401 - imported before forking, once

    import pcf_gs.cli  # noqa: F401
    import pcf_gs.data.detect  # noqa: F401
    import pcf_gs.splats.formats  # noqa: F401

    # the seeds are built in a child: writing them starts numba's/OpenMP's thread pools, after which
    # this process could not fork safely
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            build_seeds(seeds, with_run=any(k in NEEDS_RUN for k in kinds))
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            os._exit(code)
    if os.waitpid(pid, 0)[1] != 0:
        raise SystemExit("building the seeds failed")
    from pcf_gs.cli import build_parser

    build_parser()  # imports every command module before forking
    rng = random.Random(seed)
    cases = []
    t_end = time.monotonic() + minutes * 60 if minutes else None
    sink = open(jsonl, "a") if jsonl else None
    with tempfile.TemporaryDirectory(prefix="pcf-fuzz-") as tmp:
        for i in range(n):
            if t_end and time.monotonic() > t_end:
                break
            case = run_case(Case(i, kinds[i % len(kinds)]), seeds, Path(tmp), random.Random(rng.getrandbits(64)),
                            timeout, use_subprocess)
            cases.append(case)
            if sink:
                sink.write(json.dumps(case.__dict__) + "\n")
                sink.flush()
            if log and (case.outcome in BAD or case.damaged):
                log(f"[{i}] {case.kind} {case.mutation} {case.target}: {case.outcome} {case.damaged} "
                    f"{case.stderr.strip().splitlines()[-1:] if case.stderr.strip() else ''}")
    return cases


def table(cases: list[Case]) -> str:
    cols = OUTCOMES + ("damaged", "skipped")
    counts = collections.defaultdict(collections.Counter)
    for c in cases:
        counts[c.kind][c.outcome] += 1
        if c.damaged:
            counts[c.kind]["damaged"] += 1
    kinds = [k for k in KINDS if k in counts]
    w = max(len(k) for k in kinds + ["total"])
    lines = ["| " + "kind".ljust(w) + " | " + " | ".join(cols) + " |", "| " + "-" * w + " |" + "|".join("-" * (len(c) + 2) for c in cols) + "|"]
    total = collections.Counter()
    for k in kinds + ["total"]:
        row = counts[k] if k != "total" else total
        if k != "total":
            total.update(row)
        lines.append("| " + k.ljust(w) + " | " + " | ".join(str(row[c]).rjust(len(c)) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default="all", help=f"comma list of {', '.join(KINDS)}; 'all' or 'fast' (default: all)")
    ap.add_argument("--seeds", type=Path, help="folder for the valid seeds (kept and reused; default: temporary)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a case is a hang (default 60)")
    ap.add_argument("--subprocess", action="store_true", help="python -m pcf_gs per case instead of a fork")
    ap.add_argument("--minutes", type=float, help="stop starting cases after this long (the table covers those run)")
    ap.add_argument("--json", type=Path, help="write every case here (and, as they finish, to JSON.jsonl)")
    a = ap.parse_args(argv)
    kinds = KINDS if a.kinds == "all" else FAST_KINDS if a.kinds == "fast" else tuple(a.kinds.split(","))
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)}")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pcf-fuzz-seeds-") as tmp:
        seeds = a.seeds or Path(tmp)
        cases = fuzz(a.cases, a.seed, kinds, seeds, a.timeout, a.subprocess, log=lambda s: print(s, flush=True),
                     minutes=a.minutes, jsonl=a.json.with_suffix(".jsonl") if a.json else None)
    dt = time.monotonic() - t0
    run_time = sum(c.seconds for c in cases)
    print(table(cases))
    print(f"{len(cases)} cases in {dt:.0f} s ({len(cases) / max(run_time, 1e-9):.2f} cases/s of command time, "
          f"seeds and setup included: {len(cases) / dt:.2f} cases/s)")
    if a.json:
        a.json.write_text(json.dumps({"cases": [c.__dict__ for c in cases], "seconds": round(dt, 1), "seed": a.seed},
                                     indent=1))
    return 1 if any(c.outcome in BAD or c.damaged for c in cases) else 0


if __name__ == "__main__":
    raise SystemExit(main())
