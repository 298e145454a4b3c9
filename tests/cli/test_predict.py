"""``pcf-gs predict``: a tiny random Mask2Former (built here, never downloaded) over a tiny capture,
written as COCO panoptic and read back by the loaders; thing/stuff resolution; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pcf_gs.cli import main
from pcf_gs.data.predictions import find_predictions, read_panoptic_png
from pcf_gs.errors import UserError
from pcf_gs.predict import (
    ADE20K_150, ADE20K_150_STUFF, CITYSCAPES, COCO_PANOPTIC_STUFF, COCO_PANOPTIC_THINGS, EXTRA_HINT, find_images,
    match_label_set, resolve_things,
)

NAMES = ["person", "car", "wall", "sky"]  # label ids 0..3 -> categories 1..4
SIZES = {"0000": (64, 48), "0001": (80, 60), "cam0/0002": (30, 40)}  # key -> (width, height)


def _blocks(w: int, h: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    im = np.zeros((h, w, 3), np.uint8)
    im[:, : w // 2] = g.integers(0, 255, 3)
    im[:, w // 2:] = g.integers(0, 255, 3)
    im[h // 2:, w // 4: 3 * w // 4] = g.integers(0, 255, 3)
    return im


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised Mask2Former (tiny Swin backbone, 8 queries, 4 classes) + its processor."""
    pytest.importorskip("transformers")
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor, SwinConfig

    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,  # GroupNorm(32) needs 32
        encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=32,
        num_queries=8, id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    folder = tmp_path_factory.mktemp("tiny_mask2former")
    model.save_pretrained(folder)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}, num_labels=len(NAMES)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_oneformer(tmp_path_factory) -> Path:
    """A randomly initialised OneFormer with a tiny CLIP tokenizer (its task input) and a class-info file
    that marks person and car as things (the processor's ``metadata["thing_ids"]``)."""
    pytest.importorskip("transformers")
    import torch
    from transformers import (
        CLIPTokenizer, OneFormerConfig, OneFormerForUniversalSegmentation, OneFormerImageProcessor, OneFormerProcessor,
        SwinConfig,
    )

    folder = tmp_path_factory.mktemp("tiny_oneformer")
    (folder / "class_info.json").write_text(json.dumps({str(i): {"name": n, "isthing": int(n in ("person", "car"))}
                                                        for i, n in enumerate(NAMES)}))
    (folder / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "a</w>": 3}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = OneFormerConfig(
        backbone_config=backbone, num_queries=8, text_encoder_width=32, text_encoder_num_layers=1,
        text_encoder_vocab_size=8, text_encoder_context_length=8, task_seq_len=8, conv_dim=32, mask_dim=32,
        hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        dim_feedforward=32, query_dec_layers=1, id2label=dict(enumerate(NAMES)), label2id={n: i for i, n in enumerate(NAMES)})
    torch.manual_seed(0)
    OneFormerForUniversalSegmentation(config).eval().save_pretrained(folder)
    image_processor = OneFormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}, num_labels=len(NAMES),
                                              repo_path=str(folder), class_info_file="class_info.json")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    OneFormerProcessor(image_processor=image_processor, tokenizer=tokenizer, max_seq_length=8,
                       task_seq_length=8).save_pretrained(folder)
    return folder


@pytest.fixture
def scene(tmp_path) -> Path:
    root = tmp_path / "scene"
    for i, (key, (w, h)) in enumerate(SIZES.items()):
        path = root / "images" / f"{key}{'.jpg' if key == '0001' else '.png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), _blocks(w, h, i))
    (root / "images" / ".hidden.png").write_bytes(b"not an image")  # hidden files are skipped
    return root


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _predict(*args: str) -> int:
    return main(["-q", "predict", *map(str, args)])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("pcf-gs predict: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------------- runs


def test_predict_writes_the_layout_the_loaders_read(tiny_model, scene, capsys, offline):
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--batch-size", "2", "--threshold", "0") == 0
    summary = capsys.readouterr().out
    assert "predicted 3 images" in summary and "fallback" in summary  # no thing/stuff info: all things

    meta = json.loads((scene / "panoptic.json").read_text())
    assert [(c["id"], c["name"], c["isthing"]) for c in meta["categories"]] == [(i + 1, n, 1) for i, n in enumerate(NAMES)]
    assert sorted(a["file_name"] for a in meta["annotations"]) == sorted(f"{k}.png" for k in SIZES)
    assert all("score" in s for a in meta["annotations"] for s in a["segments_info"])

    preds = find_predictions(scene)
    assert preds.kind == "coco_panoptic"
    assert [c.name for c in preds.classes.classes] == ["unlabeled", *NAMES]
    assert [c.thing for c in preds.classes.classes] == [False, True, True, True, True]
    for key, (w, h) in SIZES.items():
        assert preds.has(key)
        assert read_panoptic_png(scene / "panoptic" / f"{key}.png").shape == (h, w)  # the image's own size
        sem, ins, conf = preds.read(key, w, h)
        assert sem.shape == ins.shape == conf.shape == (h, w)
        assert sem.min() >= 0 and sem.max() <= len(NAMES) and np.all((conf > 0) == (sem > 0))
    assert not [p for p in scene.iterdir() if p.name.startswith(".")]  # no temporary folders left


def _synthetic_outputs(monkeypatch, model_cls) -> list[tuple[int, int]]:
    """``model_cls``'s forward with its outputs replaced by known ones, derived from the pixel mask: in
    each image's own region, queries 0/1 = top/bottom of the left half ("person", two instances), 2/3 =
    top/bottom of the right half ("wall", fused into one segment); query 4 = the batch padding ("car");
    the rest "no object". Processor, post-processing and writing stay real. Returns the (height, width)
    of every batch the model sees."""
    import torch

    real = model_cls.forward
    input_sizes: list[tuple[int, int]] = []

    def forward(self, **kw):
        pixel_mask = kw["pixel_mask"]
        input_sizes.append(tuple(kw["pixel_values"].shape[-2:]))
        out = real(self, **kw)
        b, q, hm, wm = out.masks_queries_logits.shape
        pm = torch.nn.functional.interpolate(pixel_mask[:, None].float(), size=(hm, wm), mode="nearest")[:, 0] > 0
        yy, xx = torch.meshgrid(torch.arange(hm), torch.arange(wm), indexing="ij")
        masks = torch.full((b, q, hm, wm), -20.0)
        for i in range(b):
            vh, vw = int(pm[i].any(1).sum()), int(pm[i].any(0).sum())
            top, left = yy < vh / 2, xx < vw / 2
            for k, region in enumerate([top & left, ~top & left, top & ~left, ~top & ~left]):
                masks[i, k][region & pm[i]] = 20.0
            masks[i, 4][~pm[i]] = 20.0
        cls = torch.zeros((b, q, len(NAMES) + 1))
        for k, label in enumerate([0, 0, 2, 2, 1]):
            cls[:, k, label] = 12.0
        cls[:, 5:, len(NAMES)] = 12.0
        out.masks_queries_logits, out.class_queries_logits = masks, cls
        return out

    monkeypatch.setattr(model_cls, "forward", forward)
    return input_sizes


@pytest.fixture
def synthetic_outputs(tiny_model, monkeypatch):
    from transformers import Mask2FormerForUniversalSegmentation

    return _synthetic_outputs(monkeypatch, Mask2FormerForUniversalSegmentation)


def _check_quadrants(scene: Path, meta: dict) -> None:
    """What the synthetic outputs give: two persons left, one fused wall right, no padding class."""
    preds = find_predictions(scene)
    for key, (w, h) in SIZES.items():
        ann = next(a for a in meta["annotations"] if a["file_name"] == f"{key}.png")
        assert sorted(s["category_id"] for s in ann["segments_info"]) == [1, 1, 3]  # 2 persons, 1 fused wall
        assert all(s["score"] > 0.99 for s in ann["segments_info"])
        sem, ins, conf = preds.read(key, w, h)
        assert not np.any(sem == 2), key  # "car" (the padding) nowhere
        m = 2  # away from the boundaries, which bilinear mask resizing may move by a pixel
        assert np.all(sem[:, : w // 2 - m] == 1) and np.all(sem[:, w // 2 + m:] == 3), key
        assert set(np.unique(ins[: h // 2 - m, : w // 2 - m])) == {1} and set(np.unique(ins[h // 2 + m:, : w // 2 - m])) == {2}
        assert np.all(ins[:, w // 2 + m:] == 0) and np.all(conf[:, w // 2 + m:] > 0.99)


def test_segments_follow_the_model_with_mixed_sizes_in_a_batch(tiny_model, scene, synthetic_outputs, capsys, offline):
    # one batch of three sizes: the padding must not be stretched into the smaller images
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--batch-size", "3",
                    "--stuff-classes", "wall,sky") == 0
    assert "2 of 4 classes are things (--stuff-classes)" in capsys.readouterr().out
    assert len(synthetic_outputs) == 1 and max(synthetic_outputs[0]) > 64  # the processor's own size (<= 96)
    meta = json.loads((scene / "panoptic.json").read_text())
    assert [c["isthing"] for c in meta["categories"]] == [1, 1, 0, 0]
    _check_quadrants(scene, meta)


def test_oneformer_gets_its_task_input_and_thing_ids(tiny_oneformer, scene, monkeypatch, capsys, offline):
    from transformers import OneFormerForUniversalSegmentation

    _synthetic_outputs(monkeypatch, OneFormerForUniversalSegmentation)
    assert _predict(scene, "--model", tiny_oneformer, "--device", "cpu", "--batch-size", "3") == 0
    assert "(oneformer, cpu)" in capsys.readouterr().out
    meta = json.loads((scene / "panoptic.json").read_text())
    assert [c["isthing"] for c in meta["categories"]] == [1, 1, 0, 0]  # from the class-info file
    _check_quadrants(scene, meta)


def test_max_size_and_out_write_masks_at_each_images_size(tiny_model, scene, synthetic_outputs, tmp_path, offline):
    out = tmp_path / "preds"
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--max-size", "64", "--out", out,
                    "--thing-classes", "person,1") == 0
    assert len(synthetic_outputs) == 3 and max(max(s) for s in synthetic_outputs) <= 64  # batch size 1 on cpu
    assert not (scene / "panoptic").exists() and not (scene / "panoptic.json").exists()
    assert [c["isthing"] for c in json.loads((out / "panoptic.json").read_text())["categories"]] == [1, 1, 0, 0]
    for key, (w, h) in SIZES.items():
        seg = read_panoptic_png(out / "panoptic" / f"{key}.png")
        assert seg.shape == (h, w)
        assert len(np.unique(seg[seg > 0])) == 3


def test_no_segment_above_the_threshold_writes_empty_views(tiny_model, scene, synthetic_outputs, tmp_path, offline):
    out = tmp_path / "preds"
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--out", out, "--threshold", "1") == 0
    preds = find_predictions(out)
    for key, (w, h) in SIZES.items():
        sem, ins, conf = preds.read(key, w, h)
        assert not sem.any() and not ins.any() and not conf.any()


# ------------------------------------------------------------------------------------------- errors


def test_missing_extra_is_a_one_line_error(scene, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    assert _predict(scene, "--model", "facebook/mask2former-swin-large-coco-panoptic") == 2
    assert _one_line_error(capsys).endswith(EXTRA_HINT)
    assert not (scene / "panoptic").exists() and not [p for p in scene.iterdir() if p.name.startswith(".")]


def test_model_not_found_is_a_one_line_error(scene, tmp_path, capsys, offline):
    pytest.importorskip("transformers")
    name = "pcf-gs-test-nobody/no-such-model"
    assert _predict(scene, "--model", name, "--device", "cpu") == 2
    err = _one_line_error(capsys)
    assert name in err and f"hf download {name}" in err and "local folder" in err
    empty = tmp_path / "empty_model"
    empty.mkdir()
    assert _predict(scene, "--model", empty, "--device", "cpu") == 2
    assert "not a Hugging Face model folder" in _one_line_error(capsys)
    assert not (scene / "panoptic").exists()


def test_existing_output_is_kept_without_overwrite_and_on_failure(tiny_model, scene, capsys, offline):
    (scene / "panoptic").mkdir()
    (scene / "panoptic" / "mine.png").write_bytes(b"keep me")
    (scene / "panoptic.json").write_text('{"mine": 1}')

    def untouched() -> bool:
        return ((scene / "panoptic" / "mine.png").read_bytes() == b"keep me"
                and (scene / "panoptic.json").read_text() == '{"mine": 1}'
                and not [p for p in scene.iterdir() if p.name.startswith(".")])

    assert _predict(scene, "--model", tiny_model, "--device", "cpu") == 2
    assert "--overwrite" in _one_line_error(capsys) and untouched()

    bad = scene / "images" / "0003.png"  # fails after the first images were written to the staging folder
    bad.write_bytes(b"corrupt")
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--overwrite") == 2
    assert "0003.png" in _one_line_error(capsys) and untouched()

    bad.unlink()
    assert _predict(scene, "--model", tiny_model, "--device", "cpu", "--overwrite") == 0
    assert not (scene / "panoptic" / "mine.png").exists() and find_predictions(scene).has("cam0/0002")
    assert not [p for p in scene.iterdir() if p.name.startswith(".")]


def test_bad_arguments_are_one_line_errors(scene, tmp_path, capsys):
    assert _predict(tmp_path / "nowhere", "--model", "x") == 2
    assert "scene folder not found" in _one_line_error(capsys)
    assert _predict(scene, "--model", "x", "--batch-size", "0") == 2
    assert "--batch-size" in _one_line_error(capsys)
    (tmp_path / "noimages").mkdir()
    assert _predict(tmp_path / "noimages", "--model", "x") == 2
    assert "images" in _one_line_error(capsys)


def test_help_does_not_import_transformers(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "--help"])
    assert e.value.code == 0 and "usage: pcf-gs predict" in capsys.readouterr().out
    code = "import sys; from pcf_gs.cli import build_parser; build_parser(); print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# ------------------------------------------------------------------------------- thing / stuff, images


def test_known_label_sets_give_thing_and_stuff():
    assert len(COCO_PANOPTIC_THINGS) == 80 and len(COCO_PANOPTIC_STUFF) == 53
    assert len(ADE20K_150) == 150 and len(ADE20K_150_STUFF) == 50 and len(CITYSCAPES) == 19
    coco = list(COCO_PANOPTIC_THINGS + COCO_PANOPTIC_STUFF)
    flags, source = resolve_things(coco)
    assert flags == [True] * 80 + [False] * 53 and "COCO panoptic" in source
    # Hugging Face's ADE20K names (its ade20k-id2label.json) are one synonym each, 10 of them not detectron2's
    ade = [n.split(",")[0] for n in ADE20K_150]
    hf_names = {8: "windowpane", 13: "earth", 37: "bathtub", 38: "railing", 87: "streetlight", 89: "television receiver",
                90: "airplane", 92: "apparel", 109: "swimming pool", 113: "waterfall", 138: "ashcan"}
    for i, n in hf_names.items():
        ade[i] = n
    flags, source = resolve_things(ade)
    assert "ADE20K" in source and not flags[0] and flags[7] and sum(flags) == 100  # wall stuff, bed thing
    flags, source = resolve_things(list(CITYSCAPES))
    assert flags == [False] * 11 + [True] * 8 and "Cityscapes" in source
    assert match_label_set(coco[::-1]) is None  # same names, other order: not trusted
    assert resolve_things(NAMES) == ([True] * 4, "fallback")


def test_explicit_and_checkpoint_thing_lists():
    assert resolve_things(NAMES, stuff_classes="Wall, 3") == ([True, True, False, False], "--stuff-classes")
    assert resolve_things(NAMES, thing_classes="person") == ([True, False, False, False], "--thing-classes")
    assert resolve_things(list(ADE20K_150), thing_classes="route,1")[0][:8] == [False, True] + [False] * 4 + [True, False]
    assert resolve_things(NAMES, thing_ids=[1]) == ([False, True, False, False], "the checkpoint's thing_ids")
    with pytest.raises(UserError, match="no class 'tree'"):
        resolve_things(NAMES, stuff_classes="tree")
    with pytest.raises(UserError, match="out of range"):
        resolve_things(NAMES, thing_classes="7")


def test_find_images_keys(scene):
    keys = [k for k, _ in find_images(scene / "images")]
    assert keys == sorted(SIZES)
    cv2.imwrite(str(scene / "images" / "0000.jpg"), _blocks(8, 8, 0))
    with pytest.raises(UserError, match="share the key '0000'"):
        find_images(scene / "images")
