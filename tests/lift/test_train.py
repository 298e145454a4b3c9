"""Training end to end on a tiny scene: run files, resume bit for bit, Ctrl-C, divergence, strategy."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from pcf_gs.lift.checkpoint import load_checkpoint
from pcf_gs.cli import main

FAST = [
    "--set", "model.init_points=300",
    "--set", "model.sh_degree=1",
    "--set", "train.iterations=24",
    "--set", "train.warmup_iterations=8",
    "--set", "train.cross_view_start=16",
    "--set", "train.densify_from=5",
    "--set", "train.densify_every=5",
    "--set", "train.densify_until=20",
    "--set", "train.pixels_per_view=64",
    "--set", "train.log_every=4",
    "--set", "train.checkpoint_every=8",
    "--set", "train.sh_increase_every=10",
    "--set", "segment.min_pixels=2",
    "--set", "train.cross_view_min_samples=2",
]


def train(root, out, *extra):
    return main(["-q", "train", str(root), "--out", str(out), *FAST, *map(str, extra)])


def test_train_writes_run_and_render(tiny_mr, tmp_path):
    root, _ = tiny_mr
    run = tmp_path / "run"
    assert train(root, run) == 0
    assert (run / "config.yaml").is_file() and (run / "checkpoint.pt").is_file()
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [4, 8, 12, 16, 20, 24]
    last = recs[-1]
    for key in ("appearance", "semantic", "contrastive", "concentration", "var_reg", "num_gaussians", "psnr_heldout"):
        assert key in last, key
    assert "cross_view" in last  # the last stage is on
    ck = load_checkpoint(run)
    assert ck["step"] == 24
    n = len(ck["params"]["means"])
    assert all(len(v) == n for v in ck["params"].values())  # every attribute followed densification
    out = tmp_path / "render"
    assert main(["-q", "render", str(run), "--out", str(out), "--split", "all"]) == 0
    assert len(list((out / "rgb").glob("*.png"))) == 5
    assert json.loads((out / "metrics.json").read_text())["psnr"] is not None


def test_existing_run_needs_resume(tiny_mr, tmp_path, capsys):
    root, _ = tiny_mr
    run = tmp_path / "run"
    assert train(root, run) == 0
    before = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert train(root, run) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == before


def _interrupt_at(monkeypatch, at_step):
    from pcf_gs.lift import trainer as train_mod

    orig = train_mod.Trainer.train_step

    def step(self, s):
        if s == at_step:
            os.kill(os.getpid(), signal.SIGINT)
        return orig(self, s)

    monkeypatch.setattr(train_mod.Trainer, "train_step", step)


def test_resume_is_bit_for_bit(tiny_mr, tmp_path, monkeypatch):
    root, _ = tiny_mr
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(root, a) == 0
    with monkeypatch.context() as m:
        _interrupt_at(m, 11)  # Ctrl-C during step 11: it finishes, saves at 12, exits
        assert train(root, b) == 130
    assert load_checkpoint(b)["step"] == 12
    assert main(["-q", "train", str(root), "--out", str(b), "--resume"]) == 0
    pa, pb = load_checkpoint(a)["params"], load_checkpoint(b)["params"]
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    ma = (a / "metrics.jsonl").read_text().splitlines()
    mb = (b / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "elapsed_s"}  # noqa: E731
    assert [strip(x) for x in ma] == [strip(x) for x in mb]


def test_ctrl_c_saves_and_exits_cleanly(tiny_mr, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 5)
    root, _ = tiny_mr
    run = tmp_path / "run"
    assert train(root, run) == 130
    assert load_checkpoint(run)["step"] == 6  # the interrupted step finished, then it saved


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tiny_mr, tmp_path, monkeypatch, capsys):
    from pcf_gs.lift import losses

    orig = losses.appearance_loss
    calls = {"n": 0}

    def bad(pred, target, lam=0.2):
        calls["n"] += 1
        v = orig(pred, target, lam)
        return v * float("nan") if calls["n"] > 10 else v

    monkeypatch.setattr(losses, "appearance_loss", bad)
    root, _ = tiny_mr
    run = tmp_path / "run"
    rc = train(root, run, "--set", "train.max_nonfinite_steps=3")
    assert rc == 1
    assert "diverged" in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 8  # the periodic checkpoint before the NaNs
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x.get("nonfinite")) == 3


def test_deterministic_embedding_trains(tiny_mr, tmp_path):
    root, _ = tiny_mr
    run = tmp_path / "run"
    assert train(root, run, "--set", "model.embedding=deterministic") == 0
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "var_reg" not in rec and rec["contrastive"] == rec["contrastive"]


def test_opacity_reset_fires():
    from pcf_gs.lift.densify import PcfStrategy

    n = 10
    params = torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(torch.zeros(n, 3)),
            "scales": torch.nn.Parameter(torch.zeros(n, 3)),
            "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
            "opacities": torch.nn.Parameter(torch.full((n,), 3.0)),
        }
    )
    opts = {k: torch.optim.Adam([p]) for k, p in params.items()}
    s = PcfStrategy(refine_start_iter=10**6, refine_stop_iter=100, reset_every=10)
    state = s.initialize_state()
    info = {"means2d": torch.zeros(1, n, 2, requires_grad=True), "radii": torch.zeros(1, n, 2, dtype=torch.int32),
            "width": 8, "height": 8, "n_cameras": 1, "gaussian_ids": None}
    info["means2d"].grad = torch.zeros(1, n, 2)
    s.step_post_backward(params, opts, state, 9, info)
    assert torch.all(params["opacities"] == 3.0)
    s.step_post_backward(params, opts, state, 10, info)
    assert torch.all(torch.sigmoid(params["opacities"]) <= s.prune_opa * 2 + 1e-6)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_balanced_sampling_draws_thing_pixels_evenly_per_instance(tiny_mr, fraction):
    from pcf_gs.config import Config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.batches import TrainViews, ViewSampler

    root, _ = tiny_mr
    cfg = Config()
    views = TrainViews(load_scene(root, cfg.data, progress=False), torch.device("cpu"), cfg.train.cross_view_neighbours)
    i = 0
    views.inst[i] = 0  # three instances of 1, 4*6 and 12*10 pixels
    views.inst[i, 0, 0] = 7
    views.inst[i, 2:6, 3:9] = 3
    views.inst[i, 10:22, 12:22] = 5
    sampler = ViewSampler(views, cfg.seed, fraction)
    lab_map = views.inst[i].reshape(-1)
    ids, sizes = torch.unique(lab_map[sampler.thing_pixels[i]], return_counts=True)
    assert len(ids) >= 2 and sizes.min() < sizes.max()
    n = 20000
    pix = sampler.sample_pixels(i, n)
    assert pix.shape == (n,)
    assert bool((lab_map[pix] > 0).all())  # only thing pixels
    freq = torch.stack([(lab_map[pix] == k).sum() for k in ids]).double() / n
    expect = fraction / len(ids) + (1 - fraction) * sizes.double() / sizes.sum()
    assert torch.allclose(freq, expect, atol=0.02), (freq, expect)
    # fast and slow halves (first / second half) see the same mixture
    h = n // 2
    f1 = torch.stack([(lab_map[pix[:h]] == k).sum() for k in ids]).double() / h
    assert torch.allclose(f1, expect, atol=0.03)


def test_mcmc_needs_cuda():
    from pcf_gs.config import TrainConfig
    from pcf_gs.errors import UserError
    from pcf_gs.lift.densify import Densifier

    with pytest.raises(UserError, match="CUDA"):
        Densifier(TrainConfig(strategy="mcmc"), torch.device("cpu"), scene_scale=1.0)


def _one_step_statistic(root, weight: float, *extra: str):
    """grad2d statistic and geometry gradients after one instance-stage step with ``densify_feature_grad=weight``
    (and the ``extra`` overrides)."""
    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.trainer import Trainer

    cfg = load_config(None, [
        "model.init_points=300", "train.warmup_iterations=0", "train.densify_from=0", "train.densify_every=1000",
        "train.pixels_per_view=64", f"train.densify_feature_grad={weight}", "data.max_size=32", *extra,
    ])
    torch.manual_seed(0)
    tr = Trainer(load_scene(root, cfg.data, progress=False), cfg, root.parent / f"run{weight}{len(extra)}",
                 torch.device("cpu"), progress=False)
    tr.init_model()
    tr.train_step(1)
    grads = {k: tr.params[k].grad.clone() for k in ("means", "scales", "quats", "opacities")}
    return tr.densifier.state["grad2d"].clone(), grads


def test_feature_gradient_enters_densification_only(tiny_mr):
    root, _ = tiny_mr
    g0, geo0 = _one_step_statistic(root, 0.0)
    g1, geo1 = _one_step_statistic(root, 1.0)
    # the feature losses' gradient enters the statistic (|g_rgb + g_feat| per Gaussian: it can also cancel, so
    # the entries change, in both directions, rather than all grow)
    assert bool((g1 >= 0).all()) and float(g0.sum()) > 0
    assert int((g1 != g0).sum()) > 0.2 * int((g0 > 0).sum())
    for k in geo0:  # but still move no geometry
        assert torch.equal(geo0[k], geo1[k]), k


def test_absgrad_statistic_bounds_the_plain_one(tiny_mr):
    """train.absgrad: the statistic sums per-pixel absolute 2D-mean gradients (>= the plain one, Gaussian by
    Gaussian, since |sum| <= sum |.| per axis), and no parameter gradient changes."""
    root, _ = tiny_mr
    g0, geo0 = _one_step_statistic(root, 0.0)
    g1, geo1 = _one_step_statistic(root, 0.0, "train.absgrad=true")
    assert bool((g1 >= g0 - 1e-6).all()) and bool((g1 > g0 + 1e-6).any())
    for k in geo0:
        assert torch.allclose(geo0[k], geo1[k], rtol=1e-5, atol=1e-9), k


def test_antialiased_absgrad_run_end_to_end(tiny_mr, tmp_path):
    """A run trained in gsplat's antialiased mode with AbsGS densification renders, segments and views in that mode."""
    import yaml

    from pcf_gs.lift.run import Run
    from pcf_gs.viewer.target import from_run

    root, _ = tiny_mr
    run = tmp_path / "run"
    assert train(root, run, "--set", "render.rasterize_mode=antialiased", "--set", "train.absgrad=true",
                 "--set", "train.grow_grad2d=0.0008") == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["render"]["rasterize_mode"] == "antialiased" and cfg["train"]["absgrad"] is True
    assert main(["-q", "segment", str(run), "--out", str(tmp_path / "seg")]) == 0
    assert from_run(Run.load(run)).raster == {"eps2d": 0.3, "rasterize_mode": "antialiased"}


def test_no_config_picks_the_device_schedule_and_says_so(tiny_mr, tmp_path, capsys):
    import yaml

    root, _ = tiny_mr
    run = tmp_path / "run"
    assert main(["train", str(root), "--out", str(run), "--device", "cpu", *FAST]) == 0
    err = capsys.readouterr().err
    assert "no --config given" in err and "'cpu_fast'" in err and "--config default" in err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["max_size"] == 128 and saved["train"]["iterations"] == 24  # the preset, then --set


def test_long_schedule_warns_once(tiny_mr, tmp_path, monkeypatch, caplog):
    from pcf_gs.lift import fit

    monkeypatch.setattr(fit, "ETA_CHECK_STEPS", 4)
    monkeypatch.setattr(fit, "LONG_RUN_S", 0.0)
    root, _ = tiny_mr
    with caplog.at_level("WARNING", logger="pcf_gs"):
        assert train(root, tmp_path / "run") == 0
    hits = [r for r in caplog.records if "steps left take about" in r.getMessage()]
    assert len(hits) == 1 and "20 steps left" in hits[0].getMessage()


def test_sampled_feature_render_gives_the_dense_instance_losses(tiny_mr):
    """semantic_pixels > 0 renders only sampled pixels: the instance terms and their gradients are the dense
    render's (the same pixels are drawn); only the semantic term becomes a sample."""
    from pcf_gs.config import load_config
    from pcf_gs.data import load_scene
    from pcf_gs.lift.objective import step_losses
    from pcf_gs.lift.trainer import Trainer

    root, _ = tiny_mr
    res = {}
    for n in (0, 64):
        cfg = load_config(None, ["model.init_points=300", "train.warmup_iterations=0", "train.cross_view_start=0",
                                 "train.pixels_per_view=64", f"train.semantic_pixels={n}", "train.cross_view_min_samples=2"])
        tr = Trainer(load_scene(root, cfg.data, progress=False), cfg, root.parent / "run", torch.device("cpu"),
                     progress=False)
        tr.init_model()
        terms, _ = step_losses(tr.params, tr.spec, cfg, tr.views, tr.sampler, 5)
        inst = sum(terms[k] for k in ("contrastive", "concentration", "var_reg", "cross_view") if k in terms)
        inst.backward()
        res[n] = ({k: float(v.detach()) for k, v in terms.items()}, tr.params["inst_mu"].grad.clone(),
                  tr.params["inst_var"].grad.clone())
    (d, dmu, dvar), (s, smu, svar) = res[0], res[64]
    assert "cross_view" in d
    for k in ("contrastive", "concentration", "var_reg", "cross_view"):
        assert abs(d[k] - s[k]) <= 1e-5 * max(1.0, abs(d[k])), k
    torch.testing.assert_close(smu, dmu, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(svar, dvar, rtol=1e-4, atol=1e-6)
    assert s["semantic"] > 0
