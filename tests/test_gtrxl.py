"""GTrXL (memory/xl_cache.py, agents/gtrxl.py): cached stepping == recompute from scratch,
parallel ``sequence`` == step loop (forward and gradients), gates, masks, shared memory.

The contract tests of every agent (tests/test_agents.py -k gtrxl) run besides these.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from memarl.agents import make_agent
from memarl.agents.gtrxl import GTRXL_PRESETS, GTrXLConfig, gtrxl_core
from memarl.errors import MemarlError
from memarl.memory.core import MemoryCore
from memarl.memory.gates import GRUGate
from memarl.memory.xl_cache import XLCacheCore

from .state_checks import assert_state_equal

OBS = (6,)
K = 4
SMALL = {"d_model": 12, "num_heads": 3, "num_layers": 2, "memory_len": 3}


def make(seed=0, amplify=True, dtype=torch.float64, **kw):
    """A small GTrXL policy; ``amplify``: large core weights (non-trivial attention / gates)."""
    torch.manual_seed(seed)
    policy = make_agent("gtrxl", OBS, K, **{**SMALL, **kw}).to(dtype)
    if amplify:
        torch.manual_seed(seed + 100)
        with torch.no_grad():
            for name, param in policy.named_parameters():
                if name.startswith("core.") and param.dim() == 2:
                    param.normal_(0.0, 0.4)
    return policy


def inputs(t, n, a, seed=1, p_first=0.15, p_alive=0.75, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(t, n, a, *OBS, generator=g, dtype=dtype)
    first = torch.rand(t, n, a, generator=g) < p_first
    alive = torch.rand(t, n, a, generator=g) < p_alive
    return obs, first, alive


def encode(policy, obs):
    return policy._encode(obs, tuple(obs.shape[:-1]))                       # [T, N, A, D]


def step_loop(core, e, state, first, alive):
    features = []
    for t in range(e.shape[0]):
        f, state = core.step(e[t], state, first[t], alive[t])
        features.append(f)
    return torch.stack(features), state




# ---------------------------------------------------------------------------------------------
# the reference: recompute the whole window of every step from scratch, one agent at a time


def ref_table(length, dim):
    rows = []
    for d in range(length):
        sin = [math.sin(d / 10000 ** (2 * i / dim)) for i in range(dim // 2)]
        cos = [math.cos(d / 10000 ** (2 * i / dim)) for i in range(dim // 2)]
        rows.append(sin + cos)
    return torch.tensor(rows, dtype=torch.float64)


def ref_gate(gate, x, y):
    d = x.shape[-1]
    w_r, w_z, w_g = gate.w.weight.split(d)
    u_r, u_z = gate.u.weight.split(d)
    r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
    z = torch.sigmoid(y @ w_z.T + x @ u_z.T - gate.bias)
    h = torch.tanh(y @ w_g.T + (r * x) @ gate.u_g.weight.T)
    return (1 - z) * x + z * h


def ref_stack(core, tokens):
    """tokens ``[n, D]`` (the agent's alive steps of the episode, then the query) -> outputs of
    the last layer ``[n, D]``: a plain causal transformer whose token i attends to tokens
    i-M..i at distances i-j (no cache at all)."""
    x = tokens
    n, d = x.shape
    m, nh = core.memory_len, core.num_heads
    hd = d // nh
    table = ref_table(m + 1, d)
    for layer in core.layers:
        h = F.layer_norm(x, (d,), layer.ln_attn.weight, layer.ln_attn.bias)
        w_q, w_k, w_v = layer.qkv.weight.split(d)
        q, k, v = h @ w_q.T, h @ w_k.T, h @ w_v.T
        r = table @ layer.r_proj.weight.T                                      # [M+1, D]
        q, k, v = (z.view(n, nh, hd) for z in (q, k, v))
        r = r.view(m + 1, nh, hd)
        u, vb = layer.pos_bias_u, layer.pos_bias_v                             # [H, hd]
        rows = []
        for i in range(n):
            js = torch.arange(max(0, i - m), i + 1)                            # the window
            scores = (((q[i] + u) * k[js]).sum(-1)
                      + ((q[i] + vb) * r[i - js]).sum(-1)) / math.sqrt(hd)     # [len, H]
            p = torch.softmax(scores, dim=0)
            rows.append((p[..., None] * v[js]).sum(0).reshape(d))
        y = ref_gate(layer.gate_attn, x, torch.relu(torch.stack(rows) @ layer.out.weight.T))
        hm = F.layer_norm(y, (d,), layer.ln_mlp.weight, layer.ln_mlp.bias)
        mlp = torch.relu(hm @ layer.mlp_in.weight.T + layer.mlp_in.bias) @ layer.mlp_out.weight.T
        x = ref_gate(layer.gate_mlp, y, torch.relu(mlp + layer.mlp_out.bias))
    return x


def ref_features(core, e, first, alive):
    """e ``[T, N, A, D]`` -> features ``[T, N, A, D]`` recomputed from scratch at every step."""
    t_len, n, a, _ = e.shape
    out = torch.zeros_like(e)
    for i in range(n):
        for j in range(a):
            episode = []
            for t in range(t_len):
                if first[t, i, j]:
                    episode = []
                out[t, i, j] = ref_stack(core, torch.stack(episode + [e[t, i, j]]))[-1]
                if alive[t, i, j]:
                    episode.append(e[t, i, j])
    return out


@pytest.mark.parametrize("kw", [{}, {"num_layers": 1, "memory_len": 1}, {"memory_len": 5}])
def test_cached_stepping_equals_recompute_from_scratch(kw):
    """Episodes longer than M (the ring wraps), resets inside the window, dead steps (no write,
    no advance of the relative distances): outputs, logits and values."""
    t_len, n, a = 14, 2, 2
    policy = make(**kw)
    obs, first, alive = inputs(t_len, n, a, seed=3)
    first[6, 0, 0] = True                      # a reset inside a full window
    first[:6, 0, 0], alive[:6, 0, 0] = False, True
    alive[9, 1, 1] = False                     # a dead step inside an episode
    with torch.no_grad():
        e = encode(policy, obs)
        features, state = step_loop(policy.core, e, policy.initial_state(n, a), first, alive)
        expected = ref_features(policy.core, e, first, alive)
        logits, values = [], []
        s = policy.initial_state(n, a)
        for t in range(t_len):
            lg, v, s = policy.step(obs[t], s, first[t], alive[t])
            logits.append(lg)
            values.append(v)
        ref_logits, ref_values = policy.heads(expected)
    torch.testing.assert_close(features, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.stack(logits), ref_logits, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.stack(values), ref_values, atol=1e-12, rtol=0)
    # the ring holds min(M, alive steps since the last reset) valid slots
    m = policy.core.memory_len
    for i in range(n):
        for j in range(a):
            last = max(t for t in range(t_len) if t == 0 or first[t, i, j])
            count = int(alive[last:, i, j].sum())
            assert int(state["valid"][i, j].sum()) == min(m, count)
            assert int(state["cursor"][i, j]) == count % m


def test_receptive_field_is_layers_times_memory():
    """An output depends on exactly the last L * M alive steps (the perturbed step included)."""
    t_len, n, a = 12, 1, 1
    for layers, memory in ((1, 3), (2, 3), (2, 2)):
        policy = make(num_layers=layers, memory_len=memory)
        obs, _, _ = inputs(t_len, n, a, seed=4)
        first = torch.zeros(t_len, n, a, dtype=torch.bool)
        alive = torch.ones(t_len, n, a, dtype=torch.bool)
        obs2 = obs.clone()
        obs2[1] += 1.0
        with torch.no_grad():
            l1, _ = policy.sequence(obs, policy.initial_state(n, a), first, alive)
            l2, _ = policy.sequence(obs2, policy.initial_state(n, a), first, alive)
        reach = 1 + layers * memory
        assert torch.equal(l1[:1], l2[:1])
        assert ((l1[1:reach + 1] - l2[1:reach + 1]).abs().amax(-1) > 1e-12).all()
        assert torch.equal(l1[reach + 1:], l2[reach + 1:])


# ---------------------------------------------------------------------------------------------
# parallel sequence == step loop


CONFIGS = [
    {},
    {"memory_grad": "none"},
    {"memory_len": 1},
    {"num_layers": 1, "memory_len": 7},
    {"d_model": 15, "num_heads": 5, "num_layers": 3, "memory_len": 4, "mlp_ratio": 1},
    {"share_memory": True},
    {"share_memory": True, "memory_delay": 2, "memory_drop": 0.3, "memory_grad": "none"},
]


@pytest.mark.parametrize("kw", CONFIGS, ids=[str(c) for c in CONFIGS])
@pytest.mark.parametrize("warm", [False, True])
def test_sequence_equals_step_loop_forward_and_gradients(kw, warm):
    """float64; resets, dead agents, T > M, odd sizes; gradients w.r.t. encoder outputs and
    every parameter (the loop is MemoryCore.sequence: step x T, detaching with memory_grad="none")."""
    t_len, n, a = 9, 3, 2
    policy = make(**kw)
    core = policy.core
    state0 = policy.initial_state(n, a)
    if warm:
        obs, first, alive = inputs(5, n, a, seed=8)
        with torch.no_grad():
            state0 = step_loop(core, encode(policy, obs), state0, first, alive)[1]
        state0["cursor"][0, 0] = -5                    # any integer cursor is a valid state
    obs, first, alive = inputs(t_len, n, a, seed=9, p_first=0.2, p_alive=0.7)
    e = encode(policy, obs).detach().requires_grad_(True)
    weight = torch.randn(t_len, n, a, core.feature_dim, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(2))
    results = []
    for run in (MemoryCore.sequence, XLCacheCore.sequence):
        policy.zero_grad()
        e.grad = None
        features, state = run(core, e, state0, first, alive)
        (features * weight).sum().backward()
        grads = {name: p.grad.clone() for name, p in core.named_parameters()
                 if p.grad is not None}
        results.append((features.detach(), state, e.grad.clone(), grads))
    (f1, s1, ge1, g1), (f2, s2, ge2, g2) = results
    torch.testing.assert_close(f1, f2, atol=1e-12, rtol=0)
    assert_state_equal({k: v.detach() for k, v in s1.items()},
                       {k: v.detach() for k, v in s2.items()}, atol=1e-12)
    torch.testing.assert_close(ge1, ge2, atol=1e-11, rtol=0)
    assert g1.keys() == g2.keys() and len(g1) == len(list(core.parameters()))
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], atol=1e-11, rtol=0, msg=name)


def test_sequence_matches_step_in_float32_with_long_segment():
    t_len, n, a = 40, 2, 3
    policy = make(dtype=torch.float32, amplify=False, memory_len=6)
    obs, first, alive = inputs(t_len, n, a, seed=5, dtype=torch.float32)
    with torch.no_grad():
        e = encode(policy, obs)
        f1, s1 = step_loop(policy.core, e, policy.initial_state(n, a), first, alive)
        f2, s2 = policy.core.sequence(e, policy.initial_state(n, a), first, alive)
    torch.testing.assert_close(f1, f2, atol=1e-5, rtol=0)
    assert_state_equal(s1, s2, atol=1e-5)


@pytest.mark.parametrize("kw", [{}, {"share_memory": True}])
def test_cache_at_segment_start_is_stop_gradient(kw):
    t_len, n, a = 4, 2, 2
    policy = make(**kw)
    obs, first, alive = inputs(5, n, a, seed=8)
    with torch.no_grad():
        state0 = step_loop(policy.core, encode(policy, obs), policy.initial_state(n, a),
                           first, alive)[1]
    for key in ("keys", "values"):
        state0[key].requires_grad_(True)
    obs, _, _ = inputs(t_len, n, a, seed=6)
    no_reset = torch.zeros(t_len, n, a, dtype=torch.bool)
    logits, values = policy.sequence(obs, state0, no_reset)
    (logits.sum() + values.sum()).backward()
    assert state0["keys"].grad is None and state0["values"].grad is None
    # ... while stepping keeps the graph through the cache (the caller's state is used as is)
    _, value, _ = policy.step(obs[0], state0, no_reset[0])
    value.sum().backward()
    assert state0["keys"].grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [{}, {"memory_grad": "none"}, {"share_memory": True}])
def test_no_gradient_across_episode_boundary(kw):
    t_len, n, a = 8, 2, 3
    policy = make(**kw)
    obs, _, _ = inputs(t_len, n, a, seed=7)
    obs.requires_grad_(True)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    first[4, 0, 0] = True
    logits, values = policy.sequence(obs, policy.initial_state(n, a), first)
    (logits[4:, 0, 0].sum() + values[4:, 0, 0].sum()).backward()
    grad = obs.grad.abs().sum(-1)                                              # [T, N, A]
    assert (grad[:4, 0, 0] == 0).all()                    # the previous episode: exactly zero
    assert (grad[4:, 0, 0] > 0).all()
    assert (grad[:, 1] == 0).all()                        # never another env
    if kw.get("memory_grad", "own") != "none" and not kw.get("share_memory"):
        # (with share_memory the own summary read is a recurrence with gradient: no bound)
        # bptt: the gradient reaches the earlier steps of the episode within the receptive
        # field L * M (memory_grad none: only the own step, next test)
        policy.zero_grad()
        obs.grad = None
        logits, _ = policy.sequence(obs, policy.initial_state(n, a), first)
        logits[-1, 0, 1].sum().backward()
        reach = policy.config.num_layers * policy.config.memory_len
        grad = obs.grad.abs().sum(-1)[:, 0, 1]
        assert (grad[-reach - 1:] > 0).all() and (grad[:-reach - 1] == 0).all()


def test_bptt_false_reaches_only_the_own_step():
    t_len, n, a = 6, 1, 2
    policy = make(memory_grad="none")
    obs, _, _ = inputs(t_len, n, a, seed=7)
    obs.requires_grad_(True)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    logits, _ = policy.sequence(obs, policy.initial_state(n, a), first)
    logits[-1, 0, 0].sum().backward()
    grad = obs.grad.abs().sum(-1)
    assert (grad[:-1] == 0).all() and grad[-1, 0, 0] > 0 and grad[-1, 0, 1] == 0


# ---------------------------------------------------------------------------------------------
# gates


def test_gate_bias_is_two_at_init_and_configurable():
    policy = make_agent("gtrxl", OBS, K)
    gates = [m for m in policy.modules() if isinstance(m, GRUGate)]
    assert len(gates) == 2 * policy.config.num_layers
    for gate in gates:
        assert torch.equal(gate.bias, torch.full_like(gate.bias, 2.0))
        zeros = torch.zeros(1, gate.bias.shape[0])
        z = torch.sigmoid(gate.w(zeros).chunk(3, -1)[1] + gate.u(zeros).chunk(2, -1)[1]
                          - gate.bias)
        torch.testing.assert_close(z, torch.full_like(z, 1 / (1 + math.exp(2.0))))
    other = make_agent("gtrxl", OBS, K, gate_bias=0.5)
    assert all((m.bias == 0.5).all() for m in other.modules() if isinstance(m, GRUGate))


def test_gru_gate_applies_the_reset_before_u_g():
    torch.manual_seed(0)
    gate = GRUGate(5).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    torch.testing.assert_close(gate(x, y), ref_gate(gate, x, y), atol=1e-14, rtol=0)
    # Metta's "fused" gate, tanh((W_g y + U_g x) ⊙ r), is a different function
    w_r, _, w_g = gate.w.weight.split(5)
    u_r, _ = gate.u.weight.split(5)
    r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
    after = torch.tanh((y @ w_g.T + x @ gate.u_g.weight.T) * r)
    before = torch.tanh(y @ w_g.T + (r * x) @ gate.u_g.weight.T)
    assert (after - before).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------
# shared memory


def test_shared_memory_crosses_agents_not_envs():
    t_len, n, a, t0 = 5, 2, 3, 1
    policy = make(share_memory=True)
    obs, _, _ = inputs(t_len, n, a, seed=11)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    pert = obs.clone()
    pert[:, 0] += torch.randn_like(pert[:, 0])          # env 0, every agent, every step
    one = obs.clone()
    one[t0, 0, 1] += 1.0                                 # env 0, agent 1, step t0
    with torch.no_grad():
        base = torch.cat([x[..., None] if x.dim() == 3 else x for x in
                          policy.sequence(obs, policy.initial_state(n, a), first)], -1)
        out_env = torch.cat([x[..., None] if x.dim() == 3 else x for x in
                             policy.sequence(pert, policy.initial_state(n, a), first)], -1)
        out_one = torch.cat([x[..., None] if x.dim() == 3 else x for x in
                             policy.sequence(one, policy.initial_state(n, a), first)], -1)
    assert torch.equal(base[:, 1], out_env[:, 1])                      # env 1 untouched
    assert not torch.equal(base[:, 0], out_env[:, 0])
    assert torch.equal(base[: t0 + 1, 0, 0], out_one[: t0 + 1, 0, 0])   # one-step lag
    assert (base[t0 + 1:, 0, 0] - out_one[t0 + 1:, 0, 0]).abs().max() > 1e-9
    assert torch.equal(base[:, 1], out_one[:, 1])
    # without sharing the agents of an env do not see each other
    private = make()
    with torch.no_grad():
        l1, _ = private.sequence(obs, private.initial_state(n, a), first)
        l2, _ = private.sequence(one, private.initial_state(n, a), first)
    assert torch.equal(l1[:, 0, 0], l2[:, 0, 0]) and torch.equal(l1[:, 0, 2], l2[:, 0, 2])


# ---------------------------------------------------------------------------------------------
# configs and presets


@pytest.mark.parametrize("kw,word", [
    ({"num_heads": 3}, "divisible"),
    ({"memory_len": 0}, "memory_len"),
    ({"num_layers": 0}, "num_layers"),
    ({"gate_bias": float("nan")}, "gate_bias"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
])
def test_bad_config_raises_one_line_error(kw, word):
    with pytest.raises(MemarlError) as info:
        make_agent("gtrxl", (3, 5, 5), 5, **kw)
    assert word in str(info.value) and "\n" not in str(info.value)


def test_presets_and_parameter_counts(capsys):
    rows = []
    for preset, shape in (("bottleneck", (3, 5, 5)), ("tmaze", (16,))):
        policy = make_agent("gtrxl", shape, 5 if len(shape) == 3 else 4, preset=preset)
        config = policy.config
        assert policy.core.memory_len == config.memory_len
        state = policy.initial_state(2, 3)
        assert state["keys"].shape == (2, 3, config.num_layers, config.memory_len,
                                       config.num_heads, config.d_model // config.num_heads)
        counts = policy.parameter_counts()
        assert counts["total"] == counts["effective"]    # R is a fixed sinusoid, not a table
        rows.append(f"gtrxl-{preset:10s} D={config.d_model} L={config.num_layers} "
                    f"H={config.num_heads} M={config.memory_len}  total {counts['total']:>10,d}")
    # lmapf: the core only (the 8-block ResNet's orthogonal init takes seconds on a CPU)
    config = GTrXLConfig(**GTRXL_PRESETS["lmapf"])
    core = gtrxl_core(config)
    d = config.d_model
    per_layer = (5 * d * d + 2 * d + 4 * d            # qkv, W_R, out; u, v; two LayerNorms
                 + 2 * (6 * d * d + d)                  # two GRU gates
                 + 2 * config.mlp_ratio * d * d + config.mlp_ratio * d + d)   # MLP
    assert sum(p.numel() for p in core.parameters()) == config.num_layers * per_layer
    rows.append(f"gtrxl-lmapf      D={d} L={config.num_layers} H={config.num_heads} "
                f"M={config.memory_len}  core  {config.num_layers * per_layer:>10,d}")
    assert (GTRXL_PRESETS["tmaze"]["d_model"], GTRXL_PRESETS["tmaze"]["memory_len"]) == (64, 128)
    with capsys.disabled():
        print("\n" + "\n".join(rows))
