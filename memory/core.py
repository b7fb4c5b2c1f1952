"""The memory-core contract: ``initial_state / step / sequence`` (DESIGN.md, "Memory cores").

A core is the recurrent part of a policy, between the encoder and the heads. It works on encoder
outputs ``e`` of a batch of envs, with a state dict whose tensors lead with ``[N, A]``:

* ``initial_state(N, A, device, dtype) -> state``
* ``step(e [N, A, D], state, first [N, A], alive [N, A], positions) -> features [N, A, F], state``:
  reset the state of agents with ``first`` set, read and update it; agents that are not ``alive``
  keep their state (a shared-memory channel is the one exception, see
  :mod:`memarl.memory.broadcast`).
* ``sequence(e [T, N, A, D], state0, first [T, N, A], alive [T, N, A], positions)
  -> features [T, N, A, F], final state``: the same outputs as ``step`` called ``T`` times. The
  default loops ``step``; a core with a parallel or chunked form over time overrides it.

``positions`` (``[N, A, 2]`` for ``step``, ``[T, N, A, 2]`` for ``sequence``, or ``None``) are the
agents' grid cells, which only a shared-memory read with a finite radius needs.

Backpropagation through time is the core's own decision (``bptt``): with ``bptt=False`` the
default ``sequence`` detaches the state before every step, so a gradient never reaches an earlier
step through the memory. An agent's config sets it with one option, ``memory_grad``
(:class:`MemoryGradOptions`).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from memarl.memory import State

MemoryGrad = Literal["none", "own", "segment"]
"""How far gradients flow through stored memories within a learner's segment:

* ``"none"``: stored memories are constants; the gradient stops at every step (the released
  SRMT code's recurrence-1 training);
* ``"own"``: through the agent's own memory over the segment, while the memories an agent reads
  from the other agents of its env (shared memory) are constants;
* ``"segment"``: through every memory of the segment, the other agents' memories included, so
  what an agent writes is also trained by what the other agents do with it.

Without shared memory ``"own"`` and ``"segment"`` are the same."""

MEMORY_GRAD_DOC = ("gradients through stored memories within a segment: 'none' (constants, "
                   "the released SRMT code), 'own' (through the agent's own memory; other "
                   "agents' memories are constants) or 'segment' (through every memory, the "
                   "other agents' included)")


class MemoryGradOptions:
    """What a config's ``memory_grad`` field means for its core (mixed into agent configs, which
    declare the field with their own docstring)."""

    memory_grad: MemoryGrad

    @property
    def bptt(self) -> bool:
        """The core backpropagates through its state across the steps of a segment."""
        return self.memory_grad != "none"

    @property
    def detach_other_memories(self) -> bool:
        """A shared-memory read gives no gradient to the other agents' memories."""
        return self.memory_grad != "segment"


def translate_legacy_memory_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the flags that ``memory_grad`` replaced (``bptt``,
    ``detach_other_memories``, in configs saved before it) turned into ``memory_grad``."""
    if "bptt" not in options and "detach_other_memories" not in options:
        return options
    options = dict(options)
    bptt = options.pop("bptt", True)
    detach_others = options.pop("detach_other_memories", True)
    if "memory_grad" not in options:
        options["memory_grad"] = "none" if not bptt else "own" if detach_others else "segment"
    return options


class MemoryCore(nn.Module):
    """Base class of the memory cores. Subclasses set ``feature_dim`` and implement
    :meth:`initial_state` and :meth:`step`; they may override :meth:`sequence`."""

    #: size F of the features given to the heads
    feature_dim: int
    #: whether ``sequence`` backpropagates through the state across steps
    bptt: bool = True

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        raise NotImplementedError

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def sequence(self, e: torch.Tensor, state0: State, first: torch.Tensor, alive: torch.Tensor,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[T, N, A, D]``, first / alive ``[T, N, A]`` -> features ``[T, N, A, F]`` and the
        state after the last step. Loops :meth:`step`."""
        state, features = state0, []
        for t in range(e.shape[0]):
            if not self.bptt:
                state = {key: value.detach() for key, value in state.items()}
            f, state = self.step(e[t], state, first[t], alive[t],
                                 None if positions is None else positions[t])
            features.append(f)
        return torch.stack(features), state

    def forward(self, e, state, first, alive, positions=None):
        return self.step(e, state, first, alive, positions)

    def position_parameters(self) -> list[nn.Parameter]:
        """Parameters left out of the "effective" parameter count (position tables)."""
        return []


class NoMemoryCore(MemoryCore):
    """No memory: the features are the encoder outputs (the "Empty" agent); the state is ``{}``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.feature_dim = d_model

    def initial_state(self, num_envs, num_agents, device=None, dtype=None) -> State:
        return {}

    def step(self, e, state, first, alive, positions=None):
        return e, {}

    def sequence(self, e, state0, first, alive, positions=None):
        return e, {}
