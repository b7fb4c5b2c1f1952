"""Speed benchmarks: our batched envs against pogema 1.4.0, measured in the same process.

``memarl bench env bottleneck`` and ``memarl bench env pogema-lmapf`` call :func:`bench_env` and
print :func:`format_bench`.
"""
from __future__ import annotations

import dataclasses
import platform
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from memarl.configs import Range, option_label, validate_fields
from memarl.errors import MemarlError
from memarl.files import check_creatable_dir, check_output_file

_CHUNK = 256  # pre-sampled actions per chunk in time-based runs
BOTTLENECK_NUM_ENVS = 64
"""default batch of the batched Bottleneck measurement"""


@dataclasses.dataclass
class BenchEnvConfig:
    """``memarl bench env``: agent-steps/s of our batched env against pogema 1.4.0."""

    env: str = "bottleneck"
    """env id: bottleneck or pogema-lmapf"""
    num_envs: Annotated[int | None, Range(1, 65_536)] = None
    """envs in our batch (default: bottleneck 64; pogema-lmapf 4096 // agents)"""
    seconds: Annotated[float, Range(0, 3600, low_exclusive=True)] = 5.0
    """time per measurement"""
    configs: tuple[str, ...] | None = None
    """pogema-lmapf: comma-separated configurations to run (default all: 64a-32x32,8a-8x8,256a-64x64)"""
    out: str | None = None
    """also write bench_env_<env>.json and .md into this folder"""
    force: bool = False
    """let --out, --json and --markdown replace earlier results"""
    json: str | None = None
    """also write the result as JSON here"""
    markdown: str | None = None
    """also write the table as Markdown here"""

    def validate(self) -> list[tuple[Path, str]]:
        """Check every option and output path before measuring.

        Returns the files to write as ``(path, "json" | "markdown")``.
        """
        from memarl.registry import ENVS

        validate_fields(self, label=option_label)
        name = ENVS.resolve(self.env)
        if not name.startswith(("bottleneck", "pogema-lmapf")):
            raise MemarlError(f"bench env measures bottleneck or pogema-lmapf, not {name}")
        if self.configs is not None:
            if not name.startswith("pogema-lmapf"):
                raise MemarlError("--configs applies to pogema-lmapf only")
            lmapf_config_names(self.configs)
        self._check_memory(name)
        outputs: list[tuple[Path, str, str]] = []  # (file, the option that names it, format)
        if self.out is not None:
            check_creatable_dir(self.out, "--out")
            stem = Path(self.out) / ("bench_env_" + name.removesuffix("-v0").replace("-", "_"))
            outputs += [(stem.with_suffix(".json"), "--out", "json"),
                        (stem.with_suffix(".md"), "--out", "markdown")]
        if self.json is not None:
            outputs.append((Path(self.json), "--json", "json"))
        if self.markdown is not None:
            outputs.append((Path(self.markdown), "--markdown", "markdown"))
        for path, flag, _ in outputs:
            check_output_file(path, flag, self.force)
        if len({path.resolve() for path, _, _ in outputs}) != len(outputs):
            raise MemarlError("--out, --json and --markdown name the same file twice")
        return [(path, kind) for path, _, kind in outputs]

    def _check_memory(self, env_name: str) -> None:
        """The batch of every configuration to run must fit the memory available now."""
        from memarl.resources import check_fits, env_bytes

        if env_name.startswith("pogema-lmapf"):
            batches = [(lmapf_env_options(name),
                        self.num_envs or lmapf_num_envs(LMAPF_CONFIGS[name]["num_agents"]))
                       for name in lmapf_config_names(self.configs)]
        else:
            batches = [({}, self.num_envs or BOTTLENECK_NUM_ENVS)]
        for options, num_envs in batches:
            check_fits({"envs": env_bytes(env_name, num_envs, options)[0]},
                       f"bench env {env_name} with {num_envs} envs", "lower --num-envs")


def _measure(step_chunk: Callable[[int], int], steps: int | None, seconds: float | None) -> tuple[int, float, int]:
    """Run ``step_chunk(k)`` (k steps, returns ended episodes) for ``steps`` steps or ``seconds``."""
    done, episodes = 0, 0
    start = time.perf_counter()
    while True:
        k = _CHUNK if steps is None else min(_CHUNK, steps - done)
        if k <= 0:
            break
        episodes += step_chunk(k)
        done += k
        if seconds is not None and time.perf_counter() - start >= seconds:
            break
    return done, time.perf_counter() - start, episodes


def _time_ours(num_envs: int, steps: int | None, seconds: float | None, seed: int, warmup: int,
               **env_kwargs: Any) -> dict[str, float]:
    from memarl.envs.bottleneck import BottleneckEnv

    env = BottleneckEnv(num_envs=num_envs, seed=seed, **env_kwargs)
    env.precompute_paths()  # the BFS of every possible goal up front: one-time work is not timed
    env.reset()
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.num_actions, (_CHUNK, num_envs, env.num_agents))

    def chunk(k: int) -> int:
        ended = 0
        for t in range(k):
            ended += int(env.step(actions[t])[4]["episode_end"].sum())
        return ended

    chunk(warmup)
    n, elapsed, episodes = _measure(chunk, steps, seconds)
    return {"agent_steps_per_s": n * num_envs * env.num_agents / elapsed,
            "env_steps_per_s": n * num_envs / elapsed, "steps": n, "seconds": elapsed, "episodes": episodes}


def _time_pogema(steps: int | None, seconds: float | None, seed: int, warmup: int,
                 corridor_lengths: tuple[int, ...], max_episode_steps: int | None) -> dict[str, float]:
    import pogema

    from memarl.envs.bottleneck import bottleneck_map, eval_episode_steps, sample_start_goal

    rng = np.random.default_rng(seed)
    # one pogema env per map, start/goal drawn once (as the original MultiMapWrapper); a random
    # map is reset whenever the running episode ends (all terminated or all truncated)
    envs = []
    for L in corridor_lengths:
        starts, goals = sample_start_goal(L, rng)
        limit = max_episode_steps if max_episode_steps is not None else eval_episode_steps(L)
        gc = pogema.GridConfig(map=bottleneck_map(L), agents_xy=[tuple(int(x) for x in s) for s in starts],
                               targets_xy=[tuple(int(x) for x in g) for g in goals], num_agents=2,
                               on_target="finish", collision_system="block_both", obs_radius=2,
                               observation_type="POMAPF", max_episode_steps=int(limit), seed=seed)
        envs.append(pogema.pogema_v0(gc))
    actions = rng.integers(0, 5, (_CHUNK, 2)).tolist()
    state = {"env": envs[int(rng.integers(len(envs)))]}
    state["env"].reset()

    def chunk(k: int) -> int:
        env, ended = state["env"], 0
        for t in range(k):
            _, _, term, trunc, _ = env.step(actions[t])
            if all(term) or all(trunc):
                ended += 1
                env = envs[int(rng.integers(len(envs)))]
                env.reset()
        state["env"] = env
        return ended

    chunk(warmup)
    n, elapsed, episodes = _measure(chunk, steps, seconds)
    return {"agent_steps_per_s": n * 2 / elapsed, "env_steps_per_s": n / elapsed, "steps": n,
            "seconds": elapsed, "episodes": episodes}


def bench_env(env_id: str = "bottleneck", num_envs: int | None = None, steps: int | None = None,
              seed: int = 0, seconds: float | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Time our batched env and pogema 1.4.0 on the same maps, in this process.

    ``pogema-lmapf``: :func:`bench_pogema_lmapf` (``env_kwargs`` may hold ``configs``, a list of
    :data:`LMAPF_CONFIGS` names; ``num_envs`` None = per config). ``bottleneck`` (below;
    ``num_envs`` None = 64):

    Three measurements, each for ``steps`` steps or, with ``seconds``, for about that long
    (default: 2000 steps): ours with ``num_envs`` envs stepped together, ours with one env
    (a fair per-env comparison), and one pogema env. Ours run with autoreset and full
    observations (path channel, agents, anonymous targets); pogema with POMAPF observations,
    ``block_both``, ``finish``, R = 2, the same corridor lengths and time limit, reset when all
    agents are terminated or truncated. Random actions are pre-sampled; the BFS of every
    possible goal (``BottleneckEnv.precompute_paths``) runs before timing. ``env_kwargs`` are env
    config fields (e.g. ``corridor_lengths``). Returns rates in agent-steps/s, ``ratio`` (ours
    batched / pogema) and ``ratio_n1`` (ours one env / pogema).
    """
    from memarl.envs.bottleneck import BottleneckConfig
    from memarl.registry import ENVS

    name = ENVS.resolve(env_id)
    if name.startswith("pogema-lmapf"):
        configs = env_kwargs.pop("configs", None)
        if env_kwargs:
            raise MemarlError(f"pogema-lmapf bench takes no env options, got {', '.join(sorted(env_kwargs))}")
        return bench_pogema_lmapf(configs, num_envs=num_envs, steps=steps, seconds=seconds, seed=seed)
    if not name.startswith("bottleneck"):
        raise MemarlError(f"bench_env supports the bottleneck and pogema-lmapf envs, got {env_id!r}")
    if num_envs is None:
        num_envs = BOTTLENECK_NUM_ENVS
    if num_envs < 1:
        raise MemarlError(f"num_envs must be >= 1, got {num_envs}")
    if steps is not None and steps < 1:
        raise MemarlError(f"steps must be >= 1, got {steps}")
    if seconds is not None and seconds <= 0:
        raise MemarlError(f"seconds must be > 0, got {seconds}")
    if steps is None and seconds is None:
        steps = 2000
    config = BottleneckConfig(**env_kwargs)
    lengths, limit = config.corridor_lengths, config.max_episode_steps
    warmup = 50
    ours = _time_ours(num_envs, steps, seconds, seed, warmup, **env_kwargs)
    ours1 = _time_ours(1, steps, seconds, seed, warmup, **env_kwargs)
    ref = _time_pogema(steps, seconds, seed, warmup, lengths, limit)
    return {
        "env": name,
        "num_envs": num_envs,
        "steps": steps,
        "seconds": seconds,
        "corridor_lengths": [int(x) for x in lengths],
        "max_episode_steps": limit,
        "ours_agent_steps_per_s": ours["agent_steps_per_s"],
        "ours_n1_agent_steps_per_s": ours1["agent_steps_per_s"],
        "pogema_agent_steps_per_s": ref["agent_steps_per_s"],
        "ratio": ours["agent_steps_per_s"] / ref["agent_steps_per_s"],
        "ratio_n1": ours1["agent_steps_per_s"] / ref["agent_steps_per_s"],
        "details": {"ours": ours, "ours_n1": ours1, "pogema": ref},
        "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
    }


def format_bench(result: dict[str, Any]) -> str:
    """A small Markdown table of :func:`bench_env`'s result."""
    if "configs" in result:
        return format_bench_lmapf(result)
    r = result
    d = r["details"]
    rows = [
        ("memarl (batched)", f"{r['num_envs']}", r["ours_agent_steps_per_s"], d["ours"]["steps"], r["ratio"]),
        ("memarl (one env)", "1", r["ours_n1_agent_steps_per_s"], d["ours_n1"]["steps"], r["ratio_n1"]),
        ("pogema 1.4.0", "1", r["pogema_agent_steps_per_s"], d["pogema"]["steps"], 1.0),
    ]
    lengths = r["corridor_lengths"]
    limit = "2L+100" if r["max_episode_steps"] is None else r["max_episode_steps"]
    lines = [
        f"{r['env']}: {len(lengths)} maps (L {min(lengths)}..{max(lengths)}), episode {limit}, "
        f"random actions, one process ({r['machine']})",
        "",
        "| env | envs | agent-steps/s | steps timed | vs pogema |",
        "|---|---|---|---|---|",
    ]
    for label, envs, rate, steps, ratio in rows:
        lines.append(f"| {label} | {envs} | {rate:,.0f} | {steps:,} | {ratio:.2f}x |")
    lines += ["", "memarl's numbers include the full SRMT observation (path channel, agents, anonymous "
                  "targets); pogema's only its raw POMAPF dict."]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# pogema-lmapf: the native POGEMA engine (lifelong, soft, Follower observation) vs pogema 1.4.0

LMAPF_CONFIGS: dict[str, dict[str, Any]] = {
    "64a-32x32": {"num_agents": 64, "size": 32},
    "8a-8x8": {"num_agents": 8, "size": 8},
    "256a-64x64": {"num_agents": 256, "size": 64},
}
"""the three benchmark configurations (density, radius, collisions, mode and episode length in
:data:`LMAPF_COMMON`)"""
LMAPF_COMMON: dict[str, Any] = {"density": 0.3, "obs_radius": 5, "collision_system": "soft",
                                "on_target": "restart", "max_episode_steps": 256}
LMAPF_AGENTS_PER_BATCH = 4096
"""default batch of the batched measurement: ``max(1, 4096 // num_agents)`` envs (64 envs of 64
agents, 512 of 8, 16 of 256): enough agents per step to amortise numpy's per-call costs and the
per-step BFS of new targets, small enough that a step's arrays stay within a few MB"""


def lmapf_num_envs(num_agents: int) -> int:
    """Default number of envs of the batched pogema-lmapf measurement (see LMAPF_AGENTS_PER_BATCH)."""
    return max(1, LMAPF_AGENTS_PER_BATCH // num_agents)


def _time_ours_lmapf(num_envs: int, steps: int | None, seconds: float | None, seed: int, warmup: int,
                     **config: Any) -> dict[str, float]:
    from memarl.envs.pogema_env import PogemaEnv

    env = PogemaEnv(num_envs=num_envs, observation_type="follower", seed=seed, **config)
    env.reset()  # not timed: the first maps and their path tables (pogema's first reset is not timed either)
    a = env.num_agents
    actions = np.random.default_rng(seed).integers(0, env.num_actions, (_CHUNK, num_envs, a))

    def chunk(k: int) -> int:
        ended = 0
        for t in range(k):
            ended += int(env.step(actions[t])[4]["episode_end"].sum())
        return ended

    chunk(warmup)
    n, elapsed, episodes = _measure(chunk, steps, seconds)
    return {"agent_steps_per_s": n * num_envs * a / elapsed, "env_steps_per_s": n * num_envs / elapsed,
            "steps": n, "seconds": elapsed, "episodes": episodes}


class FollowerStylePogema:
    """pogema 1.4.0 with a Follower-style observation: our own plain Python/numpy reimplementation.

    What Follower's preprocessing does with its planner, written here without its C++ code: each
    step, every agent's shortest path on the static map (unit-cost BFS from its target, ties in
    MOVES order, as our native engine) is marked in its ``(2R+1)``-window from its cell to the
    first cell outside the window, on top of the obstacles (-1); plus the agents channel and the
    other agents' targets (anonymous). Returns ``float32 [A, 3, 2R+1, 2R+1]`` per step. The BFS
    distance field of a target is computed once and kept until the target changes (a planner
    that searches from scratch every step would be slower); the path is followed cell by cell
    in Python each step.
    """

    def __init__(self, grid_config: Any):
        import pogema

        self.env = pogema.pogema_v0(grid_config)
        self.radius = int(grid_config.obs_radius)
        self._fields: dict[tuple[int, int], np.ndarray] = {}

    def reset(self, seed: int | None = None):
        if seed is not None:  # a new instance, as each of our episodes (pogema regenerates on reset)
            self.env.grid_config.seed = seed
        obs, info = self.env.reset()
        grid = self.env.grid
        self._free = grid.obstacles == 0  # padded grid: the ring is an obstacle, outside is free
        inside = np.zeros_like(self._free)
        h, w = grid.obstacles.shape
        r = self.radius
        inside[r:h - r, r:w - r] = True
        self._passable = self._free & inside
        self._fields = {}
        return self._process(obs), info

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        return self._process(obs), rewards, terminated, truncated, infos

    def _field(self, target: tuple[int, int]) -> list[int]:
        """BFS distances to ``target`` on the padded grid, flat (a list: fast scalar reads), -1 unreachable."""
        got = self._fields.get(target)
        if got is None:
            passable = self._passable
            dist = np.full(passable.shape, -1, dtype=np.int32)
            dist[target] = 0
            front = np.zeros(passable.shape, dtype=bool)
            front[target] = True
            d = 0
            while front.any():
                d += 1
                nxt = np.zeros_like(front)
                nxt[1:] |= front[:-1]
                nxt[:-1] |= front[1:]
                nxt[:, 1:] |= front[:, :-1]
                nxt[:, :-1] |= front[:, 1:]
                nxt &= passable & (dist < 0)
                dist[nxt] = d
                front = nxt
            got = self._fields[target] = dist.reshape(-1).tolist()
        return got

    def _process(self, obs) -> np.ndarray:
        grid = self.env.grid
        r = self.radius
        side = 2 * r + 1
        width = grid.obstacles.shape[1]
        pos = np.array(grid.positions_xy)  # [A, 2] padded (row, col)
        targets = [tuple(t) for t in grid.finishes_xy]
        live = set(targets)
        self._fields = {t: f for t, f in self._fields.items() if t in live}  # drop reached targets' fields
        a = len(targets)
        out = np.zeros((a, 3, side, side), dtype=np.float32)
        # path channel: follow the distance field from the agent's cell (ties in MOVES order)
        # until the first cell outside the window; one Python walk per agent
        steps = (-width, width, -1, 1)
        for i, ((x, y), t) in enumerate(zip(pos.tolist(), targets)):
            dist = self._field(t)
            cell = x * width + y
            if dist[cell] < 0:
                continue
            path = out[i, 0]
            dx = dy = 0
            while True:
                path[dx + r, dy + r] = 1.0
                d = dist[cell]
                if d == 0:
                    break
                for k, step in enumerate(steps):
                    if dist[cell + step] == d - 1:
                        cell += step
                        dx, dy = dx + (k == 1) - (k == 0), dy + (k == 3) - (k == 2)
                        break
                if abs(dx) > r or abs(dy) > r:
                    break
        # obstacles (-1) and agents: the windows around all agents at once
        idx = (pos[:, 0] - r, pos[:, 1] - r)
        out[:, 0] -= sliding_window_view(grid.obstacles, (side, side))[idx]
        out[:, 1] = sliding_window_view(grid.positions, (side, side))[idx]
        # the other agents' targets (anonymous)
        rel = np.array(targets)[None, :, :] - pos[:, None, :] + r  # [A, A, 2] target j in agent i's window
        seen = (rel >= 0).all(-1) & (rel < side).all(-1) & ~np.eye(a, dtype=bool)
        i_idx, j_idx = np.nonzero(seen)
        out[i_idx, 2, rel[i_idx, j_idx, 0], rel[i_idx, j_idx, 1]] = 1.0
        return out


def _time_pogema_lmapf(steps: int | None, seconds: float | None, seed: int, warmup: int, follower: bool,
                       **config: Any) -> dict[str, float]:
    import pogema

    a = int(config["num_agents"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # its default observation (3 x (2R+1)^2 float32); under the Follower-style wrapper the
        # POMAPF one, which Follower's preprocessing starts from
        gc = pogema.GridConfig(seed=seed, observation_type="POMAPF" if follower else "default", **config)
        env = FollowerStylePogema(gc) if follower else pogema.pogema_v0(gc)
        episode = [0]
        if follower:
            env.reset(seed)
        else:
            env.reset()
    actions = np.random.default_rng(seed).integers(0, 5, (_CHUNK, a)).tolist()

    def new_episode() -> None:
        # a new instance per episode, as ours (env n's k-th episode plays seed + n + k * N)
        episode[0] += 1
        if follower:
            env.reset(seed + episode[0])
        else:
            env.grid_config.seed = seed + episode[0]
            env.reset()

    def chunk(k: int) -> int:
        ended = 0
        for t in range(k):
            _, _, term, trunc, _ = env.step(actions[t])
            if all(term) or all(trunc):
                ended += 1
                new_episode()
        return ended

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunk(warmup)
        n, elapsed, episodes = _measure(chunk, steps, seconds)
    return {"agent_steps_per_s": n * a / elapsed, "env_steps_per_s": n / elapsed, "steps": n,
            "seconds": elapsed, "episodes": episodes}


def lmapf_config_names(configs: Any) -> list[str]:
    """The :data:`LMAPF_CONFIGS` names to run (all for None); unknown or none is a MemarlError."""
    names = list(LMAPF_CONFIGS) if configs is None else list(configs)
    unknown = [c for c in names if c not in LMAPF_CONFIGS]
    if unknown or not names:
        raise MemarlError(f"unknown pogema-lmapf config(s) {', '.join(unknown) or '(none)'}; "
                          f"known: {', '.join(LMAPF_CONFIGS)}")
    return names


def lmapf_env_options(name: str) -> dict[str, Any]:
    """The PogemaConfig options of configuration ``name`` (without num_envs, seed, observation)."""
    return {**LMAPF_COMMON, **LMAPF_CONFIGS[name]}


def bench_pogema_lmapf(configs: list[str] | None = None, num_envs: int | None = None, steps: int | None = None,
                       seconds: float | None = None, seed: int = 0) -> dict[str, Any]:
    """Agent-steps/s of the native POGEMA engine and of pogema 1.4.0, per configuration, in this process.

    For each of :data:`LMAPF_CONFIGS` (64 agents 32x32, 8 agents 8x8, 256 agents 64x64; density
    0.3, R = 5, ``soft``, ``restart``, episodes of 256 steps) four measurements, each for ``steps``
    steps or about ``seconds`` (default 2000 steps), random actions pre-sampled:

    * ``ours``: :class:`~memarl.envs.pogema_env.PogemaEnv` with ``num_envs`` envs stepped together
      (default :func:`lmapf_num_envs`), Follower observation (BFS path channel, agents, anonymous
      targets), autoreset;
    * ``ours_n1``: the same with one env;
    * ``pogema``: one pogema 1.4.0 env, its default observation, the same map size, density,
      agents, radius, collisions, mode and episode length;
    * ``pogema_follower``: that env plus :class:`FollowerStylePogema` (our reimplementation of
      Follower's preprocessing in Python/numpy).

    Timed: every ``step`` call, including the episode resets inside the timed loop (a new map and
    new starts/targets per episode for all four: ours draws instance ``seed + n + k*N``, pogema
    gets ``seed + k``) and, for ours, the BFS tables of every new target (at resets and arrivals).
    Not timed: constructing the envs, the first reset and a 16-step warm-up. Ratios are ours
    (batched or one env) over pogema and over pogema + preprocessing.
    """
    names = lmapf_config_names(configs)
    if num_envs is not None and num_envs < 1:
        raise MemarlError(f"num_envs must be >= 1, got {num_envs}")
    if steps is not None and steps < 1:
        raise MemarlError(f"steps must be >= 1, got {steps}")
    if seconds is not None and seconds <= 0:
        raise MemarlError(f"seconds must be > 0, got {seconds}")
    if steps is None and seconds is None:
        steps = 2000
    warmup = 16
    rows = []
    for name in names:
        config = lmapf_env_options(name)
        n = num_envs if num_envs is not None else lmapf_num_envs(config["num_agents"])
        ours = _time_ours_lmapf(n, steps, seconds, seed, warmup, **config)
        ours1 = _time_ours_lmapf(1, steps, seconds, seed, warmup, **config)
        ref = _time_pogema_lmapf(steps, seconds, seed, warmup, False, **config)
        follower = _time_pogema_lmapf(steps, seconds, seed, warmup, True, **config)
        rate = {k: v["agent_steps_per_s"] for k, v in
                (("ours", ours), ("ours_n1", ours1), ("pogema", ref), ("pogema_follower", follower))}
        rows.append({"config": name, **config, "num_envs": n,
                     "ours_agent_steps_per_s": rate["ours"], "ours_n1_agent_steps_per_s": rate["ours_n1"],
                     "pogema_agent_steps_per_s": rate["pogema"],
                     "pogema_follower_agent_steps_per_s": rate["pogema_follower"],
                     "ratio": rate["ours"] / rate["pogema"], "ratio_n1": rate["ours_n1"] / rate["pogema"],
                     "ratio_vs_follower": rate["ours"] / rate["pogema_follower"],
                     "ratio_n1_vs_follower": rate["ours_n1"] / rate["pogema_follower"],
                     "details": {"ours": ours, "ours_n1": ours1, "pogema": ref, "pogema_follower": follower}})
    return {"env": "pogema-lmapf-v0", "steps": steps, "seconds": seconds, "seed": seed,
            "configs": rows,
            "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}"}


def format_bench_lmapf(result: dict[str, Any]) -> str:
    """Markdown table of :func:`bench_pogema_lmapf`'s result."""
    lines = [
        f"{result['env']}: density 0.3, R = 5, soft collisions, restart (lifelong), episodes of 256 steps, "
        f"random actions, one process, one core ({result['machine']})",
        "",
        "| config | memarl batched (envs) | memarl 1 env | pogema 1.4.0 | pogema + Follower prep. "
        "| batched / pogema | batched / (pogema + prep.) | 1 env / pogema | 1 env / (pogema + prep.) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["configs"]:
        lines.append(
            f"| {r['config']} | {r['ours_agent_steps_per_s']:,.0f} ({r['num_envs']}) "
            f"| {r['ours_n1_agent_steps_per_s']:,.0f} | {r['pogema_agent_steps_per_s']:,.0f} "
            f"| {r['pogema_follower_agent_steps_per_s']:,.0f} | {r['ratio']:.1f}x | {r['ratio_vs_follower']:.1f}x "
            f"| {r['ratio_n1']:.1f}x | {r['ratio_n1_vs_follower']:.1f}x |")
    lines += ["", "Agent-steps/s. memarl: Follower observation (BFS path channel from next-move tables, agents, "
              "anonymous targets) for every agent every step. pogema: its default observation. "
              "pogema + Follower prep.: our plain Python/numpy reimplementation of Follower's preprocessing "
              "(path to the target on the static map + crop, agents, anonymous targets) as a wrapper "
              "(memarl.eval.bench.FollowerStylePogema). Timed: every step including the resets to new "
              "instances and, for memarl, the BFS of every new target; not timed: env construction, the "
              "first reset, 16 warm-up steps."]
    return "\n".join(lines)
