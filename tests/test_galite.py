"""GaLiTe / AGaLiTe: recurrent step == parallel (chunked / scanned) form, forward and backward,
with resets and dead agents inside the segment; the tick and its phase folding; r = 2; shared
memory isolation; presets. The policy contract tests run in tests/test_agents.py."""
from __future__ import annotations

import math

import pytest
import torch

from memarl.agents import make_agent
from memarl.errors import MemarlError
from memarl.memory.linear_attention import (agalite_scan, agalite_step, episode_ticks,
                                            galite_chunked, galite_step, gla_chunked, gla_step,
                                            tick_cosines)

OBS = (3, 5, 5)
K_ACT = 5
NAMES = ["galite", "agalite"]


def make(name, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return make_agent(name, OBS, K_ACT, **kw).to(dtype)


def masks(t_len, b, seed, p_first=0.2, p_alive=0.75):
    g = torch.Generator().manual_seed(seed)
    first = torch.rand(t_len, b, generator=g) < p_first
    alive = torch.rand(t_len, b, generator=g) < p_alive
    return first, alive


def op_inputs(t_len, b, h, k, v, seed, dtype=torch.float64, strong=False):
    """Gated inputs as the core makes them: k, q >= 0, log-decays <= 0; dead steps zeroed."""
    g = torch.Generator().manual_seed(seed)
    scale = 30.0 if strong else 1.0
    q = torch.rand(t_len, b, h, k, generator=g, dtype=dtype)
    kk = torch.rand(t_len, b, h, k, generator=g, dtype=dtype)
    vv = torch.randn(t_len, b, h, v, generator=g, dtype=dtype)
    gk = -scale * torch.rand(t_len, b, h, k, generator=g, dtype=dtype)
    gv = -scale * torch.rand(t_len, b, h, v, generator=g, dtype=dtype)
    first, alive = masks(t_len, b, seed + 1)
    m = alive.to(dtype)[..., None, None]
    return q, kk * m, vv * m, gk * m, gv * m, first, alive


def reset_rows(first_t, *tensors):
    """Zero the states of the rows flagged in first_t ``[B]`` (what reset_first does)."""
    return [x.masked_fill(first_t.view(-1, *([1] * (x.dim() - 1))), 0) for x in tensors]


def close(x, y, tol):
    torch.testing.assert_close(x, y, atol=tol, rtol=tol)


# ---------------------------------------------------------------------------------------------
# recurrence ops: step loop == parallel form, forward and backward


def _grads(outputs, leaves, seed):
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("t_len", [7, 13])
@pytest.mark.parametrize("chunk", [1, 4, 5, 16])
def test_galite_chunked_equals_step_loop(t_len, chunk):
    b, h, k, v = 3, 2, 6, 5
    q, kk, vv, gk, gv, first, _ = op_inputs(t_len, b, h, k, v, seed=t_len + chunk)
    C0 = torch.randn(b, h, k, v, dtype=torch.float64)
    s0 = torch.rand(b, h, k, dtype=torch.float64)
    leaves = [x.requires_grad_() for x in (q, kk, vv, gk, gv, C0, s0)]
    out_p, C_p, s_p = galite_chunked(q, kk, vv, gk, gv, C0, s0, first, chunk)
    C, s, outs = C0, s0, []
    for t in range(t_len):
        C, s = reset_rows(first[t], C, s)
        o, C, s = galite_step(q[t], kk[t], vv[t], gk[t], gv[t], C, s)
        outs.append(o)
    out_s = torch.stack(outs)
    close(out_p, out_s, 1e-12)
    close(C_p, C, 1e-12)
    close(s_p, s, 1e-12)
    for gp, gs in zip(_grads([out_p, C_p, s_p], leaves, 3), _grads([out_s, C, s], leaves, 3)):
        close(gp, gs, 1e-11)


def test_gla_chunked_without_resets_and_with_strong_decays_float32():
    """Decays down to exp(-30) per step: the pairwise exponents never overflow (no division by
    cumulative products); float32 stays close to the float64 step loop."""
    t_len, b, h, k, v = 13, 2, 2, 5, 3
    q, kk, vv, gk, gv, _, _ = op_inputs(t_len, b, h, k, v, seed=4, strong=True)
    h0 = torch.randn(b, h, k, v, dtype=torch.float64)
    state, outs = h0, []
    for t in range(t_len):
        o, state = gla_step(q[t], kk[t], vv[t], gk[t], gv[t], state)
        outs.append(o)
    ref = torch.stack(outs)
    for reset in (None, torch.zeros(t_len, b, dtype=torch.bool)):
        o32, h32 = gla_chunked(*(x.float() for x in (q, kk, vv, gk, gv, h0)), reset=reset,
                               chunk_size=8)
        assert torch.isfinite(o32).all() and torch.isfinite(h32).all()
        close(o32.double(), ref, 1e-5)
        close(h32.double(), state, 1e-5)


@pytest.mark.parametrize("t_len", [7, 13])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_agalite_scan_equals_step_loop(t_len, r):
    b, h, k, v = 4, 2, 6, 5
    q, kk, vv, gk, gv, first, alive = op_inputs(t_len, b, h, k, v, seed=10 * r + t_len)
    tick0 = torch.tensor([0, 5, 10**7, 3])
    ticks, tick_end = episode_ticks(tick0, first, alive)
    cos = tick_cosines(ticks, r, torch.float64)                               # [T, B, r]
    vt0 = torch.randn(b, h, r, v, dtype=torch.float64)
    kt0 = torch.randn(b, h, r, k, dtype=torch.float64)
    s0 = torch.rand(b, h, k, dtype=torch.float64)
    leaves = [x.requires_grad_() for x in (q, kk, vv, gk, gv, vt0, kt0, s0)]
    out_p, vt_p, kt_p, s_p = agalite_scan(q, kk, vv, gk, gv, cos, vt0, kt0, s0, first)
    vt, kt, s, tick, outs = vt0, kt0, s0, tick0, []
    for t in range(t_len):
        vt, kt, s, tick = reset_rows(first[t], vt, kt, s, tick)
        o, vt, kt, s = agalite_step(q[t], kk[t], vv[t], gk[t], gv[t],
                                    tick_cosines(tick, r, torch.float64), vt, kt, s)
        tick = tick + alive[t].long()
        outs.append(o)
    out_s = torch.stack(outs)
    assert torch.equal(tick, tick_end)
    for x, y in [(out_p, out_s), (vt_p, vt), (kt_p, kt), (s_p, s)]:
        close(x, y, 1e-12)
    grads_p = _grads([out_p, vt_p, kt_p, s_p], leaves, 5)
    grads_s = _grads([out_s, vt, kt, s], leaves, 5)
    for gp, gs in zip(grads_p, grads_s):
        close(gp, gs, 1e-11)


def test_episode_ticks_match_stepping():
    t_len, b = 13, 6
    first, alive = masks(t_len, b, seed=2, p_first=0.3, p_alive=0.6)
    first[0, 0] = False
    tick0 = torch.tensor([4, 0, 9, 2**40, 7, 1])
    ticks, end = episode_ticks(tick0, first, alive)
    tick = tick0.clone()
    for t in range(t_len):
        tick = torch.where(first[t], 0, tick)
        assert torch.equal(ticks[t], tick)
        tick = tick + alive[t].long()
    assert torch.equal(end, tick)


# ---------------------------------------------------------------------------------------------
# tick, frequencies, r


def test_cosines_are_exact_at_tick_ten_million():
    r = 7
    ticks = torch.arange(10**7, 10**7 + 20)
    got = tick_cosines(ticks, r, torch.float64)                              # [20, r]
    want = torch.tensor([[math.cos(2 * math.pi * i * t / r) for i in range(r)]
                         for t in ticks.tolist()], dtype=torch.float64)
    close(got, want, 1e-7)              # float64 ω·t in Python: ~1e-8 absolute at 5e7 rad
    # the folded float32 values are exact to float32 rounding as well ...
    close(tick_cosines(ticks, r, torch.float32).double(), want, 1e-6)
    # ... whereas the unfolded float32 phase ω·t (the released code) is off by O(1)
    omega = torch.arange(r, dtype=torch.float32) * (2 * math.pi / r)
    naive = torch.cos(ticks.float()[:, None] * omega)
    assert (naive.double() - want).abs().max() > 0.1


def test_agalite_outputs_depend_on_the_tick_only_mod_r_exactly():
    """Phase folding at the policy level: a tick of 10**7 + j acts exactly as j mod r."""
    r, n, a = 3, 2, 2
    policy = make("agalite", num_cosines=r, dtype=torch.float32)
    obs = torch.randn(4, n, a, *OBS)
    no_first = torch.zeros(4, n, a, dtype=torch.bool)
    outs = []
    for big in (10**7 + 2, (10**7 + 2) % r):
        state = policy.initial_state(n, a)
        state["tick"] = torch.full((n, a), big)
        with torch.no_grad():
            logits, values, final = policy.sequence(obs, state, no_first, return_state=True)
        outs.append(logits)
        assert (final["tick"] == big + 4).all()
    assert torch.equal(outs[0], outs[1])


def test_r2_frequencies_are_zero_and_pi_not_degenerate():
    cos = tick_cosines(torch.arange(4), 2, torch.float64)
    assert torch.equal(cos, torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]],
                                         dtype=torch.float64))
    # the released linspace(-pi, pi, 2) would give two identical columns (-1)^t
    assert not torch.equal(cos[:, 0], cos[:, 1])


def test_agalite_r2_equals_galite_on_two_step_episodes():
    """With r = 2 (ω = 0, π) Σ_i cos(ω_i s) cos(ω_i s') = 2 δ(s, s') for ticks s, s' in {0, 1}:
    AGaLiTe's read-out is GaLiTe's (same weights) while episodes are at most 2 steps long
    (ε halves: r (s·q) + ε = 2 (s·q + ε/2)); a 3-step episode differs."""
    n, a, t_len = 2, 3, 6
    agalite = make("agalite", num_layers=2, num_cosines=2, eps=1e-5)
    galite = make("galite", num_layers=2, eps=5e-6)
    galite.load_state_dict(agalite.state_dict())
    obs = torch.randn(t_len, n, a, *OBS, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[::2] = True
    with torch.no_grad():
        la, va = agalite.sequence(obs, agalite.initial_state(n, a), first)
        lg, vg = galite.sequence(obs, galite.initial_state(n, a), first)
    close(la, lg, 1e-12)
    close(va, vg, 1e-12)
    first[2] = False                                   # steps 0..2 form one episode
    with torch.no_grad():
        la = agalite.sequence(obs, agalite.initial_state(n, a), first)[1]
        lg = galite.sequence(obs, galite.initial_state(n, a), first)[1]
    close(la[:2], lg[:2], 1e-12)
    assert (la[2] - lg[2]).abs().max() > 1e-6


# ---------------------------------------------------------------------------------------------
# policy level: step x T == sequence (float64, forward and gradients)


def _policy_inputs(t_len, n, a, seed):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(t_len, n, a, *OBS, generator=g, dtype=torch.float64)
    first = torch.rand(t_len, n, a, generator=g) < 0.2
    alive = torch.rand(t_len, n, a, generator=g) < 0.7
    first[:, 0, 0] = False                   # one agent never resets: state0 carries through
    alive[2, 1, 1], first[2, 1, 1] = False, True       # reset while dead
    return obs, first, alive


def _warm(policy, n, a, seed=3):
    state = policy.initial_state(n, a)
    g = torch.Generator().manual_seed(seed)
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=g, dtype=value.dtype)
        elif value.dtype == torch.int64:
            state[key] = torch.randint(0, 10**6, value.shape, generator=g)
    return state


@pytest.mark.parametrize("name,kw", [
    ("galite", {"chunk_size": 4}),
    ("galite", {"chunk_size": 16}),
    ("agalite", {}),
    ("agalite", {"num_cosines": 3}),
])
@pytest.mark.parametrize("t_len", [7, 13])
def test_sequence_equals_step_loop_float64(name, kw, t_len):
    n, a = 2, 3
    policy = make(name, num_layers=2, **kw)
    obs, first, alive = _policy_inputs(t_len, n, a, seed=t_len)
    state0 = _warm(policy, n, a)
    obs_p = obs.clone().requires_grad_()
    lp, vp, sp = policy.sequence(obs_p, state0, first, alive, return_state=True)
    obs_s = obs.clone().requires_grad_()
    state, logits, values = state0, [], []
    for t in range(t_len):
        lg, v, state = policy.step(obs_s[t], state, first[t], alive[t])
        logits.append(lg)
        values.append(v)
    ls, vs = torch.stack(logits), torch.stack(values)
    close(lp, ls, 1e-10)
    close(vp, vs, 1e-10)
    assert sp.keys() == state.keys()
    for key in sp:
        if sp[key].is_floating_point():
            close(sp[key], state[key], 1e-10)
        else:
            assert torch.equal(sp[key], state[key]), key
    weights = torch.randn_like(lp), torch.randn_like(vp)
    params = [obs_p, *policy.parameters()]
    gp = torch.autograd.grad((lp * weights[0]).sum() + (vp * weights[1]).sum()
                             + sum(x.sum() for x in sp.values() if x.is_floating_point()),
                             params)
    params[0] = obs_s
    gs = torch.autograd.grad((ls * weights[0]).sum() + (vs * weights[1]).sum()
                             + sum(x.sum() for x in state.values() if x.is_floating_point()),
                             params)
    for (pname, _), x, y in zip([("obs", None), *policy.named_parameters()], gp, gs):
        close(x, y, 1e-9)
        assert x.abs().sum() > 0, pname


@pytest.mark.parametrize("name,kw,t0", [("galite", {"chunk_size": 2}, 2),
                                        ("galite", {"chunk_size": 2}, 3),
                                        ("galite", {}, 3),
                                        ("agalite", {}, 2),
                                        ("agalite", {}, 3),
                                        ("galite", {"share_memory": True}, 3),
                                        ("agalite", {"share_memory": True}, 3)])
def test_no_gradient_crosses_an_episode_boundary(name, kw, t0):
    """Outputs after agent (0, 1)'s reset at t0 get exactly zero gradient from its inputs
    before t0 (chunk boundaries at 2, 4, 6 with chunk_size 2; dead steps on both sides)."""
    t_len, n, a = 7, 2, 3
    policy = make(name, num_layers=2, **kw)
    obs = torch.randn(t_len, n, a, *OBS, dtype=torch.float64, requires_grad=True)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    first[t0, 0, 1] = True
    alive = torch.ones(t_len, n, a, dtype=torch.bool)
    alive[1, 0, 1] = alive[t0 + 1, 0, 1] = False
    logits, values = policy.sequence(obs, policy.initial_state(n, a), first, alive)
    (logits[t0:, 0, 1].sum() + values[t0:, 0, 1].sum()).backward()
    grad = obs.grad.flatten(3).abs().sum(-1)                                  # [T, N, A]
    if kw.get("share_memory"):
        # the other agents' memories are read detached (detach_other_memories default)
        assert (grad[:, 0, [0, 2]] == 0).all()
    assert (grad[:t0, 0, 1] == 0).all()
    assert (grad[t0:, 0, 1] > 0).all()
    assert (grad[:, 1] == 0).all()


# ---------------------------------------------------------------------------------------------
# dead agents, resets, the tick


@pytest.mark.parametrize("name", NAMES)
def test_dead_agents_keep_state_bit_identical_and_first_zeroes_it(name):
    n, a = 2, 3
    policy = make(name, num_layers=2, dtype=torch.float32)
    state = _warm(policy, n, a)
    obs = torch.randn(n, a, *OBS)
    alive = torch.tensor([[True, False, True], [False, True, False]])
    first = torch.tensor([[False, False, True], [True, False, False]])
    with torch.no_grad():
        _, _, new = policy.step(obs, state, first, alive)
    for key, value in new.items():
        dead_kept = ~alive & ~first
        assert torch.equal(value[dead_kept], state[key][dead_kept]), key
        reset_dead = ~alive & first                           # reset, then no input
        assert (value[reset_dead] == 0).all(), key
        changed = alive & ~first
        assert not torch.equal(value[changed], state[key][changed]), key
    if name == "agalite":
        assert torch.equal(new["tick"], torch.where(first, 0, state["tick"]) + alive.long())


def test_tick_advances_only_when_alive_and_restarts_at_first():
    n, a = 1, 3
    policy = make("agalite", dtype=torch.float32)
    state = policy.initial_state(n, a)
    pattern_alive = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]]
    pattern_first = [[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    expected = [[1, 1, 0], [2, 1, 0], [1, 2, 1], [2, 3, 2]]
    for al, fi, want in zip(pattern_alive, pattern_first, expected):
        with torch.no_grad():
            _, _, state = policy.step(torch.randn(n, a, *OBS), state,
                                      torch.tensor([fi], dtype=torch.bool),
                                      torch.tensor([al], dtype=torch.bool))
        assert state["tick"].tolist() == [want]


# ---------------------------------------------------------------------------------------------
# decay forms


def test_coupled_decay_form_is_the_released_rule_and_differs_from_separable():
    n, a, t_len = 2, 3, 5
    sep = make("galite")
    cpl = make("galite", decay_form="coupled")
    cpl.load_state_dict(sep.state_dict())
    obs, first, alive = _policy_inputs(t_len, n, a, seed=1)
    with torch.no_grad():
        ls, _ = sep.sequence(obs, sep.initial_state(n, a), first, alive)
        lc, _, state = cpl.sequence(obs, cpl.initial_state(n, a), first, alive,
                                    return_state=True)
    assert (ls - lc).abs().max() > 1e-6
    # one step by hand: C' = (1 - γ⊗β) ⊙ C + (γ k) ⊗ (β v) for the first layer
    core, layer = cpl.core, cpl.core.layers[0]
    e = cpl.encoder(obs[0].reshape(-1, *OBS)).view(n, a, -1)
    with torch.no_grad():
        p = layer.proj(layer.ln_1(torch.relu(core.embed(e))), torch.ones(n, a, dtype=bool))
        C = torch.rand(n, a, *state["C"].shape[2:], dtype=torch.float64)
        start = {"C": C, "s": torch.rand_like(state["s"])}
        _, _, new = cpl.step(obs[0], start, torch.zeros(n, a, dtype=bool))
    decay = 1 - p["gamma"][..., :, None] * p["beta"][..., None, :]
    want = decay * C[:, :, 0] + p["k"][..., :, None] * p["v"][..., None, :]
    close(new["C"][:, :, 0], want, 1e-12)


# ---------------------------------------------------------------------------------------------
# shared memory


@pytest.mark.parametrize("name", NAMES)
def test_shared_memory_crosses_agents_not_envs(name):
    t_len, n, a, t0 = 5, 2, 3, 1
    policy = make(name, share_memory=True)
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(t_len, n, a, *OBS, generator=g, dtype=torch.float64)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    state = policy.initial_state(n, a)

    def run(o):
        with torch.no_grad():
            logits, values = policy.sequence(o, state, first)
        return torch.cat([logits, values[..., None]], -1)

    base = run(obs)
    pert = obs.clone()
    pert[t0, 0, 1] += 1.0                                       # env 0, agent 1, step t0
    out = run(pert)
    assert torch.equal(out[:, 1], base[:, 1])                   # env 1 never sees env 0
    assert torch.equal(out[:t0 + 1, 0, 0], base[:t0 + 1, 0, 0])  # one-step lag
    assert (out[t0 + 1:, 0, 0] - base[t0 + 1:, 0, 0]).abs().max() > 1e-9   # crosses agents
    everything = obs.clone()
    everything[:, 0] = torch.randn_like(everything[:, 0])
    assert torch.equal(run(everything)[:, 1], base[:, 1])


# ---------------------------------------------------------------------------------------------
# configs and presets


def _state_floats(policy):
    state = policy.initial_state(1, 1)
    floats = sum(v.numel() for v in state.values() if v.is_floating_point())
    ints = sum(v.numel() for v in state.values() if not v.is_floating_point())
    return floats, ints


PRESET_OBS = {"bottleneck": (3, 5, 5), "lmapf": (3, 11, 11), "tmaze": (16,)}
STATE_FLOATS = {("galite", "bottleneck"): 288, ("galite", "lmapf"): 66_560,
                ("galite", "tmaze"): 8_704, ("agalite", "bottleneck"): 128,
                ("agalite", "lmapf"): 3_584, ("agalite", "tmaze"): 1_792}


def test_presets_state_sizes_and_parameter_counts(capsys):
    rows = []
    for (name, preset), floats in STATE_FLOATS.items():
        with torch.device("meta"):                     # counts and shapes only: no init cost
            policy = make_agent(name, PRESET_OBS[preset], 4 if preset == "tmaze" else 5,
                                preset=preset)
        got_floats, ints = _state_floats(policy)
        assert got_floats == floats, (name, preset)
        assert ints == (1 if name == "agalite" else 0)
        counts = policy.parameter_counts()
        assert counts["total"] == counts["effective"]
        rows.append(f"{name:8s} {preset:10s} params {counts['total']:>10,d}  state "
                    f"{got_floats:>8,d} floats ({got_floats * 4 / 1024:.1f} KiB)"
                    + (" + int64 tick" if ints else ""))
    with capsys.disabled():
        print("\n" + "\n".join(rows))


def test_tmaze_preset_runs_on_vector_observations():
    for name in NAMES:
        policy = make_agent(name, (16,), 4, preset="tmaze")
        obs = torch.randn(3, 2, 1, 16)
        first = torch.zeros(3, 2, 1, dtype=torch.bool)
        first[0] = True
        logits, values = policy.sequence(obs, policy.initial_state(2, 1), first)
        assert logits.shape == (3, 2, 1, 4) and torch.isfinite(logits).all()
        assert policy.core.num_layers == 2 and policy.core.num_heads == 4
        assert policy.core.eta == 4 and policy.core.head_dim == 16


@pytest.mark.parametrize("name,kw,words", [
    ("galite", {"num_heads": 3}, ["divisible", "head_dim"]),
    ("agalite", {"num_heads": 3, "head_dim": 4, "share_memory": True}, ["divisible"]),
    ("galite", {"decay_form": "product"}, ["decay_form"]),
    ("agalite", {"num_cosines": 0}, ["num_cosines"]),
    ("galite", {"chunk_size": 0}, ["chunk_size"]),
    ("agalite", {"eps": 0.0}, ["eps"]),
    ("galite", {"num_cosines": 2}, ["'num_cosines'"]),
    ("agalite", {"decay_form": "separable"}, ["'decay_form'"]),
])
def test_bad_configs_raise_one_line_errors(name, kw, words):
    with pytest.raises(MemarlError) as info:
        make_agent(name, OBS, K_ACT, **kw)
    assert "\n" not in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_odd_head_dim_and_bptt_false():
    policy = make("galite", num_heads=3, head_dim=5, feature_factor=3, chunk_size=3)
    obs, first, alive = _policy_inputs(7, 2, 2, seed=4)
    with torch.no_grad():
        lp, _ = policy.sequence(obs, policy.initial_state(2, 2), first, alive)
        state, ls = policy.initial_state(2, 2), []
        for t in range(7):
            lg, _, state = policy.step(obs[t], state, first[t], alive[t])
            ls.append(lg)
    close(lp, torch.stack(ls), 1e-10)
    truncated = make("agalite", memory_grad="none")
    obs = obs.clone().requires_grad_()
    first = torch.zeros(7, 2, 2, dtype=torch.bool)
    logits, _ = truncated.sequence(obs, truncated.initial_state(2, 2), first)
    logits[-1].sum().backward()
    assert (obs.grad[:-1] == 0).all() and (obs.grad[-1] != 0).any()
