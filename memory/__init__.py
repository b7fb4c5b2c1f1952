"""Memory cores: the recurrent part of a policy, between the encoder and the heads.

Every core works on one env step of a batch of envs, ``e [N, A, D]`` (encoder outputs), with a
state dict whose tensors lead with ``[N, A]``:

* ``initial_state(N, A, device, dtype) -> state``
* ``step(e, state, first, alive) -> features [N, A, F], state``: reset the state of agents with
  ``first`` set, read and update it; agents that are not ``alive`` keep their state.

Cores (import the module you need):

* :mod:`memarl.memory.shared_memory` -- SRMT: memory token + history + shared-memory
  cross-attention over the ``A`` agents of an env (also the RMT / Attention ablations);
* :mod:`memarl.memory.gru` -- a GRU cell.

This module holds the state helpers the cores share.
"""
from __future__ import annotations

import torch

State = dict[str, torch.Tensor]


def _lead_mask(mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """View a ``[N, A]`` mask so that it broadcasts against ``value [N, A, ...]``."""
    return mask.view(*mask.shape, *([1] * (value.dim() - mask.dim())))


def reset_first(first: torch.Tensor, state: State) -> State:
    """Zero (False for bool entries) the state of agents whose ``first [N, A]`` flag is set."""
    return {key: value.masked_fill(_lead_mask(first, value), 0) for key, value in state.items()}


def keep_dead(alive: torch.Tensor, new: State, old: State) -> State:
    """Entries of ``new`` where the agent is ``alive [N, A]``, of ``old`` elsewhere."""
    return {key: torch.where(_lead_mask(alive, value), value, old[key])
            for key, value in new.items()}
