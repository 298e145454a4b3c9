"""tools/bench_quality.py end to end on a tiny grid (slow: three trainings)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_tool


def test_spread_and_seed_order():
    bq = load_tool("bench_quality")
    assert bq.spread([1, 2, 3]) == (2.0, 1.0, 3) and bq.spread([5]) == (5.0, None, 1)
    assert bq.fmt((80.0, 1.25, 3)) == "80.0 ± 1.2" and bq.fmt((80.0, None, 1)) == "80.0 (n=1)"
    rows = [{"objects": 25, "window": 9, "noise": "paper", "seed": s, "uncertainty": {},
             "methods": {m: {"pq": 80.0 + s, "pq_things": 70.0} for m in bq.METHODS}} for s in (1, 2, 3)]
    cell = bq.aggregate(rows)["25/9 paper"]
    assert cell["methods"]["f"]["pq"] == (82.0, 1.0, 3) and cell["seeds"] == [1, 2, 3]


def test_schedule_is_scaled_with_the_iterations():
    bq = load_tool("bench_quality")
    sets = dict(s.split("=") for s in bq.schedule_overrides("cpu_fast", 1500))
    assert sets["train.iterations"] == "1500"
    assert sets["train.cross_view_start"] == "1000" and sets["train.warmup_iterations"] == "250"
    assert bq.schedule_overrides("cpu_fast", None) == []


def test_hdbscan_samples_grow_with_the_object_count():
    bq = load_tool("bench_quality")
    assert bq.segment_sets("hdbscan", 25) == bq.segment_sets("hdbscan", 100) == ["segment.hdbscan_samples=20000"]
    assert bq.segment_sets("hdbscan", 500)[-1] == "segment.hdbscan_samples=100000"  # the last override wins
    assert bq.segment_sets("mvoa", 500) == [] and bq.segment_sets("mvoa_plain", 500) == bq.SEGMENT_SETS["mvoa_plain"]


def test_a_cached_run_trained_with_other_defaults_is_named(tmp_path):
    """The cache key is the --out folder: a run trained before a default changed is reused, so the bench names the
    settings that differ (not the ones without effect, such as the log interval)."""
    from pcf_gs.config import config_to_yaml, load_config

    bq = load_tool("bench_quality")
    sets = bq.TRAININGS["det"] + ["model.embed_dim=8"]
    run = tmp_path / "run"
    assert bq.stale_settings(run, "cpu_fast", sets) == []  # nothing trained yet
    run.mkdir()
    then = load_config("cpu_fast", sets + ["train.balanced_sampling=0.5", "train.log_every=7"])
    (run / "config.yaml").write_text(config_to_yaml(then))
    assert bq.stale_settings(run, "cpu_fast", sets) == []  # no checkpoint: the bench retrains it, nothing is reused
    (run / "checkpoint.pt").write_bytes(b"")
    now = load_config("cpu_fast", sets).train.balanced_sampling
    assert bq.stale_settings(run, "cpu_fast", sets) == [f"train.balanced_sampling: 0.5 -> {now}"]
    assert bq.stale_settings(run, "cpu_fast", sets + ["train.balanced_sampling=0.5"]) == []


@pytest.mark.slow
def test_tiny_grid_runs_caches_and_reports(tmp_path):
    bq = load_tool("bench_quality")
    args = ["--out", str(tmp_path / "bq"), "--objects", "5", "--windows", "9", "--frames", "10", "--size", "40",
            "--seeds", "1", "--stress-windows",
            "--iterations", "80", "--json", str(tmp_path / "q.json"), "--md", str(tmp_path / "q.md"),
            "--figure", str(tmp_path / "u.png")]
    assert bq.main(args) == 0
    doc = json.loads((tmp_path / "q.json").read_text())
    assert set(doc["average"]) == set("abcdefg") and doc["version"] == 2
    assert list(doc["cells"]) == ["5/9 paper"] and doc["cells"]["5/9 paper"]["seeds"] == [1]
    cell = doc["scenes"][0]
    assert cell["methods"]["a"]["psnr"] is None and cell["methods"]["f"]["psnr"] > 0
    for m in "bcdefg":
        assert 0 <= cell["methods"][m]["pq"] <= 100 and 0 <= cell["methods"][m]["pq_things"] <= 100
    assert set(cell["uncertainty"]) == {"prob", "full"}  # a deterministic model's variance is constant
    assert (tmp_path / "u.png").stat().st_size > 0 and "| (g)" in (tmp_path / "q.md").read_text()
    # a second run trains nothing: every cell is cached
    results = sorted((tmp_path / "bq" / "runs").glob("*/*/result.json"))
    stamps = [p.stat().st_mtime_ns for p in results]
    assert bq.main(args + ["--report-only"]) == 0
    assert [p.stat().st_mtime_ns for p in results] == stamps
