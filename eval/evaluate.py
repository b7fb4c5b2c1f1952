"""One evaluator for every env family: a policy on the episodes of a suite -> rows, tables, plots.

A policy is a trained checkpoint or a scripted baseline (:mod:`memarl.eval.baselines`); a suite is
a file of :mod:`memarl.eval.suites`. Every episode (map, agent count, instance seed) is played
exactly once:

* **Batches of pinned episodes.** Episodes with the same agent count share one batched env of
  up to ``batch_size`` envs; each env plays a queue of episodes (``GridEngine.start_episodes``:
  a finished env starts its next episode while the others go on), and a learned policy acts
  on the whole batch at once. ``workers`` processes split the episodes between them.
* **Actions independent of batching.** Sampled actions come from a counter-based random stream
  keyed by (evaluation seed, episode, step, agent) (:func:`keyed_uniform`), so an episode's
  result does not depend on the batch size, the worker count, or which episodes ran before it:
  an interrupted evaluation that is resumed gives the rows a single run would have given.
* **The training observation.** A learned policy observes exactly as in training: the fields
  its env declares as observation fields (``observation_fields``) come from the checkpoint's
  resolved env config; the task settings come from the suite. A suite that pins an observation
  field otherwise, or a checkpoint of another env family, is refused in one line.
* **Outputs** (``RUN/eval/SUITE`` or ``baselines/NAME/SUITE``): ``episodes.csv`` (one row per
  episode, written as episodes finish), ``summary.md`` (mean and 95% CI per value of the
  suite's axis, and per band), ``summary.json``, ``plot.png`` (each metric against the axis),
  ``eval.json`` (what was evaluated: re-running the same evaluation continues from the rows
  already written; results of another checkpoint or setting are never overwritten without
  ``--force``) and, with ``--videos K``, ``videos/`` with the first K episodes.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import numpy as np
import torch

from memarl.configs import Range, option_label, validate_fields
from memarl.envs.base import PinnedEpisode, agent_positions
from memarl.envs.mapgen import MAX_CORRIDOR_LENGTH
from memarl.errors import MemarlError
from memarl.eval.suites import Suite, SuiteEpisode, get_suite
from memarl.files import check_creatable_dir

MAX_EPISODES = 10_000
"""most seeds per (map, agent count) an evaluation runs (the published suites use at most 128)"""
MANIFEST = "eval.json"
ROWS = "episodes.csv"
ID_COLUMNS = ("suite", "map_name", "num_agents", "seed", "max_episode_steps", "episode_length")
"""the columns every row starts with (then the axis value, the suite's metrics, runtime, policy)"""


def check_checkpoint_choice(run: str | None, checkpoint: str) -> None:
    """``--checkpoint``: best, latest, a checkpoint file, or a file name in RUN/checkpoints."""
    if checkpoint in ("best", "latest") or Path(checkpoint).is_file():
        return
    if run is not None and (Path(run) / "checkpoints" / checkpoint).is_file():
        return
    raise MemarlError(f"--checkpoint must be best, latest or a checkpoint file, got {checkpoint!r}")


@dataclasses.dataclass
class EvalConfig:
    """``memarl eval``: a checkpoint (or a scripted baseline) on every episode of a suite."""

    run: str | None = None
    """run directory or checkpoint file (or --baseline instead)"""
    suite: str = ""
    """suite name (`memarl list suites`) or a suite file (.yaml); required unless --compare"""
    baseline: str | None = None
    """evaluate a scripted baseline instead of a run: greedy, greedy-random or random"""
    maps: Annotated[int | None, Range(1, 100_000)] = None
    """only the suite's first MAPS maps (quick looks)"""
    agents: Annotated[tuple[int, ...] | None, Range(1, 10_000_000)] = None
    """comma-separated subset of the suite's agent counts"""
    episodes: Annotated[int | None, Range(1, MAX_EPISODES)] = None
    """seeds per map and agent count: the suite's first EPISODES (0..EPISODES-1 when it has fewer)"""
    max_corridor_length: Annotated[int | None, Range(1, MAX_CORRIDOR_LENGTH)] = None
    """suites of corridors (Bottleneck, T-Maze): skip maps longer than this (quick looks)"""
    checkpoint: str = "best"
    """best (falls back to latest), latest, or a checkpoint file (then RUN may be left out)"""
    deterministic: bool = False
    """act by argmax instead of sampling (recorded in the table)"""
    out: str | None = None
    """output folder (default RUN/eval/SUITE, for a baseline baselines/NAME/SUITE)"""
    force: bool = False
    """replace the results in the output folder (default: continue them if they are of the same
    evaluation, refuse otherwise)"""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """seed of action sampling"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""
    workers: Annotated[int, Range(1, 256)] = 1
    """worker processes that split the episodes (results do not depend on it)"""
    batch_size: Annotated[int, Range(1, 100_000)] = 128
    """envs stepped together per worker (results do not depend on it)"""
    videos: Annotated[int, Range(0, 10_000)] = 0
    """also render the first VIDEOS episodes to OUT/videos (GIF and MP4)"""
    compare: Literal["published"] | None = None
    """compare the run's POGEMA suite results (RUN/eval/*) with the published baselines"""
    quiet: bool = False
    """no progress bar (it is shown only on a terminal anyway)"""

    def validate(self) -> Suite | None:
        """Fields, then the rules between them and the suite (one-line MemarlError); the suite."""
        from memarl.train.trainer import resolve_device

        validate_fields(self, label=option_label)
        if self.run is None and self.baseline is None and self.checkpoint not in ("best", "latest"):
            self.run = self.checkpoint  # `memarl eval --checkpoint FILE`: the file is the run
        if (self.run is None) == (self.baseline is None):
            raise MemarlError("give either a run (directory or checkpoint) or --baseline NAME")
        if self.baseline is not None:
            from memarl.eval.baselines import make_baseline
            make_baseline(self.baseline)
        if self.run is not None and not Path(self.run).exists():
            raise MemarlError(f"no such run directory or checkpoint: {self.run}")
        if self.run is not None:
            check_checkpoint_choice(self.run, self.checkpoint)
        if resolve_device(self.device).type != "cpu" and self.workers > 1:
            raise MemarlError("--workers > 1 runs the workers on the CPU; give --device cpu, or --workers 1 "
                              "for the GPU")
        if self.out is not None:
            check_creatable_dir(self.out, "--out")
        if not self.suite:
            given = [name for name in ("maps", "agents", "episodes", "max_corridor_length") if getattr(self, name)]
            if given or self.videos:
                raise MemarlError(f"{option_label((given or ['videos'])[0])} needs --suite")
            if self.compare is None:
                raise MemarlError("--suite is required (`memarl list suites`)")
            return None
        suite = get_suite(self.suite)
        select_episodes(suite, self.maps, self.agents, self.episodes, self.max_corridor_length)
        if self.videos:
            from memarl.registry import ENVS
            if not hasattr(ENVS.get(suite.env_id).load(), "obstacles"):  # the renderer draws grid maps
                raise MemarlError(f"--videos renders grid envs; env {suite.env_id} of suite {suite.name} has no "
                                  f"video renderer")
        return suite


# --------------------------------------------------------------------------------------------
# which episodes


def select_episodes(suite: Suite, maps: int | None = None, agents: Sequence[int] | None = None,
                    episodes: int | None = None, max_corridor_length: int | None = None) -> list[SuiteEpisode]:
    """The suite's episodes under the filters (each applies to every suite, or is an error)."""
    map_names = list(suite.map_names)
    if max_corridor_length is not None:
        if suite.axis != "corridor_length":
            raise MemarlError(f"--max-corridor-length applies to suites of Bottleneck corridors or T-Maze "
                              f"corridors, not {suite.name}")
        from memarl.envs.maps import corridor_length
        map_names = [m for m in map_names if corridor_length(m, None) <= max_corridor_length]
        if not map_names:
            raise MemarlError(f"suite {suite.name} has no map with corridor length <= {max_corridor_length}")
    if maps is not None:
        map_names = map_names[:maps]
    counts = list(suite.num_agents)
    if agents is not None:
        unknown = [a for a in agents if a not in suite.num_agents]
        if unknown:
            raise MemarlError(f"--agents {','.join(map(str, agents))}: suite {suite.name} has agent counts "
                              f"{','.join(map(str, suite.num_agents))}")
        counts = [a for a in counts if a in agents]
        if not counts:
            raise MemarlError("--agents must name at least one of the suite's agent counts")
    seeds = list(suite.seeds)
    if episodes is not None:
        seeds = seeds[:episodes] if episodes <= len(seeds) else list(range(episodes))
    return [SuiteEpisode(m, n, s, suite.episode_steps) for n in counts for m in map_names for s in seeds]


# --------------------------------------------------------------------------------------------
# the policy side


@dataclasses.dataclass
class EvalPolicy:
    """What plays the episodes: a learned policy (``step``) or a scripted one (``act(env)``)."""

    policy: Any
    """the torch module (learned) or the baseline object (scripted)"""
    label: str
    """name in tables"""
    identity: dict
    """what makes two evaluations the same (checkpoint file and its step, or the baseline)"""
    env_id: str | None = None
    """the env the policy was trained on (None: scripted, observes nothing)"""
    observation: dict = dataclasses.field(default_factory=dict)
    """the training values of the env's observation fields"""
    obs_shape: tuple[int, ...] | None = None
    """observation shape the policy expects"""
    notes: list = dataclasses.field(default_factory=list)
    """lines for the summary"""

    @property
    def scripted(self) -> bool:
        return hasattr(self.policy, "act")


def load_eval_policy(run: str | None, baseline: str | None, which: str = "best",
                     device: torch.device | str = "cpu") -> EvalPolicy:
    """The policy of ``run`` (a checkpoint) or the scripted ``baseline``."""
    if baseline is not None:
        from memarl.eval.baselines import make_baseline

        policy = make_baseline(baseline)
        return EvalPolicy(policy, baseline, {"baseline": baseline},
                          notes=[f"scripted baseline {baseline!r}: {type(policy).__doc__.splitlines()[0]}"])
    from memarl.eval.policy_io import load_policy, observation_fields

    policy = load_policy(run, which=which, device=device)
    info = policy.checkpoint_info
    env_id = info["env_id"]
    observation = {k: info["env_config"][k] for k in observation_fields(env_id)}
    name = Path(info["file"]).name
    label = f"{info['agent']} ({name}, {info['agent_steps']:,} agent-steps)"
    identity = {"checkpoint": str(Path(info["file"]).resolve()), "checkpoint_name": name, "update": info["update"],
                "agent_steps": info["agent_steps"], "agent": info["agent"]}
    obs = ", ".join(f"{k}={v}" for k, v in observation.items())
    return EvalPolicy(policy, label, identity, env_id, observation, tuple(info.get("obs_shape") or ()) or None,
                      notes=[f"checkpoint {info['file']} ({info['agent']}, update {info['update']}, "
                             f"{info['agent_steps']:,} agent-steps); observation as trained: {obs}"])


def env_settings(suite: Suite, policy: EvalPolicy) -> dict:
    """The env config of the suite's episodes for ``policy``: the suite env's defaults, the
    policy's training observation, the suite's task settings (one line when they disagree)."""
    from memarl.registry import ENVS

    if policy.env_id is not None and ENVS.get(policy.env_id).entry_point != ENVS.get(suite.env_id).entry_point:
        raise MemarlError(f"suite {suite.name} runs env {suite.env_id}; the checkpoint was trained on {policy.env_id}")
    settings = dict(ENVS.get(suite.env_id).kwargs)
    for key, value in policy.observation.items():
        pinned = suite.settings.get(key, value)
        if pinned != value:
            raise MemarlError(f"suite {suite.name} sets {key}={pinned}, the checkpoint was trained with "
                              f"{key}={value}: its observation does not fit the suite")
        settings[key] = value
    settings.update(suite.settings)
    for key in ("size", "density", "corridor_lengths", "corridor_length"):  # generated-map settings: episodes are pinned
        settings.pop(key, None)
    return settings


def make_suite_env(suite: Suite, settings: dict, num_envs: int, num_agents: int, first_map: str,
                   policy: EvalPolicy | None = None):
    """A batch of ``num_envs`` envs for ``num_agents``-agent episodes of ``suite``."""
    from memarl.registry import ENVS

    kwargs = dict(settings, num_envs=num_envs)
    config_fields = {f.name for f in dataclasses.fields(ENVS.get(suite.env_id).load().config_class)}
    if {"num_agents", "map_name"} <= config_fields:  # envs whose config names the map and agent count
        kwargs.update(num_agents=num_agents, map_name=first_map, seed=0)
    env = ENVS.make(suite.env_id, **kwargs)
    if policy is not None and policy.obs_shape is not None and tuple(env.obs_shape) != policy.obs_shape:
        raise MemarlError(f"the checkpoint observes {list(policy.obs_shape)}, suite {suite.name} gives "
                          f"{list(env.obs_shape)}: its observation does not fit the suite")
    return env


# --------------------------------------------------------------------------------------------
# sampling that does not depend on the batch


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 values."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def episode_key(seed: int, episode: SuiteEpisode) -> int:
    """A 64-bit key of (evaluation seed, episode): the stream its sampled actions come from."""
    text = f"{seed}|{episode.map_name}|{episode.num_agents}|{episode.seed}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def keyed_uniform(keys: np.ndarray, steps: np.ndarray, num_agents: int) -> np.ndarray:
    """Uniform numbers in [0, 1) ``[K, A]``, a fixed function of (key, step, agent)."""
    with np.errstate(over="ignore"):
        k = keys.astype(np.uint64)[:, None]
        t = steps.astype(np.uint64)[:, None]
        a = np.arange(num_agents, dtype=np.uint64)[None, :]
        x = _mix64(k ^ _mix64(t * np.uint64(0x9E3779B97F4A7C15) + a))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def keyed_actions(logits: torch.Tensor, uniforms: np.ndarray) -> np.ndarray:
    """Actions ``[K, A]`` sampled from ``logits [K, A, M]`` by inverting the CDF at ``uniforms``."""
    probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
    cdf = np.cumsum(probs, axis=-1)
    actions = (uniforms[..., None] >= cdf).sum(-1)
    return np.minimum(actions, logits.shape[-1] - 1)


# --------------------------------------------------------------------------------------------
# playing episodes


@torch.no_grad()
def play_episodes(policy: EvalPolicy, suite: Suite, episodes: Sequence[SuiteEpisode], *,
                  deterministic: bool = False, seed: int = 0, batch_size: int = 128,
                  device: torch.device | str = "cpu", on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Play every episode once; one row per episode (also passed to ``on_row`` as it finishes).

    Episodes of one agent count share a batch of up to ``batch_size`` envs, each env playing a
    queue of episodes; rows come in the order episodes finish.
    """
    device = torch.device(device)
    settings = env_settings(suite, policy)
    rows: list[dict] = []
    counts = list(dict.fromkeys(e.num_agents for e in episodes))
    for count in counts:
        queue = [e for e in episodes if e.num_agents == count]
        k = min(batch_size, len(queue))
        env = make_suite_env(suite, settings, k, count, queue[0].map_name, policy)
        slots: list[SuiteEpisode | None] = queue[:k]
        queue = queue[k:]
        obs = env.start_episodes([_pinned(e) for e in slots])
        keys = np.array([episode_key(seed, e) for e in slots], dtype=np.uint64)
        steps = np.zeros(k, dtype=np.int64)
        runtime = np.zeros(k, dtype=np.float64)
        first = torch.ones((k, count), dtype=torch.bool, device=device)
        state = None if policy.scripted else policy.policy.initial_state(k, count, device)
        while any(e is not None for e in slots):
            running = np.array([e is not None for e in slots])
            started = time.perf_counter()
            if policy.scripted:
                actions = policy.policy.act(env)
            else:
                positions = agent_positions(env)
                logits, _, state = policy.policy.step(
                    torch.as_tensor(obs, device=device), state, first,
                    torch.as_tensor(env.alive, device=device),
                    None if positions is None else torch.as_tensor(positions, device=device))
                if deterministic:
                    actions = logits.argmax(-1).cpu().numpy()
                else:
                    actions = keyed_actions(logits, keyed_uniform(keys, steps, count))
                first = torch.zeros_like(first)
            # the policy's time, shared by the episodes it acted for (POGEMA's runtime)
            runtime[running] += (time.perf_counter() - started) / running.sum()
            obs, _, _, _, info = env.step(actions)
            steps += 1
            ended = np.flatnonzero(info["episode_end"] & running)
            if ended.size == 0:
                continue
            restart_ids, restart = [], []
            for i in ended:
                row = episode_row(suite, slots[i], info["episode_metrics"][i], runtime[i])
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                slots[i] = queue.pop(0) if queue else None
                if slots[i] is not None:
                    restart_ids.append(int(i))
                    restart.append(slots[i])
                    keys[i] = episode_key(seed, slots[i])
                    steps[i] = 0
                    runtime[i] = 0.0
            if restart:
                obs = env.start_episodes([_pinned(e) for e in restart], restart_ids)
                first = first.clone()
                first[restart_ids] = True
        env.close()
    return rows


def _pinned(episode: SuiteEpisode) -> PinnedEpisode:
    return PinnedEpisode(episode.map_name, episode.seed, episode.max_episode_steps)


def episode_row(suite: Suite, episode: SuiteEpisode, metrics: dict, runtime: float) -> dict:
    """The table row of a finished episode: what it was, then the suite's metrics."""
    missing = [m for m in suite.metrics if m not in metrics]
    if missing:
        raise MemarlError(f"suite {suite.name} aggregates {missing[0]!r}, which env {suite.env_id} does not "
                          f"report for this episode (it reports {', '.join(sorted(metrics))})")
    row = {"suite": suite.name, "map_name": episode.map_name, "num_agents": episode.num_agents,
           "seed": episode.seed, "max_episode_steps": metrics.get("max_episode_steps", episode.max_episode_steps),
           "episode_length": metrics["episode_length"]}
    if suite.axis == "corridor_length":
        row["corridor_length"] = suite.axis_value(episode)
    row.update({m: metrics[m] for m in suite.metrics})
    row["runtime"] = round(float(runtime), 6)
    return row


def _worker(args: tuple) -> None:
    """A worker process: play its share of the episodes, send each row to the parent."""
    policy, suite, episodes, options, threads, rows_out = args
    torch.set_num_threads(threads)
    try:
        play_episodes(policy, suite, episodes, on_row=rows_out.put, **options)
    except BaseException as error:  # noqa: BLE001 (reported to the parent, which raises it)
        rows_out.put(MemarlError(f"an evaluation worker failed: {type(error).__name__}: {error}"))
    rows_out.put(None)


def play_in_workers(policy: EvalPolicy, suite: Suite, episodes: Sequence[SuiteEpisode], workers: int,
                    on_row: Callable[[dict], None], **options: Any) -> None:
    """:func:`play_episodes` split over ``workers`` processes (every ``workers``-th episode each)."""
    if workers <= 1 or len(episodes) <= 1:
        play_episodes(policy, suite, episodes, on_row=on_row, **options)
        return
    import multiprocessing as mp

    context = mp.get_context("spawn")  # a fresh interpreter: no forked torch/OpenMP state
    rows = context.Queue()
    workers = min(workers, len(episodes))
    threads = max(1, (os.cpu_count() or 1) // workers)
    procs = [context.Process(target=_worker, args=((policy, suite, list(episodes[w::workers]), options, threads,
                                                    rows),), daemon=True) for w in range(workers)]
    for proc in procs:
        proc.start()
    try:
        done = 0
        while done < workers:
            item = rows.get()
            if item is None:
                done += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                on_row(item)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()


# --------------------------------------------------------------------------------------------
# aggregation


def metric_values(rows: Sequence[dict], metric: str) -> np.ndarray:
    """The per-episode values of ``metric``; collisions become collisions per agent-step."""
    values = np.array([float(r[metric]) for r in rows], dtype=np.float64)
    if metric in ("collisions", "obstacle_collisions"):
        per = np.array([float(r["episode_length"]) * float(r["num_agents"]) for r in rows])
        values = values / np.maximum(per, 1.0)
    return values


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (normal approximation: 1.96
    standard errors; 0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise MemarlError("no values to summarise")
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else 0.0
    return float(values.mean()), float(half)


def summarize(rows: Sequence[dict], suite: Suite) -> dict:
    """Per axis value: episodes and each metric's mean and 95% CI; the bands' means."""
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(_axis_of(row, suite.axis), []).append(row)
    summary: dict[str, Any] = {"axis": suite.axis, "metrics": list(suite.metrics), "groups": [], "bands": []}
    for value in sorted(groups, key=lambda v: (isinstance(v, str), v)):
        group = groups[value]
        entry = {suite.axis: value, "episodes": len(group)}
        for metric in suite.metrics:
            entry[metric], entry[f"{metric}_ci95"] = mean_ci95(metric_values(group, metric))
        summary["groups"].append(entry)
    for name, low, high in suite.bands:
        chosen = [r for r in rows if low <= float(_axis_of(r, suite.axis)) <= high]
        if chosen:
            summary["bands"].append({"band": name, "episodes": len(chosen),
                                     **{m: float(metric_values(chosen, m).mean()) for m in suite.metrics}})
    return summary


def _axis_of(row: dict, axis: str) -> Any:
    value = row[axis]
    return value if axis == "map_name" else int(value)


def markdown_summary(summary: dict, title: str, notes: Sequence[str]) -> str:
    """The summary as Markdown: notes, the bands, one row per axis value."""
    metrics, axis = summary["metrics"], summary["axis"]
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes]
    if "collisions" in metrics:
        lines.append("- collisions: agent-steps refused because of other agents, per agent-step "
                     "(POGEMA's Coordination = 1 - this)")
    lines.append("- mean ± half-width of the 95% confidence interval (1.96 standard errors)")
    if summary["bands"]:
        lines += ["", "| band | episodes | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        for band in summary["bands"]:
            lines.append(f"| {band['band']} | {band['episodes']} | "
                         + " | ".join(format_metric(band[m]) for m in metrics) + " |")
    lines += ["", f"| {axis} | episodes | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for group in summary["groups"]:
        cells = [f"{format_metric(group[m])} ± {format_metric(group[m + '_ci95'])}" for m in metrics]
        lines.append(f"| {group[axis]} | {group['episodes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_metric(value: float) -> str:
    """A metric for a table: one decimal from 10 up (SoC, makespan), else three (rates)."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


RATE_METRICS = ("CSR", "ISR", "success", "turned")
"""metrics that are fractions of episodes or agents: their plots span 0..1"""


def style_metric_axes(ax: Any, axis: str, metric: str, xs: Sequence[float]) -> None:
    """The rules every plot of a metric against a suite's axis follows: a log scale for
    corridors spanning more than 20x, 0..1 for rates, and T-Maze's 0.5 chance line."""
    if axis == "corridor_length" and len(xs) > 1 and max(xs) / max(min(xs), 1) > 20:
        ax.set_xscale("log")
    if metric in RATE_METRICS:
        ax.set_ylim(-0.05, 1.05)
    if metric == "success":  # T-Maze: choosing an arm at random succeeds half the time
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")


def plot_summary(summary: dict, path: Path, title: str) -> None:
    """One panel per metric against the suite's axis: mean with a 95% CI band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, axis, groups = summary["metrics"], summary["axis"], summary["groups"]
    xs = list(range(len(groups))) if axis == "map_name" else [g[axis] for g in groups]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        mean = np.array([g[metric] for g in groups])
        ci = np.array([g[f"{metric}_ci95"] for g in groups])
        ax.plot(xs, mean, marker="o", markersize=3)
        ax.fill_between(xs, mean - ci, mean + ci, alpha=0.25)
        style_metric_axes(ax, axis, metric, xs)
        if metric == "success":
            ax.legend(loc="lower left", fontsize=8)
        ax.set_xlabel(axis.replace("_", " ") if axis != "map_name" else "map (suite order)")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# the output folder


def read_rows(path: Path) -> list[dict]:
    """The rows of an ``episodes.csv`` (a last line cut by a kill is dropped)."""
    with path.open(newline="") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    if lines and not text.endswith("\n"):
        lines = lines[:-1]
    reader = csv.DictReader(lines)
    return [row for row in reader if None not in row and None not in row.values()]


class RowWriter:
    """Appends rows to ``episodes.csv`` as episodes finish (flushed, so a kill loses at most the
    episodes still running)."""

    def __init__(self, path: Path, columns: Sequence[str], rows: Sequence[dict]):
        self.columns = list(columns)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as f:  # rewrite the kept rows whole (drops a cut last line)
            writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def results_root(cfg: EvalConfig) -> Path:
    """Where a policy's suite results go by default: RUN/eval, or baselines/NAME for a baseline."""
    if cfg.baseline is not None:
        return Path("baselines") / cfg.baseline
    run = Path(cfg.run)
    return (run if run.is_dir() else run.parent.parent) / "eval"


def default_out(cfg: EvalConfig, suite_name: str) -> Path:
    return Path(cfg.out) if cfg.out is not None else results_root(cfg) / suite_name


def _manifest(cfg: EvalConfig, suite: Suite, policy: EvalPolicy, episodes: Sequence[SuiteEpisode]) -> dict:
    return {"suite": suite.name, "suite_file": suite.path, "policy": policy.identity,
            "deterministic": cfg.deterministic, "seed": cfg.seed,
            "filters": {"maps": cfg.maps, "agents": list(cfg.agents) if cfg.agents else None,
                        "episodes": cfg.episodes, "max_corridor_length": cfg.max_corridor_length},
            "episodes": len(episodes)}


def _same_evaluation(old: dict, new: dict) -> str | None:
    """None if ``old`` and ``new`` manifests describe the same evaluation, else what differs."""
    for key in ("suite", "policy", "deterministic", "seed"):
        if old.get(key) != new.get(key):
            return key
    return None


# --------------------------------------------------------------------------------------------
# memarl eval


def evaluate(cfg: EvalConfig, progress: bool = True) -> Path | None:
    """``memarl eval``: evaluate, write the outputs, optionally videos and the comparison."""
    from memarl.train.trainer import resolve_device

    suite = cfg.validate()
    device = resolve_device(cfg.device)
    policy = load_eval_policy(cfg.run, cfg.baseline, cfg.checkpoint, device)
    out = None
    if suite is not None:
        out = evaluate_suite(cfg, suite, policy, device, progress)
    if cfg.compare is not None:
        out = compare_published(cfg, policy)
    return out


def evaluate_suite(cfg: EvalConfig, suite: Suite, policy: EvalPolicy, device: torch.device,
                   progress: bool = True) -> Path:
    """Run (or continue) the evaluation of ``policy`` on ``suite``; the output folder."""
    episodes = select_episodes(suite, cfg.maps, cfg.agents, cfg.episodes, cfg.max_corridor_length)
    # a misfit (maps, agent counts, observation) fails before any file is touched
    suite.check_maps(tuple(sorted({e.num_agents for e in episodes})), tuple(dict.fromkeys(e.map_name for e in episodes)))
    settings = env_settings(suite, policy)
    make_suite_env(suite, settings, 1, episodes[0].num_agents, episodes[0].map_name, policy).close()
    out = default_out(cfg, suite.name)
    check_creatable_dir(out, "--out")
    manifest = _manifest(cfg, suite, policy, episodes)
    rows_path, manifest_path = out / ROWS, out / MANIFEST
    kept: list[dict] = []
    if rows_path.exists() and not cfg.force:
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        differs = _same_evaluation(old, manifest) if old else "manifest"
        if differs is not None:
            what = {"policy": "another checkpoint or policy", "manifest": "an unknown evaluation",
                    "deterministic": "other actions (--deterministic)", "seed": "another --seed",
                    "suite": "another suite"}[differs]
            raise MemarlError(f"{out} holds results of {what}; pass --force to replace them or choose another --out")
        kept = read_rows(rows_path)  # all of them: a narrower selection keeps the earlier rows
    done = {(r["map_name"], int(r["num_agents"]), int(r["seed"])) for r in kept}
    todo = [e for e in episodes if e.key not in done]
    out.mkdir(parents=True, exist_ok=True)
    _write_json(manifest_path, manifest)
    columns = list(ID_COLUMNS) + (["corridor_length"] if suite.axis == "corridor_length" else []) \
        + list(suite.metrics) + ["runtime", "policy", "checkpoint", "agent_steps", "actions"]
    writer = RowWriter(rows_path, columns, kept)
    actions = "scripted" if policy.scripted else "argmax" if cfg.deterministic else "sampled"
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, pipes)
    bar = tqdm(total=len(episodes), initial=len(episodes) - len(todo), unit="ep", desc=suite.name,
               disable=None if progress and not cfg.quiet else True, dynamic_ncols=True, leave=True)

    def on_row(row: dict) -> None:
        row.update(policy=policy.label, checkpoint=policy.identity.get("checkpoint_name", ""),
                   agent_steps=policy.identity.get("agent_steps", ""), actions=actions)
        writer.write(row)
        bar.update(1)

    try:
        play_in_workers(policy, suite, todo, cfg.workers, on_row, deterministic=cfg.deterministic,
                        seed=cfg.seed, batch_size=cfg.batch_size, device=device)
    finally:
        writer.close()
        bar.close()
    rows = read_rows(rows_path)
    map_order = {name: k for k, name in enumerate(suite.map_names)}
    rows.sort(key=lambda r: (int(r["num_agents"]), map_order.get(r["map_name"], -1), int(r["seed"])))
    RowWriter(rows_path, columns, rows).close()  # the finished table in suite order
    write_summary(out, suite, rows, policy, cfg)
    if cfg.videos:
        write_videos(out / "videos", suite, policy, episodes[:cfg.videos], cfg)
    return out


def write_summary(out: Path, suite: Suite, rows: list[dict], policy: EvalPolicy, cfg: EvalConfig) -> None:
    """summary.md, summary.json and plot.png of the rows."""
    summary = summarize(rows, suite)
    title = f"{policy.label} on {suite.name}"
    seeds = sorted({int(r["seed"]) for r in rows})
    seed_text = f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    actions = "scripted" if policy.scripted else "argmax" if cfg.deterministic else f"sampled (seed {cfg.seed})"
    notes = policy.notes + [
        f"actions: {actions}; episodes: {len(rows)} "
        f"({len({r['map_name'] for r in rows})} of {len(suite.map_names)} maps, seeds {seed_text}); "
        f"suite settings: {suite.settings or 'the env defaults'}; suite file {suite.path}"]
    (out / "summary.md").write_text(markdown_summary(summary, title, notes))
    _write_json(out / "summary.json", {"title": title, "suite": suite.name, "policy": policy.identity,
                                        "label": policy.label, "notes": notes, **summary})
    plot_summary(summary, out / "plot.png", title)


def write_videos(folder: Path, suite: Suite, policy: EvalPolicy, episodes: Sequence[SuiteEpisode],
                 cfg: EvalConfig) -> list[Path]:
    """GIF (and MP4) of each of ``episodes``, named after map, agents and seed."""
    from memarl.eval.render import render_episode_video

    folder.mkdir(parents=True, exist_ok=True)
    settings = env_settings(suite, policy)
    written = []
    for episode in episodes:
        env = make_suite_env(suite, settings, 1, episode.num_agents, episode.map_name, policy)
        env.start_episodes([_pinned(episode)])
        path = folder / f"{episode.map_name}-agents{episode.num_agents}-seed{episode.seed}.gif"
        steps = int(env.max_episode_steps[0])
        written.append(render_episode_video(policy.policy, env, path, max_steps=steps,
                                            deterministic=cfg.deterministic, fps=6, cell=0))
        env.close()
    return written


def compare_published(cfg: EvalConfig, policy: EvalPolicy) -> Path:
    """``--compare published``: the run's POGEMA results among the published baselines."""
    from memarl.eval.pogema_compare import OUR_SUITES, write_comparison

    base = results_root(cfg)
    results = {}
    for path in sorted(base.glob(f"*/{ROWS}")):
        rows = read_rows(path)
        if rows and rows[0]["suite"] in OUR_SUITES:  # the benchmark's suites, whatever else was evaluated
            results[rows[0]["suite"]] = rows
    if not results:
        raise MemarlError(f"no POGEMA suite results in {base}: run `memarl eval ... --suite pogema-...` first")
    modes = {"lmapf" if name.endswith("-lmapf") else "mapf" for name in results}
    out = Path(cfg.out) if cfg.out is not None and not cfg.suite else base / "compare-published"
    for mode in sorted(modes):  # each mode reads the suites it needs (pathfinding serves both)
        write_comparison(results, policy.label, out / mode, mode)
    return out


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def evaluate_policy(policy: Any, suite_name: str, *, deterministic: bool = False, seed: int = 0,
                    maps: int | None = None, agents: Sequence[int] | None = None, episodes: int | None = None,
                    max_corridor_length: int | None = None, observation: dict | None = None,
                    env_id: str | None = None, batch_size: int = 128) -> list[dict]:
    """Rows of an in-memory ``policy`` (learned or scripted) on a suite, in suite order (tests,
    learning checks): ``observation`` are the training values of the env's observation fields."""
    suite = get_suite(suite_name)
    chosen = select_episodes(suite, maps, agents, episodes, max_corridor_length)
    wrapped = EvalPolicy(policy, "policy", {}, env_id, dict(observation or {}))
    rows = play_episodes(wrapped, suite, chosen, deterministic=deterministic, seed=seed, batch_size=batch_size)
    order = {e.key: k for k, e in enumerate(chosen)}
    return sorted(rows, key=lambda r: order[(r["map_name"], r["num_agents"], r["seed"])])


__all__ = ["EvalConfig", "EvalPolicy", "evaluate", "evaluate_policy", "keyed_uniform", "mean_ci95",
           "play_episodes", "select_episodes", "summarize"]
