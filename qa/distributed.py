"""Where training runs: the device, and the process group when launched by ``torchrun``.

A plain ``qa train`` is a world of one process that never touches ``torch.distributed``.
Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set) every process joins one
group (gloo on CPU, nccl on CUDA); rank 0 is the only one that writes files or draws progress.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from qa.errors import UserError


def pick_device(name: str) -> torch.device:
    """``auto`` means CUDA when there is a GPU, else CPU; asking for a missing GPU is an error."""
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {name!r} (auto, cpu or cuda)")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU on this machine")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@dataclass
class World:
    """This process's rank among ``size`` data-parallel processes, and its device."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    local_rank: int = 0  # rank among the processes on this machine

    @property
    def main(self) -> bool:
        return self.rank == 0

    def split(self, indices: list[int]) -> list[int]:
        """This rank's contiguous share of one global batch (shares differ by at most one)."""
        return list(np.array_split(np.asarray(indices, dtype=np.int64), self.size)[self.rank])

    def shard(self, items: list) -> list:
        """Every ``size``-th item starting at this rank: an even split of an evaluation set."""
        return items[self.rank :: self.size]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks."""
        if self.size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_named(self, values: dict[str, float]) -> dict[str, float]:
        """Each named value summed over all ranks, in one all-reduce (in name order, so that ranks that
        built their dicts in different orders still add like to like)."""
        names = sorted(values)
        return dict(zip(names, self.sum([values[name] for name in names])))

    def gather(self, value) -> list:
        """The ``value`` of every rank, in rank order (picklable Python objects)."""
        if self.size == 1:
            return [value]
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, value):
        """Rank 0's ``value`` on every rank (for state only rank 0 may have read, e.g. a checkpoint)."""
        if self.size == 1:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextlib.contextmanager
    def machine_leader_first(self):
        """The first process of each machine runs the block first (e.g. filling that machine's
        cache), the other processes after it."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def join(device: str = "auto") -> World:
    """The world this process belongs to; joins the process group when started by torchrun."""
    where = pick_device(device)
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size == 1:
        return World(0, 1, where)
    if not dist.is_initialized():
        if where.type == "cuda":
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), where, int(os.environ.get("LOCAL_RANK", 0)))


def leave() -> None:
    """Leave the process group (if any) so the launcher sees a clean exit."""
    if dist.is_initialized():
        dist.destroy_process_group()
