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
* ``memory_delayed [N, A, k-1, D]`` and ``memory_delayed_valid [N, A, k-1]`` (memory_delay
  ``k > 1``): the agent's memories of the ``k-1`` previous steps, newest first. This delay line
  models the broadcast channel: it advances every step for every agent, alive or not (a finished
  agent pushes its unchanged memory), so ``k`` steps after an agent finished the others read its
  final memory. It is the one state entry a non-alive agent does not keep unchanged.
"""
from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from memarl.memory import State, keep_dead, reset_first

AttentionMask = Literal["full", "causal_mem_first"]
"""self-attention masks of the SRMT core (see :func:`attention_mask`)"""
ATTENTION_MASKS = typing.get_args(AttentionMask)


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``allowed``; rows with nothing allowed give zeros
    (never NaN, also in the backward pass)."""
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * allowed


def _gpt2_init(linear: nn.Linear) -> nn.Linear:
    """GPT-2 initialisation: weights N(0, 0.02), zero biases."""
    nn.init.normal_(linear.weight, std=0.02)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class SelfAttention(nn.Module):
    """Multi-head self-attention over the ``L`` tokens of one agent (GPT-2 layout: one qkv
    projection, one output projection)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = _gpt2_init(nn.Linear(d_model, 3 * d_model))
        self.proj = _gpt2_init(nn.Linear(d_model, d_model))
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


class SharedMemoryRead(nn.Module):
    """Cross-attention of every agent's tokens over the memories of all ``A`` agents of its env.

    Keys and values for agent ``(n, i)`` are ``pool[n, :, :]``. With ``detach_others`` the
    gradient reaches only the agent's own slot ``pool[n, i]``, not the other agents' memories
    (the projection weights still get gradients from every slot, as with stored memories).
    This is done without materialising per-query key tensors: keys/values are projected from
    ``pool.detach()``, and a zero-valued term that carries the gradient of the own slot is added
    on the diagonal (``x - x.detach()`` is exactly 0 in the forward pass).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.query = _gpt2_init(nn.Linear(d_model, d_model))
        self.key_value = _gpt2_init(nn.Linear(d_model, 2 * d_model))
        self.proj = _gpt2_init(nn.Linear(d_model, d_model))
        self.attn_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pool: torch.Tensor, valid: torch.Tensor,
                detach_others: bool) -> torch.Tensor:
        """x ``[N, A, Lq, D]`` (normalised), pool ``[N, A, D]``, valid ``[N, A]`` bool ->
        ``[N, A, Lq, D]``; zeros for envs where no slot is valid."""
        n, a, lq, d = x.shape
        nh, hd = self.num_heads, d // self.num_heads
        scale = 1.0 / math.sqrt(hd)
        q = self.query(x).view(n, a, lq, nh, hd).permute(0, 3, 1, 2, 4)   # [N, H, A, Lq, hd]
        source = pool.detach() if detach_others else pool
        kv = self.key_value(source).view(n, a, 2, nh, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]                                               # [N, H, A, hd]
        scores = torch.einsum("nhitd,nhjd->nhitj", q, k) * scale          # [N, H, A, Lq, A]
        if detach_others:
            own = F.linear(pool, self.key_value.weight.detach(), self.key_value.bias.detach())
            own = (own - own.detach()).view(n, a, 2, nh, hd).permute(2, 0, 3, 1, 4)
            k_own, v_own = own[0], own[1]                                 # [N, H, A, hd], == 0
            eye = torch.eye(a, dtype=x.dtype, device=x.device).view(a, 1, a)
            diagonal = (q * k_own[:, :, :, None]).sum(-1) * scale         # [N, H, A, Lq]
            scores = scores + diagonal[..., None] * eye
        probs = masked_softmax(scores, valid[:, None, None, None, :])
        probs = self.attn_drop(probs)
        out = torch.einsum("nhitj,nhjd->nhitd", probs, v)                 # [N, H, A, Lq, hd]
        if detach_others:
            p_own = (probs * eye).sum(-1)                                 # [N, H, A, Lq]
            out = out + p_own[..., None] * v_own[:, :, :, None]
        out = self.proj(out.permute(0, 2, 3, 1, 4).reshape(n, a, lq, d))
        return out * valid.any(-1).view(n, 1, 1, 1).to(out.dtype)


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
        self.fc = _gpt2_init(nn.Linear(d_model, mlp_ratio * d_model))
        self.fc_proj = _gpt2_init(nn.Linear(mlp_ratio * d_model, d_model))
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


class SharedMemoryCore(nn.Module):
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
        share_memory: cross-attention over all agents' memories (False = "RMT").
        use_memory_head: new memory = mem_head(y); False: the new memory is y itself.
        detach_other_memories: no gradient into other agents' memories through the shared read.
        memory_delay: k >= 1; the shared read sees the memories produced k steps before the
            current one (k = 1: produced at the previous step, the paper's one-step lag).
        clear_finished_memory: mask agents that are not alive out of the shared read.
    """

    def __init__(self, d_model: int, num_heads: int, history_len: int = 8, num_layers: int = 1,
                 mlp_ratio: int = 4, attention: str = "full", dropout: float = 0.0,
                 use_memory: bool = True, share_memory: bool = True,
                 use_memory_head: bool = True, detach_other_memories: bool = True,
                 memory_delay: int = 1, clear_finished_memory: bool = False):
        super().__init__()
        assert d_model % num_heads == 0 and attention in ATTENTION_MASKS
        assert use_memory or not share_memory, "share_memory needs use_memory"
        assert memory_delay >= 1 and history_len >= 0 and num_layers >= 1
        self.d_model = d_model
        self.history_len = history_len
        self.use_memory = use_memory
        self.share_memory = share_memory
        self.detach_other_memories = detach_other_memories
        self.memory_delay = memory_delay
        self.clear_finished_memory = clear_finished_memory
        self.seq_len = history_len + 1 + int(use_memory)                       # L
        # Learned absolute positions, one row per slot (N(0, 1) like the released nn.Embedding).
        self.position = nn.Parameter(torch.randn(self.seq_len, d_model))       # [L, D]
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            SharedMemoryBlock(d_model, num_heads, mlp_ratio, dropout, share_memory)
            for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.mem_head = None
        if use_memory and use_memory_head:
            self.mem_head = nn.Linear(d_model, d_model, bias=False)
            nn.init.orthogonal_(self.mem_head.weight)
        structure = torch.ones(self.seq_len, self.seq_len, dtype=torch.bool)
        if attention == "causal_mem_first":
            structure = torch.tril(structure)
        self.register_buffer("structure", structure, persistent=False)         # [L, L]
        last = self.seq_len - 1
        query_index = torch.tensor([0, last] if use_memory else [last])
        self.register_buffer("query_index", query_index, persistent=False)     # [Lq]

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        n, a, d = num_envs, num_agents, self.d_model
        dtype = dtype or self.position.dtype
        device = device if device is not None else self.position.device
        state = {"history": torch.zeros(n, a, self.history_len, d, device=device, dtype=dtype)}
        if self.use_memory:
            state["memory"] = torch.zeros(n, a, d, device=device, dtype=dtype)
            state["memory_valid"] = torch.zeros(n, a, dtype=torch.bool, device=device)
        if self.use_memory and self.memory_delay > 1:
            k = self.memory_delay - 1
            state["memory_delayed"] = torch.zeros(n, a, k, d, device=device, dtype=dtype)
            state["memory_delayed_valid"] = torch.zeros(n, a, k, dtype=torch.bool,
                                                        device=device)
        return state

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor
             ) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` bool -> features ``[N, A, D]``, state."""
        n, a, d = e.shape
        b, length = n * a, self.seq_len
        state = reset_first(first, state)
        history = state["history"]                                             # [N, A, Lh, D]
        tokens = [history, e[:, :, None]]
        key_valid = torch.ones(b, length, dtype=torch.bool, device=e.device)   # [B, L]
        pool = pool_valid = None
        if self.use_memory:
            memory, memory_valid = state["memory"], state["memory_valid"]      # [N, A, D], [N, A]
            tokens.insert(0, memory[:, :, None])
            key_valid = torch.cat([memory_valid.reshape(b, 1), key_valid[:, 1:]], dim=1)
            if self.memory_delay > 1:
                pool = state["memory_delayed"][:, :, -1]
                pool_valid = state["memory_delayed_valid"][:, :, -1]
            else:
                pool, pool_valid = memory, memory_valid
            if self.clear_finished_memory:
                pool_valid = pool_valid & alive
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
        if self.use_memory and self.memory_delay > 1:
            # The broadcast channel advances for every agent (see the module docstring).
            new["memory_delayed"] = torch.cat(
                [memory[:, :, None], state["memory_delayed"][:, :, :-1]], dim=2)
            new["memory_delayed_valid"] = torch.cat(
                [memory_valid[:, :, None], state["memory_delayed_valid"][:, :, :-1]], dim=2)
        return features, new

    forward = step
