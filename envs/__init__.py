"""The tasks: batched numpy envs (``make``) and PettingZoo adapters (``make_parallel``).

Importing this package registers the envs in :data:`memarl.registry.ENVS` (their evaluation
suites are files in ``eval/suites/``, :mod:`memarl.eval.suites`).
"""
from __future__ import annotations

from typing import Any

from memarl.errors import MemarlError
from memarl.registry import ENVS

ENVS.register(
    "bottleneck-v0", "memarl.envs.bottleneck:BottleneckEnv",
    description="Bottleneck (SRMT): 2 agents, two rooms joined by a 1-cell corridor; pogema finish/block_both, R=2")

ENVS.register(
    "pogema-mapf-v0", "memarl.envs.pogema_env:PogemaEnv",
    description="POGEMA classical MAPF (native numpy engine): on_target='nothing', soft collisions, Follower obs, R=5",
    on_target="nothing", collision_system="soft", observation_type="follower", obs_radius=5,
    size=16, density=0.3, num_agents=8, max_episode_steps=128)
ENVS.register(
    "pogema-lmapf-v0", "memarl.envs.pogema_env:PogemaEnv",
    description="POGEMA lifelong MAPF (native numpy engine): on_target='restart', soft collisions, Follower obs, R=5",
    on_target="restart", collision_system="soft", observation_type="follower", obs_radius=5,
    size=16, density=0.3, num_agents=8, max_episode_steps=256)

ENVS.register(
    "tmaze-v0", "memarl.envs.tmaze:TMazeEnv",
    description="T-Maze memory task, presets rate (RATE), ni_passive (Ni et al.), agalite (AGaLiTe), relay (2 agents, shared memory); corridor L")

GYMNASIUM_ID = "memarl/TMaze-v0"
"""one T-Maze as a Gymnasium env: ``gymnasium.make(GYMNASIUM_ID, preset="rate", corridor_length=10)``
(single-agent presets; ``import memarl.envs`` registers it)"""


def _register_gymnasium() -> None:
    import gymnasium
    if GYMNASIUM_ID not in gymnasium.registry:
        gymnasium.register(GYMNASIUM_ID, entry_point="memarl.envs.tmaze:TMazeGymEnv")


_register_gymnasium()

PARALLEL_ENTRY_POINTS: dict[str, str] = {
    "bottleneck-v0": "memarl.envs.pettingzoo_env:BottleneckParallelEnv",
    "pogema-mapf-v0": "memarl.envs.pettingzoo_env:pogema_mapf_parallel_env",
    "pogema-lmapf-v0": "memarl.envs.pettingzoo_env:pogema_lmapf_parallel_env",
    "tmaze-v0": "memarl.envs.pettingzoo_env:TMazeParallelEnv",
}
"""registered env name -> PettingZoo ParallelEnv factory (``"module:attr"``)"""


def make(env_id: str, num_envs: int = 1, **kwargs: Any):
    """Batched env ``env_id`` (e.g. ``"bottleneck"`` or ``"bottleneck-v0"``) with ``num_envs`` envs."""
    return ENVS.make(env_id, num_envs=num_envs, **kwargs)


def make_parallel(env_id: str, **kwargs: Any):
    """PettingZoo ``ParallelEnv`` over one env of ``env_id``."""
    import importlib

    name = ENVS.resolve(env_id)
    entry = PARALLEL_ENTRY_POINTS.get(name)
    if entry is None:
        known = ", ".join(sorted(PARALLEL_ENTRY_POINTS))
        raise MemarlError(f"env {name!r} has no PettingZoo adapter; available: {known}")
    module_name, _, attr = entry.partition(":")
    return getattr(importlib.import_module(module_name), attr)(**kwargs)


__all__ = ["GYMNASIUM_ID", "PARALLEL_ENTRY_POINTS", "make", "make_parallel"]
