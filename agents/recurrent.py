"""GRU and LSTM agents ("RNN" in the SRMT paper): encoder -> recurrent cell -> heads.

With ``share_memory=True`` every agent reads, before its cell, the hidden states the other agents
of its env broadcast (:mod:`memarl.memory.recurrent`, :mod:`memarl.memory.broadcast`).

Presets: ``bottleneck`` (D=16, hidden 16: the sample-factory RNN baseline), ``lmapf`` (D=512,
hidden 512), ``tmaze`` (D=64, hidden 64). The LSTM's hidden size is chosen so that its
parameter count is close to the GRU's of the same preset (an LSTM cell has 4 gates, a GRU 3).
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config, registered_with
from memarl.configs import Range
from memarl.memory.broadcast import SharedMemoryOptions
from memarl.memory.core import MemoryGrad, MemoryGradOptions
from memarl.memory.recurrent import RecurrentCore


@dataclasses.dataclass
class RecurrentConfig(EncoderConfig, SharedMemoryOptions, MemoryGradOptions):
    """Fields shared by the recurrent agents (encoder and broadcast fields inherited)."""

    num_heads: Annotated[int, Range(1, 1024)] = 1
    """heads of the shared-memory read (d_model must be divisible by it; share_memory only)"""
    memory_grad: MemoryGrad = "own"
    """gradients through the hidden state within a segment: 'own', 'segment' (also through the
    other agents' states it reads, with shared memory) or 'none' (truncated at every step)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")


@dataclasses.dataclass
class GRUConfig(RecurrentConfig):
    """GRU agent."""

    gru_hidden: Annotated[int, Range(1, 65_536)] = 16
    """GRU hidden size; the heads read the hidden state (16 for Bottleneck)"""


@dataclasses.dataclass
class LSTMConfig(RecurrentConfig):
    """LSTM agent."""

    lstm_hidden: Annotated[int, Range(1, 65_536)] = 13
    """LSTM hidden size; the heads read the hidden state (13: about the GRU's 16 in parameters)"""


GRU_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "gru_hidden": 512},
    "tmaze": {"d_model": 64, "gru_hidden": 64, "num_heads": 4},
}
LSTM_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "lstm_hidden": 440},
    "tmaze": {"d_model": 64, "lstm_hidden": 55, "num_heads": 4},
}


def _gru_core(config: GRUConfig) -> RecurrentCore:
    return RecurrentCore(config.d_model, config.gru_hidden, "gru", shared=config,
                         num_heads=config.num_heads, bptt=config.bptt)


def _lstm_core(config: LSTMConfig) -> RecurrentCore:
    return RecurrentCore(config.d_model, config.lstm_hidden, "lstm", shared=config,
                         num_heads=config.num_heads, bptt=config.bptt)


@registered_with(GRUConfig, GRU_PRESETS)
def make_gru(obs_shape, num_actions, preset: str = "bottleneck",
             **overrides) -> ActorCriticPolicy:
    """GRU baseline: encoder -> GRUCell -> heads."""
    config = build_config(GRUConfig, "gru", GRU_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, _gru_core)


@registered_with(LSTMConfig, LSTM_PRESETS)
def make_lstm(obs_shape, num_actions, preset: str = "bottleneck",
              **overrides) -> ActorCriticPolicy:
    """LSTM baseline: encoder -> LSTMCell -> heads."""
    config = build_config(LSTMConfig, "lstm", LSTM_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, _lstm_core)
