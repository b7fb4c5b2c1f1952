"""A native numpy POGEMA engine: MAPF / lifelong MAPF on grids, ``N`` envs x ``A`` agents at once.

Configured like pogema 1.4.0 (:class:`PogemaConfig` has ``GridConfig``'s field names) and
step-exact with it for ``priority`` and ``block_both``; ``soft`` uses the corrected rule of
:func:`memarl.envs.grid.resolve_soft`. See :class:`PogemaEnv`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from memarl.configs import Range, validate_fields
from memarl.envs.base import PinnedEpisode
from memarl.envs.engine import INT32_MAX, GridEngine, ObservationType, OnTarget, grid_map
from memarl.envs.grid import CollisionSystem
from memarl.envs.pogema_instances import PogemaInstances, is_int
from memarl.errors import MemarlError

@dataclass(frozen=True)
class PogemaConfig:
    """Settings of :class:`PogemaEnv`: pogema 1.4.0 ``GridConfig``'s fields plus ``num_envs``.

    Coordinates are pogema's ``(x, y)`` = (row, col), 0-based from the top-left corner.
    """

    on_target: OnTarget = "finish"
    """'finish' (agents vanish on arrival), 'nothing' (classical MAPF: solved when all stand on
    their targets) or 'restart' (lifelong: a new target on arrival)"""
    seed: Annotated[int | None, Range(0, 2**32 - 1)] = None
    """instance seed: map, starts/targets and restart targets follow pogema's generators with it
    (env n's k-th episode uses seed + n + k * num_envs); None = fresh entropy"""
    width: Annotated[int | None, Range(1, 4096)] = None
    """width of a generated map (None = size); taken from ``map`` when given"""
    height: Annotated[int | None, Range(1, 4096)] = None
    """height of a generated map (None = size); taken from ``map`` when given"""
    size: Annotated[int, Range(2, 4096)] = 8
    """side of a generated square map"""
    density: Annotated[float, Range(0, 1)] = 0.3
    """obstacle probability of a generated map"""
    obs_radius: Annotated[int, Range(1, 128)] = 5
    """observation radius R: windows are (2R+1) x (2R+1)"""
    agents_xy: Any = None
    """custom starts, list of (row, col); given together with ``targets_xy``"""
    targets_xy: Any = None
    """custom targets: list of (row, col), or per-agent target sequences (the first is the initial
    target; 'restart' cycles them as pogema). With single targets in 'restart' (pogema refuses
    them) later targets are drawn as for a generated instance"""
    num_agents: Annotated[int | None, Range(1, 10_000_000)] = None
    """agents per env (default len(agents_xy), else 1); only the first num_agents custom
    positions are used"""
    possible_agents_xy: Any = None
    """cells that may hold starts, list of (row, col); given together with
    ``possible_targets_xy`` and a map without markers. As pogema: ``default_rng(seed)`` shuffles
    this list, then the targets' list, and agent i takes the i-th of each"""
    possible_targets_xy: Any = None
    """cells that may hold targets, list of (row, col) (see ``possible_agents_xy``); in 'restart'
    mode new targets are drawn from the shuffled list with the agent's generator (redrawn while
    the cell equals the agent's position shifted by (R, R): pogema compares map coordinates with
    padded ones)"""
    collision_system: CollisionSystem = "priority"
    """'priority' and 'block_both' (exactly pogema 1.4.0) or 'soft' (corrected, see resolve_soft)"""
    persistent: bool = False
    """not supported (must stay False)"""
    empty_outside: bool = True
    """pogema's: the cells beyond the obstacle ring read as free; False = random obstacles there
    (density ``density``, drawn as pogema's ``Grid`` does), visible in the windows only"""
    observation_type: ObservationType = "default"
    """'default' (pogema's 3 channels: obstacles, agents, target projected on the window border),
    'POMAPF' / 'MAPF' (2 channels: obstacles, agents; the coordinates are in
    pogema_observation()) or 'follower' (Follower/SRMT preprocessing: path-and-obstacles,
    agents, other agents' targets)"""
    map: Any = None
    """ASCII map ('.' free, '#' obstacle, a..z starts with A..Z their targets; '@' start only,
    '$' target only, '!' free but neither: with one of these markers starts and targets are
    drawn from the marked cells as pogema does), a list of row strings, or a 2-D 0/1 array;
    None = a random map from size/density/seed"""
    map_name: str | None = None
    """a map of the memarl library (``memarl.envs.suites.library_names()``: the POGEMA benchmark
    and Follower maps, e.g. 'wfi_warehouse') or a regular expression fully matching several
    (e.g. 'mazes-.+'); with several, each episode plays
    ``names[default_rng(instance_seed).integers(len(names))]`` (names in library order) and
    height/width/density describe the largest / average map. Not together with ``map``"""
    integration: str | None = None
    """not supported (must stay None): this env is already batched"""
    max_episode_steps: Annotated[int, Range(1, 10_000_000)] = 64
    """time limit: all agents are truncated when the elapsed steps reach it"""
    auto_reset: bool | None = None
    """None/True: an env that ends an episode is reset inside step(); False: it freezes until reset()"""
    num_envs: Annotated[int, Range(1, 1_000_000)] = 1
    """number of envs N stepped together"""
    reward: Literal["goal", "follower", "follower+goal"] = "goal"
    """'goal' (pogema's: +1 on arrival, or to all on solving in 'nothing' mode), 'follower'
    (Follower/SRMT LMAPF training: ``path_reward`` each time an agent steps onto the next cell of
    its shortest path as planned before the move, the goal's +1 dropped) or 'follower+goal'"""
    path_reward: Annotated[float, Range(-1e6, 1e6)] = 0.01
    """reward per reached next path cell in the 'follower' rewards"""

    def __post_init__(self) -> None:
        """Validate every field and the rules between them (one-line MemarlError); the map,
        positions and agent count are checked by building the :class:`PogemaInstances` once."""
        validate_fields(self, label=lambda name: f"env option {name}")
        if self.integration is not None:
            raise MemarlError("integration is not supported by the native pogema engine")
        if self.persistent:
            raise MemarlError("persistent is not supported by the native pogema engine")
        if (self.width is None) != (self.height is None):
            raise MemarlError("give both width and height, or neither (then size is used)")
        PogemaInstances(self)


class PogemaEnv(GridEngine):
    """POGEMA (MAPF / lifelong MAPF), ``N`` envs x ``A`` agents stepped together with numpy.

    Description
        pogema 1.4.0's mechanics, reimplemented: agents on a 4-connected grid move to their
        targets. The map is padded by R with a 1-cell obstacle ring around it; cells beyond the
        ring read as free (``empty_outside=True``) or hold pogema's random obstacles
        (``empty_outside=False``: ``default_rng(seed).binomial(1, density)`` over the padded
        grid, seen in the windows only, since nobody passes the ring). ``on_target`` picks the
        mode: ``finish`` (an agent that reaches its target gets +1 once and leaves the grid: it
        neither moves nor blocks; the episode ends when all arrived), ``nothing`` (classical MAPF: agents stay;
        +1 to all and all terminated on the first step where every agent stands on its target)
        and ``restart`` (lifelong MAPF: +1 per arrival and a new target at once; never
        terminates). For ``priority`` and ``block_both`` positions, rewards, terminated,
        truncated, metrics and pogema's ``obstacles``/``agents``/``xy``/``target_xy``
        observations equal pogema 1.4.0's step for step (``tests/test_pogema_env.py``).
        Collisions: ``priority`` = agents move one after the other in index order into cells
        free at that moment (following only behind a lower index); ``block_both`` = an agent
        moves iff its cell is no agent's current cell and requested by nobody else; ``soft`` =
        :func:`memarl.envs.grid.resolve_soft` (pogema's soft semantics without its occupancy
        bug; rotations of >= 3 agents are blocked, pogema 1.4.0 lets them through).

    Observation
        ``float32 [N, A, C, 2R+1, 2R+1]`` centred on each agent, by ``observation_type``:
        ``default`` (C=3, exactly pogema's): obstacles (1, the ring included), agents on the grid
        (1, the observer included while on the grid), the target clipped onto the window
        (``[R + clip(dr), R + clip(dc)]``); ``POMAPF``/``MAPF`` (C=2): obstacles, agents (the
        coordinate parts are in :meth:`pogema_observation`); ``follower`` (C=3, Follower/SRMT
        preprocessing): channel 0 = obstacles as -1 plus the agent's BFS shortest path to its
        target as +1 (from its own cell, stopping at the first path cell outside the window; ties
        broken in MOVES order, as in Bottleneck), channel 1 = agents on the grid (self
        included), channel 2 = the targets of the other agents (anonymous, own excluded); all
        zeros for an agent that left the grid. In ``finish`` mode the ``default``/``POMAPF``
        observation of a finished agent is pogema's (its window, itself absent).

    Action
        ``int [N, A]`` in ``0..4``: 0 wait, 1 up (row-1), 2 down (row+1), 3 left (col-1),
        4 right (col+1). Actions of agents off the grid are ignored.

    Reward
        ``float32 [N, A]``, by ``reward``: ``goal`` (pogema's) +1 on arrival (``finish``,
        ``restart``), +1 to every agent on the solving step (``nothing``), 0 otherwise;
        ``follower`` (Follower/SRMT LMAPF training) ``path_reward`` (0.01) when an agent moves onto
        the next cell of its shortest path (the path of the observation's channel 0, planned
        before the move; arriving on the target counts), nothing for the goal itself;
        ``follower+goal`` both.

    Starting State
        From :meth:`PogemaConfig.instance`: pogema's generators with the instance seed (env
        ``n``'s ``k``-th episode: ``seed + n + k * N``, so with one env the first episode is
        pogema's instance for ``seed``), or the custom map/starts/targets. In ``restart`` mode
        new targets follow pogema: agent ``i``'s generator is
        ``default_rng(default_rng(seed).integers(2**31 - 1, size=A)[i])``, a new target is a
        uniformly drawn cell of the agent's connected component different from its cell
        (redrawn while equal); custom target sequences are cycled instead. An agent alone in a
        one-cell component keeps its target (pogema would loop forever). With possible cells
        (map markers ``@ $ !`` or ``possible_*_xy``) starts and targets are the first A of
        the shuffled lists (:func:`draw_from_possible`) and a new target is a uniformly drawn
        cell of the shuffled possible targets, redrawn while it equals the agent's cell shifted
        by (R, R) (pogema compares map with padded coordinates; so the new target may be the
        agent's own cell or lie in another component, as in pogema).

    Episode End
        ``truncated[n, :]`` is True when the elapsed steps reach ``max_episode_steps``.
        ``terminated``: ``finish`` = the agent stands on its target (stays True after it left
        the grid); ``nothing`` = all True on the solving step; ``restart`` = never. The episode
        ends when all agents are terminated or at truncation. ``info["episode_metrics"][n]``
        holds pogema's metrics (``finish``: ISR, CSR, ep_length; ``nothing``: ISR, CSR,
        ep_length, SoC, makespan; ``restart``: avg_throughput) plus ``SoC``/``makespan`` in
        ``finish`` mode (the correct sum of arrival steps, see ``grid.finish_mode_metrics``),
        ``collisions`` (agent-steps where an agent asked to move into a free cell and was refused
        because of other agents), ``obstacle_collisions`` (moves into obstacles),
        ``throughput_count`` (arrivals), ``return`` and ``episode_length``.

    Arguments
        See :class:`PogemaConfig` (pogema's ``GridConfig`` names): ``PogemaEnv(num_envs=8,
        size=16, num_agents=8, on_target="restart", seed=0)``.

    Version History
        * v0: first version; pogema 1.4.0 mechanics, corrected soft collisions. The mechanics
          live in :class:`~memarl.envs.engine.GridEngine`, shared with Bottleneck.
    """

    metadata = {"render_modes": ["ansi"], "name": "pogema-v0"}
    config_class = PogemaConfig
    observation_fields = ("obs_radius", "observation_type", "empty_outside")
    """the config fields that change what an agent observes (a policy is evaluated with its own)"""


    def __init__(self, config: PogemaConfig | None = None, **overrides: Any):
        if config is None:
            config = PogemaConfig(**overrides) if overrides else PogemaConfig()
        elif not isinstance(config, PogemaConfig):
            raise MemarlError(f"config must be a PogemaConfig, got {type(config).__name__}")
        elif overrides:
            known = {f.name for f in dataclasses.fields(PogemaConfig) if f.init}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise MemarlError(f"unknown pogema option(s) {', '.join(unknown)}")
            config = dataclasses.replace(config, **overrides)
        self.config = cfg = config
        self.instances = PogemaInstances(cfg)
        # maps repeat unless every episode generates one: then keep the BFS rows per (map, target)
        repeated_maps = cfg.map is not None or cfg.map_name is not None
        super().__init__(num_envs=cfg.num_envs, num_agents=self.instances.num_agents, radius=cfg.obs_radius,
                         observation_type=cfg.observation_type, collision_system=cfg.collision_system,
                         on_target=cfg.on_target, autoreset=cfg.auto_reset is not False,
                         plan_moves=cfg.reward != "goal", cache_paths=repeated_maps)
        self._path_reward = np.float32(cfg.path_reward) if cfg.reward != "goal" else None
        self._goal_reward = cfg.reward != "follower"
        self._episode = np.zeros(self.num_envs, dtype=np.int64)
        self._instance_seed: list[int | None] = [None] * self.num_envs
        self._map_name: list[str | None] = [None] * self.num_envs
        self._entropy = np.random.default_rng()
        self._seed = cfg.seed

    # ---------------------------------------------------------------- reset

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Reset every env; returns the first observations ``[N, A, C, 2R+1, 2R+1]``.

        ``seed`` replaces the config's seed (env ``n``'s episodes then use ``seed + n + k*N``).
        ``options={"seeds": [s_0, ..., s_{N-1}]}`` plays exactly pogema's instance ``s_n`` in env
        ``n`` for this reset.
        """
        if seed is not None:
            if not is_int(seed) or seed < 0:
                raise MemarlError(f"seed must be a non-negative integer, got {seed!r}")
            self._seed = int(seed)
            self._episode[:] = 0
        seeds = None
        if options:
            unknown = sorted(set(options) - {"seeds"})
            if unknown:
                raise MemarlError(f"unknown reset option(s) {', '.join(unknown)}; known: seeds")
            seeds = list(options["seeds"])
            if len(seeds) != self.num_envs or not all(s is None or (is_int(s) and s >= 0) for s in seeds):
                raise MemarlError(f"options['seeds'] must be {self.num_envs} non-negative integers (or None)")
        return self._reset_all(seeds)

    def _next_seed(self, i: int) -> int:
        if self._seed is None:
            return int(self._entropy.integers(INT32_MAX))
        return int(self._seed) + i + int(self._episode[i]) * self.num_envs

    def _reset_env(self, i: int, seed: int | None = None) -> None:
        cfg = self.config
        if seed is None:
            seed = self._next_seed(i)
            self._episode[i] += 1
        self._play(i, *self.instances.draw(seed), seed, self.instances.episode_map_name(seed),
                   cfg.max_episode_steps, self.instances.density)

    def _start_pinned(self, i: int, episode: PinnedEpisode) -> None:
        """Env ``i`` plays pogema's instance ``episode.seed`` of library map ``episode.map_name``
        with the config's agent count and settings (its own map and custom positions aside)."""
        obstacles, starts, seqs, pool = self.instances.on_map(episode.map_name, episode.seed)
        steps = self.config.max_episode_steps if episode.max_episode_steps is None else episode.max_episode_steps
        self._play(i, obstacles, starts, seqs, pool, episode.seed, episode.map_name, steps, float(obstacles.mean()))

    def _play(self, i: int, obstacles: np.ndarray, starts: np.ndarray, seqs: tuple[np.ndarray, ...],
              pool: np.ndarray | None, seed: int, map_name: str | None, max_steps: int, density: float) -> None:
        """Install one instance in env ``i`` (``density``: of the map, for pogema's obstacles
        beyond the ring when ``empty_outside`` is False)."""
        grid = grid_map(obstacles, self.radius)
        outside = None
        if not self.config.empty_outside:  # pogema's Grid draws these with a fresh default_rng(seed)
            outside = np.random.default_rng(seed).binomial(1, density, grid.padded.shape).astype(np.uint8)
            r, (hp, wp) = self.radius, grid.padded.shape
            ring_and_map = (slice(r - 1, hp - r + 1), slice(r - 1, wp - r + 1))
            outside[ring_and_map] = grid.padded[ring_and_map]
        self._install(i, grid, starts, seqs, max_steps, seed=seed, pool=pool, outside=outside)
        self._instance_seed[i] = seed
        self._map_name[i] = map_name

    # ---------------------------------------------------------------- rewards and metrics

    def _step_reward(self, goal: np.ndarray, act: np.ndarray, cells: np.ndarray, new: np.ndarray,
                     planned: np.ndarray | None, active: np.ndarray, arrived: np.ndarray) -> np.ndarray:
        reward = goal if self._goal_reward else np.zeros_like(goal)
        if self._path_reward is not None:
            reward = reward + self._path_reward * (active & (new == planned) & (new != cells))
        return reward

    def _episode_metrics(self, i: int) -> dict[str, Any]:
        m = self._mode_metrics(i)
        m["instance_seed"] = self._instance_seed[i]
        m["map_name"] = self._map_name[i]
        return m

    @property
    def score_metric(self) -> str:
        """the episode metric that ranks policies on this env (picks ``best.pt``): the average
        throughput in lifelong MAPF (``restart``), CSR otherwise"""
        return "avg_throughput" if self.config.on_target == "restart" else "CSR"

    @property
    def instance_seeds(self) -> list[int | None]:
        """instance seed of each env's current episode"""
        return list(self._instance_seed)
