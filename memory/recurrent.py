"""Recurrent cells as memory cores: GRU (sample-factory's RNN baseline) and LSTM.

State: ``hidden [N, A, H]`` (and ``cell [N, A, H]`` for the LSTM), zeros after a reset. The
features given to the heads are the new hidden state. Orthogonal weights, zero biases
(sample-factory's initialisation); the LSTM's forget-gate bias starts at 1.

With shared memory (:mod:`memarl.memory.broadcast`) the input first reads the hidden states the
other agents of the env broadcast (their summary = hidden state, one-step lag)::

    x = e + CrossAttn(LN(e), hidden states of the env's agents)     [N, A, D]
    hidden = cell(x, hidden)
"""
from __future__ import annotations

import torch
from torch import nn

from memarl.memory import State, keep_dead, reset_first
from memarl.memory.broadcast import SharedMemory
from memarl.memory.core import MemoryCore


class RecurrentCore(MemoryCore):
    """A ``GRUCell`` (``cell_type="gru"``) or ``LSTMCell`` (``"lstm"``) per agent step.

    Args:
        input_dim: D, the encoder output size.
        hidden_dim: H, the hidden size (= the feature size F).
        cell_type: "gru" or "lstm".
        shared: broadcast options (a :class:`~memarl.memory.broadcast.SharedMemoryOptions`)
            when ``shared.share_memory``; None or share_memory=False for a private memory.
        num_heads: heads of the shared read (D must be divisible by it).
        bptt: backpropagate through the hidden state across a ``sequence`` segment.
    """

    def __init__(self, input_dim: int, hidden_dim: int, cell_type: str = "gru",
                 shared=None, num_heads: int = 1, bptt: bool = True):
        super().__init__()
        assert cell_type in ("gru", "lstm")
        self.cell_type = cell_type
        self.hidden_dim = self.feature_dim = hidden_dim
        self.bptt = bptt
        if cell_type == "gru":
            self.cell = nn.GRUCell(input_dim, hidden_dim)
        else:
            self.cell = nn.LSTMCell(input_dim, hidden_dim)
        nn.init.orthogonal_(self.cell.weight_ih)
        nn.init.orthogonal_(self.cell.weight_hh)
        nn.init.zeros_(self.cell.bias_ih)
        nn.init.zeros_(self.cell.bias_hh)
        if cell_type == "lstm":
            with torch.no_grad():  # gate order i, f, g, o: remember by default
                self.cell.bias_ih[hidden_dim:2 * hidden_dim].fill_(1.0)
        self.shared = None
        if shared is not None and shared.share_memory:
            self.shared = SharedMemory(input_dim, num_heads, hidden_dim, shared)
        self._keep = self.shared.persistent_keys if self.shared is not None else ()

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        weight = self.cell.weight_hh
        device = device if device is not None else weight.device
        dtype = dtype or weight.dtype
        zeros = torch.zeros(num_envs, num_agents, self.hidden_dim, device=device, dtype=dtype)
        state = {"hidden": zeros}
        if self.cell_type == "lstm":
            state["cell"] = zeros.clone()
        if self.shared is not None:
            state.update(self.shared.initial_state(num_envs, num_agents, device, dtype))
        return state

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` -> features ``[N, A, H]``, state."""
        n, a, d = e.shape
        state = reset_first(first, state, self._keep)
        if self.shared is not None:
            e = self.shared.read_into(e, state, alive, positions)             # [N, A, D]
        hidden = state["hidden"].reshape(n * a, -1)
        if self.cell_type == "gru":
            new = {"hidden": self.cell(e.reshape(n * a, d), hidden).view(n, a, -1)}
        else:
            h, c = self.cell(e.reshape(n * a, d), (hidden, state["cell"].reshape(n * a, -1)))
            new = {"hidden": h.view(n, a, -1), "cell": c.view(n, a, -1)}
        features = new["hidden"]                                              # [N, A, H]
        core_keys = {key: state[key] for key in new}
        new = keep_dead(alive, new, core_keys)
        if self.shared is not None:
            valid = torch.ones(n, a, dtype=torch.bool, device=e.device)
            new.update(self.shared.write(features, valid, state, alive))
        return features, new
