"""Memory estimates of a training run, checked against the machine before anything is allocated.

A run's memory is dominated by four parts, each estimated without allocating it:

* **envs**: a batch of 1 and one of 2 envs of the same config are built and reset under
  ``tracemalloc`` (numpy reports its buffers there): half the second is one env's bytes (what
  envs share was built by the first), scaled to ``N`` envs.
* **parameters**: the policy is built on PyTorch's ``meta`` device (shapes without storage);
  weights, gradients and Adam's two moments are 4 copies of float32.
* **rollout**: the segment's tensors ``[T, N, A, ...]`` (observations dominate).
* **activations**: one minibatch of ``policy.sequence`` keeps its module outputs for backward;
  their sizes are counted on the meta device for a tiny segment and scaled.

:func:`check_training_memory` refuses, in one line naming the largest part, a run whose estimate
exceeds the memory available now.
"""
from __future__ import annotations

import dataclasses
import math
import tracemalloc
from typing import Any

from memarl.errors import MemarlError

FLOAT_BYTES = 4
OPTIMIZER_COPIES = 4
"""weights, gradients and Adam's two moments"""
SAVED_FOR_BACKWARD = 1
"""copies of the module outputs alive at the peak (kept for backward; their gradients are freed
as backward goes, so they add little at the peak)"""
USABLE_FRACTION = 0.8
"""share of the available memory a run may plan to use"""


def available_bytes() -> int:
    """Memory available to a new allocation now (``MemAvailable``: free plus reclaimable cache)."""
    import psutil
    return int(psutil.virtual_memory().available)


def _traced(build: Any) -> tuple[int, Any]:
    """Bytes that ``build()`` allocated and still holds, and what it returned."""
    tracemalloc.start()
    try:
        built = build()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current, built


def env_bytes(env_id: str, num_envs: int, options: dict) -> tuple[int, Any]:
    """Estimated bytes of ``num_envs`` envs, and a one-env instance (for its shapes)."""
    from memarl.envs import make

    def build(count: int):
        env = make(env_id, num_envs=count, **options)
        return env, env.reset()

    # the first batch also builds what envs share (maps, caches); the second finds it built
    one, one_env = _traced(lambda: build(1))
    two, _ = _traced(lambda: build(2))
    per_env = two / 2
    shared = max(one - per_env, 0)
    return int(shared + per_env * num_envs), one_env[0]


def _meta_policy(agent: str, obs_shape: tuple[int, ...], num_actions: int, options: dict):
    import torch

    from memarl.agents import make_agent
    with torch.device("meta"):
        return make_agent(agent, obs_shape, num_actions, **options)


def _activation_elements(policy: Any, steps: int, num_agents: int) -> int:
    """Elements of the module outputs of ``policy.sequence`` over ``steps`` steps of one env."""
    import torch

    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        for tensor in (output if isinstance(output, (tuple, list)) else (output,)):
            if isinstance(tensor, torch.Tensor):
                total += tensor.numel()

    handles = [m.register_forward_hook(count) for m in policy.modules() if not list(m.children())]
    try:
        obs = torch.zeros(steps, 1, num_agents, *policy.obs_shape, device="meta")
        flags = torch.ones(steps, 1, num_agents, dtype=torch.bool, device="meta")
        positions = torch.zeros(steps, 1, num_agents, 2, dtype=torch.long, device="meta")
        policy.sequence(obs, policy.initial_state(1, num_agents, torch.device("meta")), flags, flags,
                        positions)
    finally:
        for handle in handles:
            handle.remove()
    return total


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes of each part of a training run."""

    envs: int
    parameters: int
    rollout: int
    activations: int

    @property
    def total(self) -> int:
        return self.envs + self.parameters + self.rollout + self.activations

    def largest(self) -> str:
        parts = {"envs": self.envs, "parameters": self.parameters, "rollout": self.rollout,
                 "activations": self.activations}
        return max(parts, key=parts.get)


def estimate_training_memory(env_id: str, env_options: dict, num_envs: int, agent: str,
                             agent_options: dict, rollout_len: int, num_minibatches: int
                             ) -> MemoryEstimate:
    """Estimated peak bytes of a training run with these settings (see the module docstring)."""
    envs, env = env_bytes(env_id, num_envs, env_options)
    policy = _meta_policy(agent, env.obs_shape, env.num_actions, agent_options)
    parameters = sum(p.numel() for p in policy.parameters()) * FLOAT_BYTES * OPTIMIZER_COPIES
    samples = rollout_len * num_envs * env.num_agents
    per_sample = math.prod(env.obs_shape) + 8  # observation, then actions, values, flags...
    rollout = samples * per_sample * FLOAT_BYTES
    probe_steps = 2  # activations grow linearly with the segment length
    try:
        per_env_step = _activation_elements(policy, probe_steps, env.num_agents) / probe_steps
    except (RuntimeError, NotImplementedError):  # an op without a meta kernel: skip this part
        per_env_step = 0.0
    envs_per_minibatch = math.ceil(num_envs / num_minibatches)
    activations = int(per_env_step * rollout_len * envs_per_minibatch * FLOAT_BYTES
                      * SAVED_FOR_BACKWARD)
    return MemoryEstimate(envs, parameters, rollout, activations)


def _gib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB"


def check_fits(parts: dict[str, int], what: str, hint: str, available: int | None = None) -> None:
    """One-line MemarlError when the bytes of ``parts`` together exceed the memory available now."""
    available = available_bytes() if available is None else available
    total = sum(parts.values())
    if total > USABLE_FRACTION * available:
        detail = ", ".join(f"{name} {_gib(count)}" for name, count in parts.items())
        raise MemarlError(f"{what} needs about {_gib(total)} of memory ({detail}), more than the "
                          f"{_gib(available)} available; {hint}")


def check_training_memory(estimate: MemoryEstimate, hint: str,
                          available: int | None = None) -> None:
    """One-line MemarlError when a training run's ``estimate`` does not fit the memory now."""
    check_fits(dataclasses.asdict(estimate), "this run", hint, available)
