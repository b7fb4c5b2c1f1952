"""Actor/critic heads, the policy skeleton every agent shares, and agent registration.

:class:`ActorCriticPolicy` implements the contract of :mod:`memarl.agents.base` once for
encoder -> memory core -> heads: ``step`` encodes ``[N, A, *obs_shape]`` observations and runs the
core's ``step``; ``sequence`` encodes all ``T`` steps in one batch and hands them to the core's
``sequence`` (a loop of ``step`` unless the core has a parallel form), so ``step`` x T and
``sequence`` agree up to float rounding.

An agent's factory is registered together with its config class and presets
(:func:`registered_with`), so the CLI and the checkpoint loader read the config class without
building a model.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from memarl.agents.base import State
from memarl.agents.encoders import make_encoder, orthogonal_init, require
from memarl.errors import MemarlError
from memarl.memory.core import MemoryCore, translate_legacy_memory_options


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


def registered_with(config_class: type, presets: dict[str, dict[str, Any]]):
    """Decorator for an agent factory ``make(obs_shape, num_actions, preset, **overrides)``: it
    records ``config_class`` and ``presets`` on the factory (read by
    :func:`memarl.agents.agent_config_class` and :func:`memarl.agents.agent_presets`)."""
    def attach(factory: Callable[..., Any]) -> Callable[..., Any]:
        factory.config_class = config_class
        factory.presets = presets
        return factory
    return attach


def build_config(cls: type, agent: str, presets: dict[str, dict[str, Any]], preset: str,
                 overrides: dict[str, Any]):
    """``cls(**presets[preset], **overrides)``, with one-line errors for unknown names. Flags
    that ``memory_grad`` replaced (in configs saved before it) are translated."""
    overrides = translate_legacy_memory_options(overrides)
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
    """Encoder (from the observation shape) -> memory core -> heads.

    Attributes: ``config`` (the agent's config dataclass), ``obs_shape``, ``num_actions``,
    ``encoder``, ``core`` (a :class:`~memarl.memory.core.MemoryCore`), ``heads``.

    ``make_core(config)`` builds the core after the encoder and before the heads: parameters
    are initialised in that order, so a seed gives the same initial weights as ever.
    """

    def __init__(self, config, obs_shape: tuple[int, ...], num_actions: int,
                 make_core: Callable[[Any], MemoryCore]):
        super().__init__()
        require(isinstance(num_actions, int) and num_actions >= 1,
                f"num_actions must be a positive int, got {num_actions!r}")
        self.config = config
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = num_actions
        self.encoder = make_encoder(self.obs_shape, config)
        self.core = make_core(config)
        self.heads = ActorCriticHeads(self.core.feature_dim, num_actions)

    @property
    def device(self) -> torch.device:
        return self.heads.actor.weight.device

    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State:
        return self.core.initial_state(num_envs, num_agents, device=device)

    def _check_obs(self, obs: torch.Tensor, lead: int) -> None:
        dims = len(self.obs_shape)
        require(obs.dim() == lead + dims and tuple(obs.shape[lead:]) == self.obs_shape,
                f"obs must have shape [{', '.join('TNA'[3 - lead:])}, "
                f"{', '.join(map(str, self.obs_shape))}], got {list(obs.shape)}")

    def _encode(self, obs: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        flat = obs.reshape(-1, *self.obs_shape)
        return self.encoder(flat).view(*lead, -1)                 # [*lead, D]

    def step(self, obs: torch.Tensor, state: State, first: torch.Tensor,
             alive: torch.Tensor | None = None, positions: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """obs ``[N, A, *obs_shape]``, first / alive ``[N, A]`` (alive ``None`` = all alive),
        positions ``[N, A, 2]`` or None -> logits ``[N, A, num_actions]``, value ``[N, A]``,
        new state.

        ``first`` is applied before ``alive``: a flagged agent is reset even when not alive (and
        then keeps the reset state). Outputs are computed for every agent, alive or not."""
        self._check_obs(obs, 2)
        n, a = obs.shape[:2]
        first = _mask(first, (n, a), "first", obs.device)
        alive = _mask(alive, (n, a), "alive", obs.device)
        e = self._encode(obs, (n, a))                                          # [N, A, D]
        features, state = self.core.step(e, state, first, alive, positions)
        logits, value = self.heads(features)
        return logits, value, state

    def sequence(self, obs: torch.Tensor, state0: State, first: torch.Tensor,
                 alive: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                 return_state: bool = False):
        """obs ``[T, N, A, *obs_shape]``, first / alive ``[T, N, A]``, positions
        ``[T, N, A, 2]`` or None -> logits ``[T, N, A, num_actions]``, values ``[T, N, A]``
        (and the final state when ``return_state``). Same outputs as ``step`` called T times
        from ``state0``; whether gradients flow through the state is the core's ``bptt``."""
        self._check_obs(obs, 3)
        t_len, n, a = obs.shape[:3]
        first = _mask(first, (t_len, n, a), "first", obs.device)
        alive = _mask(alive, (t_len, n, a), "alive", obs.device)
        e = self._encode(obs, (t_len, n, a))                                   # [T, N, A, D]
        features, state = self.core.sequence(e, state0, first, alive, positions)
        logits, values = self.heads(features)                # [T, N, A, K], [T, N, A]
        if return_state:
            return logits, values, state
        return logits, values

    def forward(self, obs: torch.Tensor, state0: State, first: torch.Tensor,
                alive: torch.Tensor | None = None, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The learner's pass: :meth:`sequence` (logits ``[T, N, A, num_actions]``, values
        ``[T, N, A]``). Called as ``policy(...)``, so that a wrapper such as
        DistributedDataParallel sees the forward and all-reduces the gradients of its backward."""
        return self.sequence(obs, state0, first, alive, positions)

    def parameter_counts(self) -> dict[str, int]:
        """``{"total": all parameters, "effective": without position tables}``."""
        total = sum(p.numel() for p in self.parameters())
        position = sum(p.numel() for p in self.core.position_parameters())
        return {"total": total, "effective": total - position}
