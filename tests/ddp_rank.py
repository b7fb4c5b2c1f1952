"""One gloo rank of ``test_distributed``:
``python tests/ddp_rank.py RANK WORLD AGENT STORE OUT VARIANT`` (VARIANT of ``ppo_config``).
Updates a DDP-wrapped policy on its share of the envs of the test's synthetic segment and saves
the weights to OUT/rankRANK.pt."""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from test_distributed import N, build, ppo_config, synthetic_segment


def main(rank: int, world_size: int, agent: str, store: str, out: Path, variant: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    try:
        policy = build(agent)
        segment, next_value = synthetic_segment(policy)
        share = torch.arange(rank * N // world_size, (rank + 1) * N // world_size)
        # find_unused_parameters: a core may leave parameters out of a pass (SRMT's first step)
        ddp = torch.nn.parallel.DistributedDataParallel(policy, find_unused_parameters=True)
        cfg = ppo_config(variant)
        optimizer = torch.optim.Adam(ddp.parameters(), lr=cfg.learning_rate, eps=1e-6)
        from memarl.train.ppo import ReturnNormalizer, ppo_update
        normalizer = ReturnNormalizer() if cfg.normalize_returns else None
        ppo_update(ddp, optimizer, segment.select_envs(share), next_value[share], cfg,
                   np.random.default_rng(0), normalizer)
        torch.save(policy.state_dict(), out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], Path(sys.argv[5]),
         sys.argv[6])
