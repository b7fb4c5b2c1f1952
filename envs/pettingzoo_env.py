"""PettingZoo ``ParallelEnv`` adapters over the batched envs (one env, for interoperability)."""
from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo.utils.env import ParallelEnv

from memarl.envs.bottleneck import BottleneckConfig, BottleneckEnv
from memarl.errors import MemarlError


class BottleneckParallelEnv(ParallelEnv):
    """Bottleneck as a PettingZoo ``ParallelEnv``: agents ``"agent_0"``, ``"agent_1"``.

    Wraps one :class:`~memarl.envs.bottleneck.BottleneckEnv` (``num_envs=1``, no autoreset); the
    keyword arguments are its config fields. Observations are ``float32 [3, 5, 5]`` per agent, the
    same arrays as the batched env. An agent leaves ``agents`` on the step it arrives
    (terminated) and both leave at the time limit (truncated). On the last step of an episode
    each agent's info holds ``episode_metrics``. ``reset(options=...)`` passes the batched env's
    pinning options (``corridor_lengths``, ``episode_seeds``, ``max_episode_steps``, lists of one)
    and ignores any other key.
    """

    metadata = {"name": "bottleneck_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        if kwargs.get("num_envs", 1) != 1:
            raise MemarlError("the PettingZoo adapter wraps exactly one env (num_envs=1)")
        kwargs.pop("num_envs", None)
        kwargs["autoreset"] = False
        if render_mode not in (None, "ansi"):
            raise MemarlError(f"unknown render_mode {render_mode!r}; known: ansi")
        self.render_mode = render_mode
        self.env = BottleneckEnv(BottleneckConfig(num_envs=1), **kwargs)
        self.possible_agents = [f"agent_{i}" for i in range(self.env.num_agents)]
        self.agents: list[str] = []
        self._index = {name: i for i, name in enumerate(self.possible_agents)}
        self.observation_spaces = {a: self.env.single_observation_space for a in self.possible_agents}
        self.action_spaces = {a: self.env.single_action_space for a in self.possible_agents}

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]  # the same object every call

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        known = {"corridor_lengths", "episode_seeds", "max_episode_steps"}
        opts = {k: v for k, v in (options or {}).items() if k in known}
        obs = self.env.reset(seed=seed, options=opts or None)[0]
        self.agents = list(self.possible_agents)
        return ({a: obs[i] for i, a in enumerate(self.agents)},
                {a: {} for a in self.agents})

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise MemarlError("episode is over; call reset()")
        act = np.zeros((1, self.env.num_agents), dtype=np.int64)
        for name, value in actions.items():
            if name not in self._index:
                raise MemarlError(f"unknown agent {name!r}; agents: {', '.join(self.possible_agents)}")
            act[0, self._index[name]] = int(value)
        obs, reward, terminated, truncated, info = self.env.step(act)
        acting = self.agents
        metrics = info["episode_metrics"][0]
        out_obs, out_rew, out_term, out_trunc, out_info = {}, {}, {}, {}, {}
        for name in acting:
            i = self._index[name]
            out_obs[name] = obs[0, i]
            out_rew[name] = float(reward[0, i])
            out_term[name] = bool(terminated[0, i])
            out_trunc[name] = bool(truncated[0, i])
            out_info[name] = {} if metrics is None else {"episode_metrics": metrics}
        self.agents = [a for a in acting if not (out_term[a] or out_trunc[a])]
        return out_obs, out_rew, out_term, out_trunc, out_info

    def render(self) -> str:
        return self.env.render(0)

    def state(self) -> np.ndarray:
        """Global state: the map with walls -1, agents +1/+2 and their goals +3/+4 (int8)."""
        env = self.env
        grid = np.array([[-1 if ch == "#" else 0 for ch in line] for line in env.map_text(0).split("\n")],
                        dtype=np.int8)
        for j, (r, c) in enumerate(env.targets[0]):
            grid[r, c] = 3 + j
        for j, (r, c) in enumerate(env.positions[0]):
            if env.alive[0, j]:
                grid[r, c] = 1 + j
        return grid

    def close(self) -> None:
        self.env.close()
