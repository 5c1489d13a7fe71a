"""Training on several processes: torchrun's environment read once, its process group opened and
closed, and the few things the training loops ask of it.

    torchrun --standalone --nproc_per_node=2 tools/train.py …

Without torchrun (no `WORLD_SIZE`, or 1) there is one rank and every method here does nothing, so
`tools/train.py` runs as it always has. With it, every rank holds the whole dataset and shuffles it
with the same generator; each global batch is dealt out among the ranks (`shard`), each rank's mean
loss is weighed by its part of the batch (`weigh`) and DistributedDataParallel averages the
gradients, so one optimizer step sees the same samples, and the same gradient, as one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the calls they make together."""

    rank: int = 0
    world: int = 1
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: the one that evaluates, prints and writes files."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch of indices: every `world`-th one from `rank` on.

        The parts are disjoint, cover the batch and differ in size by at most one.
        """
        return batch if self.world == 1 else batch[self.rank :: self.world]

    def weigh(self, mean: torch.Tensor, mine: int, total: int) -> torch.Tensor:
        """This rank's mean loss over `mine` of the global batch's `total` units (samples,
        notes, steps), scaled so that the average of the ranks' gradients that DDP takes is the
        gradient of the mean over the whole batch, however unevenly the units fell.
        """
        if self.world == 1:
            return mean
        if mine == 0:  # an empty part's mean is NaN; the rank still joins the all-reduce
            return mean.nan_to_num() * 0.0
        return mean * (self.world * mine / total)

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` under DistributedDataParallel when there are several ranks, else itself."""
        if self.world == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def agree(self, value: float) -> float:
        """Rank 0's `value` on every rank: a decision (a time budget ran out) all must share."""
        if self.world == 1:
            return value
        shared = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(shared, src=0)
        return shared.item()

    def share(self, thing: Any) -> Any:
        """Rank 0's picklable `thing` on every rank (a resumed training state)."""
        if self.world == 1:
            return thing
        box = [thing]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def wait(self) -> None:
        """A barrier: the other ranks wait here while rank 0 evaluates or writes."""
        if self.world > 1:
            dist.barrier()


class Objective(nn.Module):
    """A model and a loss over it as one forward pass.

    DistributedDataParallel averages the gradients of what its wrapped module's forward computed,
    so a loss that is a method of the model (`HarmonyPredictor.loss`) is wrapped as a forward.
    Its state dict is the model's under `model.`; checkpoints are written from the model itself.
    """

    def __init__(self, model: nn.Module, loss: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, *inputs: Any) -> Any:
        return self.loss(self.model, *inputs)


def threads_per_process(environ: Mapping[str, str] = os.environ, machine_threads: int = 2) -> int:
    """`machine_threads` CPU threads shared among the training processes on this machine."""
    return max(1, machine_threads // int(environ.get("LOCAL_WORLD_SIZE", "1")))


@contextmanager
def open_ranks(environ: Mapping[str, str] = os.environ) -> Iterator[Ranks]:
    """The ranks torchrun started, with their process group open inside: gloo on CPU, NCCL with
    one GPU per process (`LOCAL_RANK`) where CUDA is present. One process without torchrun runs
    on the CPU, as training always has. The group is destroyed however the block ends.
    """
    world = int(environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Ranks()
        return
    if not dist.is_available():
        raise SystemExit("WORLD_SIZE > 1 but this torch has no torch.distributed")
    rank, local_rank = int(environ["RANK"]), int(environ["LOCAL_RANK"])
    local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        yield Ranks(rank, world, local_world, device)
    finally:
        dist.destroy_process_group()
