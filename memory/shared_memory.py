"""SRMT core: a memory token, a history window and a shared-memory read (reference/srmt.md §4-6).

Per agent and env step the core attends over ``L`` tokens with fixed position ids::

    position   0        1 ... 8                      9
    token      m_i(t)   e_i(t-8) ... e_i(t-1)        e_i(t)
               memory   history (zeros after reset)  current encoder output

and, inside the same pre-LN GPT-2 block, cross-attends over the shared memory of its env,
``[m_1(t), ..., m_A(t)]`` (previous step's memories of all agents, its own included, no position
embedding)::

    x = tokens + position
    x = x + SelfAttn(LN(x))                 mask: "full" or "causal_mem_first" (below)
    x = x + CrossAttn(LN(x), shared memory) only when share_memory; zeros if no slot is valid
    x = x + MLP(LN(x))                      Linear(D, 4D) -> GELU(tanh) -> Linear(4D, D)
    y = LN_f(x)
    features = y[last]                      -> actor / critic heads
    m_i(t+1) = mem_head(y[0])               or mem_head(y[last]) when m_i(t) is not initialised

Self-attention masks (rows = queries, columns = keys; ``.`` = blocked), ``L = 10``::

    full                       causal_mem_first (released code)
    m  h1 .. h8 e              m  h1 .. h8 e
    1  1  .. 1  1   <- m       1  .  .. .  .   <- m: the memory update sees only the old memory
    1  1  .. 1  1   <- e       1  1  .. 1  1   <- e  (and the shared memory)

The memory column is blocked while the agent's memory is not initialised (its first step after a
reset): then the memory is initialised from the observation, ``mem_head(y[last])``.

Ablations: ``use_memory=False`` ("Attention": history + current, ``L = 9``, no memory, no
cross-attention); ``share_memory=False`` ("RMT": own memory token, no cross-attention).

Only the last block needs outputs, and only at the memory slot and the last token; the last block
therefore computes queries, the cross-attention and the MLP for those two tokens only (keys and
values still come from all ``L`` tokens), which is exactly equal to computing all ``L`` and
keeping two.

State (leading ``[N, A]``):

* ``history [N, A, history_len, D]`` -- the last encoder outputs, oldest first;
* ``memory [N, A, D]`` and ``memory_valid [N, A]`` bool (use_memory);
* with share_memory, the broadcast channel's entries (:mod:`memarl.memory.broadcast`): the
  memories each agent wrote at the last ``k = memory_delay`` steps, newest first, which the shared
  read takes from (also the drop / radius / finished-agent rules). The channel advances every step
  for every agent, alive or not (a finished agent pushes its unchanged memory), so ``k`` steps
  after an agent finished the others read its final memory; it is the one part of the state a
  non-alive agent does not keep unchanged.
"""
from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from memarl.memory import State, keep_dead, reset_first
from memarl.memory.broadcast import (MemoryChannel, SharedMemoryOptions, SharedMemoryRead,
                                     gpt2_init, masked_softmax)
from memarl.memory.core import MemoryCore

AttentionMask = Literal["full", "causal_mem_first"]
"""self-attention masks of the SRMT core (see :func:`attention_mask`)"""
ATTENTION_MASKS = typing.get_args(AttentionMask)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``L`` tokens of one agent (GPT-2 layout: one qkv
    projection, one output projection)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = gpt2_init(nn.Linear(d_model, 3 * d_model))
        self.proj = gpt2_init(nn.Linear(d_model, d_model))
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor,
                query_index: torch.Tensor | None) -> torch.Tensor:
        """h ``[B, L, D]`` (normalised), allowed ``[B, Lq, L]`` bool, query_index ``[Lq]`` (or
        ``None`` for all ``L``) -> ``[B, Lq, D]``."""
        b, length, d = h.shape
        hd = d // self.num_heads
        w, bias = self.qkv.weight, self.qkv.bias
        hq = h if query_index is None else h.index_select(1, query_index)
        q = F.linear(hq, w[:d], bias[:d])                                 # [B, Lq, D]
        kv = F.linear(h, w[d:], bias[d:])                                 # [B, L, 2D]
        q = q.view(b, -1, self.num_heads, hd).transpose(1, 2)             # [B, H, Lq, hd]
        k, v = kv.view(b, length, 2, self.num_heads, hd).permute(2, 0, 3, 1, 4)  # [B, H, L, hd]
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)                  # [B, H, Lq, L]
        probs = self.attn_drop(masked_softmax(scores, allowed[:, None]))
        out = (probs @ v).transpose(1, 2).reshape(b, -1, d)               # [B, Lq, D]
        return self.proj(out)


class SharedMemoryBlock(nn.Module):
    """Pre-LN GPT-2 block: self-attention, optional shared-memory cross-attention, MLP."""

    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, dropout: float,
                 cross_attention: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, num_heads, dropout)
        if cross_attention:
            self.ln_cross = nn.LayerNorm(d_model)
            self.cross = SharedMemoryRead(d_model, num_heads, dropout)
        else:
            self.ln_cross = self.cross = None
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = gpt2_init(nn.Linear(d_model, mlp_ratio * d_model))
        self.fc_proj = gpt2_init(nn.Linear(mlp_ratio * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, query_index: torch.Tensor | None,
                num_envs: int, pool: torch.Tensor | None, pool_valid: torch.Tensor | None,
                detach_others: bool) -> torch.Tensor:
        """x ``[B, L, D]`` -> ``[B, Lq, D]`` (the tokens of ``query_index``, all if ``None``)."""
        xq = x if query_index is None else x.index_select(1, query_index)
        x = xq + self.drop(self.attn(self.ln_1(x), allowed, query_index))  # [B, Lq, D]
        if self.cross is not None:
            b, lq, d = x.shape
            h = self.ln_cross(x).view(num_envs, b // num_envs, lq, d)
            read = self.cross(h, pool, pool_valid, detach_others).view(b, lq, d)
            x = x + self.drop(read)
        return x + self.drop(self.fc_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh")))


class SharedMemoryCore(MemoryCore):
    """The SRMT core and its RMT / Attention ablations. See the module docstring.

    Args:
        d_model: width D (= encoder output size).
        num_heads: attention heads (D must be divisible by it).
        history_len: number of past encoder outputs in the window (8 in the paper).
        num_layers: GPT-2 blocks (1 in the paper); every block cross-attends the same memories.
        mlp_ratio: MLP hidden size = mlp_ratio * D.
        attention: "full" or "causal_mem_first".
        dropout: dropout on embeddings, attention probabilities and residual branches.
        use_memory: memory token (False = "Attention" ablation).
        use_memory_head: new memory = mem_head(y); False: the new memory is y itself.
        shared: the broadcast options (:class:`~memarl.memory.broadcast.SharedMemoryOptions`);
            ``shared.share_memory=False`` = "RMT".
        bptt: backpropagate through memory and history across a ``sequence`` segment.
        position_init_std: std of the position table's initial values (1.0: the released
            nn.Embedding's N(0, 1)).
    """

    def __init__(self, d_model: int, num_heads: int, history_len: int = 8, num_layers: int = 1,
                 mlp_ratio: int = 4, attention: str = "full", dropout: float = 0.0,
                 use_memory: bool = True, use_memory_head: bool = True,
                 shared: SharedMemoryOptions | None = None, bptt: bool = True,
                 position_init_std: float = 1.0):
        super().__init__()
        shared = shared if shared is not None else SharedMemoryOptions()
        share_memory = shared.share_memory
        assert d_model % num_heads == 0 and attention in ATTENTION_MASKS
        assert use_memory or not share_memory, "share_memory needs use_memory"
        assert history_len >= 0 and num_layers >= 1
        self.d_model = self.feature_dim = d_model
        self.bptt = bptt
        self.history_len = history_len
        self.use_memory = use_memory
        self.share_memory = share_memory
        self.detach_other_memories = shared.detach_other_memories
        self.seq_len = history_len + 1 + int(use_memory)                       # L
        # Learned absolute positions, one row per slot (by default N(0, 1) like the released
        # nn.Embedding).
        self.position = nn.Parameter(torch.randn(self.seq_len, d_model) * position_init_std)  # [L, D]
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SharedMemoryBlock(d_model, num_heads, mlp_ratio, dropout, share_memory)
            for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.mem_head = None
        if use_memory and use_memory_head:
            self.mem_head = nn.Linear(d_model, d_model, bias=False)
            nn.init.orthogonal_(self.mem_head.weight)
        self.channel = None
        if share_memory:
            self.channel = MemoryChannel(d_model, 1, shared.memory_delay, shared.memory_drop,
                                         shared.memory_radius, shared.clear_finished_memory)
        self._keep = self.channel.persistent_keys if self.channel is not None else ()
        structure = torch.ones(self.seq_len, self.seq_len, dtype=torch.bool)
        if attention == "causal_mem_first":
            structure = torch.tril(structure)
        self.register_buffer("structure", structure, persistent=False)         # [L, L]
        last = self.seq_len - 1
        query_index = torch.tensor([0, last] if use_memory else [last])
        self.register_buffer("query_index", query_index, persistent=False)     # [Lq]

    def position_parameters(self) -> list[nn.Parameter]:
        return [self.position]

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        n, a, d = num_envs, num_agents, self.d_model
        dtype = dtype or self.position.dtype
        device = device if device is not None else self.position.device
        state = {"history": torch.zeros(n, a, self.history_len, d, device=device, dtype=dtype)}
        if self.use_memory:
            state["memory"] = torch.zeros(n, a, d, device=device, dtype=dtype)
            state["memory_valid"] = torch.zeros(n, a, dtype=torch.bool, device=device)
        if self.channel is not None:
            state.update(self.channel.initial_state(n, a, device, dtype))
        return state

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` bool -> features ``[N, A, D]``, state."""
        n, a, d = e.shape
        b, length = n * a, self.seq_len
        state = reset_first(first, state, self._keep)
        history = state["history"]                                             # [N, A, Lh, D]
        tokens = [history, e[:, :, None]]
        key_valid = torch.ones(b, length, dtype=torch.bool, device=e.device)   # [B, L]
        pool = pool_valid = None
        if self.use_memory:
            memory, memory_valid = state["memory"], state["memory_valid"]      # [N, A, D], [N, A]
            tokens.insert(0, memory[:, :, None])
            key_valid = torch.cat([memory_valid.reshape(b, 1), key_valid[:, 1:]], dim=1)
        if self.channel is not None:
            pool, pool_valid = self.channel.read(state, alive, positions)  # [N, A, D], [N, A, A]
        x = torch.cat(tokens, dim=2).view(b, length, d) + self.position        # [B, L, D]
        x = self.drop(x)
        key_valid = key_valid[:, None, :]                                      # [B, 1, L]
        for index, block in enumerate(self.blocks):
            if index < len(self.blocks) - 1:                   # all L tokens: [B, L, L]
                query_index, allowed = None, self.structure[None] & key_valid
            else:                                              # memory slot + last: [B, Lq, L]
                query_index = self.query_index
                allowed = self.structure.index_select(0, query_index)[None] & key_valid
            x = block(x, allowed, query_index, n, pool, pool_valid,
                      self.detach_other_memories)
        y = self.ln_f(x).view(n, a, -1, d)                                     # [N, A, Lq, D]
        features = y[:, :, -1]                                                 # [N, A, D]

        new: State = {}
        if self.history_len > 0:
            new["history"] = torch.cat([history[:, :, 1:], e[:, :, None]], dim=2)
        else:
            new["history"] = history
        if self.use_memory:
            source = torch.where(memory_valid[..., None], y[:, :, 0], features)
            new["memory"] = self.mem_head(source) if self.mem_head is not None else source
            new["memory_valid"] = torch.ones_like(memory_valid)
        new = keep_dead(alive, new, state)
        if self.channel is not None:
            # The broadcast channel advances for every agent (see the module docstring).
            new.update(self.channel.write(new["memory"], new["memory_valid"], state, alive))
        return features, new
