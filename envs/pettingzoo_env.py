"""PettingZoo ``ParallelEnv`` adapters over the batched envs (one env, for interoperability)."""
from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from pettingzoo.utils.env import ParallelEnv

from memarl.envs.bottleneck import BottleneckConfig, BottleneckEnv
from memarl.envs.pogema_env import PogemaEnv
from memarl.envs.tmaze import TMazeConfig, TMazeEnv
from memarl.errors import MemarlError


class _OneEnvParallel(ParallelEnv):
    """Shared PettingZoo plumbing over one env of a batched env (``self.env``, N = 1).

    Subclasses either call :meth:`_wrap` (an env built from its config class and keyword
    arguments, reset with the pinning options) or set ``env``, ``possible_agents``, ``_index``,
    the space dicts and ``reset`` themselves; ``_observations(obs, names)`` gives the per-agent
    observations from the batched ones.
    """

    #: options of ``reset(options=...)`` passed on to the batched env (others are ignored)
    PINNING_OPTIONS = ("corridor_lengths", "episode_seeds", "max_episode_steps")

    def _wrap(self, env_class: type, config_class: type, render_mode: str | None,
              kwargs: dict[str, Any]) -> None:
        if kwargs.get("num_envs", 1) != 1:
            raise MemarlError("the PettingZoo adapter wraps exactly one env (num_envs=1)")
        if kwargs.get("autoreset", False) is not False:
            raise MemarlError("the PettingZoo adapter resets only in reset() (autoreset must stay unset)")
        if render_mode not in (None, "ansi"):
            raise MemarlError(f"unknown render_mode {render_mode!r}; known: ansi")
        kwargs = {k: v for k, v in kwargs.items() if k != "num_envs"}
        kwargs["autoreset"] = False  # PettingZoo envs end episodes; the caller resets
        self.render_mode = render_mode
        self.env = env_class(config_class(num_envs=1), **kwargs)
        self.possible_agents = [f"agent_{i}" for i in range(self.env.num_agents)]
        self.agents: list[str] = []
        self._index = {name: i for i, name in enumerate(self.possible_agents)}
        self.observation_spaces = {a: self.env.single_observation_space for a in self.possible_agents}
        self.action_spaces = {a: self.env.single_action_space for a in self.possible_agents}

    def reset(self, seed: int | None = None, options: dict | None = None):
        opts = {k: v for k, v in (options or {}).items() if k in self.PINNING_OPTIONS}
        obs = self.env.reset(seed=seed, options=opts or None)[0]
        self.agents = list(self.possible_agents)
        return ({a: obs[i] for i, a in enumerate(self.agents)},
                {a: {} for a in self.agents})

    def observation_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.observation_spaces[agent]  # the same object every call (PettingZoo's rule)

    def action_space(self, agent: str) -> gymnasium.spaces.Space:
        return self.action_spaces[agent]

    def _observations(self, obs: np.ndarray, names: list[str]) -> dict[str, Any]:
        return {a: obs[0, self._index[a]] for a in names}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise MemarlError("episode is over; call reset()")
        act = np.zeros((1, self.env.num_agents), dtype=np.int64)  # a live agent left out waits
        for name, value in actions.items():
            if name not in self._index:
                raise MemarlError(f"unknown agent {name!r}; agents: agent_0..agent_{len(self.possible_agents) - 1}")
            v = np.asarray(value)
            if v.shape != () or v.dtype.kind not in "iu":  # int() would silently floor 2.7 or a [2]
                raise MemarlError(f"action of {name} must be one integer in 0..{self.env.num_actions - 1}, "
                                  f"got {value!r}")
            act[0, self._index[name]] = int(v)  # finished agents' actions are ignored by the engine
        obs, reward, terminated, truncated, info = self.env.step(act)
        acting = self.agents
        metrics = info["episode_metrics"][0]
        out_obs = self._observations(obs, acting)
        out_rew, out_term, out_trunc, out_info = {}, {}, {}, {}
        for name in acting:
            i = self._index[name]
            out_rew[name] = float(reward[0, i])
            out_term[name] = bool(terminated[0, i])
            out_trunc[name] = bool(truncated[0, i])
            out_info[name] = {} if metrics is None else {"episode_metrics": metrics}
        self.agents = [a for a in acting if not (out_term[a] or out_trunc[a])]
        return out_obs, out_rew, out_term, out_trunc, out_info

    def render(self) -> str:
        """Text picture: ``.`` free, ``#`` obstacle, agents on the grid as digits/letters."""
        return self.env.render(0)

    def close(self) -> None:
        self.env.close()


class BottleneckParallelEnv(_OneEnvParallel):
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
        self._wrap(BottleneckEnv, BottleneckConfig, render_mode, kwargs)

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


class TMazeParallelEnv(_OneEnvParallel):
    """T-Maze (any preset) as a PettingZoo ``ParallelEnv``: ``"agent_0"`` (and ``"agent_1"`` in relay).

    Wraps one :class:`~memarl.envs.tmaze.TMazeEnv` (``num_envs=1``, no autoreset); the keyword arguments are its
    config fields (``TMazeParallelEnv(preset="relay", corridor_length=5)``). Observations are
    the batched env's vectors per agent. Every agent stays in ``agents`` until the episode ends
    (a relay agent that stopped in a goal cell too, so that it receives the final reward; its
    actions are ignored) and all leave on the last step, terminated or truncated as in the
    batched env; their info then holds ``episode_metrics``. A live agent missing from the action
    dict plays action 0. ``reset(options=...)`` passes the batched env's options
    (``corridor_lengths``, ``episode_seeds``, ``max_episode_steps``, lists of one) and ignores
    any other key.
    """

    metadata = {"name": "tmaze_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self._wrap(TMazeEnv, TMazeConfig, render_mode, kwargs)


class PogemaParallelEnv(_OneEnvParallel):
    """POGEMA (MAPF / lifelong MAPF) as a PettingZoo ``ParallelEnv``: agents ``"agent_0"`` .. ``"agent_{A-1}"``.

    Wraps one :class:`~memarl.envs.pogema_env.PogemaEnv` (``num_envs=1``, ``auto_reset=False``):
    the same mechanics, instances and seeds, step for step (see its docstring for the rules).
    ``memarl.make_parallel("pogema-mapf")`` / ``("pogema-lmapf")`` start from the registered
    defaults of those ids; keyword arguments override them.

    Observation
        ``observation_type`` ``"POMAPF"`` / ``"MAPF"``: a ``Dict`` per agent, pogema's layout:
        ``obstacles`` and ``agents`` (``float32 [2R+1, 2R+1]``, 0/1) and ``xy`` / ``target_xy``
        (``int64 [2]``, position / target minus the agent's start, pogema's relative
        coordinates). ``"default"`` / ``"follower"``: the batched env's ``float32 [C, 2R+1, 2R+1]``
        array (``observation_space`` is ``PogemaEnv.single_observation_space``).

    Action
        ``Discrete(5)``: 0 wait, 1 up (row-1), 2 down (row+1), 3 left (col-1), 4 right (col+1).
        A live agent missing from the action dict waits.

    Reward
        The batched env's, by its ``reward`` option: pogema's (+1 on arrival in ``finish`` and
        ``restart``, +1 to every agent on the solving step in ``nothing``), Follower's path
        reward, or both.

    Starting State
        ``reset(seed=s)`` plays pogema's instance ``s`` (map, starts, targets, restart targets);
        later ``reset()`` calls play ``s + 1``, ``s + 2``, ... . ``seed=None`` (and no config
        seed) draws fresh instances. ``options={"seeds": [s]}`` pins one reset to instance ``s``;
        other option keys are ignored.

    Episode End
        ``finish``: an agent is terminated (and leaves ``agents``) on the step it reaches its
        target; ``nothing``: all agents are terminated on the step where all stand on their
        targets; ``restart``: never terminated. All remaining agents are truncated when the
        elapsed steps reach ``max_episode_steps``. On the episode's last step every agent still
        in ``agents`` gets ``infos[agent]["episode_metrics"]`` (the batched env's metrics:
        ISR/CSR/SoC/makespan or avg_throughput, collisions, episode_length, ...). The
        observation returned on that step shows the final state (the batched env without
        autoreset observes before it freezes the ended env).

    Arguments
        ``render_mode`` (``None`` or ``"ansi"``) and any :class:`~memarl.envs.pogema_env.PogemaConfig`
        field except ``num_envs`` (must be 1) and ``auto_reset``:
        ``PogemaParallelEnv(size=8, num_agents=4, on_target="finish", observation_type="POMAPF")``.

    Version History
        * v0: first version (pogema 1.4.0 mechanics; the Dict observations work, unlike
          pogema 1.4.0's own PettingZoo adapter).
    """

    metadata = {"name": "pogema_v0", "render_modes": ["ansi"], "is_parallelizable": True}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        if kwargs.get("num_envs", 1) != 1:
            raise MemarlError("the PettingZoo adapter wraps exactly one env (num_envs=1)")
        if kwargs.get("auto_reset") not in (None, False):
            raise MemarlError("the PettingZoo adapter resets only in reset() (auto_reset must stay unset)")
        if render_mode not in (None, "ansi"):
            raise MemarlError(f"unknown render_mode {render_mode!r}; known: ansi")
        kwargs.pop("num_envs", None)
        kwargs["auto_reset"] = False  # PettingZoo envs end episodes; the caller resets
        self.render_mode = render_mode
        self.env = env = PogemaEnv(**kwargs)
        cfg = env.config
        self._dict_obs = cfg.observation_type in ("POMAPF", "MAPF")
        self.possible_agents = [f"agent_{i}" for i in range(env.num_agents)]
        self.agents: list[str] = []
        self._index = {name: i for i, name in enumerate(self.possible_agents)}
        if self._dict_obs:
            side = 2 * env.radius + 1
            window = gymnasium.spaces.Box(0.0, 1.0, (side, side), dtype=np.float32)
            # relative coordinates: any (cell - start) difference on an H x W map
            span = np.array([env.instances.height - 1, env.instances.width - 1], dtype=np.int64)
            coords = gymnasium.spaces.Box(-span, span, (2,), dtype=np.int64)
            space: gymnasium.spaces.Space = gymnasium.spaces.Dict(
                {"obstacles": window, "agents": window, "xy": coords, "target_xy": coords})
        else:
            space = env.single_observation_space
        # one shared object per agent: PettingZoo requires observation_space(a) to return the same object
        self.observation_spaces = {a: space for a in self.possible_agents}
        self.action_spaces = {a: env.single_action_space for a in self.possible_agents}
        self.state_space = gymnasium.spaces.Box(0.0, 1.0, (3, env.instances.height, env.instances.width), dtype=np.float32)

    def _observations(self, obs: np.ndarray, names: list[str]) -> dict[str, Any]:
        if not self._dict_obs:
            return {a: obs[0, self._index[a]] for a in names}
        raw = self.env.pogema_observation()
        return {a: {k: raw[k][0, self._index[a]] for k in ("obstacles", "agents", "xy", "target_xy")}
                for a in names}

    def reset(self, seed: int | None = None, options: dict | None = None):
        seeds = (options or {}).get("seeds")
        obs = self.env.reset(seed=seed, options=None if seeds is None else {"seeds": seeds})
        self.agents = list(self.possible_agents)
        return self._observations(obs, self.agents), {a: {} for a in self.agents}

    def state(self) -> np.ndarray:
        """Global state ``float32 [3, H, W]``: obstacles, agents on the grid, their targets."""
        env = self.env
        out = np.zeros(self.state_space.shape, dtype=np.float32)
        out[0] = env.obstacles(0)
        live = env.alive[0]
        pos, tgt = env.positions[0][live], env.targets[0][live]
        out[1, pos[:, 0], pos[:, 1]] = 1.0
        out[2, tgt[:, 0], tgt[:, 1]] = 1.0
        return out


def _registered_pogema(env_id: str, render_mode: str | None, kwargs: dict[str, Any]) -> PogemaParallelEnv:
    """A PogemaParallelEnv with ``env_id``'s registered defaults under ``kwargs``."""
    from memarl.registry import ENVS

    return PogemaParallelEnv(render_mode=render_mode, **{**ENVS.get(env_id).kwargs, **kwargs})


def pogema_mapf_parallel_env(render_mode: str | None = None, **kwargs: Any) -> PogemaParallelEnv:
    """``memarl.make_parallel("pogema-mapf")``: classical MAPF with the id's defaults."""
    return _registered_pogema("pogema-mapf-v0", render_mode, kwargs)


def pogema_lmapf_parallel_env(render_mode: str | None = None, **kwargs: Any) -> PogemaParallelEnv:
    """``memarl.make_parallel("pogema-lmapf")``: lifelong MAPF with the id's defaults."""
    return _registered_pogema("pogema-lmapf-v0", render_mode, kwargs)
