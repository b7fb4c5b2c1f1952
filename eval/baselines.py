"""Scripted (non-learned) policies to compare learned agents against.

A scripted policy acts on the env itself (it may read positions, targets and the static map)
instead of on observations: ``policy.act(env) -> actions [N, A]``. ``greedy`` needs an env with
``shortest_path_actions()`` (POGEMA, Bottleneck, T-Maze, where it is the oracle that knows the
cue); ``random`` plays on any env. The suite evaluator
(:mod:`memarl.eval.pogema_eval`) runs learned and scripted policies through the same episodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memarl.errors import MemarlError


@dataclass
class GreedyPathPolicy:
    """Greedy A*: every agent steps along its own shortest path on the static map.

    Each agent plans alone (BFS on the obstacles, equal to unit-cost A*; ties broken in
    MOVES order: up, down, left, right) and ignores the other agents; collisions are left to
    the env's collision system, so agents queue behind each other and a head-on meeting in a
    corridor blocks both until the episode ends. With ``random_move_prob`` > 0 a blocked agent
    (one that did not move on the previous step) takes a random action with that probability,
    which breaks such deadlocks. It is the "plan alone, go greedy" lower bound the learned
    agents should beat; it never looks at observations.
    """

    random_move_prob: float = 0.0
    """chance that an agent blocked on the previous step takes a uniformly random action"""
    seed: int = 0
    """seed of the random moves"""
    name: str = "greedy"
    """label in result tables"""

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_move_prob <= 1.0:
            raise MemarlError(f"random_move_prob must be in 0..1, got {self.random_move_prob}")
        self._rng = np.random.default_rng(self.seed)
        self._previous: dict[int, np.ndarray] = {}

    def act(self, env) -> np.ndarray:
        """``int64 [N, A]`` actions for every agent of ``env`` (a PogemaEnv)."""
        actions = env.shortest_path_actions()
        if self.random_move_prob > 0.0:
            cells = env.positions
            previous = self._previous.get(id(env))
            if previous is not None and previous.shape == cells.shape:
                stuck = (previous == cells).all(-1) & (actions != 0)
                shake = stuck & (self._rng.random(stuck.shape) < self.random_move_prob)
                actions = np.where(shake, self._rng.integers(0, env.num_actions, stuck.shape), actions)
            self._previous[id(env)] = cells
        return actions


@dataclass
class RandomPolicy:
    """Uniformly random actions: every agent draws one of the env's actions each step.

    The chance level of a task (T-Maze: success 0.5 for an agent that reaches the junction, far
    less for one that wanders). Its draws come from one generator per policy, so they depend on
    the batch an episode runs in (unlike the evaluator's keyed sampling of learned policies).
    """

    seed: int = 0
    """seed of the draws"""
    name: str = "random"
    """label in result tables"""

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, env) -> np.ndarray:
        """``int64 [N, A]`` uniform actions in ``0..env.num_actions - 1``."""
        return self._rng.integers(0, env.num_actions, (env.num_envs, env.num_agents), dtype=np.int64)


BASELINES = {
    "greedy": lambda: GreedyPathPolicy(),
    "greedy-random": lambda: GreedyPathPolicy(random_move_prob=0.2, name="greedy-random"),
    "random": lambda: RandomPolicy(),
}
"""scripted baselines by name: ``greedy`` (pure greedy A*), ``greedy-random`` (blocked agents
take a random action with probability 0.2) and ``random`` (uniform actions)"""


def make_baseline(name: str) -> GreedyPathPolicy | RandomPolicy:
    """The scripted baseline called ``name`` (see :data:`BASELINES`)."""
    if name not in BASELINES:
        raise MemarlError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name]()
