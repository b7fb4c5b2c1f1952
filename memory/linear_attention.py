"""Recurrent linear transformers: GaLiTe (exact) and AGaLiTe (approximate) memory cores.

Pramanik, Elelimy, Machado, White, "AGaLiTe: Approximate Gated Linear Transformers for Online
RL" (TMLR 2024, arXiv 2310.15719; v1 "Recurrent Linear Transformers", ReLiT / AReLiT);
reference/memory_agents.md §3. Reimplemented from the equations there, no code copied.

Block (per layer; GTrXL's block with the attention replaced by the recurrence)::

    x^0  = ReLU(W_emb e + b)                       Dense + ReLU embedding of the core input
    Ȳ    = W_O concat_h(a_h)(LN(x^{l-1}))          a_h: the recurrence of head h (below)
    Y    = g1(x^{l-1}, ReLU(Ȳ))                    GRU-type gate
    Ē    = W_2 ReLU(W_1 LN(Y))                     FFN of width d_ffc
    x^l  = g2(Y, ReLU(Ē))
    features = x^L                                 -> actor / critic heads

    GRU-type gate g(x, y) (x = residual stream, y = sub-module output), six D x D matrices:
        r = σ(W_r y + U_r x),  z = σ(W_z y + U_z x − b_g),  ĥ = tanh(W_g y + U_g (r ⊙ x))
        g = (1 − z) ⊙ x + z ⊙ ĥ                    b_g learnable, initialised to 2 (reset r is
                                                   applied before U_g)

Per head (head dim d_h, feature factor η, d_k = η·d_h), from h = LN(x) and with
``outer(a, b) = flatten(a ⊗ b)``::

    k = outer(ReLU(W_p1 h), ReLU(W_K h))           [d_k]
    q = outer(ReLU(W_p2 h), ReLU(W_Q h))           [d_k]
    v = W_V h                                      [d_h]
    β = σ(W_β h)                                   [d_h]
    γ = outer(σ(W_p3 h), σ(W_γ h))                 [d_k]

GaLiTe, ``decay_form="separable"`` (the paper's form, the default)::

    C_t = ((1 − β_t) ⊗ (1 − γ_t)) ⊙ C_{t−1} + (β_t ⊙ v_t) ⊗ (γ_t ⊙ k_t)
    s_t = (1 − γ_t) ⊙ s_{t−1} + γ_t ⊙ k_t
    a_t = C_t q_t / (s_t · q_t + ε)

GaLiTe, ``decay_form="coupled"`` (the released ``galite.py`` rule ``projected_sigmoid``)::

    C_t = (1 − β_t ⊗ γ_t) ⊙ C_{t−1} + (β_t ⊙ v_t) ⊗ (γ_t ⊙ k_t)      (s_t, a_t as above)

AGaLiTe (r cosine terms, ω_i = 2π i / r, i = 0 .. r−1, τ_t the agent's episode tick)::

    ṽ^i_t = cos(ω_i τ_t) (β_t ⊙ v_t) + (1 − β_t) ⊙ ṽ^i_{t−1}
    k̃^i_t = cos(ω_i τ_t) (γ_t ⊙ k_t) + (1 − γ_t) ⊙ k̃^i_{t−1}
    s_t   = γ_t ⊙ k_t + (1 − γ_t) ⊙ s_{t−1}
    a_t   = Σ_i ṽ^i_t (k̃^i_t · q_t) / (r (s_t · q_t) + ε),              ε = 1e-5

Decisions where the paper and the released code differ (memory_agents.md §3.4):

1. **GaLiTe decay form**: the paper's separable ``(1 − β) ⊗ (1 − γ)`` by default; it is a
   two-sided gated linear attention (key gate ``gk = log(1 − γ)``, value gate
   ``gv = log(1 − β)``) and has the chunked parallel form below, which GLA kernels implement
   (kernels.md §2.5). The released code's ``(1 − β ⊗ γ)`` is ``decay_form="coupled"``; it is not
   separable, has no chunked form here (its ``sequence`` loops ``step``) and maps onto no GLA
   kernel. Its normaliser s_t is taken to be the paper's [inferred: the reference gives only
   the C_t rule of that code path]. Note that the two forms start with different memory spans:
   at zero pre-activations (β = 1/2, γ = 1/4) C decays by 0.375 per step (separable) vs 0.875
   (coupled).
2. **r counting**: our ``r`` (config ``num_cosines``) is the number of cosine terms, i.e. the
   number of (ṽ^i, k̃^i) vector pairs stored per head. The released code's r is also the number
   of stored pairs (so our r = code r for equal state size); the paper's r = code r − 1
   (Craftax: paper r = 1, config ``R: 2``). The reference writes the denominator
   ``2r (s·q)`` without saying which r: read as the paper's r it equals our ``r (s·q)`` at the
   released setting (code r = 2, paper r = 1); read as the code's r it is twice ours, a constant
   factor that W_O absorbs (only ε's relative size changes).
3. **Frequencies**: ω_i = 2π i / r (the r-th roots of unity) instead of the code's
   ``linspace(−π, π, r)``, whose two end points give the same cosine and which for r = 2 makes
   both terms (−1)^t. With ours Σ_i cos(ω_i s) cos(ω_i s') = (r/2)([s ≡ s'] + [s ≡ −s'])
   (mod r); for r = 2 (ω = 0, π) that is 2·[s ≡ s' mod 2]: pairs of steps of opposite parity
   cancel exactly instead of the code's parity sign. For r ≤ 2 the diagonal weight is exactly r
   (hence the denominator r (s·q)); AGaLiTe with r = 2 equals GaLiTe (separable, same weights,
   GaLiTe's ε = ε/2) on episodes of at most 2 steps (tested). Sin terms are omitted, as in the
   code. With ω_0 = 0, k̃^0 = s (same recurrence); both are kept, for clarity.
4. **tick**: per episode, not global: τ = 0 at the first step of an episode (the code starts a
   never-reset global counter at 1), advanced by one after each *alive* step; kept in the state
   as an int64 ``tick [N, A]`` and zeroed by ``first``. The phase is folded exactly in integer
   arithmetic, ω_i τ = 2π ((i · τ) mod r) / r, and the cosine evaluated in float64: exact at
   any tick (the code's float32 cos(ω t) loses the phase after ~10^6 steps).
5. ε = 1e-5 in both normalisers (config ``eps``); k, q ≥ 0 (ReLU features) and γ > 0, so
   s·q ≥ 0 and the denominators are positive.

Online-PPO adaptation (what the released A2C/PPO code does not decide for us):

* agents that are not ``alive`` keep their state exactly: decay 1, no input, the tick does not
  advance; their output is still computed (read-out of the unchanged state with the current q);
* ``first`` zeroes C, s (ṽ, k̃, s and the tick) before the observation is read;
* ``sequence`` (PPO epochs over a segment) backpropagates through the state within the segment
  (``bptt=True``, as the authors' associative scan); ``bptt=False`` detaches it at every step.
  It computes GaLiTe by the chunked form :func:`gla_chunked` and AGaLiTe by a parallel prefix
  scan :func:`linear_scan` (the authors' ``associative_scan``), layer by layer; both equal
  stepping up to float rounding, forward and backward, with resets and dead agents inside the
  segment. With ``share_memory``, ``decay_form="coupled"`` or ``bptt=False`` it loops ``step``.
* with ``share_memory`` the core input first reads the other agents' summaries (their last
  features x^L, one-step lag) through :class:`~memarl.memory.broadcast.SharedMemory`.

Recurrence ops (pure PyTorch; the reference a fused kernel replaces, kernels.md §6 (a)-(c)):
:func:`gla_step` / :func:`gla_chunked` (two-sided gated linear attention, fla's
``fused_recurrent_gla`` / chunk layout ``[T, B, H, ...]``, state ``[B, H, K, V]``),
:func:`galite_step` / :func:`galite_chunked` (GLA + normaliser column),
:func:`agalite_step` / :func:`agalite_scan`. They take the already gated inputs
``k' = γ ⊙ k``, ``v' = β ⊙ v`` and log-decays ``gk = log(1 − γ)``, ``gv = log(1 − β)``
(computed stably, :meth:`LinearAttentionProjection.forward`); dead agents enter with
``k' = v' = gk = gv = 0``.

State (leading ``[N, A]``; L layers, H heads, K = d_k, V = d_h)::

    GaLiTe   C [N, A, L, H, K, V]   (stored as Cᵀ: fla's [K, V] layout)
             s [N, A, L, H, K]
    AGaLiTe  v_tilde [N, A, L, H, r, V], k_tilde [N, A, L, H, r, K], s [N, A, L, H, K],
             tick [N, A] int64
    (+ the broadcast channel's entries with share_memory)
"""
from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from memarl.memory import State, reset_first
from memarl.memory.broadcast import SharedMemory
from memarl.memory.core import MemoryCore
from memarl.memory.gates import GRUGate

DecayForm = Literal["separable", "coupled"]
"""GaLiTe decay: "separable" = the paper's (1 − β) ⊗ (1 − γ); "coupled" = the code's 1 − β ⊗ γ"""
DECAY_FORMS = typing.get_args(DecayForm)


# ---------------------------------------------------------------------------------------------
# recurrence ops (time-major [T, B, H, ...]; B = N·A)


def gla_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor,
             gv: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the two-sided gated linear attention.

    q, k, gk ``[..., K]``; v, gv ``[..., V]``; h ``[..., K, V]``::

        h' = (exp(gk) ⊗ exp(gv)) ⊙ h + k ⊗ v,      o = hᵀ' q

    -> o ``[..., V]``, h'. With ``k = gk = gv = 0`` the state is returned bit-identical.
    """
    decay = torch.exp(gk)[..., :, None] * torch.exp(gv)[..., None, :]         # [..., K, V]
    h = decay * h + k[..., :, None] * v[..., None, :]
    o = torch.einsum("...k,...kv->...v", q, h)
    return o, h


def _gla_chunk(q, k, v, gk, gv, h0, reset):
    """One chunk of :func:`gla_chunked` (``c`` steps)."""
    c = q.shape[0]
    causal = torch.ones(c, c, dtype=torch.bool, device=q.device).tril()       # [t, s]
    if reset is None:
        lk, lv = gk.cumsum(0), gv.cumsum(0)                  # [c, B, H, K], [c, B, H, V]
        pair = causal[:, :, None]                                              # [t, s, 1]
        carry = torch.ones(c, 1, dtype=q.dtype, device=q.device)               # [c, 1]
    else:
        episode = reset.to(torch.int64).cumsum(0)                              # [c, B]
        pair = causal[:, :, None] & (episode[:, None] == episode[None, :])      # [t, s, B]
        carry = (episode == 0).to(q.dtype)                                     # [c, B]
        # cumulative log-decays restarted at every reset: a masked sum rather than a cumsum, so
        # that no gradient (not even a rounding residue of a cumsum's backward) reaches an
        # earlier episode
        within = pair.to(gk.dtype)
        lk = torch.einsum("tsb,sbhk->tbhk", within, gk)
        lv = torch.einsum("tsb,sbhv->tbhv", within, gv)
    pair = pair[..., None, None]                                               # [t, s, B, 1, 1]
    # decay from step s (exclusive) to step t (inclusive), zero across resets and for s > t
    neg_inf = float("-inf")
    dk = (lk[:, None] - lk[None, :]).masked_fill(~pair, neg_inf).exp()        # [t, s, B, H, K]
    dv = (lv[:, None] - lv[None, :]).masked_fill(~pair, neg_inf).exp()        # [t, s, B, H, V]
    scores = (q[:, None] * dk * k[None]).sum(-1)                               # [t, s, B, H]
    o = (scores[..., None] * dv * v[None]).sum(1)                              # [t, B, H, V]
    carry = carry[:, :, None, None]                                            # [c, B, 1, 1]
    o = o + carry * torch.einsum("tbhk,bhkv->tbhv", q * lk.exp(), h0) * lv.exp()
    h = (carry[-1, :, :, :, None] * lk[-1].exp()[..., :, None] * lv[-1].exp()[..., None, :] * h0
         + torch.einsum("sbhk,sbhv->bhkv", dk[-1] * k, dv[-1] * v))
    return o, h


def gla_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gk: torch.Tensor,
                gv: torch.Tensor, h0: torch.Tensor, reset: torch.Tensor | None = None,
                chunk_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gla_step` over a segment, computed chunk by chunk.

    q, k, gk ``[T, B, H, K]``; v, gv ``[T, B, H, V]``; h0 ``[B, H, K, V]``; reset ``[T, B]``
    bool (zero the state before that step) or None -> o ``[T, B, H, V]``, h_T.

    Within a chunk of ``c`` steps, with cumulative log-decays Lk_t = Σ gk_u over the steps
    u ≤ t of t's episode (same for v) and D_ts = exp(L_t − L_s) for s ≤ t in the same episode
    (0 otherwise)::

        o_t = Σ_s (Σ_j q_tj Dk_tsj k_sj) Dv_ts ⊙ v_s
              + [no reset in the chunk up to t] exp(Lv_t) ⊙ (h0ᵀ (exp(Lk_t) ⊙ q_t))

    The pairwise exponents are ≤ 0 (no overflow, no division by a cumulative product), so the
    form is stable for any decays; memory O(c² (K + V)) per chunk, batch and head.
    """
    outs, h = [], h0
    for start in range(0, q.shape[0], chunk_size):
        part = slice(start, start + chunk_size)
        o, h = _gla_chunk(q[part], k[part], v[part], gk[part], gv[part], h,
                          None if reset is None else reset[part])
        outs.append(o)
    return torch.cat(outs), h


def _with_normaliser(k, v, gv, C, s):
    """Append the normaliser as an extra value column: value 1, no value-side decay."""
    ones = torch.ones_like(v[..., :1])
    v = torch.cat([v, ones], dim=-1)
    gv = torch.cat([gv, torch.zeros_like(ones)], dim=-1)
    h = torch.cat([C, s[..., None]], dim=-1)
    return v, gv, h


def _normalise(o, eps):
    return o[..., :-1] / (o[..., -1:] + eps)


def galite_step(q, k, v, gk, gv, C, s, eps: float = 1e-5):
    """One GaLiTe step (separable decay). q, k, gk ``[..., K]``, v, gv ``[..., V]`` with
    ``k = γ ⊙ k``, ``v = β ⊙ v`` already gated; C ``[..., K, V]`` (Cᵀ), s ``[..., K]``
    -> a ``[..., V]``, C, s. The normaliser is the GLA's extra value column (kernels.md §2.5)."""
    v, gv, h = _with_normaliser(k, v, gv, C, s)
    o, h = gla_step(q, k, v, gk, gv, h)
    return _normalise(o, eps), h[..., :-1], h[..., -1]


def galite_chunked(q, k, v, gk, gv, C0, s0, reset=None, chunk_size: int = 16,
                   eps: float = 1e-5):
    """:func:`galite_step` over a segment (``[T, B, H, ...]`` inputs, ``reset [T, B]``) by the
    chunked form :func:`gla_chunked` -> a ``[T, B, H, V]``, C_T, s_T."""
    v, gv, h0 = _with_normaliser(k, v, gv, C0, s0)
    o, h = gla_chunked(q, k, v, gk, gv, h0, reset, chunk_size)
    return _normalise(o, eps), h[..., :-1], h[..., -1]


def galite_coupled_step(q, k, v, gamma, beta, gk, C, s, eps: float = 1e-5):
    """One GaLiTe step with the released code's decay ``1 − β ⊗ γ`` (``γ``, ``β`` zero for dead
    agents, so their decay is exactly 1); other arguments as :func:`galite_step`."""
    decay = 1 - gamma[..., :, None] * beta[..., None, :]                       # [..., K, V]
    C = decay * C + k[..., :, None] * v[..., None, :]
    s = torch.exp(gk) * s + k
    o = torch.einsum("...k,...kv->...v", q, C)
    return o / ((s * q).sum(-1, keepdim=True) + eps), C, s


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor,
                reset: torch.Tensor | None = None) -> torch.Tensor:
    """All states of the diagonal linear recurrence ``h_t = a_t ⊙ h_{t−1} + b_t`` (h_{−1} = h0;
    zeroed before steps where ``reset``) by a Hillis-Steele parallel prefix scan: log2(T)
    rounds of ``(a, b) ∘ (a', b') = (a a', a' b + b')``. Only products of decays, no division.

    a ``[T, ...]`` (broadcastable to b), b ``[T, ...]``, h0 ``b.shape[1:]``, reset ``[T, B]``
    (leading dims of b) -> h ``[T, ...]``.
    """
    if reset is not None:
        a = a.masked_fill(reset.view(*reset.shape, *([1] * (a.dim() - reset.dim()))), 0)
    b = torch.cat([b[:1] + a[:1] * h0, b[1:]])
    offset, length = 1, b.shape[0]
    while offset < length:
        b = torch.cat([b[:offset], b[offset:] + a[offset:] * b[:-offset]])
        a = torch.cat([a[:offset], a[offset:] * a[:-offset]])
        offset *= 2
    return b


def agalite_step(q, k, v, gk, gv, cos, v_tilde, k_tilde, s, eps: float = 1e-5):
    """One AGaLiTe step. q, k, gk ``[B, H, K]``; v, gv ``[B, H, V]`` (gated as in
    :func:`galite_step`); cos ``[B, r]`` = cos(ω_i τ); v_tilde ``[B, H, r, V]``, k_tilde
    ``[B, H, r, K]``, s ``[B, H, K]`` -> a ``[B, H, V]``, v_tilde, k_tilde, s."""
    r = cos.shape[-1]
    cos = cos[:, None, :, None].to(v.dtype)                                    # [B, 1, r, 1]
    v_tilde = torch.exp(gv)[..., None, :] * v_tilde + cos * v[..., None, :]
    k_tilde = torch.exp(gk)[..., None, :] * k_tilde + cos * k[..., None, :]
    s = torch.exp(gk) * s + k
    return _agalite_read(q, v_tilde, k_tilde, s, r, eps), v_tilde, k_tilde, s


def _agalite_read(q, v_tilde, k_tilde, s, r, eps):
    """Σ_i ṽ^i (k̃^i · q) / (r (s · q) + ε) over the last axes (any leading dims)."""
    num = torch.einsum("...rv,...rk,...k->...v", v_tilde, k_tilde, q)
    return num / (r * (s * q).sum(-1, keepdim=True) + eps)


def agalite_scan(q, k, v, gk, gv, cos, v_tilde0, k_tilde0, s0, reset=None, eps: float = 1e-5):
    """:func:`agalite_step` over a segment by :func:`linear_scan`: ``[T, B, H, ...]`` inputs,
    cos ``[T, B, r]``, reset ``[T, B]`` -> a ``[T, B, H, V]``, v_tilde_T, k_tilde_T, s_T.
    ``s`` is scanned as one more key term with cos ≡ 1."""
    r = cos.shape[-1]
    cos = cos[:, :, None, :, None].to(v.dtype)                                 # [T, B, 1, r, 1]
    v_all = linear_scan(torch.exp(gv)[..., None, :], cos * v[..., None, :], v_tilde0, reset)
    cos_s = torch.cat([cos, torch.ones_like(cos[..., :1, :])], dim=-2)         # [T, B, 1, r+1, 1]
    ks_all = linear_scan(torch.exp(gk)[..., None, :], cos_s * k[..., None, :],
                         torch.cat([k_tilde0, s0[..., None, :]], dim=-2), reset)
    k_all, s_all = ks_all[..., :r, :], ks_all[..., r, :]
    a = _agalite_read(q, v_all, k_all, s_all, r, eps)
    return a, v_all[-1], k_all[-1], s_all[-1]


def tick_cosines(tick: torch.Tensor, r: int, dtype: torch.dtype) -> torch.Tensor:
    """cos(ω_i τ) for ω_i = 2π i / r: tick ``[...]`` int64 -> ``[..., r]`` in ``dtype``.

    The phase is folded exactly in integers, ω_i τ ≡ 2π ((i · (τ mod r)) mod r) / r, and the
    cosine is evaluated in float64 (exact at any tick; float32 cos(ω τ) drifts after ~1e6)."""
    i = torch.arange(r, device=tick.device, dtype=torch.int64)
    phase = (tick.remainder(r)[..., None] * i).remainder(r)                   # [..., r]
    return torch.cos(phase.to(torch.float64) * (2 * math.pi / r)).to(dtype)


def episode_ticks(tick0: torch.Tensor, first: torch.Tensor, alive: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The tick each step of a segment uses and the tick after it: tick0 ``[B]`` int64, first /
    alive ``[T, B]`` -> ticks ``[T, B]``, tick_T ``[B]``. τ is zeroed by ``first`` and advances
    by one after each alive step (what :meth:`AGaLiTeCore.step` does step by step)."""
    t_len = first.shape[0]
    step = alive.to(torch.int64)
    before = step.cumsum(0) - step                       # alive steps of the segment before t
    index = torch.arange(t_len, device=first.device).view(t_len, 1).expand_as(first)
    last_reset = torch.where(first, index, torch.full_like(index, -1)).cummax(0).values
    since = before - before.gather(0, last_reset.clamp(min=0))
    ticks = torch.where(last_reset >= 0, since, tick0[None] + before)
    return ticks, ticks[-1] + step[-1]


# ---------------------------------------------------------------------------------------------
# modules


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """flatten(a ⊗ b): a ``[..., η]``, b ``[..., d]`` -> ``[..., η·d]``."""
    return (a[..., :, None] * b[..., None, :]).flatten(-2)


def _linear(d_in: int, d_out: int) -> nn.Linear:
    linear = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


class LinearAttentionProjection(nn.Module):
    """One Linear for all heads' k, q, v, β, γ (and the η-sized outer-product factors)."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, eta: int):
        super().__init__()
        self.num_heads, self.head_dim, self.eta = num_heads, head_dim, eta
        self.sizes = [head_dim, eta, head_dim, eta, head_dim, head_dim, head_dim, eta]
        self.linear = _linear(d_model, num_heads * sum(self.sizes))

    def forward(self, h: torch.Tensor, alive: torch.Tensor) -> dict[str, torch.Tensor]:
        """h ``[*lead, D]`` (normalised), alive ``[*lead]`` -> q, k, gk, gamma ``[*lead, H, K]``;
        v, gv, beta ``[*lead, H, V]`` with k = γ ⊙ k, v = β ⊙ v, gk = log(1 − γ), gv = log(1 − β),
        and k, v, gk, gv, gamma, beta zero where not alive (decay 1, no input)."""
        lead = h.shape[:-1]
        parts = self.linear(h).view(*lead, self.num_heads, -1).split(self.sizes, dim=-1)
        w_k, p1, w_q, p2, w_v, w_beta, w_gamma, p3 = parts
        key = _outer(F.relu(p1), F.relu(w_k))                                  # [..., H, K]
        query = _outer(F.relu(p2), F.relu(w_q))
        gamma = _outer(torch.sigmoid(p3), torch.sigmoid(w_gamma))
        beta = torch.sigmoid(w_beta)                                           # [..., H, V]
        # log(1 − σ(a)σ(b)) = log(σ(−a) + σ(a)σ(−b)), finite for any a, b
        gk = torch.logaddexp(F.logsigmoid(-p3)[..., :, None],
                             (F.logsigmoid(p3)[..., :, None]
                              + F.logsigmoid(-w_gamma)[..., None, :])).flatten(-2)
        gv = F.logsigmoid(-w_beta)
        mask = alive.view(*lead, 1, 1).to(h.dtype)
        return {"q": query, "k": gamma * key * mask, "v": beta * w_v * mask,
                "gk": gk * mask, "gv": gv * mask, "gamma": gamma * mask, "beta": beta * mask}


class LinearTransformerLayer(nn.Module):
    """Pre-LN block: recurrence (via the core) -> ReLU -> gate, FFN -> ReLU -> gate."""

    def __init__(self, d_model: int, num_heads: int, head_dim: int, eta: int, d_ffc: int,
                 gate_bias: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.proj = LinearAttentionProjection(d_model, num_heads, head_dim, eta)
        self.out = _linear(num_heads * head_dim, d_model)
        self.gate_1 = GRUGate(d_model, gate_bias)
        self.ln_2 = nn.LayerNorm(d_model)
        self.ffn_1 = _linear(d_model, d_ffc)
        self.ffn_2 = _linear(d_ffc, d_model)
        self.gate_2 = GRUGate(d_model, gate_bias)

    def mix(self, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """x ``[*lead, D]``, heads ``[*lead, H, V]`` (the recurrence outputs) -> x^l."""
        y = self.gate_1(x, F.relu(self.out(heads.flatten(-2))))
        f = self.ffn_2(F.relu(self.ffn_1(self.ln_2(y))))
        return self.gate_2(y, F.relu(f))


class LinearTransformerCore(MemoryCore):
    """Shared skeleton of :class:`GaLiTeCore` and :class:`AGaLiTeCore`: embedding, L blocks,
    shared memory, the step and the layer-by-layer parallel ``sequence``.

    Args:
        d_model: D, the encoder output size (= the feature size).
        num_layers, num_heads, head_dim, eta: L, H, d_h, η (d_k = η·d_h).
        d_ffc: FFN width.
        gate_bias: initial b_g of the GRU gates.
        eps: ε of the normaliser.
        shared: broadcast options (a :class:`~memarl.memory.broadcast.SharedMemoryOptions`) when
            ``shared.share_memory``; the summary is the core's output x^L.
        bptt: backpropagate through the state across a ``sequence`` segment.
    """

    #: per-layer state entries (leading [N, A, L])
    layer_keys: tuple[str, ...] = ()

    def __init__(self, d_model: int, num_layers: int = 1, num_heads: int = 2,
                 head_dim: int = 8, eta: int = 2, d_ffc: int | None = None,
                 gate_bias: float = 2.0, eps: float = 1e-5, shared=None, bptt: bool = True):
        super().__init__()
        self.d_model = self.feature_dim = d_model
        self.num_layers, self.num_heads, self.head_dim, self.eta = \
            num_layers, num_heads, head_dim, eta
        self.key_dim = eta * head_dim
        self.eps, self.bptt = eps, bptt
        self.embed = _linear(d_model, d_model)
        self.layers = nn.ModuleList([
            LinearTransformerLayer(d_model, num_heads, head_dim, eta, d_ffc or d_model, gate_bias)
            for _ in range(num_layers)])
        self.shared = None
        if shared is not None and shared.share_memory:
            self.shared = SharedMemory(d_model, num_heads, d_model, shared)
        self._keep = self.shared.persistent_keys if self.shared is not None else ()

    # -- subclass hooks ---------------------------------------------------------------------

    def _layer_state_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _recur_step(self, p, layer_state, extra):
        """p: projections ``[N, A, H, ...]``; layer_state: {key: [N, A, H, ...]} -> heads
        ``[N, A, H, V]``, new layer state."""
        raise NotImplementedError

    def _recur_sequence(self, p, layer_state0, reset, extra):
        """p: projections ``[T, B, H, ...]``; layer_state0: {key: [B, H, ...]}; reset ``[T, B]``
        -> heads ``[T, B, H, V]``, final layer state."""
        raise NotImplementedError

    def _has_parallel_form(self) -> bool:
        return True

    # -- contract ---------------------------------------------------------------------------

    def initial_state(self, num_envs: int, num_agents: int, device=None,
                      dtype: torch.dtype | None = None) -> State:
        weight = self.embed.weight
        device = device if device is not None else weight.device
        dtype = dtype or weight.dtype
        state = {key: torch.zeros(num_envs, num_agents, self.num_layers, *shape, device=device,
                                  dtype=dtype)
                 for key, shape in self._layer_state_shapes().items()}
        state.update(self._extra_initial_state(num_envs, num_agents, device))
        if self.shared is not None:
            state.update(self.shared.initial_state(num_envs, num_agents, device, dtype))
        return state

    def _extra_initial_state(self, num_envs, num_agents, device) -> State:
        return {}

    def _step_extra(self, state: State, alive: torch.Tensor) -> tuple[object, State]:
        """Per-step inputs shared by the layers (AGaLiTe: the cosines) and the new non-layer
        state entries (AGaLiTe: the tick)."""
        return None, {}

    def step(self, e: torch.Tensor, state: State, first: torch.Tensor, alive: torch.Tensor,
             positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[N, A, D]``, first / alive ``[N, A]`` -> features ``[N, A, D]``, state."""
        state = reset_first(first, state, self._keep)
        if self.shared is not None:
            e = self.shared.read_into(e, state, alive, positions)             # [N, A, D]
        extra, new = self._step_extra(state, alive)
        x = F.relu(self.embed(e))                                             # [N, A, D]
        layer_states = {key: [] for key in self.layer_keys}
        for index, layer in enumerate(self.layers):
            p = layer.proj(layer.ln_1(x), alive)                              # [N, A, H, ...]
            heads, layer_state = self._recur_step(
                p, {key: state[key][:, :, index] for key in self.layer_keys}, extra)
            x = layer.mix(x, heads)                                           # [N, A, D]
            for key in self.layer_keys:
                layer_states[key].append(layer_state[key])
        new.update({key: torch.stack(values, dim=2) for key, values in layer_states.items()})
        if self.shared is not None:
            n, a = x.shape[:2]
            valid = torch.ones(n, a, dtype=torch.bool, device=x.device)
            new.update(self.shared.write(x, valid, state, alive))
        return x, new

    def _sequence_extra(self, state0: State, first: torch.Tensor, alive: torch.Tensor
                        ) -> tuple[object, State]:
        return None, {}

    def sequence(self, e: torch.Tensor, state0: State, first: torch.Tensor, alive: torch.Tensor,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """e ``[T, N, A, D]``, first / alive ``[T, N, A]`` -> features ``[T, N, A, D]``, state.

        Parallel over time, layer by layer (see the module docstring); loops :meth:`step` with
        share_memory, without bptt or without a parallel form."""
        if self.shared is not None or not self.bptt or not self._has_parallel_form():
            return super().sequence(e, state0, first, alive, positions)
        t_len, n, a, d = e.shape
        b = n * a
        reset = first.reshape(t_len, b)
        alive_b = alive.reshape(t_len, b)
        extra, final = self._sequence_extra(state0, reset, alive_b)
        x = F.relu(self.embed(e))                                             # [T, N, A, D]
        layer_states = {key: [] for key in self.layer_keys}
        for index, layer in enumerate(self.layers):
            p = layer.proj(layer.ln_1(x).view(t_len, b, d), alive_b)          # [T, B, H, ...]
            state_l = {key: state0[key][:, :, index].reshape(b, *state0[key].shape[3:])
                       for key in self.layer_keys}
            heads, layer_state = self._recur_sequence(p, state_l, reset, extra)
            x = layer.mix(x, heads.view(t_len, n, a, *heads.shape[2:]))
            for key in self.layer_keys:
                layer_states[key].append(layer_state[key].view(n, a, *layer_state[key].shape[1:]))
        final.update({key: torch.stack(values, dim=2) for key, values in layer_states.items()})
        return x, final


class GaLiTeCore(LinearTransformerCore):
    """GaLiTe: the exact gated linear transformer (state C, s per layer and head).

    Extra args: ``decay_form`` ("separable" = paper, "coupled" = released code) and
    ``chunk_size`` (steps per chunk of the parallel form)."""

    layer_keys = ("C", "s")

    def __init__(self, d_model: int, *args, decay_form: DecayForm = "separable",
                 chunk_size: int = 16, **kwargs):
        super().__init__(d_model, *args, **kwargs)
        assert decay_form in DECAY_FORMS
        self.decay_form, self.chunk_size = decay_form, chunk_size

    def _layer_state_shapes(self):
        h, k, v = self.num_heads, self.key_dim, self.head_dim
        return {"C": (h, k, v), "s": (h, k)}

    def _has_parallel_form(self) -> bool:
        return self.decay_form == "separable"

    def _recur_step(self, p, layer_state, extra):
        if self.decay_form == "coupled":
            a, C, s = galite_coupled_step(p["q"], p["k"], p["v"], p["gamma"], p["beta"], p["gk"],
                                          layer_state["C"], layer_state["s"], self.eps)
        else:
            a, C, s = galite_step(p["q"], p["k"], p["v"], p["gk"], p["gv"], layer_state["C"],
                                  layer_state["s"], self.eps)
        return a, {"C": C, "s": s}

    def _recur_sequence(self, p, layer_state0, reset, extra):
        a, C, s = galite_chunked(p["q"], p["k"], p["v"], p["gk"], p["gv"], layer_state0["C"],
                                 layer_state0["s"], reset, self.chunk_size, self.eps)
        return a, {"C": C, "s": s}


class AGaLiTeCore(LinearTransformerCore):
    """AGaLiTe: the approximate gated linear transformer (r vector pairs + s per layer and head,
    and the per-episode tick). Extra arg: ``num_cosines`` = r (see the module docstring)."""

    layer_keys = ("v_tilde", "k_tilde", "s")

    def __init__(self, d_model: int, *args, num_cosines: int = 2, **kwargs):
        super().__init__(d_model, *args, **kwargs)
        self.r = num_cosines

    def _layer_state_shapes(self):
        h, k, v, r = self.num_heads, self.key_dim, self.head_dim, self.r
        return {"v_tilde": (h, r, v), "k_tilde": (h, r, k), "s": (h, k)}

    def _extra_initial_state(self, num_envs, num_agents, device):
        return {"tick": torch.zeros(num_envs, num_agents, dtype=torch.int64, device=device)}

    def _step_extra(self, state, alive):
        tick = state["tick"]                                                  # [N, A] int64
        cos = tick_cosines(tick, self.r, self.embed.weight.dtype)             # [N, A, r]
        return cos, {"tick": tick + alive.to(torch.int64)}

    def _sequence_extra(self, state0, first, alive):
        ticks, tick_end = episode_ticks(state0["tick"].reshape(-1), first, alive)   # [T, B]
        cos = tick_cosines(ticks, self.r, self.embed.weight.dtype)            # [T, B, r]
        return cos, {"tick": tick_end.view(state0["tick"].shape)}

    def _recur_step(self, p, layer_state, cos):
        n, a = cos.shape[:2]
        flat = {key: value.reshape(n * a, *value.shape[2:]) for key, value in p.items()}
        st = {key: value.reshape(n * a, *value.shape[2:]) for key, value in layer_state.items()}
        out, v_tilde, k_tilde, s = agalite_step(
            flat["q"], flat["k"], flat["v"], flat["gk"], flat["gv"], cos.reshape(n * a, -1),
            st["v_tilde"], st["k_tilde"], st["s"], self.eps)
        unflat = lambda z: z.view(n, a, *z.shape[1:])                         # noqa: E731
        return unflat(out), {"v_tilde": unflat(v_tilde), "k_tilde": unflat(k_tilde),
                             "s": unflat(s)}

    def _recur_sequence(self, p, layer_state0, reset, cos):
        out, v_tilde, k_tilde, s = agalite_scan(
            p["q"], p["k"], p["v"], p["gk"], p["gv"], cos, layer_state0["v_tilde"],
            layer_state0["k_tilde"], layer_state0["s"], reset, self.eps)
        return out, {"v_tilde": v_tilde, "k_tilde": k_tilde, "s": s}
