"""The training run: config, run directory, the collect -> update loop, checkpoints, resume.

Synchronous PPO: the actor (:class:`~memarl.train.rollout.RolloutCollector`) fills one segment,
the learner (:func:`~memarl.train.ppo.ppo_update`) consumes it. The two meet only through the
:class:`~memarl.train.rollout.Segment`, so an async engine can replace the loop without touching
either side. Policy lag (learner version minus the version that acted) is logged; it is 0 here.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memarl.configs import parse_options
from memarl.errors import MemarlError, TrainingInterrupted
from memarl.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from memarl.train.checkpoint import atomic_torch_save
from memarl.train.logger import RunLogger
from memarl.train.ppo import PPOConfig, ppo_update
from memarl.train.rollout import RolloutCollector


@dataclasses.dataclass
class TrainConfig:
    env: str = "bottleneck"
    """registered env id (`memarl list envs`)"""
    agent: str = "srmt"
    """registered agent name (`memarl list agents`)"""
    total_steps: int = 20_000_000
    """agent-steps to train for (env steps x agents per env)"""
    run_dir: str = ""
    """run directory to create; default runs/<env>-<agent>-<reward>-seed<seed>"""
    seed: int = 0
    """seed of envs, weights and sampling"""
    num_envs: int = 512
    """envs stepped together in one batch (512 x 2 agents x 8 steps = 8192 samples per update)"""
    rollout_len: int = 8
    """steps per segment; gradients flow through the memory over the segment"""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda[:i]'"""
    torch_threads: int = 0
    """torch intra-op threads; 0 keeps torch's default"""
    checkpoint_every_s: float = 300.0
    """seconds between checkpoints (one is always written at the end and on Ctrl+C)"""
    keep_checkpoints: int = 3
    """regular checkpoints to keep (best.pt is kept besides)"""
    print_every_s: float = 5.0
    """seconds between console progress lines"""
    env_options: dict = dataclasses.field(default_factory=dict)
    """options of the env's own config (--env-opt KEY=VALUE)"""
    agent_options: dict = dataclasses.field(default_factory=dict)
    """options of the agent's own config (--agent-opt KEY=VALUE)"""
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    """PPO hyperparameters"""

    def validate(self) -> None:
        problems = []
        for name in ("total_steps", "num_envs", "rollout_len", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.torch_threads < 0:
            problems.append(f"torch-threads must be >= 0, got {self.torch_threads}")
        ppo = self.ppo
        for name in ("learning_rate", "num_minibatches", "update_epochs"):
            if getattr(ppo, name) <= 0:
                problems.append(f"{name.replace('_', '-')} must be > 0, got {getattr(ppo, name)}")
        if not 0 <= ppo.gamma <= 1 or not 0 <= ppo.gae_lambda <= 1:
            problems.append("gamma and gae-lambda must lie in [0, 1]")
        if ppo.lr_schedule not in ("kl_adaptive", "constant"):
            problems.append(f"lr-schedule must be kl_adaptive or constant, got {ppo.lr_schedule!r}")
        if problems:
            raise MemarlError("; ".join(problems))


# settings that fix the shapes or the meaning of a run; resuming refuses to change them
SHAPE_FIELDS = ("env", "agent", "num_envs", "rollout_len", "env_options", "agent_options", "seed")
# settings a resumed run may change
RESUMABLE_FIELDS = ("total_steps", "device", "torch_threads", "checkpoint_every_s",
                    "keep_checkpoints", "print_every_s")


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> TrainConfig:
    data = dict(data)
    ppo = PPOConfig(**data.pop("ppo", {}))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(ppo=ppo, **{k: v for k, v in data.items() if k in names})


def default_run_dir(cfg: TrainConfig) -> str:
    reward = cfg.env_options.get("reward")
    parts = [cfg.env, cfg.agent] + ([str(reward)] if reward else []) + [f"seed{cfg.seed}"]
    return str(Path("runs") / "-".join(parts))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MemarlError(f"unknown device {name!r}; use auto, cpu or cuda[:i]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MemarlError(f"device {name!r} requested but CUDA is not available")
    return device


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def typed_env_options(env_id: str, options: dict) -> dict:
    """``options`` with command-line strings converted by the env's config field types."""
    from memarl.registry import ENVS
    for reserved in ("num_envs", "seed"):
        if reserved in options:
            raise MemarlError(f"set {reserved} with --{reserved.replace('_', '-')}, "
                              f"not as an env option")
    config_class = getattr(ENVS.get(env_id).load(), "config_class", None)
    return parse_options(config_class, options, "env") if config_class else dict(options)


def typed_agent_options(agent: str, options: dict) -> dict:
    """``options`` with command-line strings converted by the agent's config field types."""
    from memarl.agents import agent_config_class
    return parse_options(agent_config_class(agent), options, f"agent {agent!r}")


def build_env(cfg: TrainConfig) -> Any:
    from memarl.envs import make
    return make(cfg.env, num_envs=cfg.num_envs, seed=cfg.seed, **cfg.env_options)


def build_policy(agent: str, env: Any, agent_options: dict) -> torch.nn.Module:
    from memarl.agents import make_agent
    return make_agent(agent, env.obs_shape, env.num_actions, **agent_options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run_dir(cfg: TrainConfig, resume: bool) -> Path:
    run_dir = Path(cfg.run_dir)
    if resume:
        if not (run_dir / "config.json").is_file():
            raise MemarlError(f"cannot resume: {run_dir} has no config.json")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        raise MemarlError(f"run directory {run_dir} already exists; pass --resume {run_dir} "
                          f"to continue it or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def load_resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of ``run_dir`` with the allowed ``overrides`` applied."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        raise MemarlError(f"cannot resume: {run_dir}/config.json is unreadable") from None
    cfg = config_from_dict(saved)
    for key, value in overrides.items():
        if key == "ppo":
            changed = {k: v for k, v in value.items() if getattr(cfg.ppo, k) != v}
            if changed:
                raise MemarlError(f"cannot change PPO settings when resuming "
                                  f"({', '.join(k.replace('_', '-') for k in changed)})")
            continue
        current = getattr(cfg, key)
        if key in RESUMABLE_FIELDS:
            setattr(cfg, key, value)
        elif current != value:
            raise MemarlError(f"cannot change {key.replace('_', '-')} when resuming "
                              f"(saved: {current!r}, given: {value!r})")
    cfg.run_dir = str(run_dir)
    return cfg


def write_run_config(run_dir: Path, cfg: TrainConfig, policy: torch.nn.Module,
                     command_line: list[str] | None) -> None:
    info = {
        "config": config_to_dict(cfg),
        "agent_config": dataclasses.asdict(policy.config),
        "parameters": policy.parameter_counts(),
        "git_commit": git_commit(),
        "command_line": shlex.join(command_line) if command_line else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = run_dir / ".config.json.tmp"
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, run_dir / "config.json")


class _StopRequest:
    """Turns SIGINT/SIGTERM into a flag so the loop can write a final checkpoint and exit."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl+C aborts at once
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nreceived signal {signum}: finishing the update and saving a checkpoint",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: TrainConfig, resume: bool = False, command_line: list[str] | None = None,
          quiet: bool = False) -> Path:
    """Train ``cfg.agent`` on ``cfg.env``; returns the run directory."""
    if not cfg.run_dir:
        cfg.run_dir = default_run_dir(cfg)
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    cfg.env_options = typed_env_options(cfg.env, cfg.env_options)
    env = build_env(cfg)           # validates env options before anything is written
    cfg.agent_options = typed_agent_options(cfg.agent, cfg.agent_options)
    policy = build_policy(cfg.agent, env, cfg.agent_options).to(device)

    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resolve_checkpoint(Path(cfg.run_dir), "latest"))
        if checkpoint["agent"] != cfg.agent:
            raise MemarlError(f"checkpoint is of agent {checkpoint['agent']!r}, "
                              f"run config says {cfg.agent!r}")
    run_dir = prepare_run_dir(cfg, resume)
    if not resume:
        write_run_config(run_dir, cfg, policy, command_line)

    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.ppo.learning_rate, eps=1e-6)
    update, agent_steps, best_score = 0, 0, -1.0
    generator = np.random.default_rng(cfg.seed)
    if checkpoint is not None:
        policy.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        update, agent_steps = checkpoint["update"], checkpoint["agent_steps"]
        best_score = checkpoint.get("best_score", checkpoint.get("best_csr", -1.0))
        generator = np.random.default_rng([cfg.seed, update])
        torch.manual_seed(cfg.seed + update)

    logger = RunLogger(run_dir / "tb", cfg.total_steps, cfg.print_every_s,
                       stream=open(os.devnull, "w") if quiet else sys.stdout)
    logger.text("config", "```\n" + json.dumps(config_to_dict(cfg), indent=2) + "\n```")
    logger.set_start(agent_steps)
    collector = RolloutCollector(env, policy, cfg.rollout_len, device,
                                 seed=cfg.seed + 1_000_003 * update)

    def checkpoint_payload() -> dict:
        return {
            "agent": cfg.agent, "agent_config": dataclasses.asdict(policy.config),
            "env": cfg.env, "env_options": cfg.env_options, "obs_shape": list(env.obs_shape),
            "num_actions": env.num_actions, "model": policy.state_dict(),
            "optimizer": optimizer.state_dict(), "update": update, "agent_steps": agent_steps,
            "best_score": best_score, "config": config_to_dict(cfg),
        }

    def write_checkpoint() -> None:
        nonlocal best_score
        payload = checkpoint_payload()
        save_checkpoint(payload, run_dir / "checkpoints", update, agent_steps,
                        cfg.keep_checkpoints)
        score = logger.score()
        if score is not None and score > best_score:
            best_score = score
            payload["best_score"] = best_score
            atomic_torch_save({"format": 1, **payload}, run_dir / "checkpoints" / "best.pt")

    last_checkpoint = time.time()
    with _StopRequest() as stop:
        while agent_steps < cfg.total_steps and not stop.requested:
            t0 = time.time()
            policy.eval()
            segment, next_value = collector.collect(policy_version=update)
            t1 = time.time()
            policy.train()
            stats = ppo_update(policy, optimizer, segment, next_value, cfg.ppo, generator)
            t2 = time.time()
            lag = update - segment.policy_version
            update += 1
            agent_steps += segment.num_agent_steps

            logger.episodes(collector.pop_finished_episodes(), agent_steps)
            logger.scalars({f"losses/{k}": v for k, v in stats.items()
                            if k not in ("learning_rate",)}, agent_steps)
            logger.scalars({
                "charts/learning_rate": stats["learning_rate"],
                "perf/SPS": logger.sps(agent_steps),
                "perf/collect_time_fraction": (t1 - t0) / max(t2 - t0, 1e-9),
                "perf/learn_time_fraction": (t2 - t1) / max(t2 - t0, 1e-9),
                "async/policy_lag_avg": float(lag), "async/policy_lag_max": float(lag),
            }, agent_steps)
            logger.progress(agent_steps, update)
            if time.time() - last_checkpoint >= cfg.checkpoint_every_s:
                write_checkpoint()
                last_checkpoint = time.time()
    write_checkpoint()
    logger.progress(agent_steps, update, force=True)
    logger.close()
    if stop.requested:
        raise TrainingInterrupted(run_dir)
    return run_dir

