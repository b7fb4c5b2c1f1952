"""Policies with fixed behaviour for golden-value tests of the evaluator (no training needed)."""
from __future__ import annotations

import torch

# follower observation: channel 0 holds +1 on the shortest path; the centre is the agent's cell;
# actions: 0 wait, 1 up, 2 down, 3 left, 4 right
_OFFSETS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


class PathFollowingPolicy(torch.nn.Module):
    """Prefers the move onto the next cell of the observed shortest path (``follower``
    observations), with ``sharpness`` the logit bonus of that move: sampled actions then mix
    path following with random moves, so episodes differ in outcome. Memoryless; it has the
    learned-policy interface (``initial_state``, ``step``)."""

    def __init__(self, sharpness: float = 2.0):
        super().__init__()
        self.sharpness = sharpness

    def initial_state(self, num_envs: int, num_agents: int, device) -> torch.Tensor:
        return torch.zeros(num_envs, num_agents, 1, device=device)

    def step(self, obs: torch.Tensor, state, first, alive, positions=None):
        r = obs.shape[-1] // 2
        path = obs[:, :, 0]  # [N, A, 2R+1, 2R+1]
        logits = torch.stack([path[:, :, r + dr, r + dc] for dr, dc in _OFFSETS], dim=-1)  # [N, A, 5]
        logits = (logits > 0.5).float() * self.sharpness
        logits[..., 0] -= 0.5 * self.sharpness  # stand still only when no path cell is seen
        return logits, torch.zeros(obs.shape[:2]), state
