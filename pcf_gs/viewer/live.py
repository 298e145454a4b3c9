"""Live training in the viewer (``pcf-gs train --viewer``): the model shown while it trains."""

from __future__ import annotations

import time

from pcf_gs.viewer.app import ViewerApp


class LiveTrainingViewer:
    """``pcf-gs train --viewer``: a :class:`ViewerApp` fed from the Trainer.

    Pass :meth:`on_step` as ``run_training(on_step=...)``. Every ``update_seconds``
    it snapshots the model (world frame, semantic classes from the logits,
    embedding variances; no objects before segmentation) and swaps it in; after
    every step it runs the render calls the browser tabs queued, so rendering
    and training take turns on the cores. While training, the image at rest is
    capped at ``live_max_side`` pixels (long side) to keep the steps going.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, *, update_seconds: float = 2.0,
                 live_max_side: int = 512, **kw):
        from pcf_gs.viewer.target import empty_scene

        self.app = ViewerApp(empty_scene("waiting for the first training step"), host, port, **kw)
        self.update_seconds = float(update_seconds)
        self._full_side = self.app.max_side
        self.app.max_side = min(self.app.max_side, int(live_max_side))
        self.app.executor.set_pumped(True)
        self._last = -float("inf")
        self._rec = None
        self.updates = 0

    @property
    def url(self) -> str:
        return self.app.url

    def snapshot(self, trainer) -> None:
        """Show the trainer's current model."""
        from pcf_gs.lift.run import Run, scene_record
        from pcf_gs.viewer.target import from_run

        if self._rec is None:
            self._rec = scene_record(trainer.scene)
        it = trainer.cfg.train.iterations
        run = Run.from_params(trainer.params, trainer.spec, self._rec, trainer.cfg)
        scene = from_run(run, source=f"training: step {trainer.step:,} of {it:,}")
        scene.notes = [n for n in scene.notes if not n.startswith("no segmentation")]
        scene.notes.append("objects appear after `pcf-gs segment`")
        scene.version = trainer.step
        self.app.set_scene(scene)
        self.updates += 1

    def on_step(self, trainer) -> None:
        now = time.monotonic()
        try:
            if now - self._last >= self.update_seconds:
                self._last = now
                self.snapshot(trainer)
        except Exception as e:  # noqa: BLE001 - the viewer must never stop training
            self.app.report_error(e, where="live update")
        self.app.executor.pump()

    def finish(self, trainer=None) -> None:
        """Training ended: show the final model, render directly again, full resolution at rest."""
        if trainer is not None and trainer.params is not None:
            try:
                self.snapshot(trainer)
            except Exception as e:  # noqa: BLE001
                self.app.report_error(e, where="live update")
        self.app.max_side = self._full_side
        self.app.executor.set_pumped(False)
        self.app._bump()

    def stop(self) -> None:
        self.app.executor.set_pumped(False)
        self.app.stop()

