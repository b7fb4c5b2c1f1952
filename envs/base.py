"""The batched multi-agent env contract (DESIGN.md, "Env batch API").

Every task has one implementation that steps ``N`` envs x ``A`` agents at once with numpy:

* ``reset(seed=None, options=None) -> obs``                     obs ``[N, A, C, H, W]`` float32
* ``step(actions) -> obs, reward, terminated, truncated, info``  actions ``[N, A]`` int;
  reward ``[N, A]`` float32; terminated / truncated ``[N, A]`` bool
* attributes ``num_envs``, ``num_agents``, ``num_actions``, ``obs_shape`` (``(C, H, W)``),
  ``single_observation_space`` / ``single_action_space`` (one agent's gymnasium spaces),
  and for grid envs ``positions [N, A, 2]``, ``targets [N, A, 2]`` (row, col in map coordinates)
  and ``alive [N, A]`` (False for agents that left the grid, e.g. finished in ``finish`` mode).

Autoreset happens in the same call: when env ``n``'s episode ends, ``terminated``/``truncated``
of that step describe the finished episode, while ``obs``, ``positions``, ``targets`` and
``alive`` of env ``n`` already belong to the next episode. ``info`` then holds

* ``info["episode_end"]``  ``[N]`` bool: which envs ended an episode on this step;
* ``info["episode_metrics"]``: list of length ``N`` with a dict of episode metrics for each env
  that ended (``None`` elsewhere), at least ``return`` (per-agent mean of the summed reward)
  and ``episode_length``;
* ``info["first"]`` ``[N, A]`` bool: True where the returned ``obs`` is the first observation of
  an episode (what a memory policy uses to reset its state).

Env groups stay together everywhere: the agents of one env are never split across batches.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from memarl.errors import MemarlError


@dataclass(frozen=True)
class PinnedEpisode:
    """One episode an evaluator asks an env of a batch to play (``GridEngine.start_episodes``)."""

    map_name: str
    """a map of the library (:mod:`memarl.envs.maps`), e.g. 'validation-random-seed-000' or
    'bottleneck-12'"""
    seed: int
    """instance seed: fixes the starts and targets (and restart targets) on the map"""
    max_episode_steps: int | None = None
    """time limit; None = the env's rule (its config's, Bottleneck's test rule 2L + 100)"""


def config_with_overrides(config: Any, config_class: type, overrides: dict[str, Any],
                          env_name: str) -> Any:
    """``config`` (default: ``config_class()``) with the keyword ``overrides`` of an env
    constructor applied, or a one-line MemarlError naming a wrong type or unknown option."""
    if config is None:
        config = config_class()
    elif not isinstance(config, config_class):
        raise MemarlError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise MemarlError(f"unknown {env_name} option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    return dataclasses.replace(config, **overrides) if overrides else config


def agent_positions(env: Any) -> np.ndarray | None:
    """The agents' cells ``[N, A, 2]`` of an env that exposes ``positions`` (grid envs, T-Maze),
    else None. A shared-memory read with a radius needs them."""
    positions = getattr(env, "positions", None)
    return None if positions is None else np.asarray(positions)


class EpisodeEnds:
    """Mixin for grid envs: check actions, close the episodes that ended in a step.

    The env provides ``num_envs``, ``num_agents``, ``num_actions``, ``alive``, ``_done`` ``[N]``,
    ``_t`` and ``_max_steps`` ``[N]`` (steps taken and time limit of each env's episode),
    ``_needs_reset`` (no episode started yet), ``_observe()``, ``_episode_metrics(i) -> dict``
    and ``_reset_env(i)``.
    """

    def observe(self) -> np.ndarray:
        """The current observations (what the last reset, step or start_episodes returned)."""
        if self._needs_reset:
            raise MemarlError("the env has no episode yet: call reset() or start_episodes() first")
        return self._observe()

    @property
    def elapsed_steps(self) -> np.ndarray:
        """``[N]`` steps taken in the current episode."""
        return self._t.copy()

    @property
    def max_episode_steps(self) -> np.ndarray:
        """``[N]`` time limit of each env's current episode."""
        return self._max_steps.copy()

    @property
    def done(self) -> np.ndarray:
        """``[N]`` envs frozen after their episode ended (only without autoreset)."""
        return self._done.copy()

    def _check_actions(self, actions: Any) -> np.ndarray:
        """``actions`` as int64 ``[N, A]``, or a one-line MemarlError naming what is wrong."""
        act = np.asarray(actions)
        if act.shape != (self.num_envs, self.num_agents):
            raise MemarlError(f"actions must have shape ({self.num_envs}, {self.num_agents}), "
                              f"got {act.shape}")
        if act.dtype.kind not in "iu":
            raise MemarlError(f"actions must be integers, got dtype {act.dtype}")
        if (act.astype(np.uint64) >= self.num_actions).any():  # negatives wrap around
            raise MemarlError(f"actions must be in 0..{self.num_actions - 1}, got values "
                              f"{int(act.min())}..{int(act.max())}")
        return act.astype(np.int64, copy=False)

    def _end_episodes(self, ended: np.ndarray, autoreset: bool | np.ndarray
                      ) -> tuple[list[dict[str, Any] | None], np.ndarray]:
        """Metrics of every env in ``ended`` ``[N]``; each is reset (``first`` set) where
        ``autoreset`` (a bool, or ``[N]`` per env) says so, else frozen."""
        metrics: list[dict[str, Any] | None] = [None] * self.num_envs
        first = np.zeros((self.num_envs, self.num_agents), dtype=bool)
        reset = np.broadcast_to(np.asarray(autoreset, dtype=bool), ended.shape)
        for i in np.flatnonzero(ended):
            metrics[i] = self._episode_metrics(int(i))
            if reset[i]:
                self._reset_env(int(i))
                first[i] = True
            else:
                self._done[i] = True
                self.alive[i] = False
        return metrics, first


class BatchedEnv(Protocol):
    num_envs: int
    num_agents: int
    num_actions: int
    obs_shape: tuple[int, ...]
    alive: np.ndarray  # [N, A] bool

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                 dict[str, Any]]: ...
