"""Data-parallel training inside one torchrun worker: the process group, each rank's share of a batch, the
DistributedDataParallel replicas and BatchNorm over the whole batch.

A run of N workers computes what the 1-process run computes, up to float rounding:
- every rank reads the run's whole batch and keeps its ``1/N`` slice (:meth:`World.shard`): the union of the
  slices is the 1-process batch, and the stream's position, seeded crops and unpaired draws (which depend on how
  often each item was read) are the 1-process run's by construction. Reading N times the images costs little next
  to the step they feed;
- DDP averages the gradients of the ranks' mean losses, which is the gradient of the whole batch's mean loss;
- BatchNorm layers become SyncBatchNorm for the training (:func:`replicated`), so they normalise with the whole
  batch's statistics: torch's ``nn.SyncBatchNorm`` on CUDA (NCCL), :class:`CpuSyncBatchNorm` on CPU (gloo), where
  torch's refuses to run;
- the losses every rank reports are the ranks' mean (:meth:`World.mean`), so the history and the NaN guard of
  alap.loop.fit agree on every rank. Rank 0 alone writes (fit's resume state, the stage's outputs); every rank
  resumes from the same state file, so all continue from the same weights, optimiser and stream position.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alap.device import resolve_device
from alap.errors import UserError

if TYPE_CHECKING:
    from alap.config import DistParams

log = logging.getLogger(__name__)

PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes; ``World()`` is a run of one."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes."""
        return self.rank == 0

    def shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        """This rank's contiguous ``1/size`` of every entry of a batch (tensors and lists alike)."""
        if self.size == 1:
            return batch
        n = len(next(iter(batch.values())))
        if n % self.size:
            raise UserError(f"a batch of {n} does not split over {self.size} processes (dist.nproc): use a multiple")
        per = n // self.size
        return {k: v[self.rank * per : (self.rank + 1) * per] for k, v in batch.items()}

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (one all-reduce); the values themselves in a run of one."""
        if self.size == 1:
            return values
        total = torch.tensor(list(values.values()), dtype=torch.float64, device=_collective_device())
        torch_dist.all_reduce(total)
        return dict(zip(values, (total / self.size).tolist()))

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for in a run of one)."""
        if self.size > 1:
            torch_dist.barrier()


def current_world() -> World:
    """The world of the process group this process joined (:func:`joined`), else a run of one."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return World(torch_dist.get_rank(), torch_dist.get_world_size())
    return World()


def _collective_device() -> torch.device:
    """NCCL reduces CUDA tensors only, gloo CPU tensors."""
    if torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def backend_for(backend: str, device: torch.device) -> str:
    """``dist.backend`` for ``device``: ``auto`` is NCCL on CUDA, gloo on CPU; NCCL on a CPU device is refused."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise UserError(f"dist.backend nccl needs CUDA; the device is {device} (use gloo or auto)")
    return backend


def check_launch(dist: DistParams, device_name: str) -> None:
    """Refuse, before any worker starts, a launch that cannot run: NCCL without CUDA, more CUDA ranks than GPUs."""
    device = resolve_device(device_name)
    backend_for(dist.backend, device)
    if device.type == "cuda" and dist.nproc > torch.cuda.device_count():
        raise UserError(
            f"dist.nproc={dist.nproc} processes need one GPU each; this machine has {torch.cuda.device_count()}"
        )


@contextlib.contextmanager
def joined(backend: str, device_name: str) -> Iterator[World]:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` in the environment) for
    the duration of the block. Only rank 0 logs below warnings, and a worker whose launcher is killed (kill -9 of
    torchrun, which starts its workers in their own sessions) kills itself, so a killed run leaves no worker
    writing next to the run that resumes it."""
    device = resolve_device(device_name)
    chosen = backend_for(backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _die_with_parent()
    torch_dist.init_process_group(chosen, device_id=device if chosen == "nccl" else None)
    world = current_world()
    if not world.is_main:
        logging.getLogger("alap").setLevel(logging.WARNING)
    log.info("process group: %d processes, backend %s", world.size, chosen)
    try:
        yield world
    finally:
        torch_dist.destroy_process_group()


def _die_with_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-launcher", daemon=True).start()


class _SumOverRanks(torch.autograd.Function):
    """Sum of a tensor over the ranks, differentiable: the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        torch_dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        torch_dist.all_reduce(total)
        return total


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    return _SumOverRanks.apply(tensor)


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """SyncBatchNorm for CPU tensors over gloo: torch's ``nn.SyncBatchNorm`` runs on accelerators only (and DDP
    refuses it in a CPU module).

    In training, the whole batch's per-channel mean and (biased) variance are reduced over the ranks with
    autograd-aware all-reduces, in two passes (sum, then sum of squared deviations) for the accuracy of the
    1-process BatchNorm; the running statistics move as BatchNorm's do (unbiased variance). A BatchNorm2d, so
    code that looks for BatchNorm layers finds it."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or current_world().size == 1:
            return super().forward(input)
        factor = self._momentum_factor()
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() // input.size(1)], dtype=input.dtype)
        sums = sum_over_ranks(torch.cat([input.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centered = input - mean.view(shape)
        var = sum_over_ranks((centered * centered).sum(dims)) / total
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * total / (total - 1)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out

    def _momentum_factor(self) -> float:
        """BatchNorm's update factor for this step (counting it, as BatchNorm's forward does)."""
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                return 1.0 / float(self.num_batches_tracked)
        return 0.0 if self.momentum is None else self.momentum


@contextlib.contextmanager
def replicated(modules: dict[str, nn.Module]) -> Iterator[dict[str, nn.Module]]:
    """The modules to call in the passes that train them: DDP replicas in a multi-process run, the modules
    themselves in a run of one.

    BatchNorm layers of ``modules`` are SyncBatchNorm for the block: swapped by class, in place, so parameters,
    hooks (feature taps), module paths and state-dict keys stay as they are, and swapped back at the end, so what
    is saved and traced afterwards is plain BatchNorm. Passes through a module whose parameters are frozen for
    the pass (a discriminator under the generator's loss) call the module itself: its BatchNorm still syncs, and
    DDP would wait for gradients that never come. Buffers are not re-sent at every forward
    (``forward_sync_buffers``): every rank's running statistics are already those of the whole batch.
    """
    world = current_world()
    if world.size == 1:
        yield modules
        return
    swapped = [m for module in modules.values() for m in module.modules() if type(m) is nn.BatchNorm2d]
    for layer in swapped:
        if layer.weight.device.type == "cpu":
            layer.__class__ = CpuSyncBatchNorm
        else:
            layer.__class__, layer.process_group = nn.SyncBatchNorm, None
    try:
        yield {name: _replica(module) for name, module in modules.items()}
    finally:
        for layer in swapped:
            layer.__dict__.pop("process_group", None)
            layer.__class__ = nn.BatchNorm2d


def _replica(module: nn.Module) -> nn.Module:
    trained = [p for p in module.parameters() if p.requires_grad]
    if not trained:  # DDP refuses a module with nothing to train (an empty adapter set)
        return module
    device = trained[0].device
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None, forward_sync_buffers=False
    )
