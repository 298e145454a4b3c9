"""``segment`` on several processes: each takes a contiguous share of the views, rank 0 merges.

Launched by ``torchrun --nproc_per_node N -m pcf_gs segment RUN --out DIR --distributed`` (gloo: the
messages are small CPU objects — node statistics, sparse vote tables — so NCCL would not help). What
crosses processes, all through rank 0:

- the per-Gaussian class votes [N, C]: summed over ranks (all-reduce);
- the MVOA nodes (or the HDBSCAN pixel sample): gathered in view order, so rank 0 clusters exactly the
  nodes one process would have built; the prototypes are broadcast back;
- the label maps: each rank writes its share of the requested views into rank 0's temporary output
  folder (broadcast), rank 0 renames it when every rank is done;
- the sparse Gaussian vote tables: gathered and summed on rank 0, which labels and exports.

Sums over ranks add the same numbers in another order than one process does, so vote totals may
differ in the last bit; prototypes, nodes and label maps do not (tests/segment/test_distributed_segment.py).
"""

from __future__ import annotations

import datetime
import os

import torch

from pcf_gs.errors import UserError


class Group:
    """This process's place among the segment processes; one process (rank 0 of 1) is the default, and
    then every method is a no-op."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, ids: list[int]) -> tuple[list[int], int]:
        """This rank's contiguous block of ``ids`` and the position of its first element in ``ids``."""
        a = self.rank * len(ids) // self.world
        b = (self.rank + 1) * len(ids) // self.world
        return list(ids[a:b]), a

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks (in place)."""
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0, in rank order (None on the others)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world if self.is_main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def init_group(timeout_s: float = 1800.0) -> Group:
    """Join the processes ``torchrun`` started (gloo, from its environment variables)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise UserError("--distributed needs the processes of torchrun: torchrun --nproc_per_node N -m pcf_gs segment ...")
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Group(dist.get_rank(), dist.get_world_size())


def close_group(group: Group, ok: bool = True) -> None:
    """Leave the group. After a successful run every rank first meets the others, so no rank tears down its
    gloo connections while a peer's last message is still in flight on them (a rank destroyed early was seen
    to abort: "terminate called without an active exception"). After a failure it leaves at once: the others
    may be gone, and a barrier would wait for them until the timeout."""
    if group.world > 1 and torch.distributed.is_initialized():
        if ok:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
