"""Policies: observation encoder + memory core + actor/critic heads (contract in ``base.py``).

Every agent is registered in :data:`memarl.registry.AGENTS` with a factory
``make(obs_shape, num_actions, preset="bottleneck", **config_overrides)`` that carries its config
class and presets (:func:`memarl.agents.heads.registered_with`); build one with
:func:`make_agent`. Each policy exposes ``config`` (its dataclass), ``num_actions`` and
``parameter_counts() -> {"total", "effective"}`` (effective = without position tables).
"""
from __future__ import annotations

from typing import Any

from memarl.registry import AGENTS

AGENTS.register("srmt", "memarl.agents.srmt:make_srmt",
                "SRMT: memory token + history + cross-attention over all agents' memories")
AGENTS.register("rmt", "memarl.agents.srmt:make_rmt",
                "RMT ablation: SRMT without the shared-memory read (own memory token only)")
AGENTS.register("attention", "memarl.agents.srmt:make_attention",
                "Attention ablation: transformer over the last 8 observations, no memory")
AGENTS.register("empty", "memarl.agents.srmt:make_empty",
                "Empty ablation: encoder -> actor/critic heads, no memory")
AGENTS.register("gru", "memarl.agents.recurrent:make_gru",
                "GRU baseline: encoder -> GRU cell (hidden 16) -> actor/critic heads")
AGENTS.register("rate", "memarl.agents.rate:make_rate",
                "RATE: memory tokens read/written around K-step segments + memory retention valve")
AGENTS.register("gtrxl", "memarl.agents.gtrxl:make_gtrxl",
                "GTrXL: gated pre-LN Transformer-XL, relative positions, K/V cache of M steps")
AGENTS.register("galite", "memarl.agents.galite:make_galite",
                "GaLiTe: gated linear transformer (exact outer-product state)")
AGENTS.register("agalite", "memarl.agents.galite:make_agalite",
                "AGaLiTe: approximate gated linear transformer (cosine-modulated vector state)")
AGENTS.register("lstm", "memarl.agents.recurrent:make_lstm",
                "LSTM baseline: encoder -> LSTM cell (hidden 13, about the GRU's size) -> heads")


def make_agent(name: str, obs_shape: tuple[int, ...], num_actions: int, **overrides: Any):
    """Build the registered agent ``name`` for observations ``obs_shape`` ``(C, H, W)``.

    ``overrides`` are fields of the agent's config dataclass, plus ``preset`` (``"bottleneck"``
    default; :func:`agent_presets` lists them). Unknown names raise a one-line MemarlError.
    """
    return AGENTS.make(name, obs_shape=tuple(obs_shape), num_actions=num_actions, **overrides)


def agent_config_class(name: str) -> type:
    """The config dataclass of the registered agent ``name`` (no model is built)."""
    return AGENTS.get(name).load().config_class


def agent_presets(name: str) -> dict[str, dict[str, Any]]:
    """The presets of the registered agent ``name``: preset name -> config overrides."""
    return AGENTS.get(name).load().presets


__all__ = ["AGENTS", "make_agent", "agent_config_class", "agent_presets"]
