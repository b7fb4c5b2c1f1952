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

import torch

from memarl.agents.base import State
from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config
from memarl.configs import Range
from memarl.memory.shared_memory import AttentionMask, SharedMemoryCore


@dataclasses.dataclass
class SRMTConfig(EncoderConfig):
    """SRMT / RMT / Attention agent (encoder fields from :class:`EncoderConfig`)."""

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
    detach_other_memories: bool = True
    """no gradient into other agents' memories through the shared read (own memory keeps it)"""
    memory_delay: Annotated[int, Range(1, 100_000)] = 1
    """k >= 1: the shared read sees memories produced k steps earlier (1 = the paper's lag)"""
    clear_finished_memory: bool = False
    """mask agents that are not alive out of the shared read (False: their last memory stays)"""
    bptt: bool = True
    """backpropagate through memory and history across a ``sequence`` segment; False truncates
    the gradient at every step (the released code's recurrence-1 training)"""

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
}
EMPTY_PRESETS: dict[str, dict] = {
    "bottleneck": {},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8},
}


class SRMTPolicy(ActorCriticPolicy):
    """Encoder -> :class:`~memarl.memory.shared_memory.SharedMemoryCore` -> heads."""

    def __init__(self, config: SRMTConfig, obs_shape: tuple[int, ...], num_actions: int):
        super().__init__(config, obs_shape, num_actions)
        self.bptt = config.bptt
        self.core = SharedMemoryCore(
            config.d_model, config.num_heads, history_len=config.history_len,
            num_layers=config.num_layers, mlp_ratio=config.mlp_ratio,
            attention=config.attention, dropout=config.dropout, use_memory=config.use_memory,
            share_memory=config.share_memory, use_memory_head=config.use_memory_head,
            detach_other_memories=config.detach_other_memories,
            memory_delay=config.memory_delay,
            clear_finished_memory=config.clear_finished_memory)
        self._build_heads(config.d_model)

    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State:
        return self.core.initial_state(num_envs, num_agents, device=device)

    def _core_step(self, e, state, first, alive):
        return self.core.step(e, state, first, alive)

    def _position_parameters(self):
        return [self.core.position]


class EmptyPolicy(ActorCriticPolicy):
    """Encoder -> heads; the state is an empty dict, ``first`` and ``alive`` change nothing."""

    def __init__(self, config: EmptyConfig, obs_shape: tuple[int, ...], num_actions: int):
        super().__init__(config, obs_shape, num_actions)
        self._build_heads(config.d_model)

    def initial_state(self, num_envs: int, num_agents: int,
                      device: torch.device | None = None) -> State:
        return {}

    def _core_step(self, e, state, first, alive):
        return e, {}


def make_srmt(obs_shape, num_actions, preset: str = "bottleneck", **overrides) -> SRMTPolicy:
    """SRMT: memory token + history + shared-memory cross-attention."""
    config = build_config(SRMTConfig, "srmt", SRMT_PRESETS, preset, overrides)
    return SRMTPolicy(config, obs_shape, num_actions)


def make_rmt(obs_shape, num_actions, preset: str = "bottleneck", **overrides) -> SRMTPolicy:
    """RMT ablation: SRMT without the shared read (``share_memory=False``)."""
    config = build_config(SRMTConfig, "rmt", SRMT_PRESETS, preset,
                          {"share_memory": False, **overrides})
    return SRMTPolicy(config, obs_shape, num_actions)


def make_attention(obs_shape, num_actions, preset: str = "bottleneck",
                   **overrides) -> SRMTPolicy:
    """Attention ablation: transformer over history + current, no memory."""
    config = build_config(SRMTConfig, "attention", SRMT_PRESETS, preset,
                          {"use_memory": False, "share_memory": False, **overrides})
    return SRMTPolicy(config, obs_shape, num_actions)


def make_empty(obs_shape, num_actions, preset: str = "bottleneck", **overrides) -> EmptyPolicy:
    """Empty ablation: encoder -> heads."""
    config = build_config(EmptyConfig, "empty", EMPTY_PRESETS, preset, overrides)
    return EmptyPolicy(config, obs_shape, num_actions)
