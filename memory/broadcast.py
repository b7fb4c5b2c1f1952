"""Shared memory as a component: broadcast each agent's memory to the agents of its env.

Any memory core can share its memory. The core exposes a per-agent memory *summary*
``[N, A, S, Ds]`` (``S`` slots per agent: SRMT its memory token, a GRU its hidden state, RATE its
memory tokens); this module carries the summaries over a broadcast channel and lets the core read
them by cross-attention:

    summaries written at t-1, ..., t-k          (delay line of each agent, k = memory_delay)
        -> MemoryChannel.read  -> pool [N, A*S, Ds] and, per receiver, valid [N, A, A*S]
        -> SharedMemoryRead    -> cross-attention of every agent's queries over the pool of its
                                  env (never over another env of the batch)

Channel rules (each receiver ``r`` reading sender ``s`` of the same env at step ``t``):

* **lag**: ``r`` reads the summary ``s`` wrote ``k`` steps earlier (``k = 1``: the previous step,
  the SRMT paper's one-step lag). The delay line advances every step for every agent, alive or
  not; an agent that is not alive pushes its unchanged summary, so the others keep reading its
  last memory. After an agent's reset (``first``) its slots are empty until it writes again.
* **drop** (``memory_drop = p``): each other agent's summary is lost for this receiver and step
  with probability ``p``. The loss pattern is a counter-based hash of (a per-env key, the step
  count, receiver, sender): ``step`` and ``sequence`` see the same losses, so PPO replays the
  channel exactly as the actor saw it.
* **radius** (``memory_radius = d``): ``r`` reads ``s`` only when their grid cells are within
  Manhattan distance ``d`` (the env's ``positions``); ``None`` = everyone.
* **finished agents** (``clear_finished_memory``): senders that are not alive are left out.
* An agent always reads its own slots (never dropped, never out of range).

Defaults (delay 1, drop 0, radius None, finished agents kept) reproduce plain SRMT.

State entries owned by the channel (leading ``[N, A]``): ``shared_summary [N, A, k, S, Ds]``
(newest first), ``shared_valid [N, A, k]``, and with drop > 0 ``shared_key`` / ``shared_tick``
``[N, A]`` int64 (one value per env, kept across episode resets: listed in
:attr:`MemoryChannel.persistent_keys`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from memarl.configs import Range
from memarl.errors import MemarlError
from memarl.memory import State


@dataclasses.dataclass
class SharedMemoryOptions:
    """Broadcast options of every shared-memory agent (mixed into the agent's config)."""

    share_memory: bool = False
    """read the memories of all agents of the env by cross-attention (SRMT's shared memory)"""
    memory_delay: Annotated[int, Range(1, 100_000)] = 1
    """k >= 1: the shared read sees memories written k steps earlier (1 = the paper's lag)"""
    memory_drop: Annotated[float, Range(0, 1, high_exclusive=True)] = 0.0
    """probability that another agent's memory is lost for one receiver at one step"""
    memory_radius: Annotated[int | None, Range(0, 1_000_000)] = None
    """read only agents within this Manhattan grid distance (None = all agents of the env)"""
    clear_finished_memory: bool = False
    """leave agents that are not alive out of the shared read (False: their last memory stays)"""


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """An integer hash of the low 32 bits of int64 ``x`` (products stay below 2**59)."""
    mask = 0xFFFFFFFF
    x = x & mask
    x = (((x >> 16) ^ x) * 0x45D9F3B) & mask
    x = (((x >> 16) ^ x) * 0x45D9F3B) & mask
    return (x >> 16) ^ x


class MemoryChannel(nn.Module):
    """The broadcast channel (no parameters): delay line, drop, radius, finished agents."""

    def __init__(self, summary_dim: int, slots: int = 1, delay: int = 1, drop: float = 0.0,
                 radius: int | None = None, clear_finished: bool = False):
        super().__init__()
        if not (delay >= 1 and 0.0 <= drop < 1.0 and (radius is None or radius >= 0)
                and slots >= 1):
            raise MemarlError(f"invalid memory channel: delay={delay} drop={drop} "
                              f"radius={radius} slots={slots}")
        self.summary_dim, self.slots = summary_dim, slots
        self.delay, self.drop, self.radius = delay, drop, radius
        self.clear_finished = clear_finished
        self.persistent_keys: tuple[str, ...] = ("shared_key", "shared_tick") if drop > 0 else ()

    def initial_state(self, num_envs: int, num_agents: int, device, dtype) -> State:
        n, a, k = num_envs, num_agents, self.delay
        state = {
            "shared_summary": torch.zeros(n, a, k, self.slots, self.summary_dim,
                                          device=device, dtype=dtype),
            "shared_valid": torch.zeros(n, a, k, dtype=torch.bool, device=device),
        }
        if self.drop > 0:
            key = torch.randint(0, 2**31 - 1, (n, 1), dtype=torch.int64).to(device)
            state["shared_key"] = key.expand(n, a).clone()
            state["shared_tick"] = torch.zeros(n, a, dtype=torch.int64, device=device)
        return state

    def read(self, state: State, alive: torch.Tensor, positions: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> pool ``[N, A*S, Ds]`` (the summaries written ``delay`` steps ago) and
        valid ``[N, A, A*S]`` bool (what each receiver may read)."""
        summary = state["shared_summary"][:, :, -1]                          # [N, A, S, Ds]
        n, a, s, ds = summary.shape
        sender = state["shared_valid"][:, :, -1]                             # [N, A]
        if self.clear_finished:
            sender = sender & alive
        valid = sender[:, None, :].expand(n, a, a)                           # [N, recv, send]
        own = torch.eye(a, dtype=torch.bool, device=summary.device)
        if self.drop > 0:
            key = _hash32(state["shared_key"][:, 0])                         # [N]
            tick = _hash32(key ^ (state["shared_tick"][:, 0] & 0xFFFFFFFF))  # [N]
            pair = torch.arange(a * a, device=summary.device).view(1, a, a)
            uniform = _hash32(tick.view(n, 1, 1) ^ pair).to(torch.float64) / 2.0**32
            valid = valid & ((uniform >= self.drop) | own)
        if self.radius is not None:
            if positions is None:
                raise MemarlError("memory_radius needs the agents' positions; this env does "
                                  "not provide them (use memory_radius=None)")
            pos = positions.to(torch.int64)                                  # [N, A, 2]
            distance = (pos[:, :, None] - pos[:, None, :]).abs().sum(-1)     # [N, A, A]
            valid = valid & ((distance <= self.radius) | own)
        valid = valid[..., None].expand(n, a, a, s).reshape(n, a, a * s)
        return summary.reshape(n, a * s, ds), valid

    def write(self, summary: torch.Tensor, summary_valid: torch.Tensor, state: State,
              alive: torch.Tensor) -> State:
        """Advance the delay line by one step: ``summary [N, A, S, Ds]`` (or ``[N, A, Ds]``) of
        alive agents, the unchanged newest entry of the others. Returns the channel's entries."""
        if summary.dim() == 3:
            summary = summary[:, :, None]
        line, line_valid = state["shared_summary"], state["shared_valid"]
        keep = alive.view(*alive.shape, 1, 1)
        newest = torch.where(keep, summary, line[:, :, 0])                   # [N, A, S, Ds]
        newest_valid = torch.where(alive, summary_valid, line_valid[:, :, 0])
        new = {"shared_summary": torch.cat([newest[:, :, None], line[:, :, :-1]], dim=2),
               "shared_valid": torch.cat([newest_valid[:, :, None], line_valid[:, :, :-1]],
                                         dim=2)}
        if self.drop > 0:
            new["shared_key"] = state["shared_key"]
            new["shared_tick"] = state["shared_tick"] + 1
        return new


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``allowed``; rows with nothing allowed give zeros
    (never NaN, also in the backward pass)."""
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * allowed


def gpt2_init(linear: nn.Linear) -> nn.Linear:
    """GPT-2 initialisation: weights N(0, 0.02), zero biases."""
    nn.init.normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class SharedMemoryRead(nn.Module):
    """Cross-attention of every agent's queries over the pool of its env.

    Keys and values for receiver ``(n, i)`` are ``pool[n]`` restricted to ``valid[n, i]``. With
    ``detach_others`` the gradient reaches only the receiver's own slots, not the other agents'
    memories (the projection weights still get gradients from every slot, as with stored
    memories). This is done without materialising per-receiver key tensors: keys/values are
    projected from ``pool.detach()``, and a zero-valued term carrying the gradient of the own
    slots is added on the block diagonal (``x - x.detach()`` is exactly 0 in the forward pass).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0,
                 source_dim: int | None = None):
        super().__init__()
        if d_model % num_heads:
            raise MemarlError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.query = gpt2_init(nn.Linear(d_model, d_model))
        self.key_value = gpt2_init(nn.Linear(source_dim or d_model, 2 * d_model))
        self.proj = gpt2_init(nn.Linear(d_model, d_model))
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pool: torch.Tensor, valid: torch.Tensor,
                detach_others: bool) -> torch.Tensor:
        """x ``[N, A, Lq, D]`` (normalised), pool ``[N, A*S, Ds]``, valid ``[N, A, A*S]`` bool
        -> ``[N, A, Lq, D]``; zeros for receivers with no valid slot."""
        n, a, lq, d = x.shape
        p = pool.shape[1]
        slots = p // a
        nh, hd = self.num_heads, d // self.num_heads
        scale = 1.0 / math.sqrt(hd)
        q = self.query(x).view(n, a, lq, nh, hd).permute(0, 3, 1, 2, 4)   # [N, H, A, Lq, hd]
        source = pool.detach() if detach_others else pool
        kv = self.key_value(source).view(n, p, 2, nh, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]                                               # [N, H, P, hd]
        scores = torch.einsum("nhitd,nhjd->nhitj", q, k) * scale          # [N, H, A, Lq, P]
        if detach_others:
            own = F.linear(pool, self.key_value.weight.detach(), self.key_value.bias.detach())
            own = (own - own.detach()).view(n, a, slots, 2, nh, hd).permute(3, 0, 4, 1, 2, 5)
            k_own, v_own = own[0], own[1]                                 # [N, H, A, S, hd] == 0
            eye = torch.eye(a, dtype=x.dtype, device=x.device)
            diagonal = torch.einsum("nhitd,nhisd->nhits", q, k_own) * scale   # [N, H, A, Lq, S]
            scores = scores + torch.einsum("nhits,ij->nhitjs", diagonal, eye).reshape(
                n, nh, a, lq, p)
        probs = masked_softmax(scores, valid[:, None, :, None, :])
        probs = self.attn_drop(probs)
        out = torch.einsum("nhitj,nhjd->nhitd", probs, v)                 # [N, H, A, Lq, hd]
        if detach_others:
            p_own = torch.einsum("nhitjs,ij->nhits", probs.view(n, nh, a, lq, a, slots), eye)
            out = out + torch.einsum("nhits,nhisd->nhitd", p_own, v_own)
        out = self.proj(out.permute(0, 2, 3, 1, 4).reshape(n, a, lq, d))
        return out * valid.any(-1).view(n, a, 1, 1).to(out.dtype)


class SharedMemory(nn.Module):
    """The component a core attaches: channel + cross-attention read at the core's input.

    ``read_into(e, state, alive, positions)`` returns ``e + SharedMemoryRead(LN(e), pool)``
    ``[N, A, D]``; ``write(summary, summary_valid, state, alive)`` advances the channel with the
    core's memory summary of this step. The core includes :meth:`initial_state`'s entries in its
    state and keeps :attr:`persistent_keys` through episode resets.
    """

    def __init__(self, d_model: int, num_heads: int, summary_dim: int, options, slots: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.channel = MemoryChannel(summary_dim, slots, options.memory_delay,
                                     options.memory_drop, options.memory_radius,
                                     options.clear_finished_memory)
        self.detach_others = options.detach_other_memories
        self.norm = nn.LayerNorm(d_model)
        self.read = SharedMemoryRead(d_model, num_heads, dropout, source_dim=summary_dim)

    @property
    def persistent_keys(self) -> tuple[str, ...]:
        return self.channel.persistent_keys

    def initial_state(self, num_envs, num_agents, device, dtype) -> State:
        return self.channel.initial_state(num_envs, num_agents, device, dtype)

    def read_into(self, e: torch.Tensor, state: State, alive: torch.Tensor,
                  positions: torch.Tensor | None) -> torch.Tensor:
        """e ``[N, A, D]`` -> ``e`` plus what the agent reads from its env's memories."""
        pool, valid = self.channel.read(state, alive, positions)
        read = self.read(self.norm(e)[:, :, None], pool, valid, self.detach_others)
        return e + read[:, :, 0]

    def write(self, summary, summary_valid, state, alive) -> State:
        return self.channel.write(summary, summary_valid, state, alive)
