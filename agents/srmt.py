"""SRMT and its ablations: RMT, Attention, Empty (reference/srmt.md §1-7, §10, §13).

    obs [N, A, 3, m, m] -> ResNetEncoder -> e [N, A, D] -> SharedMemoryCore -> y [N, A, D]
        -> actor Linear(D, num_actions), critic Linear(D, 1)

| name      | memory token | shared read | history | core                         |
|-----------|--------------|-------------|---------|------------------------------|
| srmt      | yes          | yes         | 8       | SharedMemoryCore             |
| rmt       | yes          | no          | 8       | SharedMemoryCore             |
| attention | no           | no          | 8       | SharedMemoryCore             |
| empty     | no           | no          | no      | none: encoder -> heads       |

Presets: ``bottleneck`` (D=16, 4 heads, 1 ResBlock x 8 filters) and ``lmapf`` (D=512, 8 heads,
8 ResBlocks x 64 filters); the observation size comes from the env.
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config, registered_with
from memarl.configs import Range
from memarl.memory.broadcast import SharedMemoryOptions
from memarl.memory.core import MemoryGrad, MemoryGradOptions
from memarl.memory.core import NoMemoryCore
from memarl.memory.shared_memory import AttentionMask, SharedMemoryCore


@dataclasses.dataclass
class SRMTConfig(EncoderConfig, SharedMemoryOptions, MemoryGradOptions):
    """SRMT / RMT / Attention agent (encoder fields from :class:`EncoderConfig`, broadcast
    options from :class:`~memarl.memory.broadcast.SharedMemoryOptions`)."""

    num_heads: Annotated[int, Range(1, 1024)] = 4
    """attention heads H (d_model must be divisible by it)"""
    history_len: Annotated[int, Range(0, 100_000)] = 8
    """past encoder outputs in the self-attention window (8 in the paper; 0 = no history)"""
    num_layers: Annotated[int, Range(1, 1024)] = 1
    """GPT-2 blocks in the core (1 in the paper); every block reads the shared memory"""
    mlp_ratio: Annotated[int, Range(1, 64)] = 4
    """MLP hidden width = mlp_ratio * d_model (GPT-2: 4)"""
    attention: AttentionMask = "full"
    """self-attention mask: "full" (paper text, default) or "causal_mem_first" (released code:
    the memory update does not see the current observation or the history)"""
    dropout: Annotated[float, Range(0, 1, high_exclusive=True)] = 0.0
    """dropout on embeddings, attention probabilities and residual branches (released: 0.1)"""
    use_memory: bool = True
    """per-agent recurrent memory token (False = the "Attention" ablation)"""
    share_memory: bool = True
    """cross-attention over the memories of all agents of the env (False = the "RMT" ablation);
    needs use_memory"""
    use_memory_head: bool = True
    """new memory = mem_head(output) with a Linear(D, D, no bias); False = the output itself"""
    memory_grad: MemoryGrad = "own"
    """gradients through memory and history within a segment: 'none' truncates them at every
    step (the released code's recurrence-1 training), 'own' through the agent's own memory,
    'segment' also through the other agents' memories it reads"""
    position_init_std: Annotated[float, Range(0, 10)] = 1.0
    """std of the learned position table's initial values: 1.0 is the released code's
    nn.Embedding N(0, 1); the tmaze preset uses GPT-2's 0.02, because a N(0, 1) row has norm
    sqrt(d_model) (8 at d_model 64) against the vector encoder's outputs of norm about 1, and
    the observations, the cue included, drown in it (measured on T-Maze: eval/results/memory_agents.md)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        require(self.use_memory or not self.share_memory,
                "share_memory=True needs use_memory=True (set share_memory=False)")


@dataclasses.dataclass
class EmptyConfig(EncoderConfig):
    """"Empty" agent: encoder -> heads, no memory (encoder fields only)."""


SRMT_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "num_heads": 8, "filters": 64, "res_blocks": 8},
    "tmaze": {"d_model": 64, "num_heads": 4, "position_init_std": 0.02},
}
EMPTY_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8},
    "tmaze": {"d_model": 64},
}


def srmt_core(config: SRMTConfig) -> SharedMemoryCore:
    return SharedMemoryCore(
        config.d_model, config.num_heads, history_len=config.history_len,
        num_layers=config.num_layers, mlp_ratio=config.mlp_ratio, attention=config.attention,
        dropout=config.dropout, use_memory=config.use_memory,
        use_memory_head=config.use_memory_head, shared=config, bptt=config.bptt,
        position_init_std=config.position_init_std)


@registered_with(SRMTConfig, SRMT_PRESETS)
def make_srmt(obs_shape, num_actions, preset: str = "bottleneck",
              **overrides) -> ActorCriticPolicy:
    """SRMT: memory token + history + shared-memory cross-attention."""
    config = build_config(SRMTConfig, "srmt", SRMT_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, srmt_core)


@registered_with(SRMTConfig, SRMT_PRESETS)
def make_rmt(obs_shape, num_actions, preset: str = "bottleneck",
             **overrides) -> ActorCriticPolicy:
    """RMT ablation: SRMT without the shared read (``share_memory=False``)."""
    config = build_config(SRMTConfig, "rmt", SRMT_PRESETS, preset,
                          {"share_memory": False, **overrides})
    return ActorCriticPolicy(config, obs_shape, num_actions, srmt_core)


@registered_with(SRMTConfig, SRMT_PRESETS)
def make_attention(obs_shape, num_actions, preset: str = "bottleneck",
                   **overrides) -> ActorCriticPolicy:
    """Attention ablation: transformer over history + current, no memory."""
    config = build_config(SRMTConfig, "attention", SRMT_PRESETS, preset,
                          {"use_memory": False, "share_memory": False, **overrides})
    return ActorCriticPolicy(config, obs_shape, num_actions, srmt_core)


def _no_memory(config: "EmptyConfig") -> NoMemoryCore:
    return NoMemoryCore(config.d_model)


@registered_with(EmptyConfig, EMPTY_PRESETS)
def make_empty(obs_shape, num_actions, preset: str = "bottleneck",
               **overrides) -> ActorCriticPolicy:
    """Empty ablation: encoder -> heads."""
    config = build_config(EmptyConfig, "empty", EMPTY_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, _no_memory)
