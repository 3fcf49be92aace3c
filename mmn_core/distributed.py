"""Data-parallel training under torchrun (PyTorch's DistributedDataParallel; gloo on CPU, NCCL on GPU).

    torchrun --standalone --nproc_per_node=2 -m mmn_core train --dataset support2 --out ckpt --distributed

Every rank loads the same data and draws the same random numbers (one seed): the same presence balancing and
modality dropout per record, the same shuffled batches and encoder orders. Each rank then trains on its own
rows of every batch (`train.train_epoch(shard=(rank, world))`), so the ranks together see exactly the batches
a single process would, and DDP averages their gradients. Validation losses are all-reduced, so every rank
takes the same early-stopping decision; rank 0 alone writes the checkpoint.

DDP runs without `find_unused_parameters`: per-record skipping runs every encoder and decoder on every batch
(absent rows are masked, not skipped), so every parameter gets a gradient in every step
(tests/test_distributed.py checks it).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Comm:
    """This process's place in the job: rank in 0..world-1, the device it trains on and the backend."""
    rank: int
    world: int
    device: torch.device
    backend: str

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        """The model in DDP (gradients averaged over ranks during backward; rank 0's weights broadcast)."""
        from torch.nn.parallel import DistributedDataParallel
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)

    def sum(self, *values: float) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def mean(self, total: float, count: float) -> float:
        """Σ total / Σ count over ranks (a record-weighted mean loss)."""
        s, n = self.sum(total, count)
        return s / max(n, 1.0)

    def rows(self, n: int) -> torch.Tensor:
        """This rank's share rank, rank + world, ... of n rows (validation is split across ranks)."""
        return torch.arange(self.rank, n, self.world)

    def barrier(self) -> None:
        dist.barrier()

    def same_weights(self, model) -> bool:
        """Whether every rank holds bit-identical weights (a digest of every tensor, gathered from all ranks)."""
        h = hashlib.sha256()
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        mine = torch.tensor([int.from_bytes(h.digest()[:7], "little")], dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine)
        return all(bool((e == mine).all()) for e in every)


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets the env:// variables)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init() -> Comm:
    """Join the process group torchrun set up (env://): NCCL with one GPU per local rank, else gloo on CPU."""
    if not launched():
        raise RuntimeError("--distributed needs torchrun: torchrun --standalone --nproc_per_node=N -m mmn_core "
                           "train ... --distributed")
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Comm(dist.get_rank(), dist.get_world_size(), device, backend)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gradient_bytes(model) -> int:
    """Bytes of gradients DDP all-reduces per optimisation step (every trainable parameter, once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
