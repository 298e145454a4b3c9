"""The training loop: steps up to ``train.iterations`` with metrics, checkpoints, Ctrl-C and a progress bar.

RUN/metrics.jsonl gets one JSON record every ``train.log_every`` steps (loss
terms, #Gaussians, held-out PSNR in dB, wall-clock seconds) and one per
skipped non-finite step; RUN/checkpoint.pt is written every
``train.checkpoint_every`` steps, at the end, and on Ctrl-C (which finishes
the current step first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from pcf_gs.atomic import write_text_atomic
from pcf_gs.lift.checkpoint import CHECKPOINT_NAME
from pcf_gs.progress import progress_bar

if TYPE_CHECKING:
    from pcf_gs.lift.trainer import Trainer

log = logging.getLogger("pcf_gs")

METRICS_NAME = "metrics.jsonl"
RATE_WINDOW = 50  # the bar's it/s is over the last 50 steps
ETA_CHECK_STEPS = 30  # the schedule's length is estimated after this many steps of a run and of each stage
LONG_RUN_S = 3600.0


class TrainingDiverged(RuntimeError):
    pass


def fit(tr: Trainer) -> dict:
    """Train ``tr`` from ``tr.step`` to the end. Returns steps, num_gaussians, the last step's loss terms
    and the seconds taken. Raises KeyboardInterrupt (after saving) and TrainingDiverged (checkpoint kept)."""
    tc = tr.cfg.train
    dist = tr.dist
    # the first process writes the log; in a distributed run the others log nothing
    write_metrics = _metrics_log(tr.run_dir / METRICS_NAME, tr.step) if dist.is_main else _no_log()
    nonfinite = 0
    t0 = time.time()
    last: dict[str, float] = {}
    step_times: deque[float] = deque(maxlen=RATE_WINDOW)
    bar = progress_bar("train", tc.iterations, tr.progress, completed=tr.step, rate=True, info=True)
    eta = _LongRunWarning(tr)
    info = ""  # the bar's loss, refreshed on log steps: reading it every step would wait for a GPU every step
    with _stop_on_sigint() as stop_requested:
        try:
            with bar as show, write_metrics as write:
                while tr.step < tc.iterations:
                    # processes stop together (a lone one would leave the others waiting in a collective); on
                    # CUDA, where agreeing reads a device value, only on log steps
                    if dist.enabled and not (tr.sync_free and tr.step % tc.log_every):
                        if dist.any(stop_requested()):
                            raise KeyboardInterrupt
                    elif not dist.enabled and stop_requested():
                        raise KeyboardInterrupt
                    ts = time.time()
                    step = tr.step
                    terms = tr.train_step(step)
                    if "nonfinite" in terms:  # CPU: seen at once (sync-free mode counts on the device)
                        nonfinite += 1
                        write({"step": step, "nonfinite": True})
                        _check_divergence(tr, step, nonfinite)
                        tr.step += 1
                        continue
                    nonfinite = 0
                    tr.step += 1
                    last = terms
                    step_times.append(time.time() - ts)
                    eta.check(tr.step, step_times)
                    if tr.step % tc.log_every == 0 or tr.step == tc.iterations:
                        terms = dist.mean_terms(terms)
                        last = terms
                        rec = _record(tr, terms, t0)
                        write(rec)
                        if tr.sync_free:
                            _check_divergence(tr, tr.step - 1, rec["nonfinite_run"])
                        info = f"loss {rec['total']:.4f}  "
                    if tr.step % tc.checkpoint_every == 0 and tr.step < tc.iterations:
                        tr.save()
                    rate = len(step_times) / max(sum(step_times), 1e-9)
                    show(completed=tr.step, rate=f"{rate:.1f}", info=f"{info}#G {len(tr.params['means'])}")
                    if tr.on_step is not None:
                        tr.on_step(tr)
            tr.save()
        except KeyboardInterrupt:
            tr.save()
            raise
    return {"steps": tr.step, "num_gaussians": len(tr.params["means"]), "last": {k: float(v) for k, v in last.items()},
            "seconds": time.time() - t0}


class _LongRunWarning:
    """Warn once when the remaining schedule looks longer than an hour on this device.

    The estimate is the recent seconds per step times the steps left, taken ``ETA_CHECK_STEPS`` steps
    after the start and after each stage change (the instance and cross-view stages cost more per
    step than the warm-up). It cannot see later growth in the number of Gaussians, so it errs short."""

    def __init__(self, tr: Trainer):
        tc = tr.cfg.train
        self.tr, self.warned = tr, False
        self.checks = {s + ETA_CHECK_STEPS for s in (tr.step, tc.warmup_iterations, tc.cross_view_start) if s >= tr.step}

    def check(self, step: int, step_times: deque) -> None:
        if self.warned or step not in self.checks:
            return
        recent = list(step_times)[-ETA_CHECK_STEPS // 2:]
        left = (self.tr.cfg.train.iterations - step) * sum(recent) / max(len(recent), 1)
        if left > LONG_RUN_S:
            self.warned = True
            log.warning(
                "at %.2f s per step the %d steps left take about %.1f h on %s; for a quicker run: "
                "--config cpu_fast, fewer steps (--set train.iterations=N) or smaller images (--set data.max_size=N)", sum(recent) / len(recent),
                self.tr.cfg.train.iterations - step, left / 3600, self.tr.device,
            )


def _record(tr: Trainer, terms: dict, t0: float) -> dict:
    """The metrics line after a step: its loss terms (0-dim tensors, read here), #Gaussians, held-out PSNR
    (dB; not computed by the processes that do not write), seconds since ``t0``; in sync-free mode also the
    non-finite steps skipped since the last line (``nonfinite_steps``) and the current run of them
    (``nonfinite_run``), counted on the device."""
    rec = {"step": tr.step, **{k: round(float(v), 6) for k, v in terms.items()}}
    if tr.sync_free:
        new, rec["nonfinite_run"] = int(tr.nonfinite_new), int(tr.nonfinite_run)
        tr.nonfinite_new = tr.nonfinite_new * 0
        if new:
            rec["nonfinite_steps"] = new
            log.warning("%d non-finite steps skipped before step %d", new, tr.step)
    rec["num_gaussians"] = len(tr.params["means"])
    if tr.dist.is_main:
        rec["psnr_heldout"] = round(tr.eval_psnr(), 4)
    rec["elapsed_s"] = round(time.time() - t0, 2)
    return rec


def _check_divergence(tr: Trainer, step: int, nonfinite: int) -> None:
    """A non-finite step is skipped; ``train.max_nonfinite_steps`` of them in a row end the run (checked
    every step on the CPU, on log steps in sync-free mode)."""
    if not tr.sync_free:
        log.warning("step %d: non-finite loss, step skipped", step)
    if nonfinite >= tr.cfg.train.max_nonfinite_steps:
        raise TrainingDiverged(
            f"training diverged: non-finite loss for {nonfinite} consecutive steps at step {step}; "
            f"the last good checkpoint is {tr.run_dir / CHECKPOINT_NAME}"
        )


@contextlib.contextmanager
def _no_log() -> Iterator[Callable[[dict], None]]:
    yield lambda rec: None


@contextlib.contextmanager
def _metrics_log(path: Path, step: int) -> Iterator[Callable[[dict], None]]:
    """Yield ``write(record)`` appending to ``path``, flushed per line; on resume, first drop the lines
    written after the checkpoint's ``step`` (they are trained again)."""
    _truncate_metrics(path, step)
    with open(path, "a") as f:

        def write(rec: dict) -> None:
            f.write(json.dumps(rec) + "\n")
            f.flush()

        yield write


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # the half-written last line of a killed run
            continue
    write_text_atomic(path, "".join(k + "\n" for k in keep))  # a kill here keeps the old log whole


@contextlib.contextmanager
def _stop_on_sigint() -> Iterator[Callable[[], bool]]:
    """While inside, Ctrl-C only sets a flag (yielded as ``stop_requested()``), so the loop finishes the
    step and saves; the previous handler comes back on exit. Outside the main thread nothing changes."""
    stop = [False]
    prev = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        stop[0] = True

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not in the main thread
        prev = None
    try:
        yield lambda: stop[0]
    finally:
        if prev is not None:
            signal.signal(signal.SIGINT, prev)
