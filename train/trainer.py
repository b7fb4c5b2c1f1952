"""The training run: config, run directory, the training loops, checkpoints, resume.

PPO wired from the same pieces in two ways. The learner (:class:`~memarl.train.learner.Learner`)
consumes :class:`~memarl.train.rollout.Segment` s and a
:class:`~memarl.train.checkpoint.CheckpointWriter` keeps the run's files; the segments come from

* the async engine (default, :mod:`memarl.train.async_engine`): actor processes sample with the
  newest published weights while the learner trains, segments and weights travel through
  shared memory (:mod:`memarl.train.transport`); or
* the synchronous loop (``--async false``, :func:`run_sync`): one
  :class:`~memarl.train.rollout.RolloutCollector` in this process, collect then update.

Policy lag (learner version minus the version that acted) is logged: 0 in the sync loop, 1 in
the async engine. Under torchrun every rank runs one of these with a DDP learner replica
(:mod:`memarl.train.distributed`); ``--backend sample-factory`` hands the whole run to
sample-factory instead (:mod:`memarl.train.sf_backend`).

A checkpoint holds the learner (weights, optimizer with its adaptive rate, return statistics,
minibatch RNG, update count), the episodes in flight (the collector's envs and memory state, or
each actor's) and the process's RNG states, with a hash of the settings. Resuming a sync run of
the same settings on the same device and thread count continues it exactly: its next update
equals the uninterrupted run's, bit for bit. An async run resumes its actors' episodes, not bit
for bit (the actors' timing decides which weights act).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import numpy as np
import torch

from memarl.configs import Range, option_label, parse_options, validate_fields
from memarl.errors import MemarlError, TrainingInterrupted
from memarl.resources import check_training_memory, estimate_training_memory
from memarl.train import distributed
from memarl.train.async_engine import ActorFailed, AsyncEngine, EngineSettings
from memarl.train.checkpoint import (BROKEN_SUFFIX, CheckpointWriter, LatestCheckpoint,
                                     env_config_fields, move_aside, newest_resumable_checkpoint,
                                     os_error_reason, warn)
from memarl.train.distributed import ENV_SEED_STRIDE, Ranks, any_rank, rank_device
from memarl.train.learner import Learner, TrainingDiverged
from memarl.train.logger import RunLogger
from memarl.train.ppo import PPOConfig
from memarl.train.rollout import RolloutCollector
from memarl.train.threads import ThreadShare
from memarl.train.run_dir import RunDirLock, check_resumable, create_run_dir, open_run_dir


@dataclasses.dataclass
class TrainConfig:
    env: str = "bottleneck"
    """registered env id (`memarl list envs`)"""
    agent: str = "srmt"
    """registered agent name (`memarl list agents`)"""
    total_steps: Annotated[int, Range(1, 10**15)] = 20_000_000
    """agent-steps to train for (env steps x agents per env)"""
    run_dir: str = ""
    """run directory to create; default runs/<env>-<agent>-<reward>-seed<seed>"""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """seed of envs, weights and sampling"""
    num_envs: Annotated[int, Range(1, 1_000_000)] = 512
    """envs stepped together in one batch (512 x 2 agents x 8 steps = 8192 samples per update)"""
    rollout_len: Annotated[int, Range(1, 100_000)] = 8
    """steps per segment; gradients flow through the memory over the segment"""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu' or 'cuda[:i]'"""
    torch_threads: Annotated[int, Range(0, 1024)] = 0
    """torch intra-op threads; 0 = automatic (see memarl.train.threads: shares the cores fairly
    with other runs on the machine)"""
    checkpoint_every_s: Annotated[float, Range(0, 1e10)] = 300.0
    """seconds between checkpoints (one is always written at the end and on Ctrl+C)"""
    keep_checkpoints: Annotated[int, Range(1, 100_000)] = 3
    """regular checkpoints to keep (best.pt is kept besides)"""
    print_every_s: Annotated[float, Range(0, 1e10)] = 5.0
    """seconds between console progress lines"""
    env_options: dict = dataclasses.field(default_factory=dict)
    """options of the env's own config (--env-opt KEY=VALUE)"""
    agent_options: dict = dataclasses.field(default_factory=dict)
    """options of the agent's own config (--agent-opt KEY=VALUE)"""
    backend: Literal["memarl", "sample-factory"] = "memarl"
    """training loop: memarl's own engines (--async) or sample-factory 2.1.1's APPO through its
    registration APIs (train/sf_backend.py)"""
    async_: bool = True
    """train with the async engine: actor processes sample with the newest weights they have
    while the learner trains (false: the synchronous loop in one process, collect then update,
    whose resume is bit-exact)"""
    num_actors: Annotated[int, Range(0, 1024)] = 0
    """actor processes of the async engine, each stepping its share of the envs (whole env
    groups); 0 = half the cores this run gets, at least 1"""
    max_policy_lag: Annotated[int, Range(1, 1_000_000)] = 4
    """async: segments collected with weights more than this many updates older than the
    learner's are dropped (counted in async/dropped_segments)"""
    actor_timeout_s: Annotated[float, Range(1, 1e6)] = 20.0
    """async: an actor without a heartbeat for this long is killed and restarted"""
    max_actor_restarts: Annotated[int, Range(0, 1_000_000)] = 10
    """async: actor deaths (crash, kill, timeout) a run survives by restarting the actor; one
    more stops the run with an error"""
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    """PPO hyperparameters"""

    def validate(self) -> None:
        """Every field against its range, then the rules between fields (one-line MemarlError)."""
        validate_fields(self, label=option_label)
        self.ppo.validate()
        if self.ppo.num_minibatches > self.num_envs:
            raise MemarlError(f"--num-minibatches ({self.ppo.num_minibatches}) must not exceed "
                              f"--num-envs ({self.num_envs}): a minibatch holds whole envs")
        if self.async_ and self.num_actors > self.num_envs:
            raise MemarlError(f"--num-actors ({self.num_actors}) must not exceed --num-envs "
                              f"({self.num_envs}): every actor steps whole envs")

    def resolved_num_actors(self) -> int:
        """The async engine's actor count: ``num_actors``, or for 0 half the cores this run
        gets (at least 1, at most one per env)."""
        if self.num_actors:
            return self.num_actors
        from memarl.train.threads import available_cores
        return max(1, min(available_cores() // 2, self.num_envs))


# settings that fix the shapes or the meaning of a run; resuming refuses to change them
SHAPE_FIELDS = ("env", "agent", "num_envs", "rollout_len", "env_options", "agent_options", "seed")
# settings a resumed run may change
RESUMABLE_FIELDS = ("total_steps", "device", "torch_threads", "checkpoint_every_s",
                    "keep_checkpoints", "print_every_s", "async_", "num_actors", "max_policy_lag",
                    "actor_timeout_s", "max_actor_restarts")


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict) -> TrainConfig:
    """A TrainConfig from saved JSON (unknown keys dropped); a malformed one is a MemarlError."""
    try:
        data = dict(data)
        saved_ppo = dict(data.pop("ppo", {}))
        # runs written before advantage_normalization had the flag normalize_advantages
        legacy = saved_ppo.pop("normalize_advantages", None)
        if legacy is not None and "advantage_normalization" not in saved_ppo:
            saved_ppo["advantage_normalization"] = "minibatch" if legacy else "off"
        ppo_names = {f.name for f in dataclasses.fields(PPOConfig)}
        ppo = PPOConfig(**{k: v for k, v in saved_ppo.items() if k in ppo_names})
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        cfg = TrainConfig(ppo=ppo, **{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError):
        raise MemarlError("the saved run config is not a memarl TrainConfig") from None
    return cfg


def default_run_dir(cfg: TrainConfig) -> str:
    reward = cfg.env_options.get("reward")
    parts = [cfg.env, cfg.agent] + ([str(reward)] if reward else []) + [f"seed{cfg.seed}"]
    return str(Path("runs") / "-".join(parts))


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:i`` as a torch device that exists on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"cpu|cuda(?::(\d{1,4}))?", name)
    if match is None:
        raise MemarlError(f"--device must be auto, cpu, cuda or cuda:i, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MemarlError(f"--device {name} requested but CUDA is not available")
        index = int(match[1] or 0)
        if index >= torch.cuda.device_count():
            raise MemarlError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                              f"CUDA device(s)")
    return torch.device(name)


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


def typed_agent_options(agent: str, options: dict, env_id: str | None = None) -> dict:
    """``options`` with command-line strings converted by the agent's config field types, and
    ``preset`` checked against the agent's presets. Without a preset the env's
    ``agent_preset`` is used (T-Maze: "tmaze"; the grid envs: "bottleneck")."""
    from memarl.agents import agent_config_class, agent_presets
    from memarl.registry import ENVS
    options = dict(options)
    preset = options.pop("preset", None)
    if preset is None and env_id is not None:
        preset = getattr(ENVS.get(env_id).load(), "agent_preset", None)
    presets = agent_presets(agent)
    if preset is not None and preset not in presets:
        raise MemarlError(f"unknown preset {preset!r} for agent {agent!r}; valid presets: "
                          f"{', '.join(sorted(presets))}")
    typed = parse_options(agent_config_class(agent), options, f"agent {agent!r}")
    return typed if preset is None else {"preset": preset, **typed}


def build_env(cfg: TrainConfig, seed: int | None = None) -> Any:
    """The run's env batch (seeded ``cfg.seed``, or ``seed``: another torchrun rank's)."""
    from memarl.envs import make
    return make(cfg.env, num_envs=cfg.num_envs, seed=cfg.seed if seed is None else seed,
                **cfg.env_options)


def build_policy(agent: str, env: Any, agent_options: dict) -> torch.nn.Module:
    from memarl.agents import make_agent
    return make_agent(agent, env.obs_shape, env.num_actions, **agent_options)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run_dir(cfg: TrainConfig, resume: bool) -> RunDirLock:
    """Lock the run directory: an existing run to resume, or a new directory created empty.

    Raises a one-line MemarlError, having changed nothing, when the path cannot be used: a file,
    under a file, not writable, a non-empty directory without --resume, a run that another
    process is training (see :mod:`memarl.train.run_dir`).
    """
    run_dir = Path(cfg.run_dir)
    return open_run_dir(run_dir) if resume else create_run_dir(run_dir)


def load_resume_config(run_dir: Path, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config of ``run_dir`` with the allowed ``overrides`` applied."""
    check_resumable(run_dir)
    try:
        saved = json.loads((run_dir / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise MemarlError(f"cannot resume: {run_dir}/config.json is unreadable") from None
    try:
        cfg = config_from_dict(saved)
        # runs written before the minibatch rule capped the count at the envs without a word:
        # that cap is what they trained with
        if isinstance(cfg.num_envs, int) and isinstance(cfg.ppo.num_minibatches, int):
            cfg.ppo.num_minibatches = min(cfg.ppo.num_minibatches, cfg.num_envs)
        cfg.validate()  # the saved file alone; the overrides are validated with it by train()
    except MemarlError as error:
        raise MemarlError(f"cannot resume: {run_dir}/config.json: {error}") from None
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
    """Write RUN/config.json atomically (temp file, fsync, rename)."""
    info = {
        "config": config_to_dict(cfg),
        "agent_config": dataclasses.asdict(policy.config),
        "parameters": policy.parameter_counts(),
        "git_commit": git_commit(),
        "command_line": shlex.join(command_line) if command_line else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = run_dir / ".config.json.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(info, indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, run_dir / "config.json")
    except OSError as error:
        tmp.unlink(missing_ok=True)
        # the directory holds only its lock file now, which a new `memarl train` may reuse
        raise MemarlError(f"cannot write {run_dir / 'config.json'} "
                          f"({os_error_reason(error)})") from None


def check_checkpoint_fits(path: Path, payload: dict, cfg: TrainConfig, env: Any) -> None:
    """Raise a one-line MemarlError naming how a checkpoint does not fit this run's agent and env
    (nothing is read into the run either way)."""
    if payload["agent"] != cfg.agent:
        raise MemarlError(f"cannot resume: {path} holds agent {payload['agent']!r}, the run's "
                          f"config says {cfg.agent!r}")
    if payload.get("env") != cfg.env:
        raise MemarlError(f"cannot resume: {path} was trained on env {payload.get('env')!r}, "
                          f"the run's config says {cfg.env!r}")
    if list(payload.get("obs_shape") or []) != list(env.obs_shape):
        raise MemarlError(f"cannot resume: {path} was trained on observations of shape "
                          f"{payload.get('obs_shape')}, the env gives {list(env.obs_shape)}")
    if payload.get("num_actions") != env.num_actions:
        raise MemarlError(f"cannot resume: {path} was trained with {payload.get('num_actions')} "
                          f"actions, the env has {env.num_actions}")
    if "agent_steps" not in payload:
        raise MemarlError(f"cannot resume: {path} lacks agent_steps")


def config_fingerprint(cfg: TrainConfig) -> str:
    """A hash of the settings a resumed run may not change (all but ``RESUMABLE_FIELDS``): a
    checkpoint's collector state and RNG states are restored only into a run of the same one."""
    data = {k: v for k, v in config_to_dict(cfg).items()
            if k not in RESUMABLE_FIELDS and k != "run_dir"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_states(device: torch.device) -> dict[str, Any]:
    """The process's RNG states (action sampling and dropout draw from torch's)."""
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
              "python": random.getstate()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _same_settings(path: Path, payload: dict, fingerprint: str) -> bool:
    """Whether a checkpoint was written under this run's settings (its episodes may continue
    only then); a note when not."""
    if payload.get("config_hash") == fingerprint:
        return True
    _note(f"{path.name} was written under other settings; the run starts fresh episodes")
    return False


def continue_episodes(path: Path, payload: dict, fingerprint: str, collector: RolloutCollector,
                      device: torch.device) -> bool:
    """Put the checkpoint's envs, memory state and RNG states back into this run, so that its
    next update equals the uninterrupted run's. False (the run starts fresh episodes) for a
    checkpoint without them, written under other settings, or whose saved envs no longer load
    (written by another version of memarl)."""
    saved, rng = payload.get("collector"), payload.get("rng")
    if saved is None or rng is None or not _same_settings(path, payload, fingerprint):
        return False
    try:
        collector.load_state_dict(saved)
    except Exception as error:  # noqa: BLE001 - any unpickling failure leaves fresh episodes
        warn(f"cannot continue the episodes saved in {path.name} ({type(error).__name__}: "
             f"{str(error)[:120]}); the run starts fresh episodes")
        return False
    set_rng_states(rng, device)
    return True


def report_resume(run_dir: Path, resumed: LatestCheckpoint, out, continued: bool) -> None:
    """Say in one line where a resumed run starts; move unreadable newer checkpoints aside so
    that neither this run's pruning nor a later ``latest`` trips over them again."""
    start = (f"resuming from {resumed.path.name}" if resumed.path is not None
             else "starting at step 0 from the saved config")
    if resumed.skipped:
        move_aside([error.path for error in resumed.skipped])
        warn(f"skipped unreadable checkpoint(s) {resumed.skipped_text()} in "
             f"{run_dir / 'checkpoints'} (moved aside to *{BROKEN_SUFFIX}); {start}")
    elif resumed.path is None:
        _note(f"{run_dir} has no checkpoint yet; {start}")
    if resumed.path is not None:
        episodes = "its episodes continued" if continued else "fresh episodes"
        print(f"resuming {run_dir} from {resumed.path.name} "
              f"({resumed.payload['agent_steps']:,} agent-steps, {episodes})", file=out,
              flush=True)


def _note(message: str) -> None:
    print(f"memarl: note: {message}", file=sys.stderr, flush=True)


def distributed_policy(policy: torch.nn.Module, ranks: Ranks,
                       device: torch.device) -> torch.nn.Module:
    """The module the learner trains: ``policy`` itself, or under torchrun a
    DistributedDataParallel of it (rank 0's weights broadcast, gradients all-reduced).
    ``find_unused_parameters``: some cores leave parameters out of a segment's graph (the
    memory head with memory_grad none, a shared read with one agent)."""
    if not ranks.distributed:
        return policy
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(policy, device_ids=[device.index] if device.type == "cuda"
                                   else None, find_unused_parameters=True)


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


def saved_actor_states(path: Path, payload: dict, fingerprint: str,
                       env_counts: list[int]) -> list[dict | None] | None:
    """The actors' collector states of an async checkpoint, when this run's actors step the
    same envs (same settings, same split); None (fresh episodes) otherwise, with a note."""
    saved = payload.get("actors")
    if saved is None:
        if payload.get("collector") is not None:
            _note(f"{path.name} was written by the synchronous loop; the async actors start "
                  f"fresh episodes")
        return None
    if not _same_settings(path, payload, fingerprint):
        return None
    if payload.get("actor_envs") != env_counts:
        _note(f"{path.name} was written by actors of {payload.get('actor_envs')} envs, this run's "
              f"step {env_counts}; the run starts fresh episodes")
        return None
    return saved


LEARNER_TIMINGS = ("forward_s", "backward_s")
"""seconds of an update in the policy's forward + loss, and in backward + optimizer step"""


class _Runner:
    """What the sync loop and the async engine share: the learner, the logger, the checkpoints
    and how an update is trained and logged."""

    def __init__(self, cfg: TrainConfig, learner: Learner, logger: RunLogger,
                 checkpoints: CheckpointWriter, checkpoint_info: dict, agent_steps: int,
                 ranks: Ranks):
        self.cfg, self.learner, self.logger, self.checkpoints = cfg, learner, logger, checkpoints
        self.ranks = ranks
        self.checkpoint_info = checkpoint_info
        """the checkpoint entries that do not change during the run (agent, env, config, ...)"""
        self.agent_steps = agent_steps
        self.last_checkpoint = time.time()

    def learn(self, segment, next_value) -> dict[str, float]:
        try:
            stats = self.learner.learn(segment, next_value)
        except TrainingDiverged as error:
            checkpoints = self.checkpoints
            kept = (f"{checkpoints.last_good.name} ({checkpoints.last_good_steps:,} agent-steps)"
                    if checkpoints.last_good is not None else "none")
            raise TrainingDiverged(f"{error}; the run stops without a new checkpoint; the last "
                                   f"one is {kept}. Lower --max-learning-rate or check the env's "
                                   f"rewards, then --resume {self.cfg.run_dir}") from None
        self.agent_steps += segment.num_agent_steps * self.ranks.world_size  # every rank's
        if stats["nonfinite_minibatches"]:
            warn(f"update {self.learner.version}: the loss was NaN or inf in "
                 f"{stats['nonfinite_minibatches']:.0f} minibatch(es); their steps were skipped")
        return stats

    def log(self, stats: dict[str, float], episodes: list[dict], scalars: dict[str, float]) -> None:
        steps = self.agent_steps
        self.logger.episodes(episodes, steps)
        self.logger.scalars({f"losses/{k}": v for k, v in stats.items()
                             if k not in LEARNER_TIMINGS + ("learning_rate",)}, steps)
        self.logger.scalars({"charts/learning_rate": stats["learning_rate"],
                             "perf/SPS": self.logger.sps(steps),
                             **{f"perf/learn_{k}": stats[k] for k in LEARNER_TIMINGS},
                             **scalars}, steps)
        self.logger.progress(steps, self.learner.version)

    def checkpoint_due(self) -> bool:
        """Whether rank 0 writes a checkpoint after this update (never another rank)."""
        return self.ranks.main and time.time() - self.last_checkpoint >= self.cfg.checkpoint_every_s

    def go_on(self, stop: "_StopRequest") -> bool:
        """Whether to train another update: steps left and no stop requested on any rank."""
        return self.agent_steps < self.cfg.total_steps and not any_rank(stop.requested)

    def write_checkpoint(self, episodes_state: Callable[[], dict], device: torch.device,
                         final: bool) -> None:
        """``episodes_state()``: how the episodes continue (``collector`` or ``actors``). Rank 0
        only."""
        if not self.ranks.main:
            return
        payload = {**self.checkpoint_info, **self.learner.state_dict(),
                   "agent_steps": self.agent_steps, **episodes_state(), "rng": rng_states(device)}
        self.checkpoints.write(payload, self.logger.score(), self.learner.version,
                               self.agent_steps, final)
        self.last_checkpoint = time.time()  # after a failure too: retry next time


def run_sync(runner: _Runner, collector: RolloutCollector, device: torch.device,
             stop: "_StopRequest", threads: ThreadShare) -> None:
    """The synchronous loop: collect a segment, train on it, repeat."""
    learner = runner.learner

    def episodes_state() -> dict:
        return {"collector": collector.state_dict()}

    while runner.go_on(stop):
        t0 = time.time()
        collector.policy.eval()
        segment, next_value = collector.collect(policy_version=learner.version)
        t1 = time.time()
        lag = learner.version - segment.policy_version
        stats = runner.learn(segment, next_value)
        t2 = time.time()
        timings = collector.timings
        runner.log(stats, collector.pop_finished_episodes(), {
            "perf/collect_time_fraction": (t1 - t0) / max(t2 - t0, 1e-9),
            "perf/learn_time_fraction": (t2 - t1) / max(t2 - t0, 1e-9),
            "perf/env_s": timings["env_s"], "perf/policy_s": timings["policy_s"],
            "perf/learn_s": t2 - t1,
            "async/policy_lag_min": float(lag), "async/policy_lag_avg": float(lag),
            "async/policy_lag_max": float(lag), "perf/torch_threads": float(threads.threads)})
        threads.update()  # a neighbour run started or ended: re-share the cores
        if runner.checkpoint_due():
            runner.write_checkpoint(episodes_state, device, final=False)
    runner.write_checkpoint(episodes_state, device, final=True)


def run_async(runner: _Runner, engine: AsyncEngine, policy: torch.nn.Module,
              device: torch.device, stop: "_StopRequest", threads: ThreadShare) -> None:
    """The async loop: the actors sample while the learner trains on the batches they deliver."""
    learner = runner.learner

    def actor_states() -> dict:
        return {"actors": engine.collector_states(), "actor_envs": engine.env_counts}

    # alone, a stop request ends the wait for a batch; under torchrun every rank finishes the
    # update so that all of them stop after the same one
    stop_waiting = (lambda: False) if runner.ranks.distributed else (lambda: stop.requested)
    while runner.go_on(stop):
        t0 = time.time()
        try:
            batch = engine.next_batch(device, stop_waiting)
        except ActorFailed as error:
            # the learner is intact: keep what it learned, then stop with the actor's error
            runner.write_checkpoint(actor_states, device, final=True)
            raise ActorFailed(f"{error}; the run stops with a checkpoint at "
                              f"{runner.agent_steps:,} agent-steps; once the cause is fixed, "
                              f"--resume {runner.cfg.run_dir}") from None
        if batch is None:
            break
        t1 = time.time()
        stats = runner.learn(batch.segment, batch.next_value)
        engine.publish(policy, learner.version)
        t2 = time.time()
        runner.log(stats, batch.episodes, {
            "async/policy_lag_min": float(min(batch.lags)),
            "async/policy_lag_avg": float(np.mean(batch.lags)),
            "async/policy_lag_max": float(max(batch.lags)),
            "async/dropped_segments": float(engine.dropped_total),
            "async/actor_restarts": float(engine.restarts),
            "async/sampled_agent_steps": float(engine.sampled_agent_steps),
            "perf/learner_wait_fraction": batch.wait_s / max(t2 - t0, 1e-9),
            "perf/transport_s": batch.read_s, "perf/learn_s": t2 - t1,
            "perf/env_s": batch.actor_timings["env_s"],
            "perf/policy_s": batch.actor_timings["policy_s"],
            "perf/collect_s": batch.actor_timings["collect_s"],
            "perf/torch_threads": float(threads.threads)})
        threads.update()
        if runner.checkpoint_due():
            runner.write_checkpoint(actor_states, device, final=False)
    runner.write_checkpoint(actor_states, device, final=True)


def train(cfg: TrainConfig, resume: bool = False, command_line: list[str] | None = None,
          quiet: bool = False) -> Path:
    """Train ``cfg.agent`` on ``cfg.env``; returns the run directory."""
    if not cfg.run_dir:
        cfg.run_dir = default_run_dir(cfg)
    cfg.validate()
    if cfg.backend == "sample-factory":
        from memarl.train.sf_backend import train_sample_factory
        return train_sample_factory(cfg, resume=resume, command_line=command_line, quiet=quiet)
    ranks = distributed.start(resolve_device(cfg.device))
    try:
        return _train(cfg, ranks, resume, command_line, quiet)
    finally:
        distributed.finish(ranks)


def _train(cfg: TrainConfig, ranks: Ranks, resume: bool, command_line: list[str] | None,
           quiet: bool) -> Path:
    device = rank_device(ranks, resolve_device(cfg.device))
    env_seed = cfg.seed + ranks.rank * ENV_SEED_STRIDE
    cfg.env_options = typed_env_options(cfg.env, cfg.env_options)
    seed_everything(cfg.seed)
    cfg.agent_options = typed_agent_options(cfg.agent, cfg.agent_options, cfg.env)
    check_training_memory(
        estimate_training_memory(cfg.env, cfg.env_options, cfg.num_envs, cfg.agent,
                                 cfg.agent_options, cfg.rollout_len, cfg.ppo.num_minibatches),
        hint="lower --num-envs, --rollout-len or the model size, or raise --num-minibatches")
    env = build_env(cfg, seed=env_seed)
    # the initial weights depend on the seed, the agent config and an explicit thread count
    # only, not on what ran before in this process (the thread count changes the rounding of
    # the orthogonal initialisation, and a run's outcome with it)
    torch.manual_seed(cfg.seed)
    caller_threads = torch.get_num_threads()
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    try:
        policy = build_policy(cfg.agent, env, cfg.agent_options).to(device)
    finally:
        torch.set_num_threads(caller_threads)

    run_dir = Path(cfg.run_dir)
    checkpoint_dir = run_dir / "checkpoints"
    out = open(os.devnull, "w") if quiet or not ranks.main else sys.stdout
    # a resumed run is locked before anything of it is read; a new run directory is created
    # and locked only once everything the run needs is built and checked (by rank 0, which
    # alone writes into it)
    lock = prepare_run_dir(cfg, resume=True) if resume and ranks.main else None
    engine = None
    try:
        learner = Learner(distributed_policy(policy, ranks, device), cfg.ppo, cfg.seed)
        agent_steps, best_score = 0, -1.0
        fingerprint = config_fingerprint(cfg)
        resumed = newest_resumable_checkpoint(checkpoint_dir) if resume else None
        payload = resumed.payload if resumed is not None else None
        if payload is not None:
            check_checkpoint_fits(resumed.path, payload, cfg, env)
            learner.load_state_dict(payload, resumed.path, cfg.agent)
            agent_steps = payload["agent_steps"]
            if cfg.total_steps <= agent_steps:
                raise MemarlError(f"run {run_dir} is already at {agent_steps:,} agent-steps "
                                  f"({resumed.path.name}); --total-steps must exceed it "
                                  f"(now {cfg.total_steps:,})")
            # a best score in another metric says nothing of this one; checkpoints that do not
            # name their metric were ranked by the first of CSR / avg_throughput their env
            # reported, which is the metric the env declares
            if payload.get("score_metric", env.score_metric) == env.score_metric:
                best_score = payload.get("best_score", payload.get("best_csr", -1.0))
            torch.manual_seed(cfg.seed + learner.version)
        if ranks.rank:  # other actions on every rank
            torch.manual_seed(env_seed + learner.version)
        num_actors = cfg.resolved_num_actors() if cfg.async_ else 0
        if cfg.async_:
            # the actors build their own envs; this reset only fails early, before a new run
            # directory exists, for an env that fails at reset
            env.reset(seed=env_seed)
            collector, continued = None, False
            actor_states = None
            if payload is not None and ranks.main:
                from memarl.train.actor import split_envs
                actor_states = saved_actor_states(resumed.path, payload, fingerprint,
                                                  split_envs(cfg.num_envs, num_actors))
                continued = actor_states is not None
                if continued:
                    set_rng_states(payload["rng"], device)
        else:
            # the collector's first env.reset() runs here: an env that fails only at reset
            # fails before a new run directory exists
            collector = RolloutCollector(env, policy, cfg.rollout_len, device,
                                         seed=env_seed + 1_000_003 * learner.version)
            # under torchrun the checkpoint holds rank 0's envs: the other ranks start fresh
            continued = payload is not None and ranks.main and continue_episodes(
                resumed.path, payload, fingerprint, collector, device)
            env = collector.env  # the saved envs when the episodes continue: one env object
        if ranks.main and lock is None:
            lock = prepare_run_dir(cfg, resume=False)
            lock.remove_orphan_temp_files()
            write_run_config(run_dir, cfg, policy, command_line)
        elif ranks.main:
            lock.remove_orphan_temp_files()
            report_resume(run_dir, resumed, out, continued)
        if lock is not None and lock.stale is not None:
            _note(f"run directory {run_dir} was left locked by {lock.stale.describe()}, which "
                  f"is gone; took it over")

        logger = RunLogger(run_dir / "tb" if ranks.main else None, cfg.total_steps,
                           cfg.print_every_s, stream=out, score_metric=env.score_metric)
        logger.text("config", "```\n" + json.dumps(config_to_dict(cfg), indent=2) + "\n```")
        logger.set_start(agent_steps)
        checkpoints = CheckpointWriter(checkpoint_dir, cfg.keep_checkpoints, best_score,
                                       last_good=resumed.path if resumed is not None else None,
                                       last_good_steps=agent_steps)

        # the checkpoint describes its env whole, so that eval and render rebuild the training
        # observation from it even after a default changes (env/env_options stay for readers)
        from memarl.registry import ENVS
        checkpoint_info = {
            "agent": cfg.agent, "agent_config": dataclasses.asdict(policy.config),
            "env": cfg.env, "env_options": cfg.env_options, "env_id": ENVS.resolve(cfg.env),
            "env_config": env_config_fields(env.config), "score_metric": env.score_metric,
            "obs_shape": list(env.obs_shape), "num_actions": env.num_actions,
            "config": config_to_dict(cfg), "config_hash": fingerprint}
        runner = _Runner(cfg, learner, logger, checkpoints, checkpoint_info, agent_steps, ranks)
        with _StopRequest() as stop, ThreadShare(cfg.torch_threads, num_actors) as threads:
            try:
                if cfg.async_:
                    engine = AsyncEngine(
                        EngineSettings(cfg.env, cfg.env_options, cfg.agent, cfg.agent_options,
                                       cfg.num_envs, num_actors, cfg.rollout_len, env_seed,
                                       cfg.max_policy_lag, cfg.actor_timeout_s,
                                       cfg.max_actor_restarts),
                        env, policy, learner.version, actor_states)
                    run_async(runner, engine, policy, device, stop, threads)
                else:
                    run_sync(runner, collector, device, stop, threads)
            finally:
                logger.progress(runner.agent_steps, learner.version, force=True)
                logger.close()
    finally:
        if engine is not None:
            engine.close()
        if lock is not None:
            lock.release()
    if stop.requested:
        raise TrainingInterrupted(run_dir)
    return run_dir
