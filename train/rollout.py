"""Rollout storage and the actor side: step a batched env with a policy and record segments.

A :class:`Segment` holds ``T`` steps of ``N`` envs x ``A`` agents plus the policy state at the
segment start, so the learner can replay the memory over the segment (``policy.sequence``)
exactly as the actor ran it (``policy.step``). This is the seam between actors and the learner:
:class:`RolloutCollector` only produces segments, :func:`memarl.train.ppo.ppo_update` only
consumes them.
"""
from __future__ import annotations

import dataclasses
import pickle
import time
import zlib
from typing import Any, Callable

import numpy as np
import torch

from memarl.envs.base import agent_positions

State = dict[str, torch.Tensor]

FLOAT_FIELDS = ("logprobs", "values", "rewards")
"""the float32 ``[T, N, A]`` fields of a :class:`Segment`"""
FLAG_FIELDS = ("terminated", "truncated", "first", "alive")
"""the bool ``[T, N, A]`` fields of a :class:`Segment`"""


@dataclasses.dataclass
class Segment:
    obs: torch.Tensor          # [T, N, A, C, H, W]
    actions: torch.Tensor      # [T, N, A] int64
    logprobs: torch.Tensor     # [T, N, A]
    values: torch.Tensor       # [T, N, A]
    rewards: torch.Tensor      # [T, N, A]
    terminated: torch.Tensor   # [T, N, A] bool, the agent's episode ended at step t (arrival)
    truncated: torch.Tensor    # [T, N, A] bool, the episode hit its time limit at step t
    first: torch.Tensor        # [T, N, A] bool, obs[t] is the first observation of an episode
    alive: torch.Tensor        # [T, N, A] bool, the agent was on the grid when acting at t
    state0: State              # each [N, A, ...]: policy state before step 0
    policy_version: int        # learner update count of the weights that acted
    positions: torch.Tensor | None = None  # [T, N, A, 2] int64 grid cells at obs[t] (grid envs)

    def select_envs(self, env_ids: torch.Tensor) -> "Segment":
        """The sub-segment of some envs (whole env groups: all their agents)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in fields.items():
            if isinstance(value, torch.Tensor):   # every tensor field leads with [T, N]
                fields[name] = value[:, env_ids]
        fields["state0"] = {k: v[env_ids] for k, v in self.state0.items()}
        return Segment(**fields)

    @property
    def num_agent_steps(self) -> int:
        return int(np.prod(self.actions.shape))

    @staticmethod
    def concat(segments: list["Segment"]) -> "Segment":
        """One segment of the envs of ``segments`` side by side (``[T, N1 + N2 + ..., A]``), for
        segments of the same length from several actors. Its ``policy_version`` is the oldest."""
        if len(segments) == 1:
            return segments[0]
        fields = {}
        for field in dataclasses.fields(Segment):
            values = [getattr(segment, field.name) for segment in segments]
            if field.name == "state0":
                fields["state0"] = {k: torch.cat([v[k] for v in values]) for k in values[0]}
            elif field.name == "policy_version":
                fields["policy_version"] = min(values)
            elif values[0] is None:
                fields[field.name] = None
            else:
                fields[field.name] = torch.cat(values, dim=1)  # [T, N, ...]
        return Segment(**fields)


def sample_actions(logits: torch.Tensor, deterministic: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    dist = torch.distributions.Categorical(logits=logits)
    actions = logits.argmax(-1) if deterministic else dist.sample()
    return actions, dist.log_prob(actions)


class RolloutCollector:
    """Steps ``env`` with ``policy`` and returns segments of ``rollout_len`` steps.

    Keeps the env's current observation, the episode-start and alive flags and the policy's
    memory state between segments, and keeps the metrics of finished episodes for logging.
    """

    def __init__(self, env: Any, policy: torch.nn.Module, rollout_len: int,
                 device: torch.device, seed: int | None = None):
        self.env = env
        self.policy = policy
        self.rollout_len = rollout_len
        self.device = device
        self.obs = env.reset(seed=seed)                          # [N, A, C, H, W]
        self.first = np.ones((env.num_envs, env.num_agents), dtype=bool)
        self.alive = env.alive.copy()
        self.state = policy.initial_state(env.num_envs, env.num_agents, device)
        self.finished_episodes: list[dict] = []
        self.timings = {"collect_s": 0.0, "env_s": 0.0, "policy_s": 0.0}
        """seconds the last segment took: in all, in env.step, in the policy (the rest is
        copying into the buffers)"""

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    @torch.no_grad()
    def collect(self, policy_version: int, on_step: Callable[[], None] | None = None
                ) -> tuple[Segment, torch.Tensor]:
        """One segment and the value of the observation that follows it (for bootstrapping).
        ``on_step`` is called after every env step (an actor's heartbeat)."""
        start, env_s, policy_s = time.perf_counter(), 0.0, 0.0
        steps, n, a = self.rollout_len, self.env.num_envs, self.env.num_agents
        obs_buf = torch.empty((steps, n, a, *self.env.obs_shape), device=self.device)
        buffers = {name: torch.empty((steps, n, a), device=self.device)
                   for name in FLOAT_FIELDS}
        flags = {name: torch.empty((steps, n, a), dtype=torch.bool, device=self.device)
                 for name in FLAG_FIELDS}
        actions_buf = torch.empty((steps, n, a), dtype=torch.long, device=self.device)
        positions_buf = None
        if agent_positions(self.env) is not None:
            positions_buf = torch.empty((steps, n, a, 2), dtype=torch.long, device=self.device)
        state0 = {k: v.clone() for k, v in self.state.items()}

        for t in range(steps):
            obs = self._tensor(self.obs, torch.float32)
            first, alive = self._tensor(self.first), self._tensor(self.alive)
            positions = self._positions()
            t0 = time.perf_counter()
            logits, value, self.state = self.policy.step(obs, self.state, first, alive,
                                                         positions)
            if positions_buf is not None:
                positions_buf[t] = positions
            actions, logprobs = sample_actions(logits)
            actions_np = actions.cpu().numpy()
            t1 = time.perf_counter()
            next_obs, reward, terminated, truncated, info = self.env.step(actions_np)
            env_s, policy_s = env_s + time.perf_counter() - t1, policy_s + t1 - t0

            obs_buf[t], actions_buf[t] = obs, actions
            buffers["logprobs"][t], buffers["values"][t] = logprobs, value
            buffers["rewards"][t] = self._tensor(reward, torch.float32)
            flags["terminated"][t] = self._tensor(terminated)
            flags["truncated"][t] = self._tensor(truncated)
            flags["first"][t], flags["alive"][t] = first, alive
            self.finished_episodes += [info["episode_metrics"][n]
                                       for n in np.flatnonzero(info["episode_end"])]

            self.obs, self.first, self.alive = next_obs, info["first"], self.env.alive.copy()
            if on_step is not None:
                on_step()

        t0 = time.perf_counter()
        _, next_value, _ = self.policy.step(self._tensor(self.obs, torch.float32), self.state,
                                            self._tensor(self.first), self._tensor(self.alive),
                                            self._positions())
        policy_s += time.perf_counter() - t0
        self.timings = {"collect_s": time.perf_counter() - start, "env_s": env_s,
                        "policy_s": policy_s}
        segment = Segment(obs=obs_buf, actions=actions_buf, state0=state0,
                          policy_version=policy_version, positions=positions_buf,
                          **buffers, **flags)
        return segment, next_value

    def _positions(self) -> torch.Tensor | None:
        positions = agent_positions(self.env)
        return None if positions is None else self._tensor(positions, torch.long)

    def state_dict(self) -> dict[str, Any]:
        """What the next segment depends on besides the weights and the torch RNG: the env
        mid-episode (pickled whole, then compressed: its RNGs, episode counters and maps), its
        current observation and flags, the policy's memory state and the finished episodes not
        yet popped. A checkpoint keeps it, so that a resumed run continues its episodes."""
        # zlib level 1: the grid engine's path caches are mostly zeros (Bottleneck, 512 envs:
        # 7.7 MB -> 0.23 MB in about 40 ms)
        env = zlib.compress(pickle.dumps(self.env, protocol=pickle.HIGHEST_PROTOCOL), 1)
        return {"env_zlib": env,
                "obs": self.obs, "first": self.first, "alive": self.alive,
                "policy_state": {k: v.cpu() for k, v in self.state.items()},
                "finished_episodes": list(self.finished_episodes)}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; raises ValueError (changing nothing) when the saved
        env or memory state does not fit this collector's env and policy."""
        env = pickle.loads(zlib.decompress(saved["env_zlib"]))
        if type(env) is not type(self.env):
            raise ValueError(f"the saved env is a {type(env).__name__}, this run's a "
                             f"{type(self.env).__name__}")
        shape = (self.env.num_envs, self.env.num_agents, tuple(self.env.obs_shape))
        if (env.num_envs, env.num_agents, tuple(env.obs_shape)) != shape:
            raise ValueError("the saved env has another number of envs, agents or observation "
                             "shape")
        state = {k: v.to(self.device) for k, v in saved["policy_state"].items()}
        expected = {k: (v.shape, v.dtype) for k, v in self.state.items()}
        if {k: (v.shape, v.dtype) for k, v in state.items()} != expected:
            raise ValueError("the saved memory state does not fit the policy")
        self.env, self.state = env, state
        self.obs, self.first, self.alive = saved["obs"], saved["first"], saved["alive"]
        self.finished_episodes = list(saved["finished_episodes"])

    def pop_finished_episodes(self) -> list[dict]:
        episodes, self.finished_episodes = self.finished_episodes, []
        return episodes
