"""Multi-process training on torch.distributed, launched by ``torchrun`` (gloo on CPUs, NCCL on GPUs).

Data parallel over a step's views. Every rank holds the whole scene and the
same Gaussians; a step's ``train.views_per_step`` = G view groups (a view, and
its neighbour in the cross-view stage) are split into R equal shares, rank r
taking groups r·G/R ... (r+1)·G/R − 1. The step's loss is the mean over the G
groups, so with each rank's loss the mean over its own G/R groups

    dL/dθ = (1/G) Σ_g dL_g/dθ = (1/R) Σ_r [(R/G) Σ_{g ∈ r} dL_g/dθ],

the mean over ranks of the local gradients: one all-reduce (sum, then / R).
Everything else needs no traffic because it is computed identically on
every rank:

- the random draws: every rank draws all G groups' views and pixels from the
  same seeded streams and renders only its share, so the draws do not depend
  on R (a run resumed with another number of ranks continues the same run);
- densification: the per-Gaussian statistic (2D-gradient norm sums, view
  counts, radii) is all-reduced, so every rank splits, clones and prunes the
  same Gaussians, with the same torch RNG for the split positions;
- the optimiser steps on identical averaged gradients.

Rank 0 alone writes (config, metrics, checkpoints, atomically as always) and
shows the progress bar; any rank may read. A rank that dies makes the
others' next collective fail (gloo: the peer's socket closes; otherwise
after :data:`TIMEOUT_S`), and they exit with :class:`PeerLost`'s one line.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as tdist

from pcf_gs.errors import UserError

TIMEOUT_S = float(os.environ.get("PCF_GS_DIST_TIMEOUT", "600"))  # a collective waits this long for a hung peer
TERM_KEYS = ("appearance", "semantic", "contrastive", "concentration", "var_reg", "cross_view", "cross_mined", "total")


class PeerLost(UserError):
    """Another rank stopped answering: it died, hung past :data:`TIMEOUT_S`, or failed on its own."""


class Dist:
    """This process's place in the run: ``rank`` of ``world`` (``Dist()`` = one process, no traffic).

    Every collective here is called by every rank in the same order (the training loop is lockstep)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> "Dist":
        """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
        MASTER_ADDR, MASTER_PORT): NCCL when training on CUDA, gloo otherwise. ``device_name``: the config's
        ``device`` ("auto", "cpu", "cuda")."""
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise UserError("--distributed runs under torchrun: torchrun --nproc_per_node N -m pcf_gs train DATA "
                            f"--out RUN --distributed ({', '.join(missing)} not set)")
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(local)  # one GPU per process; "cuda" below then means this one
        else:
            _share_cores()
        if not tdist.is_initialized():
            try:
                tdist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=TIMEOUT_S))
            except Exception as e:  # noqa: BLE001 - any failure to meet the other ranks is one line
                raise PeerLost(f"rank {rank}: could not join the other {world - 1} rank(s): {_first_line(e)}") from None
        return cls(rank, world, local)

    def close(self) -> None:
        if self.enabled and tdist.is_initialized():
            tdist.destroy_process_group()

    # ------------------------------------------------------------ collectives
    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as e:  # noqa: BLE001 - gloo/NCCL raise RuntimeError subclasses of many kinds
            raise PeerLost(f"rank {self.rank}: lost contact with the other ranks (one exited, failed or hung): "
                           f"{_first_line(e)}") from None

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on any (a host value: one tiny all-reduce)."""
        if not self.enabled:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self._device())
        self._call(tdist.all_reduce, t, op=tdist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def any_tensor(self, flag: torch.Tensor) -> torch.Tensor:
        """The device-side OR of a 0-dim bool over ranks, read back by no one (sync-free mode)."""
        if not self.enabled:
            return flag
        t = flag.float().reshape(1)
        self._call(tdist.all_reduce, t, op=tdist.ReduceOp.MAX)
        return t[0] > 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks."""
        if self.enabled:
            self._call(tdist.all_reduce, t, op=tdist.ReduceOp.SUM)
        return t

    def max_(self, t: torch.Tensor) -> torch.Tensor:
        """In-place element-wise max over ranks."""
        if self.enabled:
            self._call(tdist.all_reduce, t, op=tdist.ReduceOp.MAX)
        return t

    def average_gradients(self, params) -> None:
        """Replace each parameter's ``.grad`` by its mean over ranks, in one all-reduce.

        A rank without a gradient for a parameter (no term reached it) adds zeros; a parameter that no rank
        has a gradient for keeps ``None``, so Adam skips it as a single process would."""
        if not self.enabled:
            return
        ps = [p for p in params.values() if p.requires_grad]
        dev = ps[0].device
        present = torch.tensor([0.0 if p.grad is None else 1.0 for p in ps], device=dev)
        flat = torch.cat([present] + [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in ps])
        self._call(tdist.all_reduce, flat, op=tdist.ReduceOp.SUM)
        flat /= self.world
        present = flat[: len(ps)].tolist()  # one host read per step (also on CUDA: the flags decide None)
        off = len(ps)
        for k, p in enumerate(ps):
            n = p.numel()
            if present[k] > 0:
                p.grad = flat[off : off + n].view_as(p).clone()
            off += n

    def mean_terms(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's loss terms averaged over the ranks that have each (for the metrics log)."""
        if not self.enabled:
            return terms
        dev = self._device()
        buf = torch.zeros(2 * len(TERM_KEYS), device=dev)
        for k, key in enumerate(TERM_KEYS):
            if key in terms:
                buf[2 * k] = terms[key].to(dev).float()
                buf[2 * k + 1] = 1.0
        self._call(tdist.all_reduce, buf, op=tdist.ReduceOp.SUM)
        return {key: buf[2 * k] / buf[2 * k + 1] for k, key in enumerate(TERM_KEYS) if float(buf[2 * k + 1]) > 0}

    def barrier(self) -> None:
        if self.enabled:
            self._call(tdist.barrier)

    def _device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if tdist.get_backend() == "nccl" else torch.device("cpu")


def _share_cores() -> None:
    """The CPU kernels' numba threads follow torch's (torchrun sets OMP_NUM_THREADS, 1 by default), so N
    processes on one machine do not each start a thread per core."""
    import numba

    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
