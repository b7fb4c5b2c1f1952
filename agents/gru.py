"""GRU baseline ("RNN" in the SRMT paper): encoder -> GRUCell -> heads."""
from __future__ import annotations

import dataclasses
from typing import Annotated

import torch

from memarl.agents.base import State
from memarl.agents.encoders import EncoderConfig
from memarl.configs import Range
from memarl.agents.heads import ActorCriticPolicy, build_config
from memarl.memory.gru import GRUCore


@dataclasses.dataclass
class GRUConfig(EncoderConfig):
    """GRU agent (encoder fields from :class:`EncoderConfig`)."""

    gru_hidden: Annotated[int, Range(1, 65_536)] = 16
    """GRU hidden size; the heads read the hidden state (16 for Bottleneck)"""
    bptt: bool = True
    """backpropagate through the hidden state across a ``sequence`` segment; False truncates
    the gradient at every step"""

GRU_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "gru_hidden": 512},
}


class GRUPolicy(ActorCriticPolicy):
    def __init__(self, config: GRUConfig, obs_shape: tuple[int, ...], num_actions: int):
        super().__init__(config, obs_shape, num_actions)
        self.bptt = config.bptt
        self.core = GRUCore(config.d_model, config.gru_hidden)
        self._build_heads(config.gru_hidden)

    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State:
        return self.core.initial_state(num_envs, num_agents, device=device)

    def _core_step(self, e, state, first, alive):
        return self.core.step(e, state, first, alive)


def make_gru(obs_shape, num_actions, preset: str = "bottleneck", **overrides) -> GRUPolicy:
    """GRU baseline: encoder -> GRUCell -> heads."""
    config = build_config(GRUConfig, "gru", GRU_PRESETS, preset, overrides)
    return GRUPolicy(config, obs_shape, num_actions)
