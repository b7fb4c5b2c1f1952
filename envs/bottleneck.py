"""Bottleneck: the two-agent corridor coordination task of SRMT, batched over ``N`` envs in numpy.

See :class:`BottleneckEnv` for the task, and ``shared/reference/bottleneck.md`` for the original
code's quirks and the decisions D1-D14 referred to below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

import numpy as np

from memarl.configs import Range, validate_fields
from memarl.envs import grid as G
from memarl.envs.base import PinnedEpisode, config_with_overrides
from memarl.envs.engine import GridEngine
from memarl.envs.maps import corridor_length
from memarl.envs.mapgen import CORRIDOR_COL, MAP_WIDTH, MAX_CORRIDOR_LENGTH, ROOM_ROWS, bottleneck_map, \
    check_corridor_length
from memarl.errors import MemarlError

NUM_AGENTS = 2

TRAIN_CORRIDOR_LENGTHS = (3, 4, 5, 6, 7, 8, 12, 16, 17, 18, 20, 21, 22, 23, 24, 27)
"""the 16 training maps of the original code (``env/bottlenecks-9-330.yaml``)"""
TEST_CORRIDOR_LENGTHS = tuple(range(3, 51)) + tuple(range(100, 1001, 100))
"""the 58 test maps of the original code (``env/test-bottlenecks-9-31000.yaml``)"""
TRAIN_EPISODE_STEPS = 512
"""training episode length of the original, for every corridor length"""


def eval_episode_steps(corridor_length: int) -> int:
    """The original test-time episode length: ``2 * L + 100``."""
    return 2 * int(corridor_length) + 100


# --------------------------------------------------------------------------------------------
# maps and start/goal sampling


def sample_start_goal(corridor_length: int, rng: np.random.Generator,
                      distinct_cells: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Draw one start/goal configuration: ``(starts [2, 2], goals [2, 2])`` (row, col) int64.

    Agent 0 starts uniformly in the top room with its goal uniformly in the bottom room; agent 1
    is the mirror. The eight draws are made in the original ``MultiMapWrapper`` order (agent-0
    start row, col; agent-1 start row, col; agent-0 goal row, col; agent-1 goal row, col), each
    uniform over its range, so ``sample_start_goal(L, np.random.default_rng(seed))`` is the
    configuration the original evaluation used for map ``L`` and seed ``seed``.

    With ``distinct_cells`` (D9) the whole draw is repeated until agent 1's start differs from
    agent 0's goal and agent 0's start differs from agent 1's goal; by default such coincidences
    are kept, as in the original.
    """
    length = check_corridor_length(corridor_length)
    bottom = ROOM_ROWS + length
    low = np.array([0, 0, bottom, 0, bottom, 0, 0, 0], dtype=np.int64)
    span = np.array([ROOM_ROWS, MAP_WIDTH] * 4, dtype=np.int64)
    while True:
        d = (rng.integers(0, span) + low).reshape(4, 2)
        starts, goals = d[[0, 1]], d[[2, 3]]
        if not distinct_cells or not ((starts[1] == goals[0]).all() or (starts[0] == goals[1]).all()):
            return starts, goals


# --------------------------------------------------------------------------------------------
# rewards


@dataclass(frozen=True)
class RewardScheme:
    """Per-step reward of a live agent that did not arrive on this step (arrival pays +1)."""

    towards: float
    """reached the subgoal (next planned cell) recorded at the previous step"""
    move: float
    """otherwise, when the chosen action was a move (1-4)"""
    wait: float
    """otherwise, when the chosen action was wait (0)"""


Reward = Literal["directional", "sparse", "dense", "directional_negative", "moving_negative"]
"""names of the reward schemes (:data:`REWARD_SCHEMES`)"""

REWARD_SCHEMES: dict[str, RewardScheme] = {
    "directional": RewardScheme(towards=0.005, move=0.0, wait=0.0),
    "sparse": RewardScheme(towards=0.0, move=0.0, wait=0.0),
    "dense": RewardScheme(towards=-0.01, move=-0.01, wait=-0.01),
    "directional_negative": RewardScheme(towards=-0.005, move=-0.01, wait=-0.01),
    # Moving Negative ignores direction: reaching the subgoal needs a move action, so -0.01.
    "moving_negative": RewardScheme(towards=-0.01, move=-0.01, wait=-0.005),
}
"""the five reward schemes of SRMT (paper Table 2), arrival step excluded (always exactly +1)"""


# --------------------------------------------------------------------------------------------
# config and suites


@dataclass(frozen=True)
class BottleneckConfig:
    """Settings of :class:`BottleneckEnv` (every field is a constructor keyword)."""

    num_envs: Annotated[int, Range(1, 1_000_000)] = 1
    """number of envs N stepped together"""
    corridor_lengths: Annotated[tuple[int, ...], Range(1, MAX_CORRIDOR_LENGTH)] = TRAIN_CORRIDOR_LENGTHS
    """corridor lengths L of the maps; one is drawn uniformly per reset (D11)"""
    reward: Reward = "directional"
    """reward scheme of SRMT (paper Table 2; see REWARD_SCHEMES)"""
    max_episode_steps: Annotated[int | None, Range(1, 10_000_000)] = TRAIN_EPISODE_STEPS
    """time limit (truncation); None = the test rule 2*L + 100 of the episode's map"""
    obs_radius: Annotated[int, Range(1, 32)] = 2
    """observation radius R: windows are (2R+1) x (2R+1)"""
    seed: Annotated[int | None, Range(0, 2**32 - 1)] = None
    """seed of env n's RNG is seed + n (Gymnasium vector-env convention); None = fresh entropy"""
    autoreset: bool = True
    """reset an env inside step() when its episode ends; if False the env freezes until reset()"""
    fixed_positions_per_instance: bool = False
    """D1 reproduction: draw one start/goal per map per env at seeding and reuse it every episode"""
    distinct_cells: bool = False
    """D9: redraw when agent 1's start equals agent 0's goal or vice versa (original: kept)"""
    collision_system: Literal["block_both", "priority"] = "block_both"
    """pogema collision system: 'block_both' (the task's) or 'priority'"""
    hide_finished_targets: bool = False
    """if True, a finished agent's target disappears from the others' target channel
    (original: shown until the episode ends)"""

    def __post_init__(self) -> None:
        lengths = self.corridor_lengths
        if isinstance(lengths, (int, np.integer)) and not isinstance(lengths, bool):
            lengths = (lengths,)
        if isinstance(lengths, (list, np.ndarray)):
            lengths = tuple(lengths)
        object.__setattr__(self, "corridor_lengths", lengths)
        validate_fields(self, label=lambda name: f"env option {name}")
        if not self.corridor_lengths:
            raise MemarlError("env option corridor_lengths must name at least one corridor length")
        object.__setattr__(self, "corridor_lengths", tuple(int(x) for x in self.corridor_lengths))

    def episode_steps(self, corridor_length: int) -> int:
        """Time limit of an episode on map ``L`` under this config."""
        if self.max_episode_steps is None:
            return eval_episode_steps(corridor_length)
        return int(self.max_episode_steps)


# --------------------------------------------------------------------------------------------
# shared caches (pure functions of their keys; shared by all env instances of a process)

_GRIDS: dict[tuple[int, int], G.GridMap] = {}


def bottleneck_grid(corridor_length: int, radius: int) -> G.GridMap:
    """The padded :class:`~memarl.envs.grid.GridMap` of map ``L`` (cached)."""
    key = (int(corridor_length), int(radius))
    g = _GRIDS.get(key)
    if g is None:
        g = G.GridMap.from_text(bottleneck_map(corridor_length), radius, key=f"bottleneck-{corridor_length}")
        _GRIDS[key] = g
    return g


# --------------------------------------------------------------------------------------------
# the env


class BottleneckEnv(GridEngine):
    """Bottleneck (SRMT), ``N`` envs x 2 agents stepped together with numpy.

    Description
        Two agents in a map of two 2-row rooms (9 wide) joined by a vertical corridor one cell
        wide and ``L`` cells long (column 4). Each agent must cross to a goal in the other room;
        since agents can neither overlap nor swap, one has to let the other pass. An agent that
        reaches its goal leaves the grid. Mechanics are pogema 1.4.0 with ``on_target='finish'``,
        ``collision_system='block_both'``, ``obs_radius=2``, checked step-exactly against pogema
        (positions, terminated, truncated, rewards, ``obstacles``/``agents`` windows); they are
        the POGEMA engine's (:class:`~memarl.envs.engine.GridEngine`, shared with
        :class:`~memarl.envs.pogema_env.PogemaEnv`): this class only draws the episodes, pays the
        shaping rewards and reports the Bottleneck metrics.
        Movement: every live agent requests ``cell + MOVES[action]``; with block_both it moves iff
        that cell is free of obstacles, is nobody's current cell (a cell being vacated in the same
        step still blocks) and is requested by no other live agent. Finished agents neither move
        nor block.

    Observation
        ``float32 [N, 2, 3, 2R+1, 2R+1]`` (``[N, 2, 3, 5, 5]``), per agent, centred on it:
        channel 0 = static obstacles as -1 (pogema's padded grid: the 1-cell ring around the map
        is -1, cells beyond it read as free 0) plus the planned path as +1; channel 1 = live
        agents as 1, the observer itself included at the centre (as pogema's ``agents``);
        channel 2 = the targets of the *other* agent(s) as 1 (own target excluded), including the
        target of an agent that already finished (as the original ``AnonymousTargetsWrapper``;
        ``hide_finished_targets=True`` removes it). The path is a BFS shortest path on the static
        map that ignores other agents, replanned every step; ties between equal-length paths are
        broken by taking, at every cell, the first neighbour in pogema ``MOVES`` order (up, down,
        left, right) one step closer to the goal. Marked path cells run from the agent's own cell
        through the goal and stop at the first path cell outside the window (the Follower
        convention; the own cell is therefore +1). The next path cell is the *subgoal* used by the
        Directional rewards. A finished (not alive) agent's observation is all zeros.

    Action
        ``int [N, 2]`` in ``0..4``: pogema ``MOVES`` = 0 wait, 1 up (row-1), 2 down (row+1),
        3 left (col-1), 4 right (col+1). Actions of finished agents are ignored. Wrong shape,
        non-integer dtype or values outside 0..4 raise :class:`MemarlError`.

    Reward
        ``float32 [N, 2]``. The arrival step pays exactly +1 (pogema's reward, paid once; D4: no
        shaping term on that step). Otherwise a live agent gets, by scheme (``reward=``):

        ====================== ====================== =========== ===========
        scheme                 reached subgoal (D6)   other move  other wait
        ====================== ====================== =========== ===========
        directional            +0.005                 0           0
        sparse                 0                      0           0
        dense                  -0.01                  -0.01       -0.01
        directional_negative   -0.005                 -0.01       -0.01
        moving_negative        -0.01                  -0.01       -0.005
        ====================== ====================== =========== ===========

        "Reached subgoal" (D6): the cell after this step equals the next path cell computed from
        the previous observation. "Move"/"wait" (D5) is the *chosen* action, whether or not the
        move succeeded. Finished agents get 0 (the original kept charging them shaping terms).

    Starting State
        On every reset (D11) a map is drawn uniformly from ``corridor_lengths`` with the env's
        RNG, then a start/goal configuration with :func:`sample_start_goal` (D1: redrawn every
        episode; ``fixed_positions_per_instance=True`` reproduces the original, which drew one
        configuration per map per env instance at construction). Agent 0 starts in the top room
        with its goal in the bottom room, agent 1 the mirror; one agent's start may equal the
        other's goal (D9; ``distinct_cells=True`` forbids it). Env ``n``'s RNG is seeded with
        ``seed + n``. Episodes can be pinned for evaluation with
        ``reset(options={"corridor_lengths": [...], "episode_seeds": [...],
        "max_episode_steps": [...]})`` or :meth:`set_episodes`: env ``n`` then plays map ``L_n``
        with the start/goal ``sample_start_goal(L_n, np.random.default_rng(seed_n))`` at each of
        its resets, which is the configuration of the original evaluation for that (map, seed).

    Episode End
        ``terminated[n, a]`` is True from agent ``a``'s arrival until the episode ends (pogema's
        ``on_goal``, which stays True for a finished agent); ``info["arrived"]`` marks the arrival
        step itself. ``truncated[n, :]`` is True for both agents on the step the time limit is
        reached (elapsed steps >= max_episode_steps; 512 by default, 2L+100 under the test rule),
        also for agents that had already finished, as pogema. The episode ends when both agents
        have arrived or at the time limit. With ``autoreset`` the env is reset inside the same
        ``step`` (``obs``, ``positions``, ``targets``, ``alive`` then belong to the next episode,
        ``info["first"]`` is set); without it the ending step shows the final state and the env
        then freezes (no movement, zero rewards, ``terminated``/``truncated`` False, ``alive``
        False, zero observations) until ``reset()``.
        ``info["episode_metrics"][n]`` of an ending env holds ``CSR`` (both arrived), ``ISR``
        (fraction arrived), ``SoC`` (sum of per-agent arrival steps, counting the episode length
        for an agent that did not arrive -- the correct finish-mode SoC, D8; pogema's wired-in
        value would be 2 x makespan), ``makespan``, ``episode_length``, ``corridor_length``,
        ``return`` (per-agent mean of the episode's summed reward), ``max_episode_steps`` and
        ``episode_seed`` (None unless pinned).

    Arguments
        See :class:`BottleneckConfig`: pass a config, keyword overrides, or both
        (``BottleneckEnv(num_envs=64, reward="sparse", seed=0)``).

    Version History
        * v0: first version; pogema 1.4.0 mechanics, decisions D1, D4-D6, D8, D9, D11 as above.
          Moved onto the POGEMA engine later (same observations, rewards and metrics; without
          autoreset the ending step now shows the final state instead of zeros, as PogemaEnv).
    """

    metadata = {"render_modes": ["ansi"], "name": "bottleneck-v0"}
    config_class = BottleneckConfig
    observation_fields = ("obs_radius", "hide_finished_targets")
    """the config fields that change what an agent observes (a policy is evaluated with its own)"""

    def __init__(self, config: BottleneckConfig | None = None, **overrides: Any):
        config = config_with_overrides(config, BottleneckConfig, overrides, "bottleneck")
        self.config = config
        super().__init__(num_envs=config.num_envs, num_agents=NUM_AGENTS, radius=config.obs_radius,
                         observation_type="follower", collision_system=config.collision_system,
                         on_target="finish", autoreset=config.autoreset, plan_moves=True, cache_paths=True,
                         mark_tables=True, hide_finished_targets=config.hide_finished_targets)
        n = self.num_envs
        scheme = REWARD_SCHEMES[config.reward]
        self._towards_reward = np.float32(scheme.towards)
        self._action_reward = np.array([scheme.wait] + [scheme.move] * 4, dtype=np.float32)  # [5] by action
        self._lengths = np.zeros(n, dtype=np.int64)
        self._episode_seed: list[int | None] = [None] * n
        self._pinned: list[tuple[int, int | None, int | None] | None] = [None] * n
        self._fixed: list[dict[int, tuple[np.ndarray, np.ndarray]]] = [{} for _ in range(n)]
        self._rngs: list[np.random.Generator] = []
        self._seed_rngs(config.seed)

    # ---------------------------------------------------------------- seeding and pinning

    def _seed_rngs(self, seed: int | None) -> None:
        if seed is None:
            children = np.random.SeedSequence().spawn(self.num_envs)
            self._rngs = [np.random.default_rng(c) for c in children]
        else:
            self._rngs = [np.random.default_rng(int(seed) + i) for i in range(self.num_envs)]
        if self.config.fixed_positions_per_instance:
            for i, rng in enumerate(self._rngs):
                self._fixed[i] = {L: sample_start_goal(L, rng, self.config.distinct_cells)
                                  for L in self.config.corridor_lengths}

    def set_episodes(self, corridor_lengths: Sequence[int] | None,
                     episode_seeds: Sequence[int | None] | None = None,
                     max_episode_steps: int | Sequence[int | None] | None = None,
                     env_ids: Sequence[int] | None = None) -> None:
        """Pin the episodes of envs ``env_ids`` (all if None) from their next reset on.

        ``corridor_lengths[i]`` / ``episode_seeds[i]`` / ``max_episode_steps[i]`` apply to env
        ``env_ids[i]``. A seed fixes the start/goal as ``sample_start_goal(L,
        default_rng(seed))``; a None seed draws it from the env's RNG. A None time limit uses the
        config's rule. ``corridor_lengths=None`` unpins (back to random maps). Takes effect at the
        next reset of each env (explicit, or automatic at its episode end).
        """
        ids = list(range(self.num_envs)) if env_ids is None else [self._check_env_id(i) for i in env_ids]
        if corridor_lengths is None:
            for i in ids:
                self._pinned[i] = None
            return
        m = len(ids)
        lengths = self._per_env("corridor_lengths", corridor_lengths, m)
        seeds = self._per_env("episode_seeds", episode_seeds, m)
        steps = self._per_env("max_episode_steps", max_episode_steps, m)
        for i, L, s, t in zip(ids, lengths, seeds, steps):
            L = check_corridor_length(L)
            if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
                raise MemarlError(f"episode seed must be a non-negative integer or None, got {s!r}")
            if t is not None and (isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1):
                raise MemarlError(f"max_episode_steps must be an integer >= 1 or None, got {t!r}")
            self._pinned[i] = (L, None if s is None else int(s), None if t is None else int(t))

    def _check_env_id(self, i: Any) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.num_envs:
            raise MemarlError(f"env id must be an integer in 0..{self.num_envs - 1}, got {i!r}")
        return int(i)

    @staticmethod
    def _per_env(name: str, value: Any, m: int) -> list:
        if value is None or isinstance(value, (int, np.integer)):
            return [value] * m
        value = list(value)
        if len(value) != m:
            raise MemarlError(f"{name} must have {m} entries (one per env), got {len(value)}")
        return value

    # ---------------------------------------------------------------- reset

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Reset every env; returns ``obs [N, 2, 3, 2R+1, 2R+1]`` (the first of every episode).

        ``seed`` reseeds env ``n``'s RNG with ``seed + n``. ``options`` may hold
        ``corridor_lengths``, ``episode_seeds``, ``max_episode_steps`` (lists of N, see
        :meth:`set_episodes`).
        """
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise MemarlError(f"seed must be a non-negative integer, got {seed!r}")
            self._seed_rngs(int(seed))
        if options:
            known = {"corridor_lengths", "episode_seeds", "max_episode_steps"}
            unknown = sorted(set(options) - known)
            if unknown:
                raise MemarlError(f"unknown reset option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            if "corridor_lengths" in options:
                self.set_episodes(options["corridor_lengths"], options.get("episode_seeds"),
                                  options.get("max_episode_steps"))
            elif "episode_seeds" in options or "max_episode_steps" in options:
                raise MemarlError("reset options episode_seeds/max_episode_steps need corridor_lengths")
        return self._reset_all()

    def _reset_env(self, i: int) -> None:
        cfg = self.config
        rng = self._rngs[i]
        spec = self._pinned[i]
        if spec is None:
            lengths = cfg.corridor_lengths
            L = lengths[int(rng.integers(len(lengths)))] if len(lengths) > 1 else lengths[0]
            if cfg.fixed_positions_per_instance:
                starts, goals = self._fixed[i][L]
            else:
                starts, goals = sample_start_goal(L, rng, cfg.distinct_cells)
            self._play(i, L, starts, goals, cfg.episode_steps(L), None)
        else:
            self._play_seeded(i, *spec)

    def _start_pinned(self, i: int, episode: PinnedEpisode) -> None:
        """Env ``i`` plays corridor ``bottleneck-L`` with the start/goal of ``episode.seed`` (time
        limit: the episode's, else the test rule 2L + 100)."""
        length = corridor_length(episode.map_name)
        if length is None:
            raise MemarlError(f"map {episode.map_name!r} is not a Bottleneck corridor (bottleneck-L)")
        steps = eval_episode_steps(length) if episode.max_episode_steps is None else episode.max_episode_steps
        self._play_seeded(i, length, int(episode.seed), steps)

    def _play_seeded(self, i: int, length: int, episode_seed: int | None, max_steps: int | None) -> None:
        """Map ``L`` with the start/goal of ``episode_seed`` (None: from the env's RNG)."""
        src = self._rngs[i] if episode_seed is None else np.random.default_rng(episode_seed)
        starts, goals = sample_start_goal(length, src, self.config.distinct_cells)
        steps = self.config.episode_steps(length) if max_steps is None else max_steps
        self._play(i, length, starts, goals, steps, episode_seed)

    def _play(self, i: int, length: int, starts: np.ndarray, goals: np.ndarray, max_steps: int,
              episode_seed: int | None) -> None:
        self._install(i, bottleneck_grid(length, self.radius), starts, (goals[0:1], goals[1:2]), max_steps)
        self._lengths[i] = length
        self._episode_seed[i] = episode_seed

    def precompute_paths(self) -> None:
        """BFS every possible goal (the room cells) of every map in ``corridor_lengths`` now.

        Goals repeat, so the env keeps their first-move rows anyway; this only moves the BFS work
        of the first episodes up front (the benchmark calls it so that it times stepping).
        """
        for L in self.config.corridor_lengths:
            grid = bottleneck_grid(L, self.radius)
            rows = np.arange(grid.height)
            room = (rows < ROOM_ROWS) | (rows >= ROOM_ROWS + L)
            r_idx, c_idx = np.nonzero(~grid.obstacles & room[:, None])
            self._cache_paths(grid, grid.cell(r_idx, c_idx))

    # ---------------------------------------------------------------- rewards and metrics

    def _step_reward(self, goal: np.ndarray, act: np.ndarray, cells: np.ndarray, new: np.ndarray,
                     planned: np.ndarray | None, active: np.ndarray, arrived: np.ndarray) -> np.ndarray:
        # the subgoal is the next path cell of the previous observation (D6); arrival pays exactly 1
        shaped = np.where(new == planned, self._towards_reward, self._action_reward[act])
        return np.where(arrived, np.float32(1.0), shaped * active)

    def _episode_metrics(self, i: int) -> dict[str, Any]:
        metrics: dict[str, Any] = G.finish_mode_metrics(self._arrival[i], int(self._t[i]))
        metrics.update({
            "corridor_length": int(self._lengths[i]),
            "return": float(self._return[i].mean()),
            "max_episode_steps": int(self._max_steps[i]),
            "episode_seed": self._episode_seed[i],
            "map_name": f"bottleneck-{int(self._lengths[i])}",
        })
        return metrics

    # ---------------------------------------------------------------- state views

    @property
    def score_metric(self) -> str:
        """the episode metric that ranks policies on this env (picks ``best.pt``): CSR"""
        return "CSR"

    @property
    def corridor_lengths(self) -> np.ndarray:
        """``[N]`` corridor length of each env's current map."""
        return self._lengths.copy()

    @property
    def subgoals(self) -> np.ndarray:
        """``[N, 2, 2]`` (row, col) next planned cell of each agent (its goal once finished)."""
        row, col = self._rc(self._planned_cells(self._cell))
        return np.stack([row, col], axis=-1) - self.radius

    def map_text(self, i: int = 0) -> str:
        """ASCII map of env ``i``'s current episode."""
        return bottleneck_map(int(self._lengths[self._check_env_id(i)]))

    def render(self, i: int = 0) -> str:
        """Text picture of env ``i``: ``#`` wall, ``0``/``1`` live agents, ``a``/``b`` their goals."""
        i = self._check_env_id(i)
        rows = [list(line) for line in self.map_text(i).split("\n")]
        for j, (gr, gc) in enumerate(self.targets[i]):
            rows[gr][gc] = "ab"[j]
        for j, (pr, pc) in enumerate(self.positions[i]):
            if self.alive[i, j]:
                rows[pr][pc] = str(j)
        return "\n".join("".join(r) for r in rows)
