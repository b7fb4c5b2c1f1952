"""Memory-token core: RATE (Recurrent Action Transformer with Memory) as an online PPO agent.

Reference: memory_agents.md §1 (RATE: §1.2 equations, §1.7 online decisions) and §4 (RMT).

Per agent the env steps are cut into *memory segments* of ``K`` steps, counted from the agent's
episode start. The agent carries ``m`` memory tokens ``M_n [m, D]``. At step ``t`` of memory
segment ``n`` (slot ``c = 0 .. K-1``) the core runs a post-LN Transformer-XL over::

    [ cache (C) | M_n read (m) | e_0 ... e_c (slots of segment n) | M_n write (m) ]
    position    -C..-1         0..m-1       m .. m+K-1                m+K .. 2m+K-1

and the features for the heads are the last layer's output at ``e_c``. After the segment's
``K``-th step the outputs at the write positions, ``M~``, go through the memory retention valve
(MRV-CA-2, §1.2) and the segment buffer restarts::

    M_{n+1} = MHA(query = M_n, key = value = ReLU(M~))
            = concat_h softmax( M_n W_Q^h (ReLU(M~) W_K^h)^T / sqrt(D/H_mrv) ) ReLU(M~) W_V^h  W_M

(``W_Q``, ``W_V``, ``W_M`` with biases, ``W_K`` without: a key bias only adds a constant to every
score of a query, which the softmax removes.) No FFN after the MRV: the released code applies the
cross-attention alone, the paper writes FFN(MultiHead(...)); we follow the code. ``use_mrv=False``
gives the "no MRV" ablation, ``M_{n+1} = M~`` (RMT's decoder form). ``M_0`` is a learned
parameter ``[m, D]`` ~ N(0, 1) with every token drawn **independently** (the released code repeats
one random vector m times, so its initial tokens are identical; we do not reproduce that quirk).

Layer (RATE's default, post-LN Transformer-XL, relative positions)::

    a  = RelAttn(x; keys/values = [cache_l ; x])
    x  = LN_1(x + a)
    x  = LN_2(x + FFN(x))          FFN = Linear(D, r·D) -> ReLU -> Linear(r·D, D); r = ffn_ratio,
                                   ffn_ratio = 0 skips it (RATE's skip_dec_ffn, the T-Maze setting)
    RelAttn score(i, j) = [ (q_i + u)·k_j + (q_i + v)·W_R φ(p_i - p_j) ] / sqrt(D/H)

with ``φ`` the sinusoidal embedding of the signed distance of the positions above, ``u``, ``v``
learned per layer and head (Transformer-XL's r_w_bias / r_r_bias, xavier-uniform as RATE's
trainer; untied across layers), projections without biases (N(0, 0.02) as Transformer-XL), head
width D/H (RATE's code has a separate d_head). There is no final LayerNorm (post-LN already ends
with one). Dropout (default 0) on the input tokens, the attention probabilities and the residual
branches. The optional GTrXL gate of RATE's layer (``use_gate``, off by default) is not built.

Attention mask (rows = queries), as in RATE's ``_forward``:

* read rows see only the read block (RATE's ``read_mem_from_cache=False``; not an option here);
* slot rows see the cache, the read block and the slots up to themselves (causal);
* write rows see the cache, the read block, every filled slot and the whole write block.

XL cache (``mem_len = C``, default 0, which the paper recommends for sparse tasks such as
T-Maze): per layer, the layer inputs of the last ``C`` *observation* tokens of the previous memory
segments of the episode (memory tokens are not cached), updated when a memory segment ends,
always stop-gradient (RATE updates it under no_grad); the cache is emptied at an episode reset.

Online PPO adaptation (what differs from the offline paper):

* **No return-to-go token, no action tokens.** RATE's tokens are (R_t, o_t, a_t) triplets of a
  return-conditioned behaviour-cloning model; R_t has no meaning in PPO and a_t is the output.
  The tokens are the encoded observations ``e_t`` only (one token per step, so a segment holds K
  tokens, not 3K), and the actor/critic heads read the output at ``e_t``.
* **Acting.** The step form re-forwards the current segment every step (as RATE's inference
  does): the state stores the *encoded inputs* of the segment, not K/V (a smaller rollout state;
  the cost is O(K) tokens per step). The last layer computes queries only at ``e_c`` and the write
  rows; the write rows and the MRV run every step for every agent (batch-uniform) and are kept
  only where the segment ends.
* **Learning.** ``sequence`` equals ``step`` x T (tested: outputs, final state and gradients).
  Because of the causal mask the output at ``e_t`` does not depend on later tokens, so it
  processes a whole memory segment of every agent in one forward ("stage" j = the j-th memory
  segment of each agent inside the window, restarted by a write or a reset; stages run in order
  because segment j+1 reads what j writes). A step of an agent that is not alive becomes an extra
  query row at its slot that no other row attends to. The bookkeeping (who is in which segment)
  runs on the host from ``first`` / ``alive`` / ``count``: one device sync per call. About 2-9x
  faster than the step loop on CPU for the presets (T = 16-48).
* **State** (leading ``[N, A]``): ``memory [m, D]`` and ``memory_valid`` (False: the memory is
  the learned ``M_0``; a reset zeroes the state, so ``M_0`` is never stored), ``segment [K, D]``
  (the segment's encoded inputs, zeros in unfilled slots), ``count`` (steps done in the segment,
  int64), and with ``mem_len > 0`` ``cache [L, C, D]`` + ``cache_len``. The rollout stores this
  state at the PPO segment start (like an RNN state) and the update recomputes from it.
* **What is detached.** RATE's trainer ``detach()``es the memory tokens at every memory-segment
  boundary and backpropagates per segment; the loss of segment n then only sees ``M_n`` at the
  *read* positions, so the write positions and the MRV never receive a gradient from any loss
  (read from the trainer loop [inferred]: the memory is written by a transformer and an MRV
  that are trained only for reading).
  Here ``bptt=True`` (default) keeps the graph through the memory tokens across memory-segment
  boundaries inside one PPO segment (RMT-style BPTT, §4): the write path and the MRV are trained
  by the losses of the following memory segments. ``bptt=False`` reproduces RATE: the new memory
  is detached when it is written (the gradient still flows inside a memory segment, through the
  re-forwarded inputs). The XL cache is always detached. Nothing crosses an episode reset
  (the state is zeroed and ``M_0`` used). Across PPO segments the stored state is a constant.
* **Dead agents** (not ``alive``) keep their state; their outputs are computed as if their
  observation were appended at the current slot.

Shared memory (``share_memory``, :mod:`memarl.memory.broadcast`): each step every agent
broadcasts its ``m`` current memory tokens (``M_0`` when not yet written; ``m`` slots per agent)
and reads the tokens of the agents of its env at the core input, ``e' = e + CrossAttn(LN(e),
pool)``, one-step lag; ``e'`` is what enters the segment buffer. ``sequence`` then loops ``step``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memarl.memory import State, keep_dead, reset_first
from memarl.memory.broadcast import SharedMemory, masked_softmax
from memarl.memory.core import MemoryCore

# start of a memory segment inside a ``sequence`` window
_FROM_STATE, _FROM_RESET, _FROM_WRITE = 0, 1, 2


def sinusoid(distances: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-XL position embedding of signed distances ``[P]`` -> ``[P, dim]``
    (``[sin | cos]`` of ``d / 10000^(2i/dim)``, truncated to ``dim`` when ``dim`` is odd)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    angle = distances.to(torch.float64)[:, None] * inv_freq[None]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)[:, :dim]


def _normal(linear: nn.Linear, std: float = 0.02) -> nn.Linear:
    nn.init.normal_(linear.weight, std=std)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


class RelativeLayer(nn.Module):
    """Post-LN Transformer-XL layer with relative positions (RelPartialLearnable)."""

    def __init__(self, d_model: int, num_heads: int, ffn_ratio: int, dropout: float):
        super().__init__()
        assert d_model % num_heads == 0
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.qkv = _normal(nn.Linear(d_model, 3 * d_model, bias=False))
        self.r_net = _normal(nn.Linear(d_model, d_model, bias=False))
        self.out = _normal(nn.Linear(d_model, d_model, bias=False))
        self.r_w_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))    # u
        self.r_r_bias = nn.Parameter(torch.empty(num_heads, self.head_dim))    # v
        nn.init.xavier_uniform_(self.r_w_bias)
        nn.init.xavier_uniform_(self.r_r_bias)
        self.ln_attn = nn.LayerNorm(d_model)
        self.ffn = None
        if ffn_ratio > 0:
            self.ffn = nn.Sequential(_normal(nn.Linear(d_model, ffn_ratio * d_model)), nn.ReLU(),
                                     nn.Dropout(dropout),
                                     _normal(nn.Linear(ffn_ratio * d_model, d_model)))
            self.ln_ffn = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None, allowed: torch.Tensor,
                distance: torch.Tensor, rel: torch.Tensor,
                query_index: torch.Tensor | None) -> torch.Tensor:
        """x ``[B, R, D]`` (layer input), cache ``[B, C, D]`` or None, allowed ``[B, R, C+R]``,
        distance ``[B, R, C+R]`` (index into ``rel``), rel ``[P, D]`` (sinusoids of the
        distances), query_index ``[B, Q]`` or None (all rows) -> ``[B, Q, D]``."""
        b, _, d = x.shape
        h, hd = self.num_heads, self.head_dim
        keys_in = x if cache is None else torch.cat([cache.to(x.dtype), x], dim=1)  # [B, Kc, D]
        kc = keys_in.shape[1]
        xq = x
        if query_index is not None:
            xq = x.gather(1, query_index[..., None].expand(-1, -1, d))            # [B, Q, D]
            allowed = allowed.gather(1, query_index[..., None].expand(-1, -1, kc))
            distance = distance.gather(1, query_index[..., None].expand(-1, -1, kc))
        q_len = xq.shape[1]
        w = self.qkv.weight
        q = F.linear(xq, w[:d]).view(b, q_len, h, hd).transpose(1, 2)            # [B, H, Q, hd]
        kv = F.linear(keys_in, w[d:]).view(b, kc, 2, h, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]                                                       # [B, H, Kc, hd]
        r_k = self.r_net(rel.to(x.dtype)).view(-1, h, hd)                         # [P, H, hd]
        content = (q + self.r_w_bias[:, None]) @ k.transpose(-1, -2)              # [B, H, Q, Kc]
        position = torch.einsum("bhqd,phd->bhqp", q + self.r_r_bias[:, None], r_k)
        position = position.gather(3, distance[:, None].expand(b, h, q_len, kc))  # [B, H, Q, Kc]
        scores = (content + position) / math.sqrt(hd)
        probs = self.drop(masked_softmax(scores, allowed[:, None]))
        attn = self.out((probs @ v).transpose(1, 2).reshape(b, q_len, d))
        y = self.ln_attn(xq + self.drop(attn))
        if self.ffn is not None:
            y = self.ln_ffn(y + self.drop(self.ffn(y)))
        return y


class MemoryRetentionValve(nn.Module):
    """MRV-CA-2: ``M_new = MHA(query = M_old, key = value = ReLU(M~))``, no FFN, no residual."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        assert d_model % num_heads == 0
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        for linear in (self.query, self.key, self.value, self.out):   # torch MHA's init
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self, memory: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """memory ``[B, m, D]`` (old M_n), written ``[B, m, D]`` (M~) -> ``[B, m, D]``."""
        b, m, d = memory.shape
        h, hd = self.num_heads, d // self.num_heads
        source = torch.relu(written)
        q = self.query(memory).view(b, m, h, hd).transpose(1, 2)                  # [B, H, m, hd]
        k = self.key(source).view(b, -1, h, hd).transpose(1, 2)
        v = self.value(source).view(b, -1, h, hd).transpose(1, 2)
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)   # [B, H, m, m]
        return self.out((probs @ v).transpose(1, 2).reshape(b, m, d))


class MemoryTokenCore(MemoryCore):
    """RATE's memory tokens + MRV + optional XL cache, per agent. See the module docstring.

    Args:
        d_model: width D (= encoder output size = feature size).
        num_heads: heads of the self-attention (and of the shared read).
        num_layers: Transformer-XL layers L.
        memory_tokens: m memory tokens per agent.
        segment_len: K env steps per memory segment.
        mrv_heads: heads of the memory retention valve.
        use_mrv: False: ``M_{n+1} = M~`` (no-MRV ablation / RMT).
        mem_len: C, XL-cache length in observation tokens per layer (0 = no cache).
        ffn_ratio: FFN hidden size = ffn_ratio * D; 0 skips the FFN.
        dropout: dropout on the input tokens, attention probabilities and residual branches.
        shared: broadcast options (:class:`~memarl.memory.broadcast.SharedMemoryOptions`) when
            ``shared.share_memory``; None for a private memory.
        bptt: keep the gradient through the memory tokens across memory-segment boundaries.
    """

    def __init__(self, d_model: int, num_heads: int, num_layers: int = 1, memory_tokens: int = 2,
                 segment_len: int = 8, mrv_heads: int = 1, use_mrv: bool = True,
                 mem_len: int = 0, ffn_ratio: int = 4, dropout: float = 0.0, shared=None,
                 bptt: bool = True):
        super().__init__()
        assert d_model % num_heads == 0 and d_model % mrv_heads == 0
        assert num_layers >= 1 and memory_tokens >= 1 and segment_len >= 1 and mem_len >= 0
        self.d_model = self.feature_dim = d_model
        self.num_layers, self.memory_tokens = num_layers, memory_tokens
        self.segment_len, self.mem_len = segment_len, mem_len
        self.bptt = bptt
        m, k, c = memory_tokens, segment_len, mem_len
        self.memory_init = nn.Parameter(torch.randn(m, d_model))                  # M_0 [m, D]
        self.layers = nn.ModuleList(RelativeLayer(d_model, num_heads, ffn_ratio, dropout)
                                    for _ in range(num_layers))
        self.mrv = MemoryRetentionValve(d_model, mrv_heads) if use_mrv else None
        self.drop = nn.Dropout(dropout)
        self.shared = None
        if shared is not None and shared.share_memory:
            self.shared = SharedMemory(d_model, num_heads, d_model, shared, slots=m,
                                       dropout=dropout)
        self._keep = self.shared.persistent_keys if self.shared is not None else ()
        # static layout: positions of the cache / read / slot / write tokens
        self.max_distance = c + 2 * m + k - 1
        rows = torch.arange(2 * m + k)
        self.register_buffer("row_position", rows, persistent=False)              # [2m+K]
        self.register_buffer("cache_position", torch.arange(-c, 0), persistent=False)  # [C]
        # signed distances -P..P (an integer buffer: the sinusoids are made in float64 at use,
        # so that a float64 model is exact)
        span = torch.arange(-self.max_distance, self.max_distance + 1)
        self.register_buffer("span", span, persistent=False)                      # [P]

    # ------------------------------------------------------------------------------------------
    # state

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        n, a, d, m, k = num_envs, num_agents, self.d_model, self.memory_tokens, self.segment_len
        dtype = dtype or self.memory_init.dtype
        device = device if device is not None else self.memory_init.device
        state = {
            "memory": torch.zeros(n, a, m, d, device=device, dtype=dtype),
            "memory_valid": torch.zeros(n, a, dtype=torch.bool, device=device),
            "segment": torch.zeros(n, a, k, d, device=device, dtype=dtype),
            "count": torch.zeros(n, a, dtype=torch.int64, device=device),
        }
        if self.mem_len > 0:
            state["cache"] = torch.zeros(n, a, self.num_layers, self.mem_len, d, device=device,
                                         dtype=dtype)
            state["cache_len"] = torch.zeros(n, a, dtype=torch.int64, device=device)
        if self.shared is not None:
            state.update(self.shared.initial_state(n, a, device, dtype))
        return state

    # ------------------------------------------------------------------------------------------
    # building blocks shared by step and sequence

    def _allowed(self, cache_len: torch.Tensor | None, filled: torch.Tensor,
                 extra_slot: torch.Tensor) -> torch.Tensor:
        """The attention mask ``[B, R, C+R]`` of rows ``[read m | slots K | write m | extra X]``
        over keys ``[cache C | rows]``. cache_len ``[B]`` (valid cache entries, the newest at the
        right), filled ``[B]`` (slots the write rows see), extra_slot ``[B, X]`` (the slot of an
        extra query row: it sees the slots before it and itself)."""
        m, k, c = self.memory_tokens, self.segment_len, self.mem_len
        b, x = extra_slot.shape
        device = filled.device
        slot = torch.arange(k, device=device)
        true = torch.ones((), dtype=torch.bool, device=device)
        false = torch.zeros((), dtype=torch.bool, device=device)

        def group(rows, cache, read, slots, write, extra):
            parts = [cache, read, slots, write, extra]
            widths = [c, m, k, m, x]
            return torch.cat([p.expand(b, rows, w) for p, w in zip(parts, widths)], dim=2)

        if c > 0:
            cache_ok = (torch.arange(c, device=device) >= c - cache_len[:, None])[:, None]
        else:
            cache_ok = torch.zeros(b, 1, 0, dtype=torch.bool, device=device)
        eye_x = torch.eye(x, dtype=torch.bool, device=device)[None]
        read_rows = group(m, false.view(1, 1, 1), true.view(1, 1, 1), false.view(1, 1, 1),
                          false.view(1, 1, 1), false.view(1, 1, 1))
        slot_rows = group(k, cache_ok, true.view(1, 1, 1), (slot[None, :] <= slot[:, None])[None],
                          false.view(1, 1, 1), false.view(1, 1, 1))
        write_rows = group(m, cache_ok, true.view(1, 1, 1), (slot < filled[:, None])[:, None],
                           true.view(1, 1, 1), false.view(1, 1, 1))
        extra_rows = group(x, cache_ok, true.view(1, 1, 1),
                           slot[None, None, :] < extra_slot[:, :, None],
                           false.view(1, 1, 1), eye_x)
        return torch.cat([read_rows, slot_rows, write_rows, extra_rows], dim=1)

    def _distance(self, extra_slot: torch.Tensor) -> torch.Tensor:
        """Index ``[B, R, C+R]`` into ``self.rel`` of the signed distance query - key."""
        b = extra_slot.shape[0]
        m = self.memory_tokens
        rows = torch.cat([self.row_position.expand(b, -1), m + extra_slot], dim=1)    # [B, R]
        keys = torch.cat([self.cache_position.expand(b, -1), rows], dim=1)           # [B, C+R]
        return rows[:, :, None] - keys[:, None, :] + self.max_distance

    def _transform(self, x: torch.Tensor, cache: torch.Tensor | None, allowed: torch.Tensor,
                   distance: torch.Tensor, query_index: torch.Tensor | None
                   ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x ``[B, R, D]`` -> last-layer outputs ``[B, Q, D]`` and the input of every layer
        ``[B, R, D]`` (for the XL cache)."""
        x = self.drop(x)
        rel = sinusoid(self.span, self.d_model).to(x.dtype)                       # [P, D]
        inputs = []
        for index, layer in enumerate(self.layers):
            inputs.append(x)
            last = index == len(self.layers) - 1
            x = layer(x, None if cache is None else cache[:, index], allowed, distance, rel,
                      query_index if last else None)
        return x, inputs

    def _write(self, memory: torch.Tensor, written: torch.Tensor) -> torch.Tensor:
        """The new memory ``[B, m, D]`` from the old one and the write outputs ``M~``."""
        new = self.mrv(memory, written) if self.mrv is not None else written
        return new if self.bptt else new.detach()

    def _update_cache(self, cache: torch.Tensor, cache_len: torch.Tensor,
                      inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the segment's slot tokens (layer inputs) to the cache, keep the last C;
        stop-gradient. cache ``[B, L, C, D]``, cache_len ``[B]``."""
        m, k, c = self.memory_tokens, self.segment_len, self.mem_len
        slots = torch.stack([h[:, m:m + k] for h in inputs], dim=1).detach()         # [B, L, K, D]
        new = torch.cat([cache, slots.to(cache.dtype)], dim=2)[:, :, -c:]
        return new, (cache_len.clamp(0, c) + k).clamp(max=c)

    def _memory(self, raw: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The memory in use ``[B, m, D]``: the stored tokens where valid, ``M_0`` elsewhere."""
        return torch.where(valid[:, None, None], raw, self.memory_init.to(raw.dtype))

    def _summary(self, raw: torch.Tensor, valid: torch.Tensor, n: int, a: int) -> torch.Tensor:
        return self._memory(raw.reshape(n * a, *raw.shape[2:]),
                            valid.reshape(n * a)).view(n, a, self.memory_tokens, self.d_model)

    # ------------------------------------------------------------------------------------------
    # step

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` -> features ``[N, A, D]``, state."""
        n, a, d = e.shape
        b, m, k, c = n * a, self.memory_tokens, self.segment_len, self.mem_len
        state = reset_first(first, state, self._keep)
        if self.shared is not None:
            e = self.shared.read_into(e, state, alive, positions)                   # [N, A, D]
        buffer = state["segment"].reshape(b, k, d)
        dtype = buffer.dtype
        count = state["count"].reshape(b).clamp(0, k - 1)                         # slot c [B]
        slot = torch.arange(k, device=e.device)
        slots = torch.where((slot == count[:, None])[..., None], e.reshape(b, 1, d).to(dtype),
                            torch.where((slot < count[:, None])[..., None], buffer,
                                        torch.zeros((), dtype=dtype, device=e.device)))
        raw, valid = state["memory"].reshape(b, m, d), state["memory_valid"].reshape(b)
        memory = self._memory(raw, valid)                                         # [B, m, D]
        cache = cache_len = None
        if c > 0:
            cache = state["cache"].reshape(b, self.num_layers, c, d)
            cache_len = state["cache_len"].reshape(b)
        no_extra = torch.zeros(b, 0, dtype=torch.int64, device=e.device)
        allowed = self._allowed(None if c == 0 else cache_len.clamp(0, c), count + 1, no_extra)
        distance = self._distance(no_extra)
        query_index = torch.cat([(m + count)[:, None],
                                 torch.arange(m + k, 2 * m + k, device=e.device).expand(b, m)], 1)
        x = torch.cat([memory, slots, memory], dim=1)                             # [B, 2m+K, D]
        y, inputs = self._transform(x, cache, allowed, distance, query_index)     # [B, 1+m, D]
        features = y[:, 0]                                                        # [B, D]
        done = count == k - 1                                                     # segment ends
        new_memory = self._write(memory, y[:, 1:])                                # [B, m, D]
        zero = torch.zeros((), dtype=dtype, device=e.device)
        new: State = {
            "memory": torch.where(done[:, None, None], new_memory.to(dtype), raw).view(n, a, m, d),
            "memory_valid": (valid | done).view(n, a),
            "segment": torch.where(done[:, None, None], zero, slots).view(n, a, k, d),
            "count": torch.where(done, 0, count + 1).view(n, a),
        }
        if c > 0:
            new_cache, new_len = self._update_cache(cache, cache_len, inputs)
            new["cache"] = torch.where(done[:, None, None, None], new_cache,
                                       cache).view(n, a, self.num_layers, c, d)
            new["cache_len"] = torch.where(done, new_len, cache_len).view(n, a)
        new = keep_dead(alive, new, {key: state[key] for key in new})
        if self.shared is not None:
            summary = self._summary(new["memory"], new["memory_valid"], n, a)       # [N, A, m, D]
            ones = torch.ones(n, a, dtype=torch.bool, device=e.device)
            new.update(self.shared.write(summary, ones, state, alive))
        return features.view(n, a, d), new

    # ------------------------------------------------------------------------------------------
    # sequence

    def sequence(self, e: torch.Tensor, state0: State, first: torch.Tensor, alive: torch.Tensor,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[T, N, A, D]`` -> features ``[T, N, A, D]``, final state; equal to ``step`` x T.

        Without shared memory every memory segment of every agent is processed in one forward
        (stage ``j`` = the ``j``-th memory segment of each agent inside the window; the stages
        run in order because segment ``j+1`` reads the memory that ``j`` writes). With shared
        memory the read at step t depends on the other agents' step t-1: loop ``step``."""
        if self.shared is not None:
            state, features = state0, []
            for t in range(e.shape[0]):
                f, state = self.step(e[t], state, first[t], alive[t],
                                     None if positions is None else positions[t])
                features.append(f)
            return torch.stack(features), state
        return self._sequence_by_segments(e, state0, first, alive)

    def _plan(self, first: np.ndarray, alive: np.ndarray, count0: np.ndarray) -> dict:
        """Host-side bookkeeping of the memory segments of a window (first / alive ``[T, B]``)."""
        t_len, b = first.shape
        m, k = self.memory_tokens, self.segment_len
        # instances start at a reset or after a write: at most 1 + resets + completions
        cap = 1 + int((first.sum(0) + alive.sum(0) // k + 1).max(initial=0))
        dead_max = max(1, int((~alive).sum(0).max(initial=0)))
        agents = np.arange(b)
        inst = np.zeros(b, dtype=np.int64)            # current memory segment ("instance")
        used = np.zeros(b, dtype=bool)                # it has a step already
        count = np.clip(count0, 0, k - 1)
        kind = np.full((cap, b), _FROM_RESET, dtype=np.int64)
        kind[0] = _FROM_STATE
        slot_step = np.full((cap, b, k), -1, dtype=np.int64)
        extra_step = np.full((cap, b, dead_max), -1, dtype=np.int64)
        extra_slot = np.zeros((cap, b, dead_max), dtype=np.int64)
        n_extra = np.zeros((cap, b), dtype=np.int64)
        filled = np.zeros((cap, b), dtype=np.int64)
        filled[0] = count
        step_inst = np.zeros((t_len, b), dtype=np.int64)
        step_row = np.zeros((t_len, b), dtype=np.int64)
        touched = np.zeros(b, dtype=bool)
        for t in range(t_len):
            f, al = first[t], alive[t]
            inst = inst + (f & used)
            kind[inst[f], agents[f]] = _FROM_RESET
            filled[inst[f], agents[f]] = 0
            count = np.where(f, 0, count)
            j = inst
            live, dead = agents[al], agents[~al]
            slot_step[j[al], live, count[al]] = t
            filled[j[al], live] = count[al] + 1
            x = n_extra[j[~al], dead]
            extra_step[j[~al], dead, x] = t
            extra_slot[j[~al], dead, x] = count[~al]
            n_extra[j[~al], dead] = x + 1
            row = np.full(b, 0, dtype=np.int64)
            row[al] = m + count[al]
            row[~al] = 2 * m + k + x
            step_inst[t], step_row[t] = j, row
            used[:] = True
            touched |= f | al
            done = al & (count == k - 1)
            count = np.where(al, np.where(done, 0, count + 1), count)
            inst = inst + done
            used[done] = False
            kind[inst[done], agents[done]] = _FROM_WRITE
        stages = int(inst.max()) + 1
        return {"stages": stages, "kind": kind[:stages], "slot_step": slot_step[:stages],
                "extra_step": extra_step[:stages], "extra_slot": extra_slot[:stages],
                "n_extra": n_extra[:stages], "filled": filled[:stages], "step_inst": step_inst,
                "step_row": step_row, "final_inst": inst, "final_count": count,
                "touched": touched}

    def _sequence_by_segments(self, e: torch.Tensor, state0: State, first: torch.Tensor,
                              alive: torch.Tensor) -> tuple[torch.Tensor, State]:
        t_len, n, a, d = e.shape
        b, m, k, c, L = n * a, self.memory_tokens, self.segment_len, self.mem_len, self.num_layers
        device = e.device
        dtype = state0["segment"].dtype
        plan = self._plan(first.reshape(t_len, b).cpu().numpy(),
                          alive.reshape(t_len, b).cpu().numpy(),
                          state0["count"].reshape(b).cpu().numpy())

        def tensor(key):
            return torch.as_tensor(plan[key], device=device)

        kind, slot_step, filled = tensor("kind"), tensor("slot_step"), tensor("filled")
        extra_step, extra_slots = tensor("extra_step"), tensor("extra_slot")
        e_flat = e.reshape(t_len, b, d).to(dtype)                                  # [T, B, D]
        agents = torch.arange(b, device=device)
        slot = torch.arange(k, device=device)
        zero = torch.zeros((), dtype=dtype, device=device)

        raw0 = state0["memory"].reshape(b, m, d)
        valid0 = state0["memory_valid"].reshape(b)
        count0 = state0["count"].reshape(b).clamp(0, k - 1)
        buffer0 = torch.where((slot < count0[:, None])[..., None],
                              state0["segment"].reshape(b, k, d), zero)
        cache0 = len0 = None
        if c > 0:
            cache0 = state0["cache"].reshape(b, L, c, d)
            len0 = state0["cache_len"].reshape(b)

        stage_raw, stage_valid, stage_slots, stage_cache, stage_len = ([] for _ in range(5))
        # the outputs each step needs: (flat index t*B + b, values [n_j, D]) per stage
        picked_index, picked = [], []
        prev_memory = prev_cache = prev_len = None
        for j in range(plan["stages"]):
            kj = kind[j]
            from_state, from_write = kj == _FROM_STATE, kj == _FROM_WRITE
            # memory at the segment start: stored tokens, M_0 after a reset, or the MRV output
            raw = torch.where(from_state[:, None, None], raw0, zero)
            valid = from_state & valid0
            if prev_memory is not None:
                raw = torch.where(from_write[:, None, None], prev_memory.to(dtype), raw)
                valid = valid | from_write
            memory = self._memory(raw, valid)                                     # [B, m, D]
            cache = cache_len = None
            if c > 0:
                cache = torch.where(from_state[:, None, None, None], cache0, zero)
                cache_len = torch.where(from_state, len0, 0)
                if prev_cache is not None:
                    cache = torch.where(from_write[:, None, None, None], prev_cache, cache)
                    cache_len = torch.where(from_write, prev_len, cache_len)
            # the segment's slot tokens: this window's alive steps, the stored ones before them
            step_index = slot_step[j]                                             # [B, K]
            gathered = e_flat[step_index.clamp(min=0), agents[:, None]]           # [B, K, D]
            base = torch.where(from_state[:, None, None], buffer0, zero)
            slots = torch.where((step_index >= 0)[..., None], gathered, base)     # [B, K, D]
            stage_raw.append(raw)
            stage_valid.append(valid)
            stage_slots.append(slots)
            stage_cache.append(cache)
            stage_len.append(cache_len)
            n_extra = int(plan["n_extra"][j].max(initial=0))
            has_queries = bool((plan["slot_step"][j] >= 0).any()) or n_extra > 0
            if not has_queries:     # an empty last segment (after a write or a reset): no forward
                prev_memory = prev_cache = prev_len = None
                continue
            extra_index = extra_step[j, :, :n_extra]                              # [B, X]
            extra_slot = extra_slots[j, :, :n_extra]
            extras = e_flat[extra_index.clamp(min=0), agents[:, None]]            # [B, X, D]
            x = torch.cat([memory, slots, memory, extras], dim=1)                 # [B, R, D]
            allowed = self._allowed(None if c == 0 else cache_len.clamp(0, c), filled[j],
                                    extra_slot)
            y, inputs = self._transform(x, cache, allowed, self._distance(extra_slot), None)
            t_sel, b_sel = np.nonzero(plan["step_inst"] == j)
            row_sel = plan["step_row"][t_sel, b_sel]
            picked_index.append(t_sel * b + b_sel)
            picked.append(y[torch.as_tensor(b_sel, device=device),
                            torch.as_tensor(row_sel, device=device)])            # [n_j, D]
            prev_memory = self._write(memory, y[:, m + k:2 * m + k])
            if c > 0:
                prev_cache, prev_len = self._update_cache(cache, cache_len, inputs)

        order = torch.as_tensor(np.argsort(np.concatenate(picked_index)), device=device)
        features = torch.cat(picked)[order]                                       # [T*B, D]

        final = tensor("final_inst")
        final_count = tensor("final_count")
        slots = torch.stack(stage_slots)[final, agents]                           # [B, K, D]
        new: State = {
            "memory": torch.stack(stage_raw)[final, agents],
            "memory_valid": torch.stack(stage_valid)[final, agents],
            "segment": torch.where((slot < final_count[:, None])[..., None], slots, zero),
            "count": final_count,
        }
        if c > 0:
            new["cache"] = torch.stack(stage_cache)[final, agents]
            new["cache_len"] = torch.stack(stage_len)[final, agents]
        touched = tensor("touched")
        new = keep_dead(touched, new, {key: state0[key].reshape(b, *state0[key].shape[2:])
                                        for key in new})
        return features.view(t_len, n, a, d), {key: value.view(n, a, *value.shape[1:])
                                               for key, value in new.items()}
