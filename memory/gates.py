"""The GRU-type gate of GTrXL (Parisotto et al. 2020, eq. 14), shared by the gated cores
(GTrXL in :mod:`memarl.memory.xl_cache`, GaLiTe/AGaLiTe in :mod:`memarl.memory.linear_attention`).

``x`` = residual stream, ``y`` = sub-module output; six D x D matrices without biases and the
learnable b_g (initialised to 2: z ~ σ(-2) ~ 0.12, so a block starts near the identity)::

    r = σ(W_r y + U_r x)
    z = σ(W_z y + U_z x - b_g)
    ĥ = tanh(W_g y + U_g (r ⊙ x))             the reset is applied BEFORE U_g
    g(x, y) = (1 - z) ⊙ x + z ⊙ ĥ
"""
from __future__ import annotations

import torch
from torch import nn


class GRUGate(nn.Module):
    """The gate ``g(x, y)`` of the module docstring; ``bias`` is b_g."""

    def __init__(self, d_model: int, bias_init: float = 2.0):
        super().__init__()
        self.w = nn.Linear(d_model, 3 * d_model, bias=False)    # W_r, W_z, W_g (on y)
        self.u = nn.Linear(d_model, 2 * d_model, bias=False)    # U_r, U_z (on x)
        self.u_g = nn.Linear(d_model, d_model, bias=False)      # U_g (on r ⊙ x)
        self.bias = nn.Parameter(torch.full((d_model,), float(bias_init)))
        for linear in (self.w, self.u, self.u_g):
            for block in linear.weight.split(d_model, dim=0):   # one Xavier per D x D matrix
                nn.init.xavier_uniform_(block)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y ``[..., D]`` -> ``[..., D]``."""
        w_r, w_z, w_g = self.w(y).chunk(3, dim=-1)
        u_r, u_z = self.u(x).chunk(2, dim=-1)
        r = torch.sigmoid(w_r + u_r)
        z = torch.sigmoid(w_z + u_z - self.bias)
        candidate = torch.tanh(w_g + self.u_g(r * x))
        return (1 - z) * x + z * candidate
