"""GRU core: one ``GRUCell`` per agent step (the sample-factory RNN baseline, hidden 16).

State: ``hidden [N, A, hidden_dim]``, zeros after a reset. The features given to the heads are
the new hidden state. Orthogonal weights, zero biases (sample-factory's GRU init).
"""
from __future__ import annotations

import torch
from torch import nn

from memarl.memory import State, keep_dead, reset_first


class GRUCore(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.cell = nn.GRUCell(input_dim, hidden_dim)
        nn.init.orthogonal_(self.cell.weight_ih)
        nn.init.orthogonal_(self.cell.weight_hh)
        nn.init.zeros_(self.cell.bias_ih)
        nn.init.zeros_(self.cell.bias_hh)

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        weight = self.cell.weight_hh
        return {"hidden": torch.zeros(num_envs, num_agents, self.hidden_dim,
                                      device=device if device is not None else weight.device,
                                      dtype=dtype or weight.dtype)}

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` -> features ``[N, A, hidden]``, state."""
        n, a, d = e.shape
        state = reset_first(first, state)
        hidden = self.cell(e.reshape(n * a, d), state["hidden"].reshape(n * a, -1))
        hidden = hidden.view(n, a, -1)                                        # [N, A, Hg]
        return hidden, keep_dead(alive, {"hidden": hidden}, state)

    forward = step
