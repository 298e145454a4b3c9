"""What one training step draws from: the training frames on the device and the sampler over them.

:class:`TrainViews` holds the frames' targets and cameras once, on the
training device. :class:`ViewSampler` owns the run's random generator and
draws, in a fixed order that a checkpoint restores: the next view (an epoch
is a random permutation), a cross-view partner among its nearest cameras,
and the thing pixels that the instance losses compare.
"""

from __future__ import annotations

import numpy as np
import torch

from pcf_gs.data.scene import Scene
from pcf_gs.errors import UserError


class TrainViews:
    """The T training frames of a scene (all H x W) on ``device``, and the held-out view for PSNR.

    images [T,H,W,3] uint8; sem, inst [T,H,W] int64; conf [T,H,W] float32 (1 where the
    scene has none); valid [T,H,W] bool; viewmats [T,4,4] world-to-camera; Ks [T,3,3] pixels;
    neighbours [T,k] int64 (on the CPU): indices of each camera's k nearest training cameras;
    eval_img [H,W,3] float in [0,1], eval_view [1,4,4], eval_K [1,3,3]; scene_scale: scene units.
    """

    def __init__(self, scene: Scene, device: torch.device, cross_view_neighbours: int):
        sizes = {(f.width, f.height) for f in scene.frames}
        if len(sizes) != 1:
            raise UserError(f"all frames must have the same size to train, got {sorted(sizes)}", scene.root)
        (self.W, self.H), = sizes
        if not scene.train_ids:
            raise UserError("the scene has no training frames", scene.root)
        self.device = device
        tr = scene.train_frames
        ones = lambda dtype: np.ones((self.H, self.W), dtype)  # noqa: E731
        stack = lambda arrays: torch.stack([torch.from_numpy(a) for a in arrays]).to(device)  # noqa: E731
        self.images = stack(f.rgb for f in tr)
        self.sem = stack(f.semantics.astype(np.int64) for f in tr)
        # 2D instance ids are per view (they mean nothing across views): renumbered 1..n_v in their order, 0
        # (none) kept, so the instance losses can use them as slots 0..num_labels-1 without reading anything
        # back from the device (:mod:`pcf_gs.lift.losses`)
        ranks = [_rank_ids(f.instances) for f in tr]
        self.inst = stack(r for r, _ in ranks)
        self.num_labels = max(n for _, n in ranks)
        self.conf = stack(f.confidence if f.confidence is not None else ones(np.float32) for f in tr)
        self.valid = stack(f.valid if f.valid is not None else ones(bool) for f in tr)
        c2w = torch.from_numpy(np.stack([f.c2w for f in tr]).astype(np.float32))
        self.viewmats = torch.linalg.inv(c2w).to(device)
        self.Ks = torch.from_numpy(np.stack([f.K for f in tr]).astype(np.float32)).to(device)
        pos = c2w[:, :3, 3]
        self.neighbours = _nearest_cameras(c2w, cross_view_neighbours)
        ev = scene.test_frames[0] if scene.test_ids else scene.train_frames[-1]
        self.eval_img = torch.from_numpy(ev.image_float()).to(device)
        self.eval_view = torch.linalg.inv(torch.from_numpy(ev.c2w.astype(np.float32)))[None].to(device)
        self.eval_K = torch.from_numpy(ev.K.astype(np.float32))[None].to(device)
        self.scene_scale = float(torch.linalg.norm(pos - pos.mean(0), dim=1).max()) * 1.1 or 1.0

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def take(x: torch.Tensor, ids: list[int]) -> torch.Tensor:
        """Rows ``ids`` of x, as x[ids]: by slices, so no index tensor is copied to the device."""
        return x[ids[0] : ids[0] + 1] if len(ids) == 1 else torch.cat([x[i : i + 1] for i in ids])


def _rank_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """[H, W] ids -> (the same ids renumbered 0..n-1 in increasing order, 0 kept at 0, as int64; n)."""
    u = np.unique(np.concatenate([[0], np.unique(ids)]))
    return np.searchsorted(u, ids).astype(np.int64), len(u)


def _nearest_cameras(c2w: torch.Tensor, k: int) -> torch.Tensor:
    """[T,k'] indices of each camera's nearest others (k' = k clipped to 1..T-1) for c2w [T,4,4];
    distance = centre distance + viewing-direction difference. One camera: [[0]]."""
    if len(c2w) == 1:
        return torch.zeros(1, 1, dtype=torch.long)
    pos, fwd = c2w[:, :3, 3], c2w[:, :3, 2]
    d = torch.cdist(pos, pos) + torch.cdist(fwd, fwd)
    d.fill_diagonal_(float("inf"))
    return torch.topk(d, max(1, min(k, len(c2w) - 1)), largest=False).indices


class ViewSampler:
    """The run's random draws over ``views``, from one generator seeded with ``seed``.

    ``gen`` (views, and pixels on the CPU), ``pix_gen`` (the instance pixels: ``gen`` itself on the CPU, a
    generator on the device otherwise, so the draws need no host round trip), ``sem_gen`` (semantic pixels, on
    the device) and ``order`` (the views left in this epoch) are what a checkpoint saves.
    """

    def __init__(self, views: TrainViews, seed: int, balanced_fraction: float):
        self.views = views
        self.balanced_fraction = balanced_fraction
        self.gen = torch.Generator().manual_seed(seed)
        dev = views.device
        self.pix_gen = self.gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(seed + 104729)
        # the semantic pixels' own stream: drawing them leaves the instance pixels as they were
        self.sem_gen = torch.Generator(device=dev).manual_seed(seed + 7919)
        self.order: list[int] = []
        self.valid_pixels = [torch.nonzero(v.reshape(-1)).squeeze(1) for v in views.valid]
        self.index_thing_pixels()

    def index_thing_pixels(self) -> None:
        """Per view: flat indices of valid thing pixels (``thing_pixels``), and the same grouped by 2D
        instance (``thing_groups``: pixels sorted by id, start and count per instance) for balanced
        sampling. Instance 0 is none, as in the official loader. Rerun after editing ``views.inst``."""
        inst, valid = self.views.inst, self.views.valid
        self.thing_pixels, self.thing_groups = [], []
        for i in range(len(inst)):
            cand = torch.nonzero(((inst[i] > 0) & valid[i]).reshape(-1)).squeeze(1)
            lab = inst[i].reshape(-1)[cand]
            order = torch.argsort(lab, stable=True)
            _, cnt = torch.unique_consecutive(lab[order], return_counts=True)
            self.thing_pixels.append(cand)
            self.thing_groups.append((cand[order], torch.cumsum(cnt, 0) - cnt, cnt))

    def step_views(self, cross_view: bool) -> list[int]:
        """The training views of one step: the next view, and with ``cross_view`` one of its neighbours."""
        ids = [self.next_view()]
        if cross_view:
            nb = self.views.neighbours[ids[0]]
            ids.append(int(nb[torch.randint(len(nb), (1,), generator=self.gen)]))
        return ids

    def next_view(self) -> int:
        if not self.order:
            self.order = torch.randperm(len(self.views), generator=self.gen).tolist()
        return self.order.pop()

    def sample_pixels(self, i: int, n: int) -> torch.Tensor:
        """n thing pixels of view i (flat indices [n] into H*W, with replacement), in random order;
        empty if the view has none.

        A fraction ``balanced_fraction`` is drawn instance-balanced (a 2D instance uniformly, then a
        pixel inside it), the rest uniformly over thing pixels. Uniform sampling alone gives an object of
        a pixels in a view of A thing pixels n*a/A samples: a 30-pixel object among 4000 thing pixels
        gets ~2 of 512 and the contrastive loss barely separates it from its neighbours.
        """
        cand = self.thing_pixels[i]
        if len(cand) == 0:
            return cand
        nb = int(round(n * self.balanced_fraction))
        g, dev = self.pix_gen, cand.device
        uni = cand[torch.randint(len(cand), (n - nb,), generator=g, device=dev)]
        if nb == 0:
            return uni
        pix, start, cnt = self.thing_groups[i]
        k = torch.randint(len(cnt), (nb,), generator=g, device=dev)
        off = (torch.rand(nb, generator=g, device=dev) * cnt[k]).long().clamp_max(cnt[k] - 1)
        out = torch.cat([uni, pix[start[k] + off]])
        return out[torch.randperm(n, generator=g, device=dev)]

    def sample_valid(self, i: int, n: int) -> torch.Tensor:
        """n valid pixels of view i (flat indices [n] into H*W, uniform, with replacement; from ``sem_gen``)."""
        cand = self.valid_pixels[i]
        if len(cand) == 0:
            return cand
        return cand[torch.randint(len(cand), (n,), generator=self.sem_gen, device=cand.device)]
