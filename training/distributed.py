"""The trainer's processes under ``torchrun``: who this process is, the process group,
and batch normalisation over the global batch (see `edgetag.training.trainer`, "Distributed").

``torch.distributed`` is imported only where a multi-process run needs it.
"""

from __future__ import annotations

import gc
import os
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# torch.distributed.nn.functional.all_reduce is the autograd-aware all-reduce the CPU global
# batch norm needs; its suggested replacement is not differentiable in every torch version.
warnings.filterwarnings("ignore", message=r"torch\.distributed\.nn\.functional\.all_reduce is deprecated", category=FutureWarning)


@dataclass
class Dist:
    """This process's place in the run (a single-process run is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single-process run)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def average(self, values: dict[str, float], device: torch.device) -> dict[str, float]:
        """``values`` averaged over the processes (as they are in a single-process run)."""
        if not self.active:
            return values
        import torch.distributed as dist

        summed = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
        dist.all_reduce(summed)
        return {k: float(v) / self.world for k, v in zip(values, summed.tolist())}

    def close(self) -> None:
        """Leave the process group, if this process created it."""
        if not self.owns_group:
            return
        import torch.distributed as dist

        # DDP's wrapper sits in reference cycles, and its reducer holds gloo work objects:
        # freed only at interpreter exit, they can abort the process ("terminate called
        # without an active exception"). Free them while the group is still alive.
        gc.collect()
        dist.destroy_process_group()


def init_distributed(use_cuda: bool) -> Dist:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1; nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
        owns = True
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, owns_group=owns)


def _global_batch_norm_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Batch norm with statistics over every process's batch (all-reduce, differentiable; CPU-capable)."""
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn

    if not self.training:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count = torch.tensor([float(x.numel() // x.shape[1])], dtype=x.dtype, device=x.device)
    total = dnn.all_reduce(torch.cat([x.sum(dims), count]), op=dist.ReduceOp.SUM)
    n = total[-1]
    mean = total[:-1] / n
    centred = x - mean.view(shape)
    var = dnn.all_reduce(centred.square().sum(dims), op=dist.ReduceOp.SUM) / n
    with torch.no_grad():
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
        self.running_var.mul_(1 - m).add_(var.detach() * (n / max(float(n) - 1.0, 1.0)), alpha=m)
    y = centred * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    return y


def globalise_batch_norm(model: nn.Module, use_cuda: bool) -> nn.Module:
    """BatchNorm over the global batch: SyncBatchNorm on CUDA, the all-reduce version on CPU."""
    if use_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            cls = type(module)
            module.__class__ = type(f"Global{cls.__name__}", (cls,), {"forward": _global_batch_norm_forward})
    return model
