"""memarl: multi-agent reinforcement learning with memory.

Public API::

    env = memarl.make("bottleneck", num_envs=64)          # batched [N envs x A agents] env
    par = memarl.make_parallel("bottleneck")              # PettingZoo ParallelEnv
    policy = memarl.load_policy("runs/srmt-btl")          # trained policy (torch.nn.Module)

The CLI ``memarl`` (``memarl --help``) trains, evaluates, renders, lists and benchmarks.
"""
from __future__ import annotations

from typing import Any

from memarl.errors import MemarlError

__version__ = "0.1.0"
__all__ = ["make", "make_parallel", "load_policy", "MemarlError", "__version__"]


def make(env_id: str, num_envs: int = 1, **kwargs: Any) -> Any:
    """The batched env ``env_id`` stepping ``num_envs`` envs at once (see ``memarl list envs``)."""
    from memarl.envs import make as make_env
    return make_env(env_id, num_envs=num_envs, **kwargs)


def make_parallel(env_id: str, **kwargs: Any) -> Any:
    """A PettingZoo ``ParallelEnv`` of one env ``env_id``."""
    from memarl.envs import make_parallel as make_parallel_env
    return make_parallel_env(env_id, **kwargs)


def load_policy(path: str, which: str = "best", device: str = "cpu", agent: str | None = None):
    """A trained policy from a run directory or a checkpoint file.

    Args:
        path: run directory (``runs/<name>``) or checkpoint file (``.pt``).
        which: ``best`` (falling back to ``latest``), ``latest`` (the newest readable
            checkpoint), or a checkpoint file (a path, or a file name in ``RUN/checkpoints``).
        device: where to put the weights.
        agent: if given, the checkpoint must hold this agent, else a :class:`MemarlError` is raised.

    Returns:
        the policy (``torch.nn.Module`` in eval mode) with ``policy.checkpoint_info`` holding the
        env id, env options, agent name, update and agent-step counters.
    """
    from memarl.eval.policy_io import load_policy as _load
    return _load(path, which=which, device=device, agent=agent)
