"""GaLiTe and AGaLiTe agents: encoder -> gated linear transformer core -> heads.

    obs -> encoder (ResNet / MLP) -> e [N, A, D] -> GaLiTeCore | AGaLiTeCore -> x^L [N, A, D]
        -> actor Linear(D, num_actions), critic Linear(D, 1)

The cores, their equations and every paper-vs-code decision are in
:mod:`memarl.memory.linear_attention`: GaLiTe's decay form (``decay_form``, default the paper's
separable ``(1 − β) ⊗ (1 − γ)``), AGaLiTe's r (``num_cosines`` = stored vector pairs = cosine
terms, frequencies 2π i / r), a per-episode tick folded exactly, ε = 1e-5.

Presets (state per agent in fp32; K = η·d_h, "floats" per agent)::

    preset      D    L  H  d_h  η  d_ffc  GaLiTe C+s per agent        AGaLiTe (r = 2)
    bottleneck  16   1  2  8    2  16     288 floats (1.1 KiB)        128 floats (0.5 KiB) + tick
    lmapf       512  1  4  64   4  512    66,560 floats (260 KiB)     3,584 floats (14 KiB) + tick
    tmaze       64   2  4  16   4  64     8,704 floats (34 KiB)       1,792 floats (7 KiB) + tick

(GaLiTe: L·H·(d_h·K + K); AGaLiTe: L·H·(r·K + r·d_h + K) floats + one int64 tick.) The tmaze
preset scales the released T-Maze config (4 layers, D 128, 4 x 64, η 4, code r 2) down to this
project's T-Maze width 64. ``lmapf`` uses one block, like SRMT's LMAPF preset: the two GRU-type
gates (12 D x D matrices) dominate the core, so one block at D = 512 already matches SRMT's
parameter count (about 9.2M vs 8.8M).
"""
from __future__ import annotations

import dataclasses
from typing import Annotated

from memarl.agents.encoders import EncoderConfig, require
from memarl.agents.heads import ActorCriticPolicy, build_config, registered_with
from memarl.configs import Range
from memarl.memory.broadcast import SharedMemoryOptions
from memarl.memory.core import MemoryGrad, MemoryGradOptions
from memarl.memory.linear_attention import AGaLiTeCore, DecayForm, GaLiTeCore


@dataclasses.dataclass
class LinearTransformerConfig(EncoderConfig, SharedMemoryOptions, MemoryGradOptions):
    """Fields shared by GaLiTe and AGaLiTe (encoder and broadcast fields inherited)."""

    num_layers: Annotated[int, Range(1, 64)] = 1
    """gated blocks L (the released configs: 4)"""
    num_heads: Annotated[int, Range(1, 1024)] = 2
    """heads H of the recurrence (also of the shared-memory read, which needs d_model divisible
    by it)"""
    head_dim: Annotated[int | None, Range(1, 65_536)] = None
    """head dimension d_h (value size); None = d_model / num_heads"""
    feature_factor: Annotated[int, Range(1, 1024)] = 2
    """η of the outer-product feature map: key size d_k = η·d_h (the released configs: 4 or 8)"""
    d_ffc: Annotated[int | None, Range(1, 1_048_576)] = None
    """width of the FFN of every block; None = d_model"""
    gate_bias: Annotated[float, Range(-100, 100)] = 2.0
    """initial b_g of the GRU-type gates (2: the blocks start close to the identity)"""
    eps: Annotated[float, Range(0, 1, low_exclusive=True)] = 1e-5
    """ε added to the normaliser s·q of the read-out"""
    memory_grad: MemoryGrad = "own"
    """gradients through the recurrent state within a segment (the parallel form): 'own',
    'segment' (also through the other agents' memories it reads, with shared memory) or 'none'
    (truncated at every step, and ``step`` is looped)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_dim is None or self.share_memory:
            require(self.d_model % self.num_heads == 0,
                    f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
                    + (" for the shared-memory read" if self.head_dim is not None else
                       " (or set head_dim)"))

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.num_heads


@dataclasses.dataclass
class GaLiteConfig(LinearTransformerConfig):
    """GaLiTe agent: the exact gated linear transformer."""

    decay_form: DecayForm = "separable"
    """decay of C: "separable" = the paper's (1 − β) ⊗ (1 − γ) (gated linear attention with key-
    and value-side gates; chunked parallel form); "coupled" = the released code's 1 − β ⊗ γ
    (``sequence`` loops ``step``)"""
    chunk_size: Annotated[int, Range(1, 4096)] = 16
    """steps per chunk of the parallel ``sequence`` form (memory grows with its square)"""


@dataclasses.dataclass
class AGaLiteConfig(LinearTransformerConfig):
    """AGaLiTe agent: the approximate gated linear transformer."""

    num_cosines: Annotated[int, Range(1, 4096)] = 2
    """r: cosine terms = (ṽ, k̃) vector pairs stored per head, frequencies 2π i / r; equals the
    released code's r (same state size) and the paper's r + 1; r = 2 (the released setting)
    uses cos 0 and cos πτ, non-degenerate"""


_BASE_PRESETS: dict[str, dict] = {
    "bottleneck": {"num_layers": 1, "num_heads": 2, "feature_factor": 2},
    "lmapf": {"d_model": 512, "filters": 64, "res_blocks": 8, "num_layers": 1, "num_heads": 4,
              "head_dim": 64, "feature_factor": 4},
    "tmaze": {"d_model": 64, "num_layers": 2, "num_heads": 4, "feature_factor": 4},
}
GALITE_PRESETS: dict[str, dict] = {name: dict(p) for name, p in _BASE_PRESETS.items()}
AGALITE_PRESETS: dict[str, dict] = {name: {**p, "num_cosines": 2}
                                    for name, p in _BASE_PRESETS.items()}


def _core_args(config: LinearTransformerConfig) -> dict:
    return {"num_layers": config.num_layers, "num_heads": config.num_heads,
            "head_dim": config.resolved_head_dim, "eta": config.feature_factor,
            "d_ffc": config.d_ffc, "gate_bias": config.gate_bias, "eps": config.eps,
            "shared": config, "bptt": config.bptt}


def _galite_core(config: GaLiteConfig) -> GaLiTeCore:
    return GaLiTeCore(config.d_model, decay_form=config.decay_form,
                      chunk_size=config.chunk_size, **_core_args(config))


def _agalite_core(config: AGaLiteConfig) -> AGaLiTeCore:
    return AGaLiTeCore(config.d_model, num_cosines=config.num_cosines, **_core_args(config))


@registered_with(GaLiteConfig, GALITE_PRESETS)
def make_galite(obs_shape, num_actions, preset: str = "bottleneck",
                **overrides) -> ActorCriticPolicy:
    """GaLiTe: encoder -> gated linear transformer (exact outer-product state) -> heads."""
    config = build_config(GaLiteConfig, "galite", GALITE_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, _galite_core)


@registered_with(AGaLiteConfig, AGALITE_PRESETS)
def make_agalite(obs_shape, num_actions, preset: str = "bottleneck",
                 **overrides) -> ActorCriticPolicy:
    """AGaLiTe: encoder -> approximate gated linear transformer (cosine vector state) -> heads."""
    config = build_config(AGaLiteConfig, "agalite", AGALITE_PRESETS, preset, overrides)
    return ActorCriticPolicy(config, obs_shape, num_actions, _agalite_core)
