"""Actor/critic heads and the policy skeleton every agent shares (encoder -> core -> heads).

:class:`ActorCriticPolicy` implements the contract of :mod:`memarl.agents.base` once:
``step`` encodes ``[N, A, C, H, W]`` observations, runs the subclass's core step on ``[N, A, D]``
and applies the heads; ``sequence`` encodes all ``T`` steps in one batch and then runs the very
same core step ``T`` times (backpropagation through time over the segment), so ``step`` x T and
``sequence`` agree up to float rounding of the batched encoder.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from memarl.agents.base import State
from memarl.agents.encoders import ResNetEncoder, orthogonal_init, require
from memarl.errors import MemarlError


class ActorCriticHeads(nn.Module):
    """Linear actor (logits) and critic (value) heads on a shared trunk output ``[..., D]``.

    Orthogonal init: gain 0.01 for the actor (near-uniform initial policy), 1 for the critic.
    """

    def __init__(self, in_dim: int, num_actions: int):
        super().__init__()
        self.actor = orthogonal_init(nn.Linear(in_dim, num_actions), 0.01)
        self.critic = orthogonal_init(nn.Linear(in_dim, 1), 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(x), self.critic(x).squeeze(-1)     # [..., num_actions], [...]


def build_config(cls: type, agent: str, presets: dict[str, dict[str, Any]], preset: str,
                 overrides: dict[str, Any]):
    """``cls(**presets[preset], **overrides)``, with one-line errors for unknown names."""
    if preset not in presets:
        raise MemarlError(f"unknown preset {preset!r} for agent {agent!r}; "
                          f"valid presets: {', '.join(sorted(presets))}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in overrides:
        if key not in valid:
            raise MemarlError(f"unknown config key {key!r} for agent {agent!r}; "
                              f"valid keys: {', '.join(sorted(valid))}")
    return cls(**{**presets[preset], **overrides})


def _mask(value: torch.Tensor | None, shape: tuple[int, ...], name: str,
          device: torch.device) -> torch.Tensor:
    """A bool mask of ``shape`` on ``device`` (``None`` means all True)."""
    if value is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    value = torch.as_tensor(value, device=device)
    require(tuple(value.shape) == tuple(shape),
            f"{name} must have shape {list(shape)}, got {list(value.shape)}")
    return value if value.dtype == torch.bool else value != 0


class ActorCriticPolicy(nn.Module):
    """Encoder -> core -> heads. Subclasses set ``self.core_dim`` before calling
    ``_build_heads`` and implement :meth:`initial_state` and :meth:`_core_step`.

    Attributes: ``config`` (the agent's config dataclass), ``obs_shape`` ``(C, H, W)``,
    ``num_actions``, ``encoder``, ``heads``.
    """

    #: whether ``sequence`` backpropagates through the recurrent state (config ``bptt``)
    bptt: bool = True

    def __init__(self, config, obs_shape: tuple[int, ...], num_actions: int):
        super().__init__()
        require(isinstance(num_actions, int) and num_actions >= 1,
                f"num_actions must be a positive int, got {num_actions!r}")
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = num_actions
        self.encoder = ResNetEncoder(self.obs_shape, config.filters, config.res_blocks,
                                     config.d_model)

    def _build_heads(self, in_dim: int) -> None:
        self.heads = ActorCriticHeads(in_dim, self.num_actions)

    # ---- to implement -------------------------------------------------------------------
    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State:
        raise NotImplementedError

    def _core_step(self, e: torch.Tensor, state: State, first: torch.Tensor,
                   alive: torch.Tensor) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]`` -> trunk features ``[N, A, F]`` and the new state."""
        raise NotImplementedError

    def _position_parameters(self) -> list[nn.Parameter]:
        """Parameters left out of the "effective" count (position tables)."""
        return []

    # ---- contract -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.heads.actor.weight.device

    def _check_obs(self, obs: torch.Tensor, lead: int) -> None:
        require(obs.dim() == lead + 3 and tuple(obs.shape[lead:]) == self.obs_shape,
                f"obs must have shape [{', '.join('TNA'[3 - lead:])}, "
                f"{', '.join(map(str, self.obs_shape))}], got {list(obs.shape)}")

    def step(self, obs: torch.Tensor, state: State, first: torch.Tensor,
             alive: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, State]:
        """obs ``[N, A, C, H, W]``, first / alive ``[N, A]`` (alive ``None`` = all alive) ->
        logits ``[N, A, num_actions]``, value ``[N, A]``, new state.

        ``first`` is applied before ``alive``: a flagged agent is reset even when not alive (and
        then keeps the reset state). Outputs are computed for every agent, alive or not."""
        self._check_obs(obs, 2)
        n, a = obs.shape[:2]
        first = _mask(first, (n, a), "first", obs.device)
        alive = _mask(alive, (n, a), "alive", obs.device)
        e = self.encoder(obs.reshape(n * a, *self.obs_shape)).view(n, a, -1)   # [N, A, D]
        features, state = self._core_step(e, state, first, alive)
        logits, value = self.heads(features)
        return logits, value, state

    def sequence(self, obs: torch.Tensor, state0: State, first: torch.Tensor,
                 alive: torch.Tensor | None = None, return_state: bool = False):
        """obs ``[T, N, A, C, H, W]``, first / alive ``[T, N, A]`` -> logits
        ``[T, N, A, num_actions]``, values ``[T, N, A]`` (and the final state when
        ``return_state``). Same outputs as ``step`` called T times from ``state0``; gradients
        flow through the state across the segment unless the config sets ``bptt=False``."""
        self._check_obs(obs, 3)
        t_len, n, a = obs.shape[:3]
        first = _mask(first, (t_len, n, a), "first", obs.device)
        alive = _mask(alive, (t_len, n, a), "alive", obs.device)
        e = self.encoder(obs.reshape(t_len * n * a, *self.obs_shape))
        e = e.view(t_len, n, a, -1)                                             # [T, N, A, D]
        state = state0
        features = []
        for t in range(t_len):
            if not self.bptt:
                state = {k: v.detach() for k, v in state.items()}
            f, state = self._core_step(e[t], state, first[t], alive[t])
            features.append(f)
        logits, values = self.heads(torch.stack(features))   # [T, N, A, K], [T, N, A]
        if return_state:
            return logits, values, state
        return logits, values

    def parameter_counts(self) -> dict[str, int]:
        """``{"total": all parameters, "effective": without position tables}``."""
        total = sum(p.numel() for p in self.parameters())
        position = sum(p.numel() for p in self._position_parameters())
        return {"total": total, "effective": total - position}

