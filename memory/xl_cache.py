"""GTrXL core: gated pre-LN Transformer-XL with a K/V cache of the last M steps per layer
(reference/memory_agents.md §2, Parisotto et al. 2020, "Stabilizing Transformers for RL").

Block ``l`` (paper eq. 10 and 14; identity-map reordering: LayerNorm only on the input of a
sub-module, ReLU on its output, a gate instead of the residual addition)::

    Ȳ   = RelMHA( LN([StopGrad(M^{l-1}), E^{l-1}]) )
    Y   = g_MHA( E^{l-1}, ReLU(Ȳ) )
    Ē   = MLP( LN(Y) )                        Linear(D, mlp_ratio D) -> ReLU -> Linear(-> D)
    E^l = g_MLP( Y, ReLU(Ē) )

GRU-type gate, ``x`` = residual stream, ``y`` = sub-module output (six D x D matrices, no biases
but ``b_g``, which starts at ``gate_bias = 2``: z ~ σ(-2) ~ 0.12, near-identity blocks)::

    r = σ(W_r y + U_r x)
    z = σ(W_z y + U_z x - b_g)
    ĥ = tanh(W_g y + U_g (r ⊙ x))             the reset is applied BEFORE U_g
    g(x, y) = (1 - z) ⊙ x + z ⊙ ĥ

Relative multi-head attention (Transformer-XL), per head, query step i, key step j::

    A_ij = (q_i + u)·k_j + (q_i + v)·W_R R_{i-j},   scaled by 1/sqrt(d_h), masked softmax
    q, k, v = W_q, W_k, W_v LN(h)    (no biases: u, v play that role; u, v, W_R per layer)
    R_d = [sin(d ω), cos(d ω)],  ω_m = 10000^(-2m/D)   (sinusoidal, not learned; a buffer)

The features given to the heads are ``E^L`` of the current step (no final LayerNorm: the paper's
reordering keeps the output stream un-normalised).

Memory: a cache of keys and values, not of layer inputs
--------------------------------------------------------
``M^{l-1}`` enters the attention only through ``W_k LN(.)`` and ``W_v LN(.)``; the position term
does not depend on the key's content. So the core caches each layer's K and V (``[H, d_h]`` per
step) instead of the layer inputs the paper/DI-engine/MarcoMeter cache: a step projects only
its own token, instead of re-projecting all M cached inputs (≈ 4·M·D² FLOPs per layer saved).
The cache is a ring buffer of the last ``M = memory_len`` written steps per agent and layer.

Window: at every step the query attends to the (at most) M cached steps plus itself, i.e. to
relative distances 0..M. Distances count the agent's own *alive* steps: an agent that is not
alive still computes outputs (attending to its cache and its current token at distance 0) but
writes nothing and does not advance; an episode reset (``first``) invalidates every slot. The
receptive field of an L-layer stack is therefore L·M alive steps (layer l's key at step j was
computed from a layer-(l-1) window ending at j); nothing older can influence an output
(without shared memory: the shared read of the agent's own last features is a recurrence).

State (leading ``[N, A]``):

* ``keys``, ``values`` ``[N, A, L, M, H, d_h]`` -- the ring buffer (slot ``cursor`` is written
  next; zeros after a reset);
* ``valid [N, A, M]`` bool -- the slot holds a step of the current episode;
* ``cursor [N, A]`` int64 -- the next slot to write; slot ``j`` holds the step written
  ``((cursor - 1 - j) mod M) + 1`` alive steps before the current one;
* with ``share_memory``, the broadcast channel's entries (:mod:`memarl.memory.broadcast`).

Zeroing all entries of an agent is exactly its reset (``first``).

``sequence``: the parallel form over a segment
----------------------------------------------
All T queries at once, over the keys ``[cache at segment start (M slots), segment steps (T)]``
with one mask per agent built from ``first`` and ``alive``::

    ep_t  = number of resets in steps 0..t            (0 = the episode of the state0 cache)
    rel_t = alive steps since the last reset (or the segment start) before step t
    cache slot j : allowed iff valid_j and ep_t = 0 and rel_t + age_j <= M;  distance rel_t + age_j
    segment s    : allowed iff s = t, or s < t and alive_s and ep_s = ep_t and rel_t - rel_s <= M;
                   distance rel_t - rel_s

which is exactly the set of keys the ring buffer holds when stepping. ``step`` is this same
computation with T = 1 (one code path), and the final state (ring contents, validity, cursor) is
gathered from the last M writes of the last episode in the segment. With ``share_memory`` the
read at step t depends on the other agents' step t-1 through the whole stack, so ``sequence``
falls back to the step loop. Cost: the scores are ``[B, H, T, M+T]`` per layer (all T queries
against the M cached slots and the whole segment, masked), i.e. O(T·(M+T)) instead of the step
loop's O(T·M); T is a rollout segment (tens of steps), so this stays small.

Gradient semantics (online PPO)
-------------------------------
* The cache entering ``sequence`` (``state0``) is stop-gradient (the paper's StopGrad(M)), and
  so is the state ``sequence`` starts its step loop from with shared memory.
* Inside a segment, ``bptt=True`` (default) lets the gradient of a query reach the keys and
  values of earlier steps of the same episode in the same segment (Transformer-XL's
  segment-level training; ``step`` x T with the graph kept gives the same gradients).
  ``bptt=False`` makes every key/value except the query's own step stop-gradient (the
  sequence-to-one training of MarcoMeter / CleanRL ``ppo_trxl``; the default step loop detaches
  the state before every step, which is the same).
* No gradient crosses an episode boundary: keys of an earlier episode are masked out (exactly
  zero probability, ``masked_fill`` blocks the score gradient) and the cache is zeroed.

Staleness: the K, V stored in the acting cache were computed by the weights that acted. The
learner uses a segment's ``state0`` as stored, like an RNN hidden state (the K, V of the M steps
before the segment are those of the acting weights, possibly a few updates old); everything
inside the segment is recomputed with the current weights. The acting cache is not rebuilt when
new weights arrive: stale entries leave the window after M alive steps or at the episode's end.

Decisions where the paper and the released code differ
------------------------------------------------------
* Cache K, V per layer (not layer inputs, §2.3/2.5); window = last M steps + the current one
  (the paper's segment + memory of T_mem is replaced by a sliding window so that ``step`` x T
  equals ``sequence`` exactly; a single-step query always sees exactly M previous steps).
* Episode masks on the cache (the JAX port in subho406/agalite); MarcoMeter zeroes the episode
  memory at episode end, RLlib does not mask at all.
* GRU gate with U_g(r ⊙ x) (the paper; not Metta's reset-after-projection "fused" gate);
  b_g initialised to ``gate_bias`` = 2; gate matrices Xavier-uniform (RLlib), attention and MLP
  projections N(0, 0.02) (Transformer-XL's ``init_std``), u, v ~ N(0, 0.02).
* Per-layer u, v and W_R (Transformer-XL ``untie_r=True``); no dropout (online RL).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from memarl.memory import State, reset_first
from memarl.memory.broadcast import SharedMemory, gpt2_init, masked_softmax
from memarl.memory.core import MemoryCore
from memarl.memory.gates import GRUGate

CORE_KEYS = ("keys", "values", "valid", "cursor")
"""the state entries of the cache (the shared channel adds its own)"""


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """``R [length, dim]`` float64: row d = [sin(d ω), cos(d ω)] (Transformer-XL layout),
    ω_m = 10000^(-2m/dim); an odd ``dim`` drops the last cosine."""
    half = (dim + 1) // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 2 * half, 2, dtype=torch.float64) / dim))
    angle = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None]  # [len, half]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)[:, :dim]


class GTrXLLayer(nn.Module):
    """One gated block: relative MHA over [cache, segment] + GRU gate, MLP + GRU gate."""

    def __init__(self, d_model: int, num_heads: int, mlp_ratio: int, gate_bias: float):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.ln_attn = nn.LayerNorm(d_model)
        self.qkv = gpt2_init(nn.Linear(d_model, 3 * d_model, bias=False))
        self.r_proj = gpt2_init(nn.Linear(d_model, d_model, bias=False))       # W_R
        self.pos_bias_u = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.02)
        self.pos_bias_v = nn.Parameter(torch.randn(num_heads, self.head_dim) * 0.02)
        self.out = gpt2_init(nn.Linear(d_model, d_model, bias=False))
        self.gate_attn = GRUGate(d_model, gate_bias)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp_in = gpt2_init(nn.Linear(d_model, mlp_ratio * d_model))
        self.mlp_out = gpt2_init(nn.Linear(mlp_ratio * d_model, d_model))
        self.gate_mlp = GRUGate(d_model, gate_bias)

    def forward(self, x: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                distance: torch.Tensor, allowed: torch.Tensor, table: torch.Tensor,
                bptt: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x ``[T, B, D]``, cache_k / cache_v ``[B, M, H, d_h]`` (stop-gradient or not: the
        caller decides), distance ``[B, T, M+T]`` int64 in 0..M, allowed ``[B, T, M+T]`` bool,
        table ``R [M+1, D]`` -> new x ``[T, B, D]`` and this layer's k, v ``[T, B, H, d_h]``."""
        t_len, b, d = x.shape
        nh, hd = self.num_heads, self.head_dim
        m = cache_k.shape[1]
        q, k, v = self.qkv(self.ln_attn(x)).view(t_len, b, 3, nh, hd).unbind(2)  # [T, B, H, hd]
        qh = q.permute(1, 2, 0, 3)                                             # [B, H, T, hd]
        kh, vh = k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3)                  # [B, H, T, hd]
        ck = cache_k.to(kh.dtype).transpose(1, 2)                              # [B, H, M, hd]
        cv = cache_v.to(vh.dtype).transpose(1, 2)
        q_u = qh + self.pos_bias_u[:, None].to(qh.dtype)                       # [B, H, T, hd]
        q_v = qh + self.pos_bias_v[:, None].to(qh.dtype)
        detach_others = not bptt and t_len > 1
        ks, vs = (kh.detach(), vh.detach()) if detach_others else (kh, vh)
        content = torch.cat([q_u @ ck.transpose(-1, -2), q_u @ ks.transpose(-1, -2)],
                            dim=-1)                                            # [B, H, T, M+T]
        if detach_others:   # the query's own key keeps its gradient: + exactly 0 in the forward
            own = (q_u * (kh - ks)).sum(-1)                                    # [B, H, T]
            content = content + F.pad(torch.diag_embed(own), (m, 0))
        r = self.r_proj(table.to(x.dtype)).view(-1, nh, hd).transpose(0, 1)    # [H, M+1, hd]
        position = q_v @ r.transpose(-1, -2)                                   # [B, H, T, M+1]
        index = distance[:, None].expand(b, nh, t_len, distance.shape[-1])
        position = position.gather(-1, index)                                  # [B, H, T, M+T]
        scores = (content + position) * (1.0 / math.sqrt(hd))
        probs = masked_softmax(scores, allowed[:, None])                       # [B, H, T, M+T]
        attended = probs[..., :m] @ cv + probs[..., m:] @ vs                   # [B, H, T, hd]
        if detach_others:
            own_p = torch.diagonal(probs[..., m:], dim1=-2, dim2=-1)           # [B, H, T]
            attended = attended + own_p[..., None] * (vh - vs)
        attended = attended.permute(2, 0, 1, 3).reshape(t_len, b, d)           # [T, B, D]
        y = self.gate_attn(x, torch.relu(self.out(attended)))                  # [T, B, D]
        mlp = self.mlp_out(torch.relu(self.mlp_in(self.ln_mlp(y))))
        return self.gate_mlp(y, torch.relu(mlp)), k, v


class XLCacheCore(MemoryCore):
    """GTrXL over a per-agent K/V ring buffer of ``memory_len`` steps. See the module docstring.

    Args:
        d_model: width D (= encoder output size = feature size).
        num_heads: attention heads H (D must be divisible by it); also the shared read's.
        num_layers: gated blocks L.
        memory_len: M, cached steps per layer (the window is M steps + the current one).
        mlp_ratio: MLP hidden width = mlp_ratio * D.
        gate_bias: initial b_g of every gate (2 in the paper).
        shared: broadcast options (:class:`~memarl.memory.broadcast.SharedMemoryOptions`); with
            ``shared.share_memory`` the input first reads the other agents' summaries (their
            last features ``E^L``, one-step lag) and ``sequence`` loops ``step``.
        bptt: in ``sequence``, gradients reach earlier steps' keys/values of the same segment.
    """

    def __init__(self, d_model: int, num_heads: int, num_layers: int, memory_len: int,
                 mlp_ratio: int = 4, gate_bias: float = 2.0, shared=None, bptt: bool = True):
        super().__init__()
        assert d_model % num_heads == 0 and num_layers >= 1 and memory_len >= 1
        self.d_model = self.feature_dim = d_model
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.num_layers, self.memory_len = num_layers, memory_len
        self.bptt = bptt
        self.layers = nn.ModuleList(GTrXLLayer(d_model, num_heads, mlp_ratio, gate_bias)
                                    for _ in range(num_layers))
        # float64 (cast at use): a float64 model gets the exact sinusoid
        self.register_buffer("table", sinusoid_table(memory_len + 1, d_model),
                             persistent=False)                                 # [M+1, D]
        self.shared = None
        if shared is not None and shared.share_memory:
            self.shared = SharedMemory(d_model, num_heads, d_model, shared)

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        weight = self.layers[0].qkv.weight
        device = device if device is not None else weight.device
        dtype = dtype or weight.dtype
        n, a, m = num_envs, num_agents, self.memory_len
        cache = (n, a, self.num_layers, m, self.num_heads, self.head_dim)
        state = {"keys": torch.zeros(cache, device=device, dtype=dtype),
                 "values": torch.zeros(cache, device=device, dtype=dtype),
                 "valid": torch.zeros(n, a, m, dtype=torch.bool, device=device),
                 "cursor": torch.zeros(n, a, dtype=torch.int64, device=device)}
        if self.shared is not None:
            state.update(self.shared.initial_state(n, a, device, dtype))
        return state

    # -----------------------------------------------------------------------------------------

    def _window(self, first: torch.Tensor, alive: torch.Tensor, valid0: torch.Tensor,
                cursor0: torch.Tensor):
        """Masks and distances of the parallel form (module docstring). first / alive
        ``[T, B]``, valid0 ``[B, M]``, cursor0 ``[B]`` -> distance ``[B, T, M+T]`` (clamped to
        0..M), allowed ``[B, T, M+T]``, and what the final state needs."""
        t_len, b = first.shape
        m = self.memory_len
        device = first.device
        steps = torch.arange(t_len, device=device)
        episode = first.long().cumsum(0)                                       # [T, B]
        written = torch.cumsum(alive.long(), 0)                                # [T, B] incl.
        before = written - alive.long()                                        # [T, B] excl.
        at_reset = torch.cummax(torch.where(first, before, torch.zeros_like(before)), 0).values
        rel = before - at_reset                                                # [T, B]
        age = torch.remainder(cursor0[:, None] - 1 - torch.arange(m, device=device), m) + 1
        rel_b = rel.t()                                                        # [B, T]
        cache_distance = rel_b[:, :, None] + age[:, None, :]                   # [B, T, M]
        cache_allowed = (valid0[:, None, :] & (episode.t() == 0)[:, :, None]
                         & (cache_distance <= m))
        seg_distance = rel_b[:, :, None] - rel_b[:, None, :]                   # [B, Tq, Tk]
        earlier = steps[None, :, None] > steps[None, None, :]                  # [1, Tq, Tk]
        same_episode = episode.t()[:, :, None] == episode.t()[:, None, :]
        seg_allowed = (earlier & alive.t()[:, None, :] & same_episode & (seg_distance <= m)) \
            | torch.eye(t_len, dtype=torch.bool, device=device)[None]
        distance = torch.cat([cache_distance, seg_distance], dim=-1).clamp(0, m)
        allowed = torch.cat([cache_allowed, seg_allowed], dim=-1)
        return distance, allowed, rel, episode, written[-1] - at_reset[-1]

    def _run(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             stop_cache: bool) -> tuple[torch.Tensor, State]:
        """e ``[T, N, A, D]``, first / alive ``[T, N, A]`` -> features ``[T, N, A, D]`` and the
        cache entries of the state after step T-1 (the parallel form; ``step`` is T = 1)."""
        t_len, n, a, d = e.shape
        b, m, nl = n * a, self.memory_len, self.num_layers
        first, alive = first.reshape(t_len, b), alive.reshape(t_len, b)
        keys0 = state["keys"].reshape(b, nl, m, self.num_heads, self.head_dim)
        values0 = state["values"].reshape(b, nl, m, self.num_heads, self.head_dim)
        valid0, cursor0 = state["valid"].reshape(b, m), state["cursor"].reshape(b)
        if stop_cache:
            keys0, values0 = keys0.detach(), values0.detach()
        distance, allowed, rel, episode, rel_end = self._window(first, alive, valid0, cursor0)

        x = e.reshape(t_len, b, d)
        new_k, new_v = [], []
        for index, layer in enumerate(self.layers):
            x, k, v = layer(x, keys0[:, index], values0[:, index], distance, allowed,
                            self.table, self.bptt)
            new_k.append(k)
            new_v.append(v)                                                    # [T, B, H, hd]
        features = x.view(t_len, n, a, d)

        # Final ring: the last M writes of the last episode, slot (base + rel_s) mod M.
        reset = first.any(0)                                                   # [B]
        base = torch.where(reset, torch.zeros_like(cursor0), cursor0)
        keep = alive & (episode == episode[-1]) & (rel >= rel_end - m)         # [T, B]
        slot = torch.remainder(base + rel, m)                                  # [T, B]
        hit = keep[..., None] & (slot[..., None] == torch.arange(m, device=e.device))  # [T,B,M]
        wrote = hit.any(0)                                                     # [B, M]
        source = (hit.long() * torch.arange(t_len, device=e.device)[:, None, None]).sum(0)
        rows = torch.arange(b, device=e.device)[:, None]
        result = {}
        for name, seg, old in (("keys", new_k, keys0), ("values", new_v, values0)):
            seg = torch.stack(seg, dim=2).transpose(0, 1)                      # [B, T, L, H, hd]
            picked = seg[rows, source].transpose(1, 2).to(old.dtype)           # [B, L, M, H, hd]
            old = torch.where(reset.view(b, 1, 1, 1, 1), torch.zeros_like(old), old)
            result[name] = torch.where(wrote.view(b, 1, m, 1, 1), picked, old).view(
                n, a, nl, m, self.num_heads, self.head_dim)
        result["valid"] = ((valid0 & ~reset[:, None]) | wrote).view(n, a, m)
        result["cursor"] = torch.remainder(base + rel_end, m).view(n, a)
        return features, result

    # -----------------------------------------------------------------------------------------

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` -> features ``[N, A, D]``, state."""
        if self.shared is not None:
            channel = {key: value for key, value in state.items() if key not in CORE_KEYS}
            channel = reset_first(first, channel, self.shared.persistent_keys)
            e = self.shared.read_into(e, channel, alive, positions)           # [N, A, D]
        features, new = self._run(e[None], state, first[None], alive[None], stop_cache=False)
        features = features[0]                                                 # [N, A, D]
        if self.shared is not None:
            valid = torch.ones(first.shape, dtype=torch.bool, device=e.device)
            new.update(self.shared.write(features, valid, channel, alive))
        return features, new

    def sequence(self, e: torch.Tensor, state0: State, first: torch.Tensor, alive: torch.Tensor,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[T, N, A, D]``, first / alive ``[T, N, A]`` -> features ``[T, N, A, D]``, final
        state. The parallel form, or the step loop with shared memory; ``state0`` is
        stop-gradient either way."""
        if self.shared is not None:
            state0 = {key: value.detach() for key, value in state0.items()}
            return super().sequence(e, state0, first, alive, positions)
        return self._run(e, state0, first, alive, stop_cache=True)
