"""Human-readable tables for the terminal (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_scene_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"scene: {summary['root']}", show_header=False)
    t.add_column("item", style="bold")
    t.add_column("value")
    t.add_row("format", summary["format"])
    t.add_row("frames (train / test)", f"{summary['frames']} ({summary['train_frames']} / {summary['test_frames']})")
    t.add_row("image size", ", ".join(f"{w}x{h}" for w, h in summary["image_sizes"]))
    t.add_row("classes", ", ".join(f"{c['id']}:{c['name']}{'' if c['thing'] else ' (stuff)'}" for c in summary["classes"]))
    t.add_row("2D instances per view (mean)", f"{summary['pred_instances_per_view_mean']:.1f}")
    if summary.get("views_without_predictions"):
        t.add_row("views without 2D masks", f"{summary['views_without_predictions']} (appearance only)")
    t.add_row("confidence maps", "yes" if summary["has_confidence"] else "no")
    gt = "no"
    if summary["has_ground_truth"]:
        gt = f"yes ({summary.get('gt_instances', '?')} instances)"
    t.add_row("ground truth", gt)
    t.add_row("initial points", str(summary["initial_points"]))
    n = summary["normalization"]
    t.add_row("normalisation", f"centre {[round(v, 3) for v in n['center']]}, scale {n['scale']:.4g}")
    console.print(t)


def print_metrics(res: dict, path=None, console: Console | None = None) -> None:
    console = console or Console()
    proto = res.get("protocol")
    t = Table(title="evaluation" + (f" ({path})" if path else ""),
              caption=(f"{proto} protocol (official); " if proto else "")
              + "PQ things: thing classes only, the harder half of PQ^scene")
    for k in ("PQ^scene", "PQ things", "SQ", "RQ", "mIoU", "PSNR (dB)"):
        t.add_column(k, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    t.add_row(fmt(res["pq"]), fmt(res.get("pq_things")), fmt(res["sq"]), fmt(res["rq"]), fmt(res["miou"]),
              fmt(res.get("psnr")))
    console.print(t)
