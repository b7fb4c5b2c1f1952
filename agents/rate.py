"""RATE agent: encoder -> memory-token core (memory tokens + MRV + optional XL cache) -> heads.

    obs [N, A, *obs_shape] -> encoder -> e [N, A, D] -> MemoryTokenCore -> y [N, A, D]
        -> actor Linear(D, num_actions), critic Linear(D, 1)

The core (:mod:`memarl.memory.memory_tokens`) has the equations, the released-code-vs-paper
decisions and the online-PPO adaptation (no return-to-go token, what is detached).

Presets (the observation size comes from the env):

* ``bottleneck``: D=16, 1 layer, 2 heads, m=2 memory tokens, K=8 (SRMT's history length and
  the default rollout length), FFN 4·D, 1 MRV head.
* ``lmapf``: D=512, ResNet 8 x 64 filters, 1 layer (as SRMT's single GPT-2 block), 8 heads, m=4,
  K=8 (SRMT's history length), FFN 4·D, 1 MRV head.
* ``tmaze``: D=64, 3 layers, 4 heads, m=5, K=16, 1 MRV head, no FFN, no XL cache (the paper's
  default recommendation, App. H: 5 memory tokens, 1 MRV head, cache 0 for sparse tasks; its
  K = T // 3 is env-dependent, set ``segment_len`` for long corridors).
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config, registered_with
from memarl.configs import Range
from memarl.memory.broadcast import SharedMemoryOptions
from memarl.memory.core import MemoryGrad, MemoryGradOptions
from memarl.memory.memory_tokens import MemoryTokenCore


@dataclasses.dataclass
class RATEConfig(EncoderConfig, SharedMemoryOptions, MemoryGradOptions):
    """RATE agent (encoder fields from :class:`EncoderConfig`, broadcast options from
    :class:`~memarl.memory.broadcast.SharedMemoryOptions`; with ``share_memory`` every agent
    broadcasts its m memory tokens)."""

    num_layers: Annotated[int, Range(1, 1024)] = 1
    """Transformer-XL layers L of the core"""
    num_heads: Annotated[int, Range(1, 1024)] = 2
    """self-attention heads H (also of the shared-memory read); d_model must be divisible by it"""
    memory_tokens: Annotated[int, Range(1, 1024)] = 2
    """m memory tokens per agent, read before and written after each memory segment"""
    segment_len: Annotated[int, Range(1, 100_000)] = 8
    """K env steps per memory segment (counted from the episode start); the memory is rewritten
    after every K-th step"""
    mrv_heads: Annotated[int, Range(1, 1024)] = 1
    """heads of the memory retention valve (old memory attends to the written tokens);
    d_model must be divisible by it"""
    use_mrv: bool = True
    """memory retention valve (MRV-CA-2); False: the written tokens become the new memory
    (the paper's "no MRV" ablation, RMT)"""
    mem_len: Annotated[int, Range(0, 100_000)] = 0
    """Transformer-XL cache: observation tokens of the previous memory segments kept per layer,
    stop-gradient (0 = none, the paper's choice for sparse-reward tasks)"""
    ffn_ratio: Annotated[int, Range(0, 64)] = 4
    """feed-forward width = ffn_ratio * d_model in every layer; 0 skips the FFN (RATE T-Maze)"""
    dropout: Annotated[float, Range(0, 1, high_exclusive=True)] = 0.0
    """dropout on the input tokens, attention probabilities and residual branches"""
    memory_grad: MemoryGrad = "own"
    """gradients through the memory tokens across memory-segment boundaries inside a PPO
    segment (RMT-style): 'own', or 'segment' also through the other agents' memories (shared
    memory); 'none' detaches the memory at every write (RATE's released training: the write
    path and the MRV then get no gradient)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        require(self.d_model % self.mrv_heads == 0,
                f"d_model ({self.d_model}) must be divisible by mrv_heads ({self.mrv_heads})")


RATE_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "num_heads": 8,
              "memory_tokens": 4, "segment_len": 8},
    "tmaze": {"d_model": 64, "num_layers": 3, "num_heads": 4, "memory_tokens": 5,
              "segment_len": 16, "ffn_ratio": 0},
}


def rate_core(config: RATEConfig) -> MemoryTokenCore:
    return MemoryTokenCore(
        config.d_model, config.num_heads, num_layers=config.num_layers,
        memory_tokens=config.memory_tokens, segment_len=config.segment_len,
        mrv_heads=config.mrv_heads, use_mrv=config.use_mrv, mem_len=config.mem_len,
        ffn_ratio=config.ffn_ratio, dropout=config.dropout, shared=config, bptt=config.bptt)


@registered_with(RATEConfig, RATE_PRESETS)
def make_rate(obs_shape, num_actions, preset: str = "bottleneck",
              **overrides) -> ActorCriticPolicy:
    """RATE: memory tokens around K-step memory segments, memory retention valve, XL cache."""
    config = build_config(RATEConfig, "rate", RATE_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, rate_core)
