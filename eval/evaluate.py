"""Evaluate a policy on a map suite: one row per episode -> CSV, Markdown table, PNG plot.

Every (map, seed) pair of the suite is one episode with start and goal fixed by the seed; the
policy's memory is reset at the start of each episode. Episodes run batched, many envs at once,
grouped by corridor length so the batch's episodes have similar lengths.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from memarl.configs import Range, option_label, validate_fields
from memarl.envs.bottleneck import MAX_CORRIDOR_LENGTH
from memarl.errors import MemarlError
from memarl.files import check_creatable_dir
from memarl.train.rollout import sample_actions

METRICS = ("CSR", "ISR", "SoC", "makespan", "episode_length")
MAX_EPISODES = 10_000
"""most seeds per map an evaluation runs (the published suites use at most 128)"""


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
    """suite name (`memarl list suites`); required"""
    baseline: str | None = None
    """evaluate a scripted baseline instead of a run (POGEMA suites): greedy or greedy-random"""
    maps: Annotated[int | None, Range(1, 100_000)] = None
    """POGEMA suites: only the first MAPS maps (quick looks)"""
    agents: Annotated[tuple[int, ...] | None, Range(1, 10_000_000)] = None
    """POGEMA suites: comma-separated subset of the agent counts"""
    episodes: Annotated[int | None, Range(1, MAX_EPISODES)] = None
    """Bottleneck suites: seeds per map (default the suite's, 10 for bottleneck-test)"""
    checkpoint: str = "best"
    """best (falls back to latest), latest, or a checkpoint file (then RUN may be left out)"""
    deterministic: bool = False
    """act by argmax instead of sampling (recorded in the table)"""
    max_corridor_length: Annotated[int | None, Range(1, MAX_CORRIDOR_LENGTH)] = None
    """Bottleneck suites: skip maps longer than this (quick looks)"""
    out: str | None = None
    """output folder (default RUN/eval/SUITE)"""
    force: bool = False
    """replace the results of an earlier evaluation in the output folder"""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """seed of action sampling"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""

    def validate(self) -> None:
        """Fields, then the rules between them and the suite (one-line MemarlError)."""
        from memarl.registry import SUITES
        from memarl.train.trainer import resolve_device

        validate_fields(self, label=option_label)
        if not self.suite:
            raise MemarlError("--suite is required (`memarl list suites`)")
        suite = SUITES.make(self.suite)
        if self.run is None and self.baseline is None and self.checkpoint not in ("best", "latest"):
            self.run = self.checkpoint  # `memarl eval --checkpoint FILE`: the file is the run
        if (self.run is None) == (self.baseline is None):
            raise MemarlError("give either a run (directory or checkpoint) or --baseline NAME")
        pogema = hasattr(suite, "mode")
        not_applicable = [name for name in (("max_corridor_length", "episodes") if pogema
                                            else ("maps", "agents", "baseline"))
                          if getattr(self, name) is not None]
        if not_applicable:
            family = "POGEMA" if pogema else "Bottleneck"
            raise MemarlError(f"{', '.join(map(option_label, not_applicable))} does not apply to "
                              f"the {family} suite {self.suite}")
        if self.agents is not None and not set(self.agents) <= set(suite.num_agents):
            raise MemarlError(f"--agents {','.join(map(str, self.agents))}: suite {self.suite} "
                              f"has agent counts {','.join(map(str, suite.num_agents))}")
        if self.run is not None and not Path(self.run).exists():
            raise MemarlError(f"no such run directory or checkpoint: {self.run}")
        check_checkpoint_choice(self.run, self.checkpoint)
        resolve_device(self.device)
        if self.out is not None:
            check_creatable_dir(self.out, "--out")


def get_suite(name: str) -> Any:
    from memarl.registry import SUITES
    return SUITES.make(name)


@torch.no_grad()
def run_episodes(policy: torch.nn.Module, env_id: str, corridor_lengths: list[int],
                 seeds: list[int], max_steps: list[int], env_options: dict,
                 deterministic: bool, device: torch.device) -> list[dict]:
    """Run one episode per (corridor length, seed) in one env batch; metrics of each episode."""
    from memarl.envs import make
    count = len(corridor_lengths)
    env = make(env_id, num_envs=count, corridor_lengths=sorted(set(corridor_lengths)),
               **env_options)
    obs = env.reset(options={"corridor_lengths": corridor_lengths, "episode_seeds": seeds,
                             "max_episode_steps": max_steps})
    first = np.ones((count, env.num_agents), dtype=bool)
    state = policy.initial_state(count, env.num_agents, device)
    results: list[dict | None] = [None] * count
    while any(r is None for r in results):
        logits, _, state = policy.step(torch.as_tensor(obs, device=device),
                                       state, torch.as_tensor(first, device=device),
                                       torch.as_tensor(env.alive, device=device))
        actions, _ = sample_actions(logits, deterministic)
        obs, _, _, _, info = env.step(actions.cpu().numpy())
        first = info["first"]
        for n in np.flatnonzero(info["episode_end"]):
            if results[n] is None:
                results[n] = dict(info["episode_metrics"][n])
    return results  # type: ignore[return-value]


def evaluate_policy(policy: torch.nn.Module, suite_name: str, episodes: int | None = None,
                    deterministic: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                    max_corridor_length: int | None = None, batch_size: int = 128,
                    env_options: dict | None = None) -> list[dict]:
    """One row per episode of the suite (corridor_length, seed and the episode's metrics)."""
    suite = get_suite(suite_name)
    seeds = list(suite.seeds)[:episodes] if episodes is None or episodes <= len(suite.seeds) \
        else list(range(episodes))
    lengths = [L for L in suite.corridor_lengths
               if max_corridor_length is None or L <= max_corridor_length]
    if not lengths:
        raise MemarlError(f"suite {suite_name} has no map with corridor length <= "
                          f"{max_corridor_length}")
    # reward shaping does not change metrics; keep the training options that change the task
    options = {k: v for k, v in (env_options or {}).items() if k in ("obs_radius",)}
    torch.manual_seed(seed)
    tasks = [(L, s) for L in lengths for s in seeds]
    rows = []
    for start in range(0, len(tasks), batch_size):
        chunk = tasks[start:start + batch_size]
        results = run_episodes(policy, suite.env_id, [L for L, _ in chunk], [s for _, s in chunk],
                               [suite.episode_steps(L) for L, _ in chunk], options,
                               deterministic, torch.device(device))
        for (L, s), metrics in zip(chunk, results):
            rows.append({"suite": suite_name, "corridor_length": L, "seed": s,
                         **{k: metrics[k] for k in METRICS}})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and 95% CI half-width (normal approximation) of every metric per corridor length."""
    by_length: dict[int, list[dict]] = {}
    for row in rows:
        by_length.setdefault(int(row["corridor_length"]), []).append(row)
    summary = []
    for length in sorted(by_length):
        group = by_length[length]
        entry = {"corridor_length": length, "episodes": len(group)}
        for key in ("CSR", "ISR", "SoC", "makespan"):
            values = np.array([float(r[key]) for r in group])
            entry[key] = float(values.mean())
            entry[f"{key}_ci95"] = float(1.96 * values.std(ddof=1) / math.sqrt(len(values))) \
                if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def _band_means(rows: list[dict]) -> list[tuple[str, dict]]:
    bands = [("train lengths L <= 27", lambda L: L <= 27), ("L 3..50", lambda L: L <= 50),
             ("L 28..50", lambda L: 27 < L <= 50), ("L 100..1000", lambda L: L >= 100),
             ("all maps", lambda L: True)]
    out = []
    for name, keep in bands:
        chosen = [r for r in rows if keep(int(r["corridor_length"]))]
        if chosen:
            out.append((name, {k: float(np.mean([float(r[k]) for r in chosen]))
                               for k in ("CSR", "ISR", "SoC")} | {"episodes": len(chosen)}))
    return out


def markdown_table(rows: list[dict], title: str, notes: list[str]) -> str:
    summary = summarize(rows)
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + [
        "- SoC is the correct sum of per-agent arrival steps (episode length for agents that did "
        "not arrive); pogema's finish-mode value would be 2 x makespan.", "",
        "| band | episodes | CSR | ISR | SoC |", "|---|---|---|---|---|"]
    for name, means in _band_means(rows):
        lines.append(f"| {name} | {means['episodes']} | {means['CSR']:.3f} | {means['ISR']:.3f} "
                     f"| {means['SoC']:.1f} |")
    lines += ["", "| L | episodes | CSR | ISR | SoC | makespan |", "|---|---|---|---|---|---|"]
    for e in summary:
        lines.append(f"| {e['corridor_length']} | {e['episodes']} | {e['CSR']:.2f} ± "
                     f"{e['CSR_ci95']:.2f} | {e['ISR']:.2f} ± {e['ISR_ci95']:.2f} | "
                     f"{e['SoC']:.1f} ± {e['SoC_ci95']:.1f} | {e['makespan']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_summary(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarize(rows)
    lengths = [e["corridor_length"] for e in summary]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("CSR", "ISR", "SoC")):
        mean = np.array([e[key] for e in summary])
        ci = np.array([e[f"{key}_ci95"] for e in summary])
        ax.plot(lengths, mean, marker="o", markersize=3)
        ax.fill_between(lengths, mean - ci, mean + ci, alpha=0.25)
        ax.set_xscale("log")
        ax.set_xlabel("corridor length L")
        ax.set_title(key)
        if key != "SoC":
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_rows(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def evaluate_run(run: str, suite_name: str, episodes: int | None = None, which: str = "best",
                 deterministic: bool = False, out_dir: str | None = None, seed: int = 0,
                 device: str = "auto", max_corridor_length: int | None = None,
                 force: bool = False) -> Path:
    """``memarl eval``: evaluate a run's checkpoint and write episodes.csv, summary.md, plot.png."""
    from memarl.eval.policy_io import load_policy
    from memarl.train.trainer import resolve_device

    suite = get_suite(suite_name)  # unknown suite fails before any work
    torch_device = resolve_device(device)
    policy = load_policy(run, which=which, device=torch_device)
    info = policy.checkpoint_info
    if info["env"] not in (suite.env_id, suite.env_id.split("-v")[0]):
        raise MemarlError(f"suite {suite_name} is for env {suite.env_id}, the checkpoint was "
                          f"trained on {info['env']}")
    run_path = Path(run)
    base = run_path if run_path.is_dir() else run_path.parent.parent
    out = Path(out_dir) if out_dir else base / "eval" / suite_name
    if (out / "episodes.csv").exists() and not force:
        raise MemarlError(f"{out} already holds results; pass --force to replace them or "
                          f"choose another --out")
    rows = evaluate_policy(policy, suite_name, episodes, deterministic, seed, torch_device,
                           max_corridor_length, env_options=info["env_options"])
    out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
    for row in rows:
        row.update(agent=info["agent"], checkpoint=Path(info["file"]).name,
                   agent_steps=info["agent_steps"],
                   actions="argmax" if deterministic else "sampled")
    write_rows(rows, out / "episodes.csv")
    title = f"{info['agent']} on {suite_name} ({Path(info['file']).name}, " \
            f"{info['agent_steps']:,} agent-steps)"
    notes = [f"actions: {'argmax' if deterministic else 'sampled'}; "
             f"seeds per map: {len({r['seed'] for r in rows})}",
             f"training env options: {info['env_options'] or 'defaults'}"]
    (out / "summary.md").write_text(markdown_table(rows, title, notes))
    plot_summary(rows, out / "plot.png", title)
    return out
