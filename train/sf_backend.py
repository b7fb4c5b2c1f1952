"""Train memarl agents with sample-factory 2.1.1's APPO, through its registration APIs only.

``memarl train --backend sample-factory`` (:func:`train_sample_factory`) runs sample-factory's own
runner, samplers, batcher and learner on our envs and agents; nothing of sample-factory is forked
or edited. It is the speed anchor that memarl's engines are measured against
(``memarl bench train``).

How the pieces are plugged in
-----------------------------
* **Env** (``register_env("memarl_<env>")``): every sample-factory env is ONE memarl env
  (``memarl.make(env, num_envs=1)``) wrapped as a sample-factory multi-agent env
  (:class:`MultiAgentEnvForSF`): lists per agent, auto-reset by the env itself. Env ``g`` (the
  global index over all workers) is seeded ``seed + g``, as env ``g`` of a memarl batch. Each
  agent is its own sample-factory trajectory. An agent's sample-factory episode ends when it
  arrives (``terminated`` while alive) or when the env's episode ends while it is still
  playing (``truncated``, time limit); an agent that is not alive (finished in ``finish`` mode)
  is reported ``info["is_active"] = False`` until its env resets, so sample-factory masks its
  steps as invalid and does not step its policy. The env's episode metrics (CSR, ISR, SoC,
  return, ...) go into ``info["episode_extra_stats"]`` of exactly one agent per env episode, so
  each env episode counts once in the means; they are logged as ``env_<metric>``
  (TensorBoard ``policy_stats/avg_env_<metric>``).
* **Model** (``register_actor_critic_factory``): :class:`MemarlActorCritic` wraps the agent that
  ``memarl.agents.make_agent`` builds (its encoder, memory core and heads, with their own
  initialisation, seeded like memarl's trainer). sample-factory's encoder / core / decoder
  factories are not used: its ``ActorCriticSharedWeights`` re-initialises every Linear and
  Conv2d with its own scheme and brings its own heads, so the agent would not be ours. The
  checkpoint's ``model`` holds the agent's weights under ``policy.``.
* **Memory state**: the core's state dict (any dict of float, int or bool tensors) is flattened
  into sample-factory's per-agent ``rnn_states`` vector (:class:`StateLayout`): slot 0 is a
  "started" flag, then every entry in key order. sample-factory zeroes the vector at an
  agent's episode end, so a zero flag means "first step of an episode" and is passed to the
  core as ``first``: the core resets exactly as in memarl. Integer entries (counters, cursors)
  are stored as float32, exact below 2**24. In the learner, sample-factory hands the core a
  ``PackedSequence`` cut at episode ends and invalid steps; the core is stepped through it
  (``recurrence = rollout_len``), backpropagating through the state unless the agent's
  ``memory_grad`` is ``none``. Memory-less agents (``empty``) run with ``use_rnn=False``.

Settings (:class:`TrainConfig` -> sample-factory)
-------------------------------------------------
============================  ================================================================
total_steps                   --train_for_env_steps (sample-factory counts one step per agent,
                              inactive agents included, as memarl)
seed                          --seed; env g is seeded seed + g
num_envs                      --num_workers x --num_envs_per_worker (workers: --num-actors, or
                              half the cores, lowered to a divisor of num_envs; one worker =
                              --serial_mode, the fastest on few cores); 2 splits (double
                              buffering) when a worker has an even number of envs
rollout_len                   --rollout, and --recurrence for memory agents
device                        --device gpu (cuda, cuda:0) or cpu (auto without CUDA)
async_                        --async_rl (false: sample-factory's sync mode, which needs
                              num_minibatches to divide num_envs x agents)
max_policy_lag                --max_policy_lag x update_epochs x num_minibatches
                              (sample-factory versions count SGD steps)
checkpoint_every_s            --save_every_sec; keep_checkpoints -> --keep_checkpoints;
                              best checkpoint by env_<score metric>
torch_threads                 torch threads of this process (0: shared as memarl's trainer)
ppo.learning_rate             --learning_rate
ppo.lr_schedule               kl_adaptive -> --lr_schedule kl_adaptive_minibatch (same rule:
                              /1.5 above 2 x target, x1.5 below target / 2); constant
ppo.target_kl / min / max lr  --lr_schedule_kl_threshold / --lr_adaptive_min / _max
ppo.gamma, gae_lambda         --gamma, --gae_lambda (GAE; V-trace stays off)
ppo.clip_coef                 --ppo_clip_ratio (sample-factory clips the ratio to
                              [1/(1+c), 1+c], memarl to [1-c, 1+c])
ppo.value_clip                --ppo_clip_value (0 = off -> a clip too large to act)
ppo.ent_coef                  --exploration_loss entropy, --exploration_loss_coeff
ppo.vf_coef                   --value_loss_coeff
ppo.max_grad_norm             --max_grad_norm
ppo.update_epochs             --num_epochs
ppo.num_minibatches           --num_batches_per_epoch, --batch_size = (num_envs x agents //
                              num_minibatches) x rollout_len, shuffled whole trajectories
ppo.normalize_returns         --normalize_returns
ppo.value_bootstrap           --value_bootstrap
============================  ================================================================

Not mapped (sample-factory has no equivalent; a non-default PPO value among them is named in
a warning):
``advantage_normalization`` (sample-factory always normalises per minibatch, as memarl's
default), ``advantage_std_floor``, ``max_nonfinite_updates``, ``actor_timeout_s``,
``max_actor_restarts`` (sample-factory has its own heartbeats), ``print_every_s`` only paces this
module's progress line. sample-factory also scales the learning rate by the batch's fraction
of valid (active) samples, never normalises observations here (``--normalize_input False``,
as memarl), and memarl's minibatches hold whole env groups while sample-factory's hold
independent agent trajectories.

Limits
------
* **Shared memory (SRMT, or any agent with ``share_memory=True``) is refused.** sample-factory
  batches every agent as an independent trajectory: its inference worker sees one agent's
  observation and ``rnn_states`` at a time, and the learner cuts minibatches into per-agent
  sequences, so an agent cannot read the memories the other agents of its env wrote at the same
  step. The SRMT authors changed sample-factory's sampler for this (new trajectory tensors,
  concatenating all agents' memories per env), which is a fork, not a plug-in. The one plug-in
  alternative, one sample-factory agent per env with a joint observation and a MultiDiscrete
  action, changes the algorithm (one trajectory, one advantage per env) and loses per-agent
  inactive masking, so it is not done here. ``rmt`` (SRMT without the shared read) and
  ``--agent-opt share_memory=false`` train.
* Memory agents need ``rollout_len >= 2`` (sample-factory trains an RNN only with recurrence
  > 1); ``cuda:i`` with i > 0 is refused (pick the GPU with CUDA_VISIBLE_DEVICES).
* Every check runs before the run directory is created: a refused agent or setting leaves
  nothing behind.

Run directory
-------------
``RUN/config.json`` (memarl's run config, so that ``memarl train --resume RUN`` finds it),
``RUN/sf/`` (sample-factory's experiment: ``train_dir = RUN``, ``experiment = "sf"``; its
``config.json``, ``checkpoint_p0/``, ``.summary/0`` TensorBoard, ``sf_log.txt``) and
``RUN/sf_summary.json``, written at the end: ``agent_steps`` (what the learner consumed in all,
resumed runs included; ``agent_steps_this_run``), ``wall_s`` (sample-factory's main loop, the
start of its components included; ``init_s`` before it), ``sps`` (this run's agent-steps /
wall_s), ``score_metric`` and ``score`` (its mean over the last 100 env episodes, null before
one ended), ``policy_lag_avg`` / ``policy_lag_max`` in memarl's unit, updates
(sample-factory's ``version_diff`` counts SGD steps, including the minibatches of the update
in progress, and is divided by epochs x minibatches; the raw values are kept besides), null
when it reported none. A new run refuses a non-empty RUN; ``resume=True`` continues the
sample-factory experiment from its newest checkpoint.

sample-factory 2.1.1's traps are fixed in one place, :func:`fix_sample_factory_traps`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import gymnasium
import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence

from memarl.errors import MemarlError, TrainingInterrupted

try:
    SF_VERSION = importlib.metadata.version("sample-factory")
except importlib.metadata.PackageNotFoundError:
    raise MemarlError("--backend sample-factory needs sample-factory 2.1.1 "
                      "(pip install sample-factory==2.1.1)") from None

from sample_factory.algo.learning.learner import Learner as SFLearner  # noqa: E402
from sample_factory.algo.runners import runner as sf_runner_module  # noqa: E402
from sample_factory.algo.runners.runner import AlgoObserver  # noqa: E402
from sample_factory.algo.runners.runner_parallel import ParallelRunner  # noqa: E402
from sample_factory.algo.runners.runner_serial import SerialRunner  # noqa: E402
from sample_factory.algo.utils.action_distributions import get_action_distribution  # noqa: E402
from sample_factory.algo.utils.context import (SampleFactoryContext,  # noqa: E402
                                               global_model_factory, set_global_context,
                                               sf_global_context)
from sample_factory.algo.utils.env_info import extract_env_info  # noqa: E402
from sample_factory.algo.utils.make_env import make_env_func_batched  # noqa: E402
from sample_factory.algo.utils.misc import ExperimentStatus, TRAIN_STATS  # noqa: E402
from sample_factory.algo.utils.tensor_dict import TensorDict  # noqa: E402
from sample_factory.cfg.arguments import (maybe_load_from_checkpoint,  # noqa: E402
                                          parse_full_cfg, parse_sf_args)
from sample_factory.envs.env_utils import register_env  # noqa: E402
from sample_factory.model.actor_critic import ActorCritic  # noqa: E402
from sample_factory.model.model_utils import model_device  # noqa: E402
from sample_factory.utils.utils import log as sf_log  # noqa: E402

SF_EXPERIMENT = "sf"
"""sub-folder of the run directory that holds sample-factory's experiment"""
SUMMARY_FILE = "sf_summary.json"
"""the run's numbers, written at the end (``memarl bench train`` reads it)"""
ENV_NAME_PREFIX = "memarl_"
"""sample-factory env name of memarl env ``x``: ``memarl_x``"""
EPISODE_STATS_PREFIX = "env_"
"""env episode metrics are logged as ``env_<metric>``: apart from sample-factory's own per-agent
``reward`` and ``len``, and without a "/", which sample-factory would put into the file name of
the best checkpoint (a folder that does not exist: the run failed)"""
STATS_WINDOW = 100
"""episodes in sample-factory's running means (--stats_avg), the score among them"""
NO_VALUE_CLIP = 1e10
"""--ppo_clip_value for memarl's value_clip 0 (off): sample-factory always clips"""
NUMPY_GLOBALS_IN_CHECKPOINTS = [np.core.multiarray.scalar, np.dtype,
                                type(np.dtype(np.float64)), type(np.dtype(np.float32))]
"""what sample-factory pickles besides tensors: ``best_performance`` is a numpy scalar"""


# --------------------------------------------------------------------------------------------
# sample-factory's traps, fixed in one place


def fix_sample_factory_traps(sf_cfg: Any | None = None) -> None:
    """Work around the traps of sample-factory 2.1.1 (shared/reference/sample_factory.md §2).

    In this process (idempotent; the model factory calls it too, so that every process that
    builds the model, a spawned learner included, has it before it loads a checkpoint):

    * resume under torch >= 2.6 (trap 3): ``torch.load`` defaults to ``weights_only=True`` and
      a checkpoint whose ``best_performance`` is a numpy scalar failed three times, after which
      sample-factory silently trained from random weights. The loader now allows those numpy
      globals and raises when the newest checkpoint cannot be read.
    * env info: sample-factory spawns a process just to read the env's spaces, and waits on a
      queue forever when the env raises there. Our envs are numpy, so it is read in this
      process, where an error is raised.
    * numpy >= 2.4 crashes the rollout workers (trap 7; parallel mode then hangs): refused.

    With ``sf_cfg`` (the parsed config, after a resumed experiment's saved config was merged
    in; in the process that runs the experiment) also:

    * a second run in the same process logged into the first run's ``sf_log.txt``
      (``init_file_logger`` adds a file handler only when none exists): stale file handlers are
      dropped.
    * ``--device gpu`` without CUDA crashes in ``policy_device`` (trap 1): cpu then.
    * V-trace crashes and then hangs (trap 2): ``with_vtrace`` stays False.
    * ``--train_for_seconds`` is never checked (trap 6): runs are bounded by env steps only.
    * wandb does not import with pogema's pydantic (trap 8): off.
    * an experiment saved with ``restart_behavior=overwrite`` re-applies it (trap 4): resume.
    * batched sampling has no inactive-agent masking: the non-batched sampler is kept.

    Not patched, avoided: the best checkpoint's file name holds ``--save_best_metric``, so a
    metric name with a "/" (TensorBoard's section separator) made the save fail and stop the
    run; the env's metrics are named without one (:data:`EPISODE_STATS_PREFIX`). And
    ``Runner.register_policy_msg_handler`` replaces a handler list with a bare function, so this
    module appends its handler to the list instead.
    """
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0":
        raise MemarlError(f"sample-factory 2.1.1 does not run with numpy {np.__version__}; "
                          f"install numpy<2.4")
    if not getattr(fix_sample_factory_traps, "installed", False):
        SFLearner.load_checkpoint = staticmethod(_load_newest_checkpoint)
        sf_runner_module.obtain_env_info_in_a_separate_process = _env_info_in_this_process
        fix_sample_factory_traps.installed = True
    if sf_cfg is None:
        return
    for handler in [h for h in sf_log.handlers if isinstance(h, logging.FileHandler)]:
        sf_log.removeHandler(handler)
        handler.close()
    if sf_cfg.device == "gpu" and not torch.cuda.is_available():
        sf_cfg.device = "cpu"
    sf_cfg.with_vtrace = False
    sf_cfg.train_for_seconds = 10**12
    sf_cfg.with_wandb = False
    sf_cfg.restart_behavior = "resume"
    sf_cfg.batched_sampling = False


def read_sf_checkpoint(path: Path | str, device: Any = "cpu") -> dict:
    """A sample-factory checkpoint, read with torch's safe loader plus the numpy globals that
    sample-factory pickles."""
    with torch.serialization.safe_globals(NUMPY_GLOBALS_IN_CHECKPOINTS):
        return torch.load(path, map_location=device, weights_only=True)


def _load_newest_checkpoint(checkpoints: list[str], device: Any) -> dict | None:
    """Replaces ``Learner.load_checkpoint``: the newest of ``checkpoints`` or, when there is
    none, None (a new experiment); an unreadable one raises instead of starting from scratch."""
    if not checkpoints:
        sf_log.info("No checkpoints found: training from scratch")
        return None
    newest = checkpoints[-1]
    sf_log.info(f"Loading state from checkpoint {newest}")
    return read_sf_checkpoint(newest, device)


def _env_info_in_this_process(sf_cfg: Any):
    """Replaces ``obtain_env_info_in_a_separate_process``: the env's spaces, read here."""
    env = make_env_func_batched(sf_cfg, env_config=None)
    try:
        return extract_env_info(env, sf_cfg)
    finally:
        env.close()


# --------------------------------------------------------------------------------------------
# the env


def episode_stats(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric episode metrics of an env as sample-factory extra stats (``env_<name>``);
    names, seeds and other non-numbers are left out (sample-factory averages every entry)."""
    return {f"{EPISODE_STATS_PREFIX}{name}": float(value) for name, value in metrics.items()
            if isinstance(value, (bool, int, float, np.number)) and math.isfinite(float(value))}


class MultiAgentEnvForSF(gymnasium.Env):
    """One memarl env (a batch of 1) as a sample-factory multi-agent env (module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, env_id: str, env_options: dict, seed: int):
        from memarl.envs import make
        self.env = make(env_id, num_envs=1, seed=seed, **env_options)
        self.num_agents: int = self.env.num_agents
        self.is_multiagent = True
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        self.render_mode = None
        self.env_seed = seed
        self._seeded = False

    def reset(self, seed: int | None = None, options: dict | None = None):
        # the episodes follow the run seed + global env index (given at construction), as env g
        # of a memarl batch, not the index sample-factory passes here
        obs = self.env.reset(seed=None if self._seeded else self.env_seed)   # [1, A, ...]
        self._seeded = True
        return list(obs[0]), [{} for _ in range(self.num_agents)]

    def step(self, actions):
        playing = self.env.alive[0].copy()                                    # [A]
        joint = np.asarray(actions, dtype=np.int64).reshape(1, self.num_agents)
        obs, reward, terminated, truncated, info = self.env.step(joint)
        env_ended = bool(info["episode_end"][0])
        # terminated stays set after an agent's arrival (pogema's on_goal): only the arrival step
        # ends its sample-factory episode, the steps after it are inactive
        arrived = playing & terminated[0]                                     # [A]
        cut_off = playing & ~arrived & (truncated[0] | env_ended)             # [A]
        infos = [{"is_active": bool(alive)} for alive in self.env.alive[0]]
        if env_ended:
            reporting = np.flatnonzero(arrived | cut_off)
            if reporting.size:  # one report per env episode, so that each counts once
                infos[reporting[0]]["episode_extra_stats"] = episode_stats(
                    info["episode_metrics"][0])
        return list(obs[0]), reward[0], arrived, cut_off, infos

    def render(self):
        return None


def make_env_for_sf(full_env_name: str, sf_cfg: Any = None, env_config: Any = None,
                    render_mode: str | None = None, *, env_id: str, env_options: dict,
                    seed: int) -> MultiAgentEnvForSF:
    """sample-factory's env factory (``register_env``); ``env_config.env_id`` is the global
    env index (absent when sample-factory only reads the spaces)."""
    index = int(env_config["env_id"]) if env_config is not None else 0
    return MultiAgentEnvForSF(env_id, env_options, seed + index)


# --------------------------------------------------------------------------------------------
# the model


class StateLayout:
    """How a memory core's state dict is laid out in sample-factory's flat ``rnn_states``:
    ``[started flag, entry 1, entry 2, ...]`` (entries in key order, each flattened)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        """``state``: the core's initial state of one env of one agent (entries ``[1, 1, ...]``)."""
        self.entries: list[tuple[str, tuple[int, ...], torch.dtype]] = []
        for key in sorted(state):
            value = state[key]
            if value.is_complex():
                raise MemarlError(f"the agent's memory entry {key!r} is complex; sample-factory "
                                  f"stores states as real float32")
            self.entries.append((key, tuple(value.shape[2:]), value.dtype))
        self.sizes = [math.prod(shape) for _, shape, _ in self.entries]
        self.size = 1 + sum(self.sizes)
        """floats per agent: the started flag and every entry"""

    @property
    def empty(self) -> bool:
        return not self.entries

    def pack(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Entries ``[B, 1, ...]`` -> ``[B, size]`` with the started flag set."""
        first_entry = state[self.entries[0][0]]
        batch = first_entry.shape[0]
        started = torch.ones(batch, 1, device=first_entry.device)
        parts = [state[key].reshape(batch, -1).to(torch.float32) for key, _, _ in self.entries]
        return torch.cat([started, *parts], dim=1)

    def unpack(self, flat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``[B, size]`` -> started ``[B]`` bool and entries ``[B, 1, ...]`` in their dtypes."""
        batch = flat.shape[0]
        started = flat[:, 0] > 0.5
        state = {}
        for (key, shape, dtype), piece in zip(self.entries, flat[:, 1:].split(self.sizes, dim=1)):
            if dtype == torch.bool:
                value = piece > 0.5
            elif not dtype.is_floating_point:
                value = piece.round().to(dtype)
            else:
                value = piece.to(dtype)
            state[key] = value.reshape(batch, 1, *shape)
        return started, state


class MemarlActorCritic(ActorCritic):
    """sample-factory's actor-critic interface over a memarl agent (encoder -> core -> heads).

    Each sample-factory row is one agent: the core is stepped with ``N = rows, A = 1``.
    """

    def __init__(self, sf_cfg: Any, obs_space: Any, action_space: Any,
                 policy: torch.nn.Module, layout: StateLayout):
        super().__init__(obs_space, action_space, sf_cfg)
        self.policy = policy
        self.layout = layout

    def device_for_input_tensor(self, input_tensor_name: str) -> torch.device:
        return model_device(self)

    def type_for_input_tensor(self, input_tensor_name: str) -> torch.dtype:
        return torch.float32

    def forward_head(self, normalized_obs_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.policy.encoder(normalized_obs_dict["obs"])               # [B, D]

    def forward_core(self, head_output, rnn_states: torch.Tensor):
        if isinstance(head_output, PackedSequence):
            return self._core_over_sequences(head_output, rnn_states)
        return self._core_step(head_output, rnn_states)

    def _core_step(self, e: torch.Tensor, flat: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of B agents: e ``[B, D]``, flat state ``[B, S]`` -> features ``[B, F]``,
        new flat state ``[B, S]`` (a memory-less core keeps sample-factory's placeholder)."""
        rows = e.shape[0]
        alive = torch.ones(rows, 1, dtype=torch.bool, device=e.device)       # [B, 1]
        if self.layout.empty:
            features, _ = self.policy.core.step(e[:, None], {}, ~alive, alive, None)
            return features[:, 0], flat
        started, state = self.layout.unpack(flat)
        first = ~started[:, None]                                             # [B, 1]
        features, new_state = self.policy.core.step(e[:, None], state, first, alive, None)
        return features[:, 0], self.layout.pack(new_state)

    def _core_over_sequences(self, packed: PackedSequence, flat: torch.Tensor
                             ) -> tuple[PackedSequence, torch.Tensor]:
        """The learner's pass: ``packed.data`` is time-major, step t holding the first
        ``batch_sizes[t]`` sequences in length order; ``flat`` ``[S, H]`` is each sequence's
        starting state in the caller's order."""
        order = packed.sorted_indices
        state = flat if order is None else flat.index_select(0, order)       # [S, H]
        outputs, offset = [], 0
        for rows in packed.batch_sizes.tolist():
            if not self.policy.core.bptt:
                state = state.detach()  # memory_grad=none: the gradient stops at every step
            features, new_rows = self._core_step(packed.data[offset:offset + rows], state[:rows])
            state = torch.cat([new_rows, state[rows:]])
            outputs.append(features)
            offset += rows
        out = PackedSequence(torch.cat(outputs), packed.batch_sizes, packed.sorted_indices,
                             packed.unsorted_indices)
        final = state if packed.unsorted_indices is None else state.index_select(
            0, packed.unsorted_indices)
        return out, final

    def forward_tail(self, core_output: torch.Tensor, values_only: bool,
                     sample_actions: bool) -> TensorDict:
        logits, values = self.policy.heads(core_output)                      # [B, K], [B]
        result = TensorDict(values=values)
        if values_only:
            return result
        self.last_action_distribution = get_action_distribution(self.action_space, logits)
        result["action_logits"] = logits
        self._maybe_sample_actions(sample_actions, result)
        return result

    def forward(self, normalized_obs_dict, rnn_states, values_only: bool = False) -> TensorDict:
        x = self.forward_head(normalized_obs_dict)
        x, new_rnn_states = self.forward_core(x, rnn_states)
        result = self.forward_tail(x, values_only, sample_actions=True)
        result["new_rnn_states"] = new_rnn_states
        return result


def build_agent(agent: str, agent_options: dict, obs_shape: tuple[int, ...], num_actions: int,
                seed: int) -> torch.nn.Module:
    """The agent with the initial weights memarl's trainer gives it for ``seed``."""
    from memarl.agents import make_agent
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_agent(agent, obs_shape, num_actions, **agent_options)


def make_actor_critic(sf_cfg: Any, obs_space: Any, action_space: Any, *, agent: str,
                      agent_options: dict, obs_shape: tuple[int, ...], num_actions: int,
                      seed: int) -> MemarlActorCritic:
    """sample-factory's actor-critic factory (``register_actor_critic_factory``)."""
    fix_sample_factory_traps()  # before this process's learner can load a checkpoint
    policy = build_agent(agent, agent_options, obs_shape, num_actions, seed)
    layout = StateLayout(policy.initial_state(1, 1, torch.device("cpu")))
    return MemarlActorCritic(sf_cfg, obs_space, action_space, policy, layout)


def check_agent_supported(policy: torch.nn.Module, agent: str) -> StateLayout:
    """The agent's state layout, or a one-line MemarlError for what sample-factory cannot run."""
    config = policy.config
    if getattr(config, "share_memory", False):
        raise MemarlError(f"the sample-factory backend cannot train {agent!r} with shared memory: "
                          f"sample-factory steps every agent as an independent trajectory, so "
                          f"agents cannot read each other's memories (use --agent-opt "
                          f"share_memory=false, or --backend memarl)")
    return StateLayout(policy.initial_state(1, 1, torch.device("cpu")))


# --------------------------------------------------------------------------------------------
# settings


@dataclasses.dataclass
class SFPlan:
    """What this run asks of sample-factory, derived from the TrainConfig (module docstring)."""

    env_name: str
    num_agents: int
    serial: bool
    num_workers: int
    envs_per_worker: int
    worker_splits: int
    use_rnn: bool
    rnn_size: int
    batch_size: int
    device: str
    max_policy_lag: int
    sgd_steps_per_update: int
    score_metric: str

    @property
    def score_key(self) -> str:
        return f"{EPISODE_STATS_PREFIX}{self.score_metric}"


def largest_divisor_up_to(n: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def plan_run(cfg: Any, layout: StateLayout, num_agents: int, score_metric: str) -> SFPlan:
    """Map ``cfg`` onto sample-factory's settings, or raise a one-line MemarlError."""
    from memarl.train.trainer import resolve_device
    ppo = cfg.ppo
    use_rnn = not layout.empty
    if use_rnn and cfg.rollout_len < 2:
        raise MemarlError(f"the sample-factory backend trains a memory agent only with "
                          f"--rollout-len >= 2 (sample-factory needs recurrence > 1), got "
                          f"{cfg.rollout_len}")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and (device.index or 0) != 0:
        raise MemarlError(f"the sample-factory backend picks GPUs itself: use --device cuda and "
                          f"CUDA_VISIBLE_DEVICES instead of --device {cfg.device}")
    agents_total = cfg.num_envs * num_agents
    if not cfg.async_ and agents_total % ppo.num_minibatches:
        raise MemarlError(f"with --async false the sample-factory backend needs --num-minibatches "
                          f"({ppo.num_minibatches}) to divide envs x agents ({agents_total})")
    workers = largest_divisor_up_to(cfg.num_envs, cfg.resolved_num_actors())
    envs_per_worker = cfg.num_envs // workers
    sgd_steps = ppo.update_epochs * ppo.num_minibatches
    return SFPlan(
        env_name=ENV_NAME_PREFIX + cfg.env, num_agents=num_agents, serial=workers == 1,
        num_workers=workers, envs_per_worker=envs_per_worker,
        worker_splits=2 if envs_per_worker % 2 == 0 else 1, use_rnn=use_rnn,
        rnn_size=layout.size, batch_size=max(1, agents_total // ppo.num_minibatches)
        * cfg.rollout_len, device="gpu" if device.type == "cuda" else "cpu",
        max_policy_lag=cfg.max_policy_lag * sgd_steps, sgd_steps_per_update=sgd_steps,
        score_metric=score_metric)


UNMAPPED_PPO_DEFAULTS = {"advantage_normalization": "minibatch", "advantage_std_floor": 0.0,
                         "max_nonfinite_updates": 10}
"""PPO settings sample-factory has no equivalent for, with the values it behaves like"""


def unmapped_settings(cfg: Any) -> list[str]:
    """The settings of ``cfg`` that sample-factory cannot follow and that differ from what it
    does anyway."""
    return [f"{name}={getattr(cfg.ppo, name)!r}" for name, same in UNMAPPED_PPO_DEFAULTS.items()
            if getattr(cfg.ppo, name) != same]


def sample_factory_argv(cfg: Any, plan: SFPlan) -> list[str]:
    """sample-factory's command line for this run (every setting explicit, so that a resumed
    experiment's saved config.json cannot override it)."""
    ppo = cfg.ppo
    settings = {
        "algo": "APPO", "env": plan.env_name, "experiment": SF_EXPERIMENT,
        "train_dir": str(Path(cfg.run_dir).absolute()), "restart_behavior": "resume",
        "device": plan.device, "seed": cfg.seed, "train_for_env_steps": cfg.total_steps,
        "serial_mode": plan.serial, "async_rl": cfg.async_, "num_workers": plan.num_workers,
        "num_envs_per_worker": plan.envs_per_worker, "worker_num_splits": plan.worker_splits,
        "batched_sampling": False, "num_policies": 1, "policy_workers_per_policy": 1,
        "decorrelate_envs_on_one_worker": False, "rollout": cfg.rollout_len,
        "recurrence": cfg.rollout_len if plan.use_rnn else 1, "use_rnn": plan.use_rnn,
        "rnn_type": "gru", "rnn_size": plan.rnn_size, "rnn_num_layers": 1,
        "actor_critic_share_weights": True, "normalize_input": False,
        "batch_size": plan.batch_size, "num_batches_per_epoch": ppo.num_minibatches,
        "num_epochs": ppo.update_epochs, "shuffle_minibatches": True,
        "max_policy_lag": plan.max_policy_lag, "learning_rate": ppo.learning_rate,
        "lr_schedule": "kl_adaptive_minibatch" if ppo.lr_schedule == "kl_adaptive" else "constant",
        "lr_schedule_kl_threshold": ppo.target_kl, "lr_adaptive_min": ppo.min_learning_rate,
        "lr_adaptive_max": ppo.max_learning_rate, "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda, "with_vtrace": False, "ppo_clip_ratio": ppo.clip_coef,
        "ppo_clip_value": ppo.value_clip if ppo.value_clip > 0 else NO_VALUE_CLIP,
        "exploration_loss": "entropy", "exploration_loss_coeff": ppo.ent_coef,
        "value_loss_coeff": ppo.vf_coef, "kl_loss_coeff": 0.0,
        "max_grad_norm": ppo.max_grad_norm, "adam_eps": 1e-6,
        "normalize_returns": ppo.normalize_returns, "value_bootstrap": ppo.value_bootstrap,
        "save_every_sec": max(1, int(cfg.checkpoint_every_s)),
        "keep_checkpoints": cfg.keep_checkpoints, "save_best_metric": plan.score_key,
        "stats_avg": STATS_WINDOW, "with_wandb": False, "log_to_file": True,
        "use_env_info_cache": False,
    }
    return [f"--{key}={value}" for key, value in settings.items()]


def parse_sample_factory_cfg(argv: list[str]) -> Any:
    parser, _ = parse_sf_args(argv)
    return parse_full_cfg(parser, argv)


def check_buffers_fit(cfg: Any, plan: SFPlan, obs_shape: tuple[int, ...]) -> None:
    """sample-factory's trajectory buffers (observations and rnn_states of every step) must fit."""
    from memarl.resources import check_fits
    trajectories = cfg.num_envs * plan.num_agents * (2 if cfg.async_ else 1)
    trajectories = max(trajectories, 2 * plan.batch_size * cfg.ppo.num_minibatches
                       // cfg.rollout_len)
    floats_per_step = math.prod(obs_shape) + plan.rnn_size + 16  # + actions, values, flags...
    check_fits({"sample-factory buffers": trajectories * (cfg.rollout_len + 1)
                * floats_per_step * 4}, "this sample-factory run",
               "lower --num-envs, --rollout-len or the memory size")


# --------------------------------------------------------------------------------------------
# the run


class RunRecorder(AlgoObserver):
    """Follows the run from inside sample-factory: the policy lag it reports, a progress line
    every ``print_every_s``, and a stop request (Ctrl+C) turned into a clean stop."""

    def __init__(self, plan: SFPlan, total_steps: int, start_steps: int, print_every_s: float,
                 stream: Any):
        self.plan = plan
        self.total_steps = total_steps
        self.start_steps = start_steps
        self.print_every_s = print_every_s
        self.stream = stream
        self.lag_avgs: list[float] = []
        self.lag_max: float | None = None
        self.stop_requested = False
        self.start_time = time.time()
        self.last_print = time.time()

    def record_train_stats(self, runner: Any, msg: dict, policy_id: int) -> None:
        stats = msg[TRAIN_STATS]
        if "version_diff_avg" in stats:
            self.lag_avgs.append(float(stats["version_diff_avg"]))
            self.lag_max = max(self.lag_max or 0.0, float(stats["version_diff_max"]))

    def on_training_step(self, runner: Any, training_iteration_since_resume: int) -> None:
        if self.stop_requested:
            runner._stop_training()  # saves a checkpoint, then stops every component
        steps = runner.env_steps.get(0, 0)
        if self.stream is None or not steps or time.time() - self.last_print < self.print_every_s:
            return
        self.last_print = time.time()
        sps = (steps - self.start_steps) / max(time.time() - self.start_time, 1e-9)
        parts = [f"steps {steps:>11,}/{self.total_steps:,}", f"SPS {sps:,.0f}"]
        score = recent_mean(runner, self.plan.score_key)
        if score is not None:
            parts.append(f"{self.plan.score_metric} {score:.3f}")
        print("sample-factory | " + " | ".join(parts), file=self.stream, flush=True)


def recent_mean(runner: Any, key: str) -> float | None:
    values = runner.policy_avg_stats.get(key, [()])[0]
    return float(np.mean(values)) if len(values) else None


@contextlib.contextmanager
def sample_factory_session(quiet: bool) -> Iterator[None]:
    """sample-factory's process-wide state for one run, restored afterwards: a registry of its
    own (env and model factories), its log level, the CUDA_VISIBLE_DEVICES it sets, torch's
    tensor-sharing strategy it changes, and its file log handler."""
    previous_context = sf_global_context()
    previous_level = sf_log.level
    consoles = [h for h in sf_log.handlers if not isinstance(h, logging.FileHandler)]
    previous_console_levels = [h.level for h in consoles]
    previous_cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    previous_sharing = torch.multiprocessing.get_sharing_strategy()
    set_global_context(SampleFactoryContext())
    # sf_log.txt gets sample-factory's INFO lines; the console only its errors when quiet
    sf_log.setLevel(logging.INFO)
    for console in consoles:
        console.setLevel(logging.ERROR if quiet else logging.INFO)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            yield
    finally:
        for handler in [h for h in sf_log.handlers if isinstance(h, logging.FileHandler)]:
            sf_log.removeHandler(handler)
            handler.close()
        sf_log.setLevel(previous_level)
        for console, level in zip(consoles, previous_console_levels):
            console.setLevel(level)
        set_global_context(previous_context)
        if previous_cuda is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous_cuda
        torch.multiprocessing.set_sharing_strategy(previous_sharing)


@contextlib.contextmanager
def stop_on_signals(recorder: RunRecorder) -> Iterator[None]:
    """The first SIGINT / SIGTERM asks the run to stop after the current training step (with a
    final checkpoint); a second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum, frame):
        if recorder.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        recorder.stop_requested = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def checkpoint_steps(path: Path) -> int:
    """Env steps in a sample-factory checkpoint's name (``checkpoint_<train step>_<steps>.pth``)."""
    match = re.fullmatch(r"checkpoint_\d+_(\d+)\.pth", path.name)
    return int(match[1]) if match else 0


def newest_sf_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / SF_EXPERIMENT / "checkpoint_p0").glob("checkpoint_*.pth"))
    return found[-1] if found else None


def load_sf_policy(run_dir: Path | str) -> torch.nn.Module:
    """The agent of a sample-factory run's newest checkpoint as a memarl policy (``step`` /
    ``sequence``), built from the run's config.json, for evaluation (``memarl bench train``)."""
    from memarl.agents import make_agent
    from memarl.envs import make
    from memarl.train.trainer import config_from_dict

    run_dir = Path(run_dir)
    newest = newest_sf_checkpoint(run_dir)
    if newest is None:
        raise MemarlError(f"{run_dir} holds no sample-factory checkpoint")
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = config_from_dict(saved["config"])
    env = make(cfg.env, num_envs=1, **cfg.env_options)
    policy = make_agent(cfg.agent, env.obs_shape, env.num_actions, **saved["agent_config"])
    model = read_sf_checkpoint(newest)["model"]
    prefix = "policy."
    policy.load_state_dict({k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)})
    return policy.eval()


def check_resumable_sf(run_dir: Path, total_steps: int) -> int:
    """Env steps the newest checkpoint of ``run_dir``'s sample-factory experiment holds, or a
    one-line MemarlError when it cannot be continued."""
    if not (run_dir / SF_EXPERIMENT).is_dir():
        raise MemarlError(f"cannot resume {run_dir} with --backend sample-factory: it holds no "
                          f"sample-factory experiment ({run_dir / SF_EXPERIMENT})")
    newest = newest_sf_checkpoint(run_dir)
    if newest is None:
        return 0
    from memarl.train.checkpoint import load_error_summary
    try:
        read_sf_checkpoint(newest)
    except Exception as error:  # any unpickling failure: name it instead of training anew
        raise MemarlError(f"cannot resume: {newest} is unreadable "
                          f"({load_error_summary(error)})") from None
    steps = checkpoint_steps(newest)
    if total_steps <= steps:
        raise MemarlError(f"run {run_dir} is already at {steps:,} agent-steps ({newest.name}); "
                          f"--total-steps must exceed it (now {total_steps:,})")
    return steps


def write_json_atomically(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def register_components(cfg: Any, plan: SFPlan, obs_shape: tuple[int, ...],
                        num_actions: int) -> None:
    """The env and the model, in the current (this run's) sample-factory registry. Module-level
    functions with keyword arguments, so that spawned worker processes can unpickle them."""
    register_env(plan.env_name, functools.partial(
        make_env_for_sf, env_id=cfg.env, env_options=dict(cfg.env_options), seed=cfg.seed))
    global_model_factory().register_actor_critic_factory(functools.partial(
        make_actor_critic, agent=cfg.agent, agent_options=dict(cfg.agent_options),
        obs_shape=tuple(obs_shape), num_actions=num_actions, seed=cfg.seed))


def train_sample_factory(cfg: Any, resume: bool = False, command_line: list[str] | None = None,
                         quiet: bool = False) -> Path:
    """Train ``cfg.agent`` on ``cfg.env`` with sample-factory's APPO; returns the run directory.

    Everything is checked before the run directory is created or touched: an agent or a setting
    sample-factory cannot run is a one-line MemarlError that leaves nothing behind.
    """
    from memarl.envs import make
    from memarl.train.checkpoint import warn
    from memarl.train.run_dir import check_new_run_dir, create_run_dir, open_run_dir
    from memarl.train.trainer import (default_run_dir, typed_agent_options, typed_env_options,
                                      write_run_config)

    if not cfg.run_dir:
        cfg.run_dir = default_run_dir(cfg)
    cfg.validate()
    run_dir = Path(cfg.run_dir)
    fix_sample_factory_traps()
    if not resume:
        check_new_run_dir(run_dir)
    cfg.env_options = typed_env_options(cfg.env, cfg.env_options)
    cfg.agent_options = typed_agent_options(cfg.agent, cfg.agent_options, cfg.env)
    probe = make(cfg.env, num_envs=1, seed=cfg.seed, **cfg.env_options)
    obs_shape, num_actions = tuple(probe.obs_shape), int(probe.num_actions)
    policy = build_agent(cfg.agent, cfg.agent_options, obs_shape, num_actions, cfg.seed)
    layout = check_agent_supported(policy, cfg.agent)
    plan = plan_run(cfg, layout, probe.num_agents, probe.score_metric)
    check_buffers_fit(cfg, plan, obs_shape)
    argv = sample_factory_argv(cfg, plan)
    ignored = unmapped_settings(cfg)
    if ignored:
        warn(f"sample-factory has no equivalent of {', '.join(ignored)}; it centres and "
             f"scales the advantages of every minibatch, without a floor")

    lock = open_run_dir(run_dir) if resume else None
    try:
        start_steps = check_resumable_sf(run_dir, cfg.total_steps) if resume else 0
        if lock is None:
            lock = create_run_dir(run_dir)
            write_run_config(run_dir, cfg, policy, command_line)
        lock.remove_orphan_temp_files()
        summary = _run(cfg, plan, argv, obs_shape, num_actions, start_steps, quiet)
        write_json_atomically(run_dir / SUMMARY_FILE, summary)
    finally:
        if lock is not None:
            lock.release()
    if summary["interrupted"]:
        raise TrainingInterrupted(run_dir)
    return run_dir


def _run(cfg: Any, plan: SFPlan, argv: list[str], obs_shape: tuple[int, ...], num_actions: int,
         start_steps: int, quiet: bool) -> dict[str, Any]:
    """Run sample-factory; the summary of what it trained."""
    from memarl.train.threads import ThreadShare

    with sample_factory_session(quiet), ThreadShare(cfg.torch_threads, 0):
        register_components(cfg, plan, obs_shape, num_actions)
        sf_cfg = parse_sample_factory_cfg(argv)
        sf_cfg = maybe_load_from_checkpoint(sf_cfg)  # a resumed experiment: argv still wins
        fix_sample_factory_traps(sf_cfg)
        runner = (SerialRunner if sf_cfg.serial_mode else ParallelRunner)(sf_cfg)
        recorder = RunRecorder(plan, cfg.total_steps, start_steps, cfg.print_every_s,
                               None if quiet else sys.stdout)
        runner.register_observer(recorder)
        # register_policy_msg_handler would replace the handler list with a bare function
        runner.policy_msg_handlers[TRAIN_STATS].append(recorder.record_train_stats)
        init_start = time.perf_counter()
        status = runner.init()
        if status != ExperimentStatus.SUCCESS:
            raise MemarlError(f"sample-factory refused the configuration (see "
                              f"{Path(cfg.run_dir) / SF_EXPERIMENT / 'sf_log.txt'})")
        run_start = time.perf_counter()
        recorder.start_time = recorder.last_print = time.time()
        with stop_on_signals(recorder):
            status = runner.run()
        wall_s = time.perf_counter() - run_start
    if status == ExperimentStatus.FAILURE:
        raise RuntimeError(f"sample-factory training failed; see "
                           f"{Path(cfg.run_dir) / SF_EXPERIMENT / 'sf_log.txt'}")
    agent_steps = int(runner.env_steps.get(0, start_steps))
    trained_now = agent_steps - start_steps
    lag_avg = float(np.mean(recorder.lag_avgs)) if recorder.lag_avgs else None
    per_update = plan.sgd_steps_per_update
    return {
        "agent_steps": agent_steps,
        "agent_steps_this_run": trained_now,
        "wall_s": wall_s,
        "init_s": run_start - init_start,
        "sps": trained_now / wall_s if wall_s > 0 else None,
        "score_metric": plan.score_metric,
        "score": recent_mean(runner, plan.score_key),
        "score_episodes": len(runner.policy_avg_stats.get(plan.score_key, [()])[0]),
        "policy_lag_avg": None if lag_avg is None else lag_avg / per_update,
        "policy_lag_max": None if recorder.lag_max is None else recorder.lag_max / per_update,
        "policy_lag_unit": "updates (sample-factory's version_diff in SGD steps / "
                           f"{per_update} SGD steps per update)",
        "policy_lag_avg_sgd_steps": lag_avg,
        "policy_lag_max_sgd_steps": recorder.lag_max,
        "sample_factory": {"version": SF_VERSION, "serial_mode": plan.serial,
                           "num_workers": plan.num_workers,
                           "num_envs_per_worker": plan.envs_per_worker,
                           "batch_size": plan.batch_size, "rnn_size": plan.rnn_size if
                           plan.use_rnn else 0, "device": sf_cfg.device},
        "interrupted": status == ExperimentStatus.INTERRUPTED or recorder.stop_requested,
    }

