"""Memory cores: the recurrent part of a policy, between the encoder and the heads.

The contract (``initial_state / step / sequence``) is :class:`memarl.memory.core.MemoryCore`;
shared memory, the broadcast of each agent's memory to the agents of its env, is the component
:mod:`memarl.memory.broadcast` that any core attaches.

Cores (import the module you need):

* :mod:`memarl.memory.shared_memory` -- SRMT: memory token + history + shared-memory
  cross-attention over the ``A`` agents of an env (also the RMT / Attention ablations);
* :mod:`memarl.memory.recurrent` -- GRU and LSTM cells;
* :mod:`memarl.memory.memory_tokens` -- RATE: memory tokens read and written around K-step
  segments, the memory retention valve;
* :mod:`memarl.memory.xl_cache` -- GTrXL: gated Transformer-XL with a K/V cache of M steps;
* :mod:`memarl.memory.linear_attention` -- GaLiTe / AGaLiTe: gated linear transformers;
* :mod:`memarl.memory.core` -- the contract and the memory-less core (the "Empty" agent).

This module holds the state helpers the cores share.
"""
from __future__ import annotations

import torch

State = dict[str, torch.Tensor]


def _lead_mask(mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """View a ``[N, A]`` mask so that it broadcasts against ``value [N, A, ...]``."""
    return mask.view(*mask.shape, *([1] * (value.dim() - mask.dim())))


def reset_first(first: torch.Tensor, state: State, keep: tuple[str, ...] = ()) -> State:
    """Zero (False for bool entries) the state of agents whose ``first [N, A]`` flag is set;
    the entries named in ``keep`` (e.g. a broadcast channel's key and step count) stay."""
    return {key: value if key in keep else value.masked_fill(_lead_mask(first, value), 0)
            for key, value in state.items()}


def keep_dead(alive: torch.Tensor, new: State, old: State) -> State:
    """Entries of ``new`` where the agent is ``alive [N, A]``, of ``old`` elsewhere."""
    return {key: torch.where(_lead_mask(alive, value), value, old[key])
            for key, value in new.items()}
