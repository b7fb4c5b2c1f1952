"""Policies: observation encoder + memory core + actor/critic heads (contract in ``base.py``).

Every agent is registered in :data:`memarl.registry.AGENTS` with a factory
``make(obs_shape, num_actions, preset="bottleneck", **config_overrides)``; build one with
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
                "Empty ablation: ResNet encoder -> actor/critic heads, no memory")
AGENTS.register("gru", "memarl.agents.gru:make_gru",
                "GRU baseline: ResNet encoder -> GRU cell (hidden 16) -> actor/critic heads")


def make_agent(name: str, obs_shape: tuple[int, ...], num_actions: int, **overrides: Any):
    """Build the registered agent ``name`` for observations ``obs_shape`` ``(C, H, W)``.

    ``overrides`` are fields of the agent's config dataclass, plus ``preset``
    (``"bottleneck"`` default, or ``"lmapf"``). Unknown names raise a one-line MemarlError.
    """
    return AGENTS.make(name, obs_shape=tuple(obs_shape), num_actions=num_actions, **overrides)


def agent_config_class(name: str) -> type:
    """The config dataclass of the registered agent ``name`` (read from a default build)."""
    return type(make_agent(name, (3, 5, 5), 5).config)


__all__ = ["AGENTS", "make_agent", "agent_config_class"]
