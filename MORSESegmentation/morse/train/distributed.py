"""Distributed data-parallel training from ``torchrun``'s environment (gloo on CPU, nccl on CUDA).

Launch (see the README, "Training on several GPUs / nodes")::

    torchrun --nproc_per_node=4 -m morse.cli train CONFIG --out runs/x                 # one node, 4 GPUs
    torchrun --nnodes=2 --node_rank=R --nproc_per_node=4 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 --rdzv_id=job1 -m morse.cli train CONFIG         # two nodes

Every process trains on its own random data stream (the trainer seeds it with the global rank), gradients are averaged
by :class:`~torch.nn.parallel.DistributedDataParallel`, logged losses are averaged over ranks, and rank 0 alone
writes the checkpoint, the logs and the model pack. ``train.batch_size`` is per process: the effective batch is
``world_size × batch_size``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); single-process otherwise.

    Idempotent (a second call returns the same ranks without re-initialising). On CUDA the process is bound to GPU
    ``LOCAL_RANK`` before NCCL starts, so collectives never default to GPU 0 of the node.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if info.local_rank >= count:
                raise ConfigError(
                    f"torchrun started more processes on this node than it has CUDA devices (local rank "
                    f"{info.local_rank}, {count} GPU(s)); use --nproc_per_node={count} or train with --device cpu"
                )
            torch.cuda.set_device(info.local_rank)
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", info.local_rank))
        else:
            dist.init_process_group(backend="gloo")
    return info


def training_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device this rank trains on: its own GPU under CUDA, the CPU for Apple MPS (no collective backend)."""
    if not info.enabled:
        return device
    if device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    if device.type == "mps":
        log.warning("distributed training does not support Apple MPS; rank %d trains on the CPU", info.rank)
        return torch.device("cpu")
    return device


def freeze_unused_parameters(model: nn.Module) -> list[str]:
    """Stop parameters that never take part in a forward pass from requiring gradients; returns their names.

    DDP (with ``find_unused_parameters=False``, the fast default) fails in the second iteration if a trainable
    parameter got no gradient in the first. MONAI's ``TransformerBlock`` (inside UNETR's ViT) always creates a
    ``norm_cross_attn`` LayerNorm, used only with cross-attention. Freezing keeps the state-dict keys (model packs
    stay loadable) and changes nothing else: an optimizer never updates a parameter without a gradient.
    Parameters that receive zero gradients (the rendering head while the AWA weight is 0) are *used*: the loss
    multiplies their contribution by 0, autograd still reaches them, and DDP is satisfied.
    """
    from monai.networks.blocks import TransformerBlock

    frozen = []
    for name, module in model.named_modules():
        if isinstance(module, TransformerBlock) and not module.with_cross_attention:
            for pname, p in module.norm_cross_attn.named_parameters():
                if p.requires_grad:
                    p.requires_grad_(False)
                    frozen.append(f"{name}.norm_cross_attn.{pname}")
    return frozen


def wrap_model(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """``model`` in :class:`DistributedDataParallel` when distributed (else unchanged).

    ``find_unused_parameters=False``: every trainable parameter of the MORSE models is reached by the loss in every
    iteration (dead MONAI parameters are frozen first; tested per backbone), so DDP can skip the per-iteration graph
    search. Buffers (BatchNorm statistics) are broadcast from rank 0 at each forward, so all ranks stay identical.
    """
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    frozen = freeze_unused_parameters(model)
    if frozen:
        log.debug("frozen %d parameter(s) that no forward pass uses: %s", len(frozen), frozen[:4])
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def sync_buffers(model: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts them at the start of each forward pass, so the statistics a rank updates in the last pass are its
    own until the next one; calling this after training leaves every rank with the state rank 0 saves.
    """
    if not info.enabled:
        return
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def rank_state(states: list[torch.Tensor], info: DistInfo) -> torch.Tensor | None:
    """This rank's saved generator state (a CPU byte tensor), or None if the checkpoint was written by fewer ranks.

    Reusing another rank's state instead would make two ranks draw the same batches.
    """
    if info.rank < len(states):
        return states[info.rank].cpu()  # map_location may have moved it to the GPU; generators take CPU states
    return None


@contextmanager
def rank_zero_first(info: DistInfo) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. building a cached data set), the other ranks after it has finished, so
    that they find the result instead of building it concurrently."""
    if info.enabled and not info.is_main:
        dist.barrier()
    yield
    if info.enabled and info.is_main:
        dist.barrier()


def reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a scalar tensor over all ranks (identity when not distributed)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
