"""Densification: gsplat's DefaultStrategy with two fixes for our use.

- gsplat 1.5.3 writes ``step % reset_every == 0 & step > 0``, which Python
  reads as ``(step % reset_every == 0) and (0 > 0)``: the opacity reset never
  fires. We reset after gsplat's own step with the intended condition
  (reset_opa is idempotent, so a fixed gsplat would not double-reset).
- ``max_gaussians`` caps growth (CPU memory and time): no clone/split is done
  while the model is at the cap; pruning still runs.

Every attribute in the ParameterDict (semantics, embeddings and their slow
copies included) follows each clone, split and prune, since gsplat's ops
iterate over all params.
"""

from __future__ import annotations

from dataclasses import dataclass

from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa


@dataclass
class PcfStrategy(DefaultStrategy):
    max_gaussians: int = 0  # 0 = no cap

    def _grow_gs(self, params, optimizers, state, step):
        if self.max_gaussians and len(params["means"]) >= self.max_gaussians:
            return 0, 0
        return super()._grow_gs(params, optimizers, state, step)

    def step_post_backward(self, params, optimizers, state, step, info, packed=False):
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
