"""GTrXL agent: encoder -> gated Transformer-XL over a K/V cache of M steps -> heads
(reference/memory_agents.md §2; the core and its equations: :mod:`memarl.memory.xl_cache`).

    obs -> encoder (ResNet for grid windows, MLP for T-Maze vectors) -> e [N, A, D]
        -> XLCacheCore: L gated pre-LN blocks, relative positions, per-layer K/V ring buffer
           of the last ``memory_len`` alive steps, episode masks -> E^L [N, A, D]
        -> actor Linear(D, num_actions), critic Linear(D, 1)

Presets:

* ``bottleneck``: D = 16, 2 layers, 2 heads x 8, memory_len 32 (receptive field 64 steps of a
  512-step Bottleneck episode; a tiny model like SRMT's D = 16 baseline);
* ``lmapf``: D = 512, 8 heads x 64, 2 layers, memory_len 64, ResNet 8 blocks x 64 filters;
* ``tmaze``: D = 64, 4 heads x 16, 2 layers, memory_len 128 (AGaLiTe's "GTrXL-128" memory).

T-Maze and the memory length: an output can only depend on the last ``memory_len`` alive steps
directly, and on at most ``num_layers * memory_len`` steps through the layers (each layer's
cached keys were computed from a window of ``memory_len`` steps of the layer below). A T-Maze
whose cue is further back than that cannot be solved, and one whose corridor is longer than
``memory_len`` can only be solved if the network learns to relay the cue from layer to layer,
which GTrXL agents in practice do not: with a cache of M, corridors longer than M are the known
failure case. ``memory_len`` is a config field: set it at least to the episode length to give
the agent the whole episode.

Online-PPO adaptation (details in :mod:`memarl.memory.xl_cache`): the rollout stores the cache
at segment start (``state0``, stop-gradient and used as stored: stale K/V, like an RNN state);
the learner recomputes the segment in parallel with the current weights; ``memory_grad`` chooses
whether gradients reach the earlier steps' keys/values inside a segment.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config, registered_with
from memarl.configs import Range
from memarl.memory.broadcast import SharedMemoryOptions
from memarl.memory.core import MemoryGrad, MemoryGradOptions
from memarl.memory.xl_cache import XLCacheCore


@dataclasses.dataclass
class GTrXLConfig(EncoderConfig, SharedMemoryOptions, MemoryGradOptions):
    """GTrXL agent (encoder fields from :class:`EncoderConfig`, broadcast options from
    :class:`~memarl.memory.broadcast.SharedMemoryOptions`)."""

    num_heads: Annotated[int, Range(1, 1024)] = 2
    """attention heads H (d_model must be divisible by it); also the shared-memory read's"""
    num_layers: Annotated[int, Range(1, 1024)] = 2
    """gated Transformer-XL blocks L (receptive field: num_layers * memory_len alive steps)"""
    memory_len: Annotated[int, Range(1, 100_000)] = 32
    """M: steps of keys/values cached per layer (a ring buffer); each query attends to the last
    M alive steps of its episode plus itself. A T-Maze corridor longer than M is, in practice,
    not solved"""
    mlp_ratio: Annotated[int, Range(1, 64)] = 4
    """MLP hidden width = mlp_ratio * d_model"""
    gate_bias: Annotated[float, Range(-100, 100)] = 2.0
    """initial b_g of the GRU gates (2 in the paper: blocks start near the identity)"""
    memory_grad: MemoryGrad = "own"
    """in the learner's segment, gradients reach the keys/values of earlier steps of the same
    segment (Transformer-XL training): 'own', or 'segment' also the other agents' memories it
    reads (shared memory); 'none': only the query's own step (sequence-to-one). The cache at
    segment start never gets gradients"""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")


GTRXL_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "num_heads": 8, "num_layers": 2,
              "memory_len": 64},
    "tmaze": {"d_model": 64, "num_heads": 4, "num_layers": 2, "memory_len": 128},
}


def gtrxl_core(config: GTrXLConfig) -> XLCacheCore:
    return XLCacheCore(config.d_model, config.num_heads, config.num_layers, config.memory_len,
                       mlp_ratio=config.mlp_ratio, gate_bias=config.gate_bias, shared=config,
                       bptt=config.bptt)


@registered_with(GTrXLConfig, GTRXL_PRESETS)
def make_gtrxl(obs_shape, num_actions, preset: str = "bottleneck",
               **overrides) -> ActorCriticPolicy:
    """GTrXL: encoder -> gated Transformer-XL with a K/V cache of ``memory_len`` steps."""
    config = build_config(GTrXLConfig, "gtrxl", GTRXL_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, gtrxl_core)
