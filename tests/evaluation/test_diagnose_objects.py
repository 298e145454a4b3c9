"""tools/diagnose_objects.py on hand-made label maps: IoU, background share, merges, 2D foreground share."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tests.conftest import load_tool


def test_object_rows(tmp_path):
    gt = np.zeros((10, 10), np.int64)
    gt[0:4, 0:4] = 1   # 16 px: predicted exactly
    gt[5:10, 0:4] = 2  # 20 px: predicted together with object 3 (a merge)
    gt[5:10, 5:7] = 3  # 10 px
    gt[0:2, 8:10] = 4  # 4 px: predicted background
    sem_gt = (gt > 0).astype(np.int64)
    pred = np.zeros_like(gt)
    pred[0:4, 0:4] = 7
    pred[5:10, 0:7] = 9
    psem = (pred > 0).astype(np.uint16)
    (tmp_path / "pred_semantics").mkdir()
    (tmp_path / "pred_surrogateid").mkdir()
    cv2.imwrite(str(tmp_path / "pred_semantics" / "t.png"), psem)
    cv2.imwrite(str(tmp_path / "pred_surrogateid" / "t.png"), pred.astype(np.uint16))
    test = SimpleNamespace(name="t", gt_instances=gt, gt_semantics=sem_gt, semantics=sem_gt)
    sem_2d = sem_gt.copy()
    sem_2d[0:2, 0:4] = 0  # the 2D model calls half of object 1 background in the training view
    train = SimpleNamespace(name="r", gt_instances=gt, gt_semantics=sem_gt, semantics=sem_2d)
    scene = SimpleNamespace(classes=SimpleNamespace(is_thing_array=lambda: np.array([False, True])),
                            split=lambda s: [test] if s == "test" else [train])
    tool = load_tool("diagnose_objects")
    table = tool.object_table(scene, tmp_path)
    assert [r["object"] for r in table] == [2, 1, 3, 4]  # largest first
    rows = {r["object"]: r for r in table}
    assert rows[1]["iou"] == 1.0 and rows[1]["matched"] and rows[1]["pred_on_others"] == 0.0
    assert rows[1]["fg_2d_train"] == pytest.approx(0.5)
    # prediction 9 covers objects 2 and 3 and 5 background pixels (5x7 = 35 px)
    assert rows[2]["pred"] == 9 and rows[2]["iou"] == pytest.approx(20 / 35) and rows[2]["matched"]
    assert rows[2]["pred_on_others"] == pytest.approx(15 / 35)
    assert rows[3]["iou"] == pytest.approx(10 / 35) and not rows[3]["matched"]
    assert rows[4]["pred"] is None and rows[4]["background"] == 1.0 and rows[4]["fg_2d_train"] == 1.0
    bands = tool.size_bands(list(rows.values()), edges=(5, 15))
    assert [(b["objects"], b["matched"], b["mostly_background"]) for b in bands] == [(1, 0, 1), (1, 0, 0), (2, 2, 0)]
