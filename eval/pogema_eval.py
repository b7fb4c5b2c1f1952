"""Evaluate a learned or scripted policy on a POGEMA suite: rows per episode, tables per agent count.

Every episode of a :class:`~memarl.envs.suites.PogemaSuite` (map x agent count x seed) is
pogema's seeded instance on that map. Episodes with the same agent count run side by side, one
:class:`~memarl.envs.pogema_env.PogemaEnv` each (their maps differ), and a learned policy acts on
all of them in one batch. LMAPF suites report the average throughput (arrivals per step), MAPF
suites CSR, ISR, SoC and makespan; both report collisions for the Coordination metric.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memarl.errors import MemarlError

LMAPF_METRICS = ("avg_throughput", "collisions")
MAPF_METRICS = ("CSR", "ISR", "SoC", "makespan", "collisions")


def suite_metrics(suite: Any) -> tuple[str, ...]:
    """The per-episode metrics reported for ``suite`` (by its mode)."""
    return LMAPF_METRICS if suite.mode == "lmapf" else MAPF_METRICS


class _Batch:
    """One PogemaEnv per episode (their maps differ), stepped together."""

    def __init__(self, configs: list):
        from memarl.envs.pogema_env import PogemaEnv

        self.envs = [PogemaEnv(c) for c in configs]
        self.num_agents = self.envs[0].num_agents
        if any(e.num_agents != self.num_agents for e in self.envs):
            raise MemarlError("a batch of suite episodes must share the agent count")
        self.obs = np.stack([e.reset() for e in self.envs]).reshape(len(self.envs), self.num_agents, -1)
        self.done = np.zeros(len(self.envs), dtype=bool)
        self.results: list[dict | None] = [None] * len(self.envs)

    def alive(self) -> np.ndarray:
        return np.concatenate([e.alive for e in self.envs])  # [K, A]

    def step(self, actions: np.ndarray) -> None:
        """Step the envs still running with ``actions [K, A]``; keep each one's final metrics."""
        for k, env in enumerate(self.envs):
            if self.done[k]:
                continue
            obs, _, _, _, info = env.step(actions[k:k + 1])
            self.obs[k] = obs.reshape(self.num_agents, -1)
            if info["episode_end"][0]:
                self.done[k] = True
                self.results[k] = dict(info["episode_metrics"][0])


@torch.no_grad()
def run_suite_episodes(policy: Any, configs: list, deterministic: bool = False,
                       device: torch.device | str = "cpu") -> list[dict]:
    """Play one episode per config (same agent count) with ``policy``; their episode metrics.

    ``policy`` is a learned policy (``step(obs, state, first, alive)``) or a scripted one
    (``act(env) -> [1, A]``, see :mod:`memarl.eval.baselines`).
    """
    from memarl.train.rollout import sample_actions

    batch = _Batch(configs)
    k, a = len(configs), batch.num_agents
    scripted = hasattr(policy, "act")
    if not scripted:
        device = torch.device(device)
        shape = (k, a) + tuple(batch.envs[0].obs_shape)
        state = policy.initial_state(k, a, device)
        first = torch.ones((k, a), dtype=torch.bool, device=device)
    while not batch.done.all():
        if scripted:
            actions = np.concatenate([policy.act(env) if not batch.done[i] else np.zeros((1, a), np.int64)
                                      for i, env in enumerate(batch.envs)])
        else:
            obs = torch.as_tensor(batch.obs.reshape(shape), device=device)
            alive = torch.as_tensor(batch.alive(), device=device)
            logits, _, state = policy.step(obs, state, first, alive)
            actions = sample_actions(logits, deterministic)[0].cpu().numpy()
            first = torch.zeros_like(first)
        batch.step(actions)
    return batch.results  # type: ignore[return-value]


def evaluate_on_suite(policy: Any, suite_name: str, maps: int | None = None,
                      num_agents: list[int] | None = None, deterministic: bool = False,
                      seed: int = 0, device: torch.device | str = "cpu", batch_size: int = 32,
                      env_options: dict | None = None, progress: bool = False) -> list[dict]:
    """One row per episode of POGEMA suite ``suite_name``: map, agents, seed and its metrics.

    ``maps`` keeps the suite's first ``maps`` maps; ``num_agents`` a subset of its agent counts.
    ``env_options`` may set the observation settings a learned policy was trained with
    (``obs_radius``, ``observation_type``); the task settings are the suite's.
    """
    from memarl.registry import SUITES

    suite = SUITES.make(suite_name)
    if not hasattr(suite, "mode"):
        raise MemarlError(f"{suite_name} is not a POGEMA suite")
    map_names = list(suite.map_names)[:maps] if maps else list(suite.map_names)
    if maps is not None and maps < 1:
        raise MemarlError(f"maps must be >= 1, got {maps}")
    counts = list(suite.num_agents) if num_agents is None else list(num_agents)
    unknown = sorted(set(counts) - set(suite.num_agents))
    if unknown:
        raise MemarlError(f"suite {suite_name} has agent counts {list(suite.num_agents)}, not {unknown}")
    overrides = {key: value for key, value in (env_options or {}).items()
                 if key in ("obs_radius", "observation_type")}
    episodes = [e for e in suite.episodes() if e.map_name in map_names and e.num_agents in counts]
    metrics = suite_metrics(suite)
    torch.manual_seed(seed)
    rows: list[dict] = []
    started = time.time()
    for count in counts:
        group = [e for e in episodes if e.num_agents == count]
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            configs = [suite.env_config(e, auto_reset=False, **overrides) for e in chunk]
            for episode, result in zip(chunk, run_suite_episodes(policy, configs, deterministic, device)):
                rows.append({"suite": suite_name, "map_name": episode.map_name,
                             "num_agents": episode.num_agents, "seed": episode.seed,
                             "episode_length": result["episode_length"],
                             **{key: result[key] for key in metrics}})
        if progress:
            print(f"{suite_name}: {count} agents done ({time.time() - started:.0f} s)", flush=True)
    return rows


def summarize_by_agents(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    """Mean and 95% CI half-width (normal approximation) of each metric per agent count."""
    groups: dict[int, list[dict]] = {}
    for row in rows:
        groups.setdefault(int(row["num_agents"]), []).append(row)
    out = []
    for count in sorted(groups):
        group = groups[count]
        entry: dict[str, Any] = {"num_agents": count, "episodes": len(group)}
        for key in metrics:
            values = np.array([float(r[key]) for r in group])
            if key == "collisions":  # Coordination: collisions per agent-step
                steps = np.array([float(r["episode_length"]) * count for r in group])
                values = values / steps
            entry[key] = float(values.mean())
            entry[f"{key}_ci95"] = float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) \
                if len(values) > 1 else 0.0
        out.append(entry)
    return out


def comparison_table(results: dict[str, list[dict]], metric: str) -> str:
    """Markdown: one row per policy, one column per agent count, ``metric`` mean ± CI."""
    summaries = {name: {e["num_agents"]: e for e in summarize_by_agents(rows, (metric,))}
                 for name, rows in results.items()}
    counts = sorted({c for s in summaries.values() for c in s})
    lines = [f"| policy | {' | '.join(str(c) for c in counts)} | mean |",
             "|---|" + "---|" * (len(counts) + 1)]
    for name, summary in summaries.items():
        cells = [f"{summary[c][metric]:.3f} ± {summary[c][metric + '_ci95']:.3f}" if c in summary else "–"
                 for c in counts]
        mean = np.mean([summary[c][metric] for c in counts if c in summary])
        lines.append(f"| {name} | {' | '.join(cells)} | {mean:.3f} |")
    return "\n".join(lines)


def markdown_summary(rows: list[dict], metrics: tuple[str, ...], title: str, notes: list[str]) -> str:
    """The per-agent-count table of one evaluation."""
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + [
        "- collisions: agent-steps refused because of other agents, per agent-step "
        "(POGEMA's Coordination = 1 - this)", "",
        "| agents | episodes | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics)]
    for e in summarize_by_agents(rows, metrics):
        cells = [f"{e[m]:.3f} ± {e[m + '_ci95']:.3f}" for m in metrics]
        lines.append(f"| {e['num_agents']} | {e['episodes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_by_agents(rows: list[dict], metrics: tuple[str, ...], path: Path, title: str) -> None:
    """One panel per metric against the agent count, mean with a 95% CI band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize_by_agents(rows, metrics)
    counts = [e["num_agents"] for e in summary]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, key in zip(axes[0], metrics):
        mean = np.array([e[key] for e in summary])
        ci = np.array([e[f"{key}_ci95"] for e in summary])
        ax.plot(counts, mean, marker="o", markersize=3)
        ax.fill_between(counts, mean - ci, mean + ci, alpha=0.25)
        ax.set_xlabel("agents")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate_pogema_run(run: str | None, suite_name: str, baseline: str | None = None,
                        maps: int | None = None, num_agents: list[int] | None = None,
                        which: str = "best", deterministic: bool = False,
                        out_dir: str | None = None, seed: int = 0, device: str = "auto",
                        force: bool = False) -> Path:
    """``memarl eval`` on a POGEMA suite, for a run's checkpoint or a scripted ``baseline``.

    Writes ``episodes.csv``, ``summary.md`` (per agent count) and ``plot.png`` to ``out_dir``
    (default ``RUN/eval/SUITE``; for a baseline ``baselines/BASELINE/SUITE``). Existing results
    are kept unless ``force``.
    """
    from memarl.eval.baselines import make_baseline
    from memarl.eval.evaluate import write_rows
    from memarl.registry import SUITES
    from memarl.train.trainer import resolve_device

    suite = SUITES.make(suite_name)  # an unknown suite fails before any work
    if (run is None) == (baseline is None):
        raise MemarlError("give either a run (directory or checkpoint) or --baseline NAME")
    torch_device = resolve_device(device)
    env_options: dict = {}
    if baseline is not None:
        policy = make_baseline(baseline)
        label, notes = baseline, [f"scripted baseline {baseline!r}: {type(policy).__doc__.splitlines()[0]}"]
        out = Path(out_dir) if out_dir else Path("baselines") / baseline / suite_name
    else:
        from memarl.eval.policy_io import load_policy

        policy = load_policy(run, which=which, device=torch_device)
        info = policy.checkpoint_info
        if not info["env"].startswith("pogema"):
            raise MemarlError(f"suite {suite_name} is a POGEMA suite, the checkpoint was trained on {info['env']}")
        from memarl.registry import ENVS

        # the observation the policy was trained on: the env id's defaults under its options
        env_options = {**ENVS.get(info["env"]).kwargs, **info["env_options"]}
        label = f"{info['agent']} ({Path(info['file']).name}, {info['agent_steps']:,} agent-steps)"
        notes = [f"actions: {'argmax' if deterministic else 'sampled'}",
                 f"training env options: {info['env_options'] or 'defaults'}"]
        run_path = Path(run)
        base = run_path if run_path.is_dir() else run_path.parent.parent
        out = Path(out_dir) if out_dir else base / "eval" / suite_name
    if (out / "episodes.csv").exists() and not force:
        raise MemarlError(f"{out} already holds results; pass --force to replace them or choose another --out")
    rows = evaluate_on_suite(policy, suite_name, maps=maps, num_agents=num_agents,
                             deterministic=deterministic, seed=seed, device=torch_device,
                             env_options=env_options)
    for row in rows:
        row["policy"] = label
    out.mkdir(parents=True, exist_ok=True)
    write_rows(rows, out / "episodes.csv")
    metrics = suite_metrics(suite)
    title = f"{label} on {suite_name}"
    notes.append(f"maps: {len({r['map_name'] for r in rows})} of {len(suite.map_names)}; "
                 f"seeds: {sorted({r['seed'] for r in rows})}; soft collisions, suite episode length")
    (out / "summary.md").write_text(markdown_summary(rows, metrics, title, notes))
    plot_by_agents(rows, metrics, out / "plot.png", title)
    return out
