"""Speed benchmarks: our batched envs against pogema 1.4.0, measured in the same process.

``memarl bench env bottleneck`` calls :func:`bench_env` and prints :func:`format_bench`.
"""
from __future__ import annotations

import platform
import time
from typing import Any, Callable

import numpy as np

from memarl.errors import MemarlError

_CHUNK = 256  # pre-sampled actions per chunk in time-based runs


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
    from memarl.envs.bottleneck import BottleneckEnv, _pools, bottleneck_grid

    env = BottleneckEnv(num_envs=num_envs, seed=seed, **env_kwargs)
    # build every path table up front so that one-time BFS work is not timed
    maps, tables = _pools(env.radius)
    for L in env.config.corridor_lengths:
        g = bottleneck_grid(L, env.radius)
        maps.offset(g)
        for cell in g.free_cells:
            row = cell // g.padded_width - env.radius
            if row < 2 or row >= L + 2:  # room cells are the possible goals
                tables.offset(g, int(cell))
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


def bench_env(env_id: str = "bottleneck", num_envs: int = 64, steps: int | None = None,
              seed: int = 0, seconds: float | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """Time our batched env and pogema 1.4.0 on the same maps, in this process.

    Three measurements, each for ``steps`` steps or, with ``seconds``, for about that long
    (default: 2000 steps): ours with ``num_envs`` envs stepped together, ours with one env
    (a fair per-env comparison), and one pogema env. Ours run with autoreset and full
    observations (path channel, agents, anonymous targets); pogema with POMAPF observations,
    ``block_both``, ``finish``, R = 2, the same corridor lengths and time limit, reset when all
    agents are terminated or truncated. Random actions are pre-sampled; path tables are built
    before timing. ``env_kwargs`` are env config fields (e.g. ``corridor_lengths``). Returns rates
    in agent-steps/s, ``ratio`` (ours batched / pogema) and ``ratio_n1`` (ours one env / pogema).
    """
    from memarl.envs.bottleneck import BottleneckConfig
    from memarl.registry import ENVS

    name = ENVS.resolve(env_id)
    if not name.startswith("bottleneck"):
        raise MemarlError(f"bench_env supports the bottleneck env for now, got {env_id!r}")
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
