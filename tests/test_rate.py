"""RATE (memory tokens + MRV + XL cache) as an online PPO core: memory_agents.md §1.2, §1.7, §4.

The agent contract (step x T == sequence, resets, dead agents, env isolation, gradients) runs in
tests/test_agents.py for the registered "rate"; here: the memory segment schedule, the MRV
equation, a naive re-implementation of the whole core, the segment-parallel ``sequence`` against
stepping (outputs, states and gradients), the BPTT choice, resets and shared memory.
"""
from __future__ import annotations

import math

import pytest
import torch

import torch.nn.functional as F

from memarl.agents import make_agent
from memarl.errors import MemarlError
from memarl.memory.memory_tokens import MemoryRetentionValve, MemoryTokenCore

from .state_checks import assert_state_equal

OBS = (7,)          # vector observations (MLP encoder): cheap; the grid encoder is contract-tested
ACTIONS = 4


def make(seed=0, obs_shape=OBS, **kw):
    torch.manual_seed(seed)
    return make_agent("rate", obs_shape, ACTIONS, **kw)


def amplify(module, std=0.3, seed=1):
    """Larger core weights so that the attention is far from uniform (mask errors show)."""
    torch.manual_seed(seed)
    for name, param in module.named_parameters():
        if param.dim() == 2 and "memory_init" not in name:
            torch.nn.init.normal_(param, std=std)
    return module


def inputs(t, n, a, seed=1, p_first=0.15, p_alive=0.75, obs_shape=OBS, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(t, n, a, *obs_shape, generator=g, dtype=dtype)
    first = torch.rand(t, n, a, generator=g) < p_first
    alive = torch.rand(t, n, a, generator=g) < p_alive
    return obs, first, alive


def run_steps(policy, obs, state, first, alive=None):
    logits, values = [], []
    for t in range(obs.shape[0]):
        lg, v, state = policy.step(obs[t], state, first[t], None if alive is None else alive[t])
        logits.append(lg)
        values.append(v)
    return torch.stack(logits), torch.stack(values), state


def outputs(logits, values):
    return torch.cat([logits, values[..., None]], dim=-1)




# ---------------------------------------------------------------------------------------------
# the memory segment schedule


def test_memory_is_rewritten_exactly_every_k_steps():
    k, n, a = 4, 2, 3
    policy = amplify(make(segment_len=k, memory_tokens=3).double())
    obs, _, _ = inputs(3 * k, n, a, dtype=torch.float64)
    obs2 = obs.clone()
    obs2[1] += 1.0                        # a step inside the first memory segment
    first = torch.zeros(3 * k, n, a, dtype=torch.bool)
    first[0] = True
    states = {}
    with torch.no_grad():
        for name, o in (("base", obs), ("perturbed", obs2)):
            state, states[name] = policy.initial_state(n, a), []
            for t in range(3 * k):
                state = policy.step(o[t], state, first[t])[2]
                states[name].append(state)
    base, pert = states["base"], states["perturbed"]
    for t in range(3 * k):
        assert (base[t]["count"] == (t + 1) % k).all()
        written = t >= k - 1
        assert (base[t]["memory_valid"] == written).all()
        if t % k != k - 1:                   # inside a segment the memory does not move
            previous = base[t - 1]["memory"] if t > 0 else torch.zeros_like(base[0]["memory"])
            assert torch.equal(base[t]["memory"], previous)
        else:                                # after the K-th step it is rewritten
            assert (base[t]["memory"] - (base[t - 1]["memory"] if t >= k else 0)).abs().min() > 0
            assert (base[t]["segment"] == 0).all()
        # the perturbed observation reaches the memory only at the end of its segment
        same = torch.equal(base[t]["memory"], pert[t]["memory"])
        assert same == (t < k - 1), t


def test_memory_is_the_only_channel_between_segments():
    """Without an XL cache, what segment 2 sees of segment 1 is the memory: swapping in another
    run's memory at the boundary gives that run's outputs exactly."""
    k, n, a = 3, 1, 2
    policy = amplify(make(segment_len=k).double())
    obs, _, _ = inputs(2 * k, n, a, dtype=torch.float64)
    other = obs.clone()
    other[:k] = torch.randn_like(other[:k])               # different first segment
    first = torch.zeros(2 * k, n, a, dtype=torch.bool)
    first[0] = True
    with torch.no_grad():
        la, va, _ = run_steps(policy, obs, policy.initial_state(n, a), first)
        _, _, sb = run_steps(policy, other[:k], policy.initial_state(n, a), first[:k])
        _, _, sa = run_steps(policy, obs[:k], policy.initial_state(n, a), first[:k])
        lb, vb, _ = run_steps(policy, obs[k:], sb, first[k:])
        swapped = {**sb, "memory": sa["memory"]}
        ls, vs, _ = run_steps(policy, obs[k:], swapped, first[k:])
    assert (outputs(la, va)[k:] - outputs(lb, vb)).abs().max() > 1e-6
    torch.testing.assert_close(outputs(ls, vs), outputs(la, va)[k:], atol=0, rtol=0)


def test_reset_inside_a_segment_restarts_the_segment():
    k, n, a = 4, 2, 2
    policy = amplify(make(segment_len=k).double())
    t_len = 2 + k + 1
    obs, _, _ = inputs(t_len, n, a, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    first[2, 0, 1] = True                     # agent (0, 1) restarts in the middle of a segment
    fresh_first = first[2:].clone()
    fresh_first[0] = True
    with torch.no_grad():
        logits, values, _ = run_steps(policy, obs, policy.initial_state(n, a), first)
        lf, vf, _ = run_steps(policy, obs[2:], policy.initial_state(n, a), fresh_first)
        state = policy.initial_state(n, a)
        counts, valid = [], []
        for t in range(t_len):
            state = policy.step(obs[t], state, first[t])[2]
            counts.append(state["count"][0, 1].item())
            valid.append(state["memory_valid"][0, 1].item())
    torch.testing.assert_close(outputs(logits, values)[2:, 0, 1], outputs(lf, vf)[:, 0, 1],
                               atol=1e-12, rtol=0)
    assert counts == [1, 2, 1, 2, 3, 0, 1]          # the reset at t=2 starts a new segment
    assert valid == [False] * 5 + [True] * 2        # written after K steps from the reset
    assert not torch.allclose(outputs(logits, values)[2:, 0, 0], outputs(lf, vf)[:, 0, 0])


def test_initial_memory_tokens_are_distinct():
    """RATE's released init repeats one vector m times; ours draws every token."""
    policy = make(memory_tokens=5)
    init = policy.core.memory_init
    assert init.shape == (5, 16)
    assert torch.cdist(init, init)[~torch.eye(5, dtype=torch.bool)].min() > 1.0


# ---------------------------------------------------------------------------------------------
# equations


@pytest.mark.parametrize("heads", [1, 2, 5])
def test_mrv_matches_multihead_attention_and_the_formula(heads):
    torch.manual_seed(0)
    b, m, d = 3, 4, 10
    mrv = MemoryRetentionValve(d, heads).double()
    for p in mrv.parameters():
        torch.nn.init.normal_(p, std=0.5)
    memory = torch.randn(b, m, d, dtype=torch.float64)
    written = torch.randn(b, m, d, dtype=torch.float64)
    out = mrv(memory, written)
    # torch's MultiheadAttention (what RATE's code calls) with the same weights, key bias 0
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([mrv.query.weight, mrv.key.weight, mrv.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([mrv.query.bias, torch.zeros(d, dtype=torch.float64),
                                          mrv.value.bias]))
        mha.out_proj.weight.copy_(mrv.out.weight)
        mha.out_proj.bias.copy_(mrv.out.bias)
    act = torch.relu(written)
    reference = mha(memory, act, act, need_weights=False)[0]
    torch.testing.assert_close(out, reference, atol=1e-12, rtol=0)
    # M_{n+1} = concat_h softmax(M W_Q^h (act W_K^h)^T / sqrt(d_h)) act W_V^h, then W_M
    hd = d // heads
    q = memory @ mrv.query.weight.T + mrv.query.bias
    kk = act @ mrv.key.weight.T
    v = act @ mrv.value.weight.T + mrv.value.bias
    per_head = []
    for h in range(heads):
        s = slice(h * hd, (h + 1) * hd)
        weights = torch.softmax(q[..., s] @ kk[..., s].transpose(1, 2) / math.sqrt(hd), dim=-1)
        per_head.append(weights @ v[..., s])
    formula = torch.cat(per_head, dim=-1) @ mrv.out.weight.T + mrv.out.bias
    torch.testing.assert_close(out, formula, atol=1e-12, rtol=0)


def _phi(distance: int, d: int) -> torch.Tensor:
    """Transformer-XL sinusoid of one distance, written out: [sin(d f_i) ..., cos(d f_i) ...]."""
    freqs = [1.0 / 10000 ** (i / d) for i in range(0, d, 2)]
    values = [math.sin(distance * f) for f in freqs] + [math.cos(distance * f) for f in freqs]
    return torch.tensor(values[:d], dtype=torch.float64)


def _naive_layer(layer, rows, row_pos, cache, allowed):
    """One post-LN relative layer, query by query and key by key. rows [R, D], cache [c, D]
    (positions -c..-1), allowed(i) -> key indices into [cache | rows]."""
    d = rows.shape[1]
    h, hd = layer.num_heads, layer.head_dim
    keys = torch.cat([cache, rows])
    key_pos = list(range(-cache.shape[0], 0)) + list(row_pos)
    wq, wk, wv = layer.qkv.weight.split(d)
    out = []
    for i in range(rows.shape[0]):
        heads = []
        for head in range(h):
            s = slice(head * hd, (head + 1) * hd)
            q = wq[s] @ rows[i]
            idx = allowed(i)
            scores = torch.stack([
                ((q + layer.r_w_bias[head]) @ (wk[s] @ keys[j])
                 + (q + layer.r_r_bias[head]) @ (layer.r_net.weight[s]
                                                 @ _phi(row_pos[i] - key_pos[j], d)))
                / math.sqrt(hd) for j in idx])
            w = torch.softmax(scores, 0)
            heads.append(sum(w[n] * (wv[s] @ keys[j]) for n, j in enumerate(idx)))
        a = layer.out.weight @ torch.cat(heads)
        y = F.layer_norm(rows[i] + a, (d,), layer.ln_attn.weight, layer.ln_attn.bias)
        if layer.ffn is not None:
            y = F.layer_norm(y + layer.ffn(y), (d,), layer.ln_ffn.weight, layer.ln_ffn.bias)
        out.append(y)
    return torch.stack(out)


def _naive_episode(core, e):
    """RATE for one agent, from the paper's description (§1.2) with explicit token lists:
    e [T, D] -> features [T, D] and the memory after every step."""
    m, k, c, d = core.memory_tokens, core.segment_len, core.mem_len, core.d_model
    memory = core.memory_init.detach().clone()
    segment, caches = [], [torch.zeros(0, d, dtype=e.dtype) for _ in core.layers]
    features, memories = [], []
    for t in range(e.shape[0]):
        segment.append(e[t])
        s_len = len(segment)
        end = s_len == k
        rows = torch.cat([memory, torch.stack(segment)] + ([memory] if end else []))
        row_pos = list(range(m)) + [m + s for s in range(s_len)] + \
            ([m + k + j for j in range(m)] if end else [])
        layer_inputs = []
        for layer, cache in zip(core.layers, caches):
            nc = cache.shape[0]
            read = list(range(nc, nc + m))
            seg = [nc + m + s for s in range(s_len)]
            write = [nc + m + s_len + j for j in range(m)] if end else []

            def allowed(i, nc=nc, read=read, seg=seg, write=write):
                if i < m:                                   # read rows: the read block only
                    return read
                if i < m + s_len:                           # slot rows: cache, read, causal
                    return list(range(nc)) + read + seg[:i - m + 1]
                return list(range(nc)) + read + seg + write  # write rows: everything + write
            layer_inputs.append(rows)
            rows = _naive_layer(layer, rows, row_pos, cache, allowed)
        features.append(rows[m + s_len - 1])
        if end:
            written = rows[m + k:]
            memory = core.mrv(memory[None], written[None])[0] if core.mrv is not None else written
            if c > 0:
                caches = [torch.cat([cache, h[m:m + k]])[-c:]
                          for cache, h in zip(caches, layer_inputs)]
            segment = []
        memories.append(memory)
    return torch.stack(features), memories


@pytest.mark.parametrize("kw", [
    {"segment_len": 3, "memory_tokens": 2, "num_layers": 2, "mem_len": 4},
    {"segment_len": 2, "memory_tokens": 3, "num_layers": 1, "ffn_ratio": 0, "d_model": 9,
     "num_heads": 3, "mrv_heads": 3, "use_mrv": False},
])
def test_core_matches_naive_reference(kw):
    d = kw.get("d_model", 16)
    torch.manual_seed(0)
    core = MemoryTokenCore(d, kw.get("num_heads", 2), num_layers=kw["num_layers"],
                           memory_tokens=kw["memory_tokens"], segment_len=kw["segment_len"],
                           mrv_heads=kw.get("mrv_heads", 1), use_mrv=kw.get("use_mrv", True),
                           mem_len=kw.get("mem_len", 0), ffn_ratio=kw.get("ffn_ratio", 4))
    amplify(core.double())
    t_len = 3 * kw["segment_len"] + 1
    e = torch.randn(t_len, 1, 1, d, dtype=torch.float64)
    first = torch.zeros(t_len, 1, 1, dtype=torch.bool)
    first[0] = True
    alive = torch.ones_like(first)
    with torch.no_grad():
        naive_features, naive_memories = _naive_episode(core, e[:, 0, 0])
        state, features = core.initial_state(1, 1), []
        for t in range(t_len):
            f, state = core.step(e[t], state, first[t], alive[t])
            features.append(f[0, 0])
            memory = core._memory(state["memory"][0], state["memory_valid"][0])[0]
            torch.testing.assert_close(memory, naive_memories[t], atol=1e-10, rtol=0)
        sequence = core.sequence(e, core.initial_state(1, 1), first, alive)[0][:, 0, 0]
    torch.testing.assert_close(torch.stack(features), naive_features, atol=1e-10, rtol=0)
    torch.testing.assert_close(sequence, naive_features, atol=1e-10, rtol=0)


def test_attention_mask_layout():
    """Rows [read m | slots K | write m | extra]; keys [cache C | rows] (§1.2's mask)."""
    m, k, c = 2, 3, 2
    core = MemoryTokenCore(8, 2, memory_tokens=m, segment_len=k, mem_len=c)
    allowed = core._allowed(torch.tensor([1]), torch.tensor([2]), torch.tensor([[1]]))[0]
    expected = torch.tensor([
        # cache  read   slots    write  extra
        [0, 0,   1, 1,  0, 0, 0,  0, 0,  0],   # read 0: the read block only
        [0, 0,   1, 1,  0, 0, 0,  0, 0,  0],   # read 1
        [0, 1,   1, 1,  1, 0, 0,  0, 0,  0],   # slot 0: valid cache (1 of 2), read, causal
        [0, 1,   1, 1,  1, 1, 0,  0, 0,  0],   # slot 1
        [0, 1,   1, 1,  1, 1, 1,  0, 0,  0],   # slot 2
        [0, 1,   1, 1,  1, 1, 0,  1, 1,  0],   # write 0: filled slots (2) and the write block
        [0, 1,   1, 1,  1, 1, 0,  1, 1,  0],   # write 1
        [0, 1,   1, 1,  1, 0, 0,  0, 0,  1],   # extra query at slot 1 (a dead agent's step)
    ], dtype=torch.bool)
    assert torch.equal(allowed, expected)


# ---------------------------------------------------------------------------------------------
# the segment-parallel sequence form against stepping


SEQUENCE_CASES = [
    {},
    {"segment_len": 1},
    {"segment_len": 4, "mem_len": 5, "num_layers": 2},
    {"segment_len": 2, "mem_len": 3, "memory_grad": "none"},
    {"use_mrv": False, "memory_tokens": 3, "segment_len": 5, "d_model": 15, "num_heads": 3,
     "mrv_heads": 5, "ffn_ratio": 0},
]


@pytest.mark.parametrize("kw", SEQUENCE_CASES, ids=lambda kw: ",".join(map(str, kw.items())))
def test_sequence_equals_steps_with_gradients(kw):
    t_len, n, a = 11, 3, 2
    policy = amplify(make(**kw).double())
    obs, first, alive = inputs(t_len, n, a, seed=3, dtype=torch.float64)
    alive[4:, 1, 0] = False                      # a long dead stretch, reset while dead
    first[6, 1, 0] = True
    warm_obs, warm_first, warm_alive = inputs(5, n, a, seed=4, dtype=torch.float64)
    warm_first[0] = True
    with torch.no_grad():
        state0 = run_steps(policy, warm_obs, policy.initial_state(n, a), warm_first,
                           warm_alive)[2]
    weight = torch.randn(t_len, n, a, ACTIONS + 1, dtype=torch.float64)
    results = []
    for mode in ("steps", "sequence"):
        policy.zero_grad()
        x = obs.clone().requires_grad_(True)
        if mode == "steps":
            logits, values, state = run_steps(policy, x, state0, first, alive)
        else:
            logits, values, state = policy.sequence(x, state0, first, alive, return_state=True)
        out = outputs(logits, values)
        (out * weight).sum().backward()
        grads = {name: p.grad.clone() for name, p in policy.named_parameters()
                 if p.grad is not None}
        results.append((out.detach(), {k: v.detach() for k, v in state.items()}, x.grad, grads))
    (o1, s1, gx1, gp1), (o2, s2, gx2, gp2) = results
    torch.testing.assert_close(o2, o1, atol=1e-11, rtol=0)
    assert_state_equal(s2, s1, atol=1e-11)
    torch.testing.assert_close(gx2, gx1, atol=1e-10, rtol=0)
    assert gp1.keys() == gp2.keys()
    for name in gp1:
        torch.testing.assert_close(gp2[name], gp1[name], atol=1e-10, rtol=1e-9, msg=name)


def test_sequence_from_a_random_state_matches_steps():
    """Unfilled slots, counts out of range and garbage beyond them are ignored the same way."""
    t_len, n, a = 6, 2, 3
    policy = amplify(make(segment_len=3, mem_len=2).double())
    obs, first, alive = inputs(t_len, n, a, seed=5, dtype=torch.float64)
    state0 = policy.initial_state(n, a)
    g = torch.Generator().manual_seed(0)
    for key, value in state0.items():
        if value.is_floating_point():
            state0[key] = torch.randn(value.shape, generator=g, dtype=value.dtype)
        elif value.dtype == torch.bool:
            state0[key] = torch.rand(value.shape, generator=g) < 0.5
        else:
            state0[key] = torch.randint(-3, 6, value.shape, generator=g)
    with torch.no_grad():
        l1, v1, s1 = run_steps(policy, obs, state0, first, alive)
        l2, v2, s2 = policy.sequence(obs, state0, first, alive, return_state=True)
    torch.testing.assert_close(outputs(l2, v2), outputs(l1, v1), atol=1e-11, rtol=0)
    assert_state_equal(s2, s1, atol=1e-11)


# ---------------------------------------------------------------------------------------------
# gradients: episode boundaries and the BPTT choice


def _obs_grad(policy, obs, first, alive, t_from):
    obs = obs.clone().requires_grad_(True)
    logits, values = policy.sequence(obs, policy.initial_state(*obs.shape[1:3]), first, alive)
    (outputs(logits, values)[t_from:] * torch.randn_like(outputs(logits, values)[t_from:])
     ).sum().backward()
    return obs.grad.flatten(3).abs().sum(-1)                                   # [T, N, A]


@pytest.mark.parametrize("kw", [{"segment_len": 2, "mem_len": 3}, {"segment_len": 3}])
def test_no_gradient_crosses_an_episode_boundary(kw):
    t_len, n, a, t0 = 9, 2, 2, 5
    policy = make(**kw).double()
    obs, _, _ = inputs(t_len, n, a, seed=6, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    first[t0, 0] = True                          # env 0 restarts at t0 (mid-segment for K=3)
    alive = torch.ones_like(first)
    alive[t0, 0, 1] = False                      # ... agent (0, 1) while not alive
    grad = _obs_grad(policy, obs, first, alive, t0)
    assert (grad[:t0, 0] == 0).all()
    assert (grad[t0 + 1:, 0] > 0).all() and (grad[:t0, 1] > 0).all()


def test_bptt_through_memory_tokens_and_rate_detach():
    k, t_len, n, a = 3, 5, 1, 2
    obs, _, _ = inputs(t_len, n, a, seed=7, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    alive = torch.ones_like(first)
    for bptt in (True, False):
        policy = make(segment_len=k, memory_grad="own" if bptt else "none").double()
        grad = _obs_grad(policy, obs, first, alive, k)      # outputs of segment 2 only
        assert ((grad[:k] > 0).all()) == bptt               # through the memory tokens
        assert (grad[k:] > 0).all()                         # inside the segment: always
        mrv_grads = [p.grad for p in policy.core.mrv.parameters()]
        if bptt:
            assert all(g is not None and g.abs().sum() > 0 for g in mrv_grads)
        else:     # RATE's training: the memory is detached when written, the MRV gets nothing
            assert all(g is None or (g == 0).all() for g in mrv_grads)


def test_xl_cache_is_stop_gradient_but_carries_information():
    k, t_len, n, a = 2, 4, 1, 1
    obs, _, _ = inputs(t_len, n, a, seed=8, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    alive = torch.ones_like(first)
    policy = amplify(make(segment_len=k, mem_len=2, memory_grad="none").double())
    grad = _obs_grad(policy, obs, first, alive, k)
    assert (grad[:k] == 0).all()                 # detached memory and stop-gradient cache
    obs2 = obs.clone()
    obs2[0] += 1.0
    with torch.no_grad():
        base = outputs(*policy.sequence(obs, policy.initial_state(n, a), first, alive))
        pert = outputs(*policy.sequence(obs2, policy.initial_state(n, a), first, alive))
        cached_state = policy.sequence(obs[:k], policy.initial_state(n, a), first[:k],
                                       alive[:k], return_state=True)[2]
    assert (base[k:] - pert[k:]).abs().max() > 1e-6
    assert cached_state["cache_len"].item() == 2 and cached_state["cache"].abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# shared memory


def test_shared_memory_stays_inside_each_env():
    t_len, n, a, t0 = 5, 2, 3, 1
    policy = amplify(make(share_memory=True, segment_len=2))
    obs, _, _ = inputs(t_len, n, a, seed=9)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    state = policy.initial_state(n, a)
    assert state["shared_summary"].shape == (n, a, 1, 2, 16)      # m = 2 slots per agent
    obs2 = obs.clone()
    obs2[t0, 0, 1] += 1.0                        # agent 1 of env 0 at t0
    with torch.no_grad():
        base = outputs(*policy.sequence(obs, state, first))
        pert = outputs(*policy.sequence(obs2, state, first))
    assert torch.equal(base[:, 1], pert[:, 1])                     # never into env 1
    assert torch.equal(base[:t0 + 1, 0, 0], pert[:t0 + 1, 0, 0])  # ... nor before it is broadcast
    # agent 1's memory changes after its segment (t = 1) ends; agent 0 reads it one step later
    assert (base[t0 + 1:, 0, 0] - pert[t0 + 1:, 0, 0]).abs().max() > 1e-5


# ---------------------------------------------------------------------------------------------
# presets, configs, sizes


def test_presets_and_parameter_counts(capsys):
    rows = []
    shapes = {"bottleneck": (3, 5, 5), "lmapf": (3, 11, 11), "tmaze": (16,)}
    for preset, shape in shapes.items():
        policy = make_agent("rate", shape, 4 if preset == "tmaze" else 5, preset=preset)
        counts = policy.parameter_counts()
        assert counts["total"] == counts["effective"]         # relative positions: no table
        rows.append(f"rate-{preset:10s} total {counts['total']:>10,d}  "
                    f"effective {counts['effective']:>10,d}")
    tmaze = make_agent("rate", (16,), 4, preset="tmaze")
    assert len(tmaze.core.layers) == 3 and tmaze.core.layers[0].ffn is None
    assert tmaze.core.memory_init.shape == (5, 64) and tmaze.core.segment_len == 16
    with capsys.disabled():
        print("\n" + "\n".join(rows))


@pytest.mark.parametrize("kw,words", [
    ({"num_heads": 3}, ["divisible", "num_heads"]),
    ({"mrv_heads": 3}, ["divisible", "mrv_heads"]),
    ({"segment_len": 0}, ["segment_len"]),
    ({"memory_tokens": 0}, ["memory_tokens"]),
    ({"mem_len": -1}, ["mem_len"]),
    ({"ffn_ratio": 1.5}, ["ffn_ratio"]),
])
def test_bad_config_raises_one_line_error(kw, words):
    with pytest.raises(MemarlError) as info:
        make_agent("rate", OBS, ACTIONS, **kw)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)
