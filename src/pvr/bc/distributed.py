"""Distributed data-parallel training under ``torchrun`` (gloo on CPU, nccl on GPU).

``torchrun --nproc_per_node K -m pvr train ...`` starts K copies of ``pvr train``;
each reads RANK / WORLD_SIZE / LOCAL_RANK from the environment. Every rank trains
on its share of each global batch of ``--batch_size`` sequences, gradients are
averaged by DistributedDataParallel, and only rank 0 evaluates, logs and saves.
Without torchrun this is a one-process "world" and nothing changes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def device(self, disable_cuda: bool = False) -> torch.device:
        if torch.cuda.is_available() and not disable_cuda:
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def shard(self, n: int) -> slice:
        """This rank's part of n items (every rank gets at least one index slot; see sampler)."""
        return slice(self.rank, n, self.size)


def init(disable_cuda: bool = False) -> World:
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and not disable_cuda
        if use_nccl:
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return world


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
