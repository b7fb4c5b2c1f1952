"""Scale-out with torch.distributed, DD-PPO style: ``torchrun --nproc_per_node K -m memarl train``.

Every rank runs the whole training of one machine (its own envs, its own actors in async mode,
a learner replica) on ``--num-envs`` envs of its own, with other env seeds. The learner replicas
start from the same weights (DistributedDataParallel broadcasts rank 0's) and all-reduce their
gradients in every backward pass, so they stay equal; what else an update decides from its data
is reduced too, so that every replica decides the same: the minibatch KL of the adaptive
learning rate and the return statistics (``normalize_returns``). A NaN/inf minibatch is skipped
on all ranks alike (the all-reduced gradient norm is the same everywhere). A stop request
(Ctrl+C, SIGTERM) on any rank stops all of them after the same update.

Rank 0 alone owns the run directory: the lock, config.json, TensorBoard (its own episodes) and
the checkpoints (its learner, which equals every replica, and its envs; the other ranks start
fresh episodes when the run resumes). ``--total-steps`` counts the agent-steps of all ranks.
A single process (no torchrun) is rank 0 of 1, and nothing here changes its results.
"""
from __future__ import annotations

import dataclasses
import datetime
import os

import torch

from memarl.errors import MemarlError

ENV_SEED_STRIDE = 1_000_003
"""rank r steps envs seeded seed + r * stride (rank 0: the single-process seeds)"""


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch (0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: logs, checkpoints and owns the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise MemarlError(f"torchrun's {name} must be an integer, got {text!r}") from None


def start(device: torch.device, timeout_s: float = 600.0) -> Ranks:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1 in the environment): gloo on
    CPU, nccl on CUDA. Without torchrun: rank 0 of 1, nothing started."""
    if os.environ.get("WORLD_SIZE") in (None, "", "1"):
        return Ranks()
    ranks = Ranks(_env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK"))
    if not 0 <= ranks.rank < ranks.world_size:
        raise MemarlError(f"torchrun's RANK {ranks.rank} is not in 0..{ranks.world_size - 1}")
    import torch.distributed as dist
    if device.type == "cuda":
        torch.cuda.set_device(rank_device(ranks, device))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return ranks


def rank_device(ranks: Ranks, device: torch.device) -> torch.device:
    """One GPU per rank on a node: ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    if ranks.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ranks.local_rank)
    return device


def finish(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def _active() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over all ranks, on their device (itself in a single process)."""
    if not _active():
        return values
    import torch.distributed as dist
    # nccl reduces CUDA tensors only
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")
    total = values.to(on, copy=True)
    dist.all_reduce(total)
    return total.to(values.device)


def mean_over_ranks(value: float) -> float:
    """A float averaged over all ranks (itself in a single process)."""
    if not _active():
        return value
    import torch.distributed as dist
    total = sum_over_ranks(torch.tensor([value], dtype=torch.float64))
    return float(total[0]) / dist.get_world_size()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on some rank."""
    if not _active():
        return flag
    return bool(sum_over_ranks(torch.tensor([int(flag)]))[0])
