"""The policy contract (DESIGN.md, "Policy API").

A policy is a ``torch.nn.Module`` = observation encoder + memory core + actor/critic heads:

* ``initial_state(num_envs, num_agents, device=None) -> state``: a dict of tensors, each with
  leading dims ``[N, A]`` (an empty dict for memory-less agents).
* ``step(obs, state, first, alive) -> logits, value, state`` for acting:
  obs ``[N, A, C, H, W]``, first ``[N, A]`` bool (reset the agent's memory before reading this
  observation), alive ``[N, A]`` bool (agents that are not alive keep their state unchanged);
  returns logits ``[N, A, num_actions]``, value ``[N, A]`` and the new state.
* ``sequence(obs, state0, first, alive) -> logits, values`` for learning over a segment:
  obs ``[T, N, A, C, H, W]``, first / alive ``[T, N, A]``; returns logits ``[T, N, A, num_actions]``
  and values ``[T, N, A]``. Calling ``step`` T times from ``state0`` gives the same outputs.

Shared memory (SRMT) reads the memory of all agents of the same env through the ``A`` axis of the
state; that is why env groups are never split.
"""
from __future__ import annotations

from typing import Protocol

import torch

State = dict[str, torch.Tensor]


class Policy(Protocol):
    num_actions: int

    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State: ...

    def step(self, obs: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, State]: ...

    def sequence(self, obs: torch.Tensor, state0: State, first: torch.Tensor, alive: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]: ...
