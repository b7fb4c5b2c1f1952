"""Policy contract tests for every registered agent, and SRMT's shared-memory behaviour."""
from __future__ import annotations

import math

import pytest
import torch

from memarl.agents import AGENTS, make_agent
from memarl.errors import MemarlError
from memarl.memory.broadcast import SharedMemoryRead
from .state_checks import assert_state_equal

OBS = (3, 5, 5)
K = 5
NAMES = AGENTS.names()
# agents that can broadcast their memory (rmt / attention are SRMT with sharing switched off)
SHAREABLE = ["srmt", "gru", "lstm", "rate", "gtrxl", "galite", "agalite"]
# Every registered agent with its defaults, with shared memory, plus the options that change the
# computation.
VARIANTS = [(name, {}) for name in NAMES] + [
    (name, {"share_memory": True}) for name in SHAREABLE if name != "srmt"] + [
    ("srmt", {"memory_drop": 0.5}),
    ("gru", {"share_memory": True, "memory_delay": 2, "memory_drop": 0.3,
             "clear_finished_memory": True}),
    ("lstm", {"memory_grad": "none"}),
    ("srmt", {"attention": "causal_mem_first"}),
    ("srmt", {"memory_delay": 3}),
    ("srmt", {"clear_finished_memory": True}),
    ("srmt", {"memory_grad": "segment"}),
    ("srmt", {"use_memory_head": False, "history_len": 0}),
    ("srmt", {"num_layers": 2}),
    ("srmt", {"memory_grad": "none"}),
    ("gru", {"memory_grad": "none"}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in VARIANTS]


def make(name, seed=0, **kw):
    torch.manual_seed(seed)
    return make_agent(name, OBS, K, **kw)


def inputs(t, n, a, seed=1, p_first=0.2, p_alive=0.8):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(t, n, a, *OBS, generator=g)
    first = torch.rand(t, n, a, generator=g) < p_first
    alive = torch.rand(t, n, a, generator=g) < p_alive
    return obs, first, alive


def run_steps(policy, obs, state, first, alive):
    logits, values = [], []
    for t in range(obs.shape[0]):
        lg, v, state = policy.step(obs[t], state, first[t], alive[t])
        logits.append(lg)
        values.append(v)
    return torch.stack(logits), torch.stack(values), state


def warm_state(policy, n, a, steps=3, seed=7):
    obs, first, alive = inputs(steps, n, a, seed=seed)
    first[0] = True
    with torch.no_grad():
        return run_steps(policy, obs, policy.initial_state(n, a), first, alive)[2]




# ---------------------------------------------------------------------------------------------
# contract


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
@pytest.mark.parametrize("t_len", [1, 4, 9])
@pytest.mark.parametrize("warm", [False, True])
def test_step_equals_sequence(name, kw, t_len, warm):
    n, a = 3, 5
    policy = make(name, **kw)
    state0 = warm_state(policy, n, a) if warm else policy.initial_state(n, a)
    obs, first, alive = inputs(t_len, n, a, seed=t_len)
    with torch.no_grad():
        l1, v1, s1 = run_steps(policy, obs, state0, first, alive)
        l2, v2, s2 = policy.sequence(obs, state0, first, alive, return_state=True)
    assert l2.shape == (t_len, n, a, K) and v2.shape == (t_len, n, a)
    assert torch.isfinite(l2).all() and torch.isfinite(v2).all()
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=0)
    torch.testing.assert_close(v1, v2, atol=1e-5, rtol=0)
    assert_state_equal(s1, s2, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_layout_and_alive_default(name):
    policy = make(name)
    state = policy.initial_state(2, 3)
    for value in state.values():
        assert value.shape[:2] == (2, 3)
    obs = torch.randn(2, 3, *OBS)
    first = torch.ones(2, 3, dtype=torch.bool)
    l1, v1, s1 = policy.step(obs, state, first)
    l2, v2, s2 = policy.step(obs, state, first, torch.ones(2, 3, dtype=torch.bool))
    assert torch.equal(l1, l2) and torch.equal(v1, v2)
    assert_state_equal(s1, s2)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_gradients_reach_encoder_and_core(name, kw):
    n, a, t_len = 2, 3, 10      # past one memory write of RATE's 8-step segments
    policy = make(name, **kw)
    obs, _, _ = inputs(t_len, n, a)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    logits, _ = policy.sequence(obs, policy.initial_state(n, a), first)
    (logits[-1] * torch.randn_like(logits[-1])).sum().backward()
    for pname, param in policy.named_parameters():
        if pname.startswith("heads.critic"):
            continue                    # the loss is on the logits only
        if pname.startswith("core.mem_head") and kw.get("memory_grad") == "none":
            # truncated gradients: the new memory enters the loss only at a later step, so
            # mem_head is never trained (as in the released code's recurrence-1 training)
            assert param.grad is None or (param.grad == 0).all()
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, pname
        assert torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_first_resets_to_fresh_state(name, kw):
    n, a = 2, 3
    policy = make(name, **kw)
    obs = torch.randn(n, a, *OBS)
    all_first = torch.ones(n, a, dtype=torch.bool)
    with torch.no_grad():
        fresh = policy.step(obs, policy.initial_state(n, a), all_first)
        reset = policy.step(obs, warm_state(policy, n, a), all_first)
        # an initial state needs no first flag: the memory is not initialised either way
        unflagged = policy.step(obs, policy.initial_state(n, a), ~all_first)
    def episode_state(state):  # the channel's key and step count are not episode state
        return {k: v for k, v in state.items() if k not in ("shared_key", "shared_tick")}

    for other in (reset, unflagged):
        torch.testing.assert_close(other[0], fresh[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(other[1], fresh[1], atol=1e-6, rtol=0)
        assert_state_equal(episode_state(other[2]), episode_state(fresh[2]), atol=1e-6)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_first_is_per_agent(name, kw):
    """Resetting some agents with ``first`` equals zeroing their state entries by hand."""
    n, a = 2, 3
    policy = make(name, **kw)
    state = warm_state(policy, n, a)
    obs = torch.randn(n, a, *OBS)
    first = torch.tensor([[False, True, False], [True, False, False]])
    manual = {key: value.clone() for key, value in state.items()}
    for key, value in manual.items():
        if key not in ("shared_key", "shared_tick"):   # the channel's key survives resets
            value[first] = 0
    with torch.no_grad():
        out1 = policy.step(obs, state, first)
        out2 = policy.step(obs, manual, torch.zeros_like(first))
    torch.testing.assert_close(out1[0], out2[0], atol=0, rtol=0)
    assert_state_equal(out1[2], out2[2])


@pytest.mark.parametrize("name", ["rmt", "attention", "gru", "empty"])
def test_per_agent_reset_matches_fresh_agent_without_sharing(name):
    n, a = 2, 3
    policy = make(name)
    obs = torch.randn(n, a, *OBS)
    first = torch.zeros(n, a, dtype=torch.bool)
    first[0, 1] = True
    with torch.no_grad():
        fresh = policy.step(obs, policy.initial_state(n, a), torch.ones_like(first))[0]
        reset = policy.step(obs, warm_state(policy, n, a), first)[0]
    torch.testing.assert_close(reset[0, 1], fresh[0, 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_dead_agents_keep_state(name, kw):
    n, a = 3, 4
    policy = make(name, **kw)
    state = warm_state(policy, n, a)
    obs = torch.randn(n, a, *OBS)
    alive = torch.rand(n, a, generator=torch.Generator().manual_seed(3)) < 0.5
    alive[0, 0], alive[0, 1] = True, False
    with torch.no_grad():
        _, _, new = policy.step(obs, state, torch.zeros(n, a, dtype=torch.bool), alive)
    for key, value in new.items():
        if key in ("shared_summary", "shared_valid"):
            # the broadcast delay line advances for everybody; a dead agent pushes its newest
            assert torch.equal(value[~alive][:, 0], state[key][~alive][:, 0])
            assert torch.equal(value[:, :, 1:], state[key][:, :, :-1])
            continue
        if key == "shared_tick":                      # the channel's clock runs for everybody
            assert torch.equal(value, state[key] + 1)
            continue
        assert torch.equal(value[~alive], state[key][~alive]), key
    if new:
        assert any(not torch.equal(v[alive], state[k][alive]) for k, v in new.items())


# ---------------------------------------------------------------------------------------------
# who reads whom


def _perturbed_logits(policy, t0, env, agent, t_len=5, n=2, a=3):
    obs, _, _ = inputs(t_len, n, a, seed=11)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    state = policy.initial_state(n, a)
    obs2 = obs.clone()
    obs2[t0, env, agent] += 1.0
    with torch.no_grad():
        return _outputs(*policy.sequence(obs, state, first)), \
            _outputs(*policy.sequence(obs2, state, first))


def _outputs(logits, values):
    """logits and value side by side (the initial logits are tiny: actor gain 0.01)."""
    return torch.cat([logits, values[..., None]], dim=-1)


def amplified(name, **kw):
    """A policy whose core weights are large: at the GPT-2 initialisation (std 0.02) the shared
    read moves the outputs by ~1e-7 only, too little to tell wiring from rounding."""
    policy = make(name, **kw)
    torch.manual_seed(1)
    for pname, param in policy.named_parameters():
        if pname.startswith("core.") and param.dim() == 2:
            torch.nn.init.normal_(param, std=0.5)
    return policy


def _changed(x, y):
    return (x - y).abs().max().item() > 1e-5


def _same(x, y):
    """Bit-identical: what an agent cannot read does not move its outputs at all."""
    return torch.equal(x, y)


def test_srmt_reads_other_agents_memory_with_one_step_lag():
    t0 = 1
    base, pert = _perturbed_logits(amplified("srmt"), t0, env=0, agent=1)
    assert _same(base[: t0 + 1, 0, 0], pert[: t0 + 1, 0, 0])   # nothing before / at t0
    assert _changed(base[t0 + 1, 0, 0], pert[t0 + 1, 0, 0])           # the shared read at t0+1
    assert _changed(base[t0, 0, 1], pert[t0, 0, 1])                   # the perturbed agent


def test_memory_delay_postpones_the_shared_read():
    t0 = 1
    base, pert = _perturbed_logits(amplified("srmt", memory_delay=2), t0, env=0, agent=1)
    assert _same(base[: t0 + 2, 0, 0], pert[: t0 + 2, 0, 0])
    assert _changed(base[t0 + 2, 0, 0], pert[t0 + 2, 0, 0])


@pytest.mark.parametrize("name", ["rmt", "attention", "gru", "empty"])
def test_agents_without_sharing_ignore_other_agents(name):
    base, pert = _perturbed_logits(amplified(name), 1, env=0, agent=1)
    assert _same(base[:, 0, 0], pert[:, 0, 0])
    assert _same(base[:, 0, 2], pert[:, 0, 2])


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_no_leakage_across_envs(name, kw):
    t_len, n, a = 4, 3, 3
    policy = make(name, **kw)
    obs, first, alive = inputs(t_len, n, a)
    state = warm_state(policy, n, a)
    obs2, first2, alive2 = obs.clone(), first.clone(), alive.clone()
    obs2[:, 0] += torch.randn_like(obs2[:, 0])
    first2[:, 0] = ~first2[:, 0]
    alive2[:, 0] = ~alive2[:, 0]
    state2 = {key: value.clone() for key, value in state.items()}
    for key, value in state2.items():
        value[0] = torch.randn_like(value[0]) if value.is_floating_point() else ~value[0]
    with torch.no_grad():
        l1, v1, s1 = policy.sequence(obs, state, first, alive, return_state=True)
        l2, v2, s2 = policy.sequence(obs2, state2, first2, alive2, return_state=True)
    assert _changed(l1[:, 0], l2[:, 0])
    torch.testing.assert_close(l1[:, 1:], l2[:, 1:], atol=1e-6, rtol=0)
    torch.testing.assert_close(v1[:, 1:], v2[:, 1:], atol=1e-6, rtol=0)
    assert_state_equal({k: v[1:] for k, v in s1.items()}, {k: v[1:] for k, v in s2.items()},
                       atol=1e-6)


def _obs_grad(policy, t_len=4, n=2, a=3):
    obs, _, _ = inputs(t_len, n, a, seed=5)
    obs.requires_grad_(True)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    logits, _ = policy.sequence(obs, policy.initial_state(n, a), first)
    logits[-1, 0, 0].sum().backward()
    return obs.grad.flatten(3).abs().sum(-1)                               # [T, N, A]


def test_detach_other_memories_blocks_gradient_between_agents():
    detached = _obs_grad(make("srmt"))
    attached = _obs_grad(make("srmt", memory_grad="segment"))
    assert (detached[:, 0, 1:] == 0).all()        # agent 0 gets no gradient into agents 1, 2
    assert (attached[:-1, 0, 1:] > 0).all()       # ... unless end-to-end through the memories
    assert (attached[-1, 0, 1:] == 0).all()       # the same step is never read (one-step lag)
    for grad in (detached, attached):
        assert (grad[:, 0, 0] > 0).all()          # own history / memory: BPTT over the segment
        assert (grad[:, 1] == 0).all()            # never into another env
    rmt = _obs_grad(make("rmt"))
    assert (rmt[:, 0, 1:] == 0).all() and (rmt[:, 0, 0] > 0).all()


def test_configs_saved_before_memory_grad_load_as_what_they_meant():
    assert make("srmt").config.memory_grad == "own"
    assert make("srmt", bptt=False).config.memory_grad == "none"
    assert make("srmt", detach_other_memories=False).config.memory_grad == "segment"
    assert make("srmt", bptt=False, detach_other_memories=False).config.memory_grad == "none"
    config = make("gru", bptt=True, detach_other_memories=True).config
    assert config.memory_grad == "own" and config.bptt and config.detach_other_memories


def test_memory_grad_none_truncates_gradient_through_time():
    grad = _obs_grad(make("srmt", memory_grad="none"))
    assert (grad[:-1] == 0).all() and (grad[-1, 0, 0] > 0).all()


def test_single_agent_gradients_do_not_depend_on_detach():
    """With A = 1 the pool holds only the agent's own memory, which keeps its gradient."""
    grads = []
    for memory_grad in ("own", "segment"):
        policy = make("srmt", memory_grad=memory_grad)
        obs, _, _ = inputs(5, 2, 1, seed=9)
        first = torch.zeros(5, 2, 1, dtype=torch.bool)
        first[0] = True
        logits, values = policy.sequence(obs, policy.initial_state(2, 1), first)
        (logits.square().sum() + values.sum()).backward()
        grads.append({k: p.grad.clone() for k, p in policy.named_parameters()})
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("slots", [1, 2])
def test_shared_read_detach_matches_naive_per_query_keys(slots):
    """Per-receiver masks (drop / radius) and several slots per agent (RATE's memory tokens)."""
    torch.manual_seed(0)
    n, a, lq, d, h = 2, 4, 2, 16, 4
    p = a * slots
    read = SharedMemoryRead(d, h, 0.0)
    for param in read.parameters():                   # larger weights: non-trivial softmax
        torch.nn.init.normal_(param, std=0.3)
    x = torch.randn(n, a, lq, d, requires_grad=True)
    pool = torch.randn(n, p, d, requires_grad=True)
    valid = torch.rand(n, a, p, generator=torch.Generator().manual_seed(1)) < 0.6
    valid[1] = False                                  # env 1: nothing to read
    valid[0, 2] = False                               # receiver 2 of env 0 reads nothing
    out = read(x, pool, valid, detach_others=True)
    # naive: per query agent i, keys/values from the pool with every other agent's slot detached
    rows = []
    hd = d // h
    for i in range(a):
        own = torch.zeros(p, dtype=torch.bool)
        own[i * slots:(i + 1) * slots] = True
        keys_in = torch.where(own[None, :, None], pool, pool.detach())           # [N, P, D]
        k, v = read.key_value(keys_in).split(d, dim=-1)
        q = read.query(x[:, i])                                                  # [N, Lq, D]
        q, k, v = (z.view(n, -1, h, hd).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)                         # [N, H, Lq, P]
        mask = valid[:, i]                                                       # [N, P]
        scores = scores.masked_fill(~mask[:, None, None], -1e30)
        probs = torch.softmax(scores, -1) * mask[:, None, None]
        ctx = (probs @ v).transpose(1, 2).reshape(n, lq, d)
        rows.append(read.proj(ctx) * mask.any(-1)[:, None, None])
    naive = torch.stack(rows, dim=1)
    torch.testing.assert_close(out, naive, atol=1e-6, rtol=1e-5)
    assert (out[1] == 0).all() and (out[0, 2] == 0).all()   # no valid slot: zeros, no NaN
    weight = torch.randn_like(out)
    g1 = torch.autograd.grad((out * weight).sum(), [x, pool, *read.parameters()])
    g2 = torch.autograd.grad((naive * weight).sum(), [x, pool, *read.parameters()])
    for u, w in zip(g1, g2):
        torch.testing.assert_close(u, w, atol=1e-6, rtol=1e-5)
        assert torch.isfinite(u).all()


def test_clear_finished_memory_hides_finished_agents():
    n, a = 1, 2
    obs, _, _ = inputs(2, n, a)
    first = torch.tensor([[[True, True]], [[False, False]]])
    alive = torch.tensor([[[True, True]], [[True, False]]])
    out = {}
    for clear in (False, True):
        policy = amplified("srmt", clear_finished_memory=clear)
        with torch.no_grad():
            out[clear] = _outputs(*policy.sequence(obs, policy.initial_state(n, a), first,
                                                   alive))
    torch.testing.assert_close(out[False][0], out[True][0], atol=0, rtol=0)
    assert _changed(out[False][1, 0, 0], out[True][1, 0, 0])


def test_causal_and_full_masks_differ_only_in_the_memory_update():
    n, a = 2, 3
    full = amplified("srmt")
    causal = make("srmt", attention="causal_mem_first")
    causal.load_state_dict(full.state_dict())
    obs, _, _ = inputs(3, n, a)
    first = torch.zeros(3, n, a, dtype=torch.bool)
    first[0] = True
    with torch.no_grad():
        lf, _, sf = run_steps(full, obs[:2], full.initial_state(n, a), first[:2], first[:2] | 1)
        lc, _, sc = run_steps(causal, obs[:2], causal.initial_state(n, a), first[:2],
                              first[:2] | 1)
        # step 0 initialises the memory from the last token; step 1's action token sees
        # everything under both masks: identical logits; the step-1 memory update differs
        torch.testing.assert_close(lf, lc, atol=1e-6, rtol=0)
        assert _changed(sf["memory"], sc["memory"])
        lf2 = _outputs(*full.step(obs[2], sf, first[2])[:2])
        lc2 = _outputs(*causal.step(obs[2], sc, first[2])[:2])
    assert _changed(lf2, lc2)


# ---------------------------------------------------------------------------------------------
# configs, registry, parameter counts


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_srmt_reference(capsys):
    rows = []
    for name in NAMES:
        counts = make(name).parameter_counts()
        rows.append(f"{name:10s} total {counts['total']:>9,d}  effective {counts['effective']:>9,d}")
    srmt = make("srmt")
    # reference/srmt.md §7 (Bottleneck, D = 16): encoder 4,608, GPT-2 block with cross-attention
    # 4,400, ln_f 32, mem_head 256, heads 102; our position table has 10 rows (160) instead of
    # 16384 (262,144), so total 9,558 and effective 9,398 (§7: ~9.4k).
    assert _count(srmt.encoder) == 4608
    assert _count(srmt.core.blocks) == 4400
    assert _count(srmt.core.ln_f) == 32 and _count(srmt.core.mem_head) == 256
    assert _count(srmt.heads) == 102
    assert srmt.parameter_counts() == {"total": 9558, "effective": 9398}
    # RMT has no cross-attention (1,088 + LN 32 fewer); the released LocalMemAttnCore kept it
    assert make("rmt").parameter_counts() == {"total": 8438, "effective": 8278}
    lmapf = make_agent("srmt", (3, 11, 11), 5, preset="lmapf")
    assert _count(lmapf.encoder) == 4_558_080              # §7: ≈ 4.56M
    assert _count(lmapf.core.blocks) == 4_204_032          # §7: 4,204,032
    counts = lmapf.parameter_counts()
    assert counts["total"] - counts["effective"] == 10 * 512
    rows.append(f"srmt-lmapf total {counts['total']:>9,d}  effective {counts['effective']:>9,d}")
    with capsys.disabled():
        print("\n" + "\n".join(rows))


def test_position_table_scale():
    """Default: the released nn.Embedding's N(0, 1) (the same draw as before the option existed);
    the tmaze preset: GPT-2's 0.02, so a row no longer dwarfs a vector observation's encoding."""
    torch.manual_seed(3)
    default = make_agent("srmt", (4,), 4, preset="tmaze", position_init_std=1.0).core.position
    torch.manual_seed(3)
    small = make_agent("srmt", (4,), 4, preset="tmaze").core.position
    assert torch.allclose(small, default * 0.02)
    assert 0.8 < default.std().item() < 1.2
    torch.manual_seed(3)
    bottleneck = make_agent("srmt", (3, 5, 5), 5).core.position
    torch.manual_seed(3)
    assert torch.equal(bottleneck, make_agent("srmt", (3, 5, 5), 5, position_init_std=1.0).core.position)


def test_registry_and_make_agent():
    assert set(NAMES) >= {"srmt", "rmt", "attention", "empty", "gru", "lstm"}
    for entry in AGENTS:
        assert entry.description and "\n" not in entry.description
    policy = make_agent("rmt", OBS, K, d_model=8, num_heads=2)
    assert policy.config.share_memory is False and policy.config.d_model == 8
    assert policy.num_actions == K
    assert make_agent("attention", OBS, K).config.use_memory is False


@pytest.mark.parametrize("name,kw,words", [
    ("srmt", {"bogus": 1}, ["'bogus'", "valid keys", "num_heads"]),
    ("gru", {"history_len": 4}, ["'history_len'", "gru_hidden"]),
    ("gru", {"num_heads": 3}, ["divisible"]),
    ("lstm", {"memory_drop": 1.0}, ["memory_drop"]),
    ("srmt", {"memory_radius": -1}, ["memory_radius"]),
    ("srmt", {"attention": "sparse"}, ["attention"]),
    ("srmt", {"num_heads": 3}, ["divisible"]),
    ("srmt", {"use_memory": False}, ["share_memory"]),
    ("srmt", {"memory_delay": 0}, ["memory_delay"]),
    ("srmt", {"d_model": "16"}, ["d_model"]),
    ("srmt", {"preset": "huge"}, ["preset", "lmapf"]),
    ("nope", {}, ["unknown agent", "srmt"]),
])
def test_bad_config_raises_one_line_error(name, kw, words):
    with pytest.raises(MemarlError) as info:
        make_agent(name, OBS, K, **kw)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_input_shapes_raise():
    policy = make("srmt")
    state = policy.initial_state(2, 3)
    with pytest.raises(MemarlError, match="obs"):
        policy.step(torch.randn(2, 3, 3, 7, 7), state, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(MemarlError, match="first"):
        policy.step(torch.randn(2, 3, *OBS), state, torch.zeros(3, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_cuda_matches_cpu(name, kw):
    n, a, t_len = 3, 5, 6
    policy = make(name, **kw)
    obs, first, alive = inputs(t_len, n, a)
    with torch.no_grad():
        lc, vc = policy.sequence(obs, policy.initial_state(n, a), first, alive)
        gpu = policy.cuda()
        state = gpu.initial_state(n, a)
        assert all(v.is_cuda for v in state.values())
        obs, first, alive = obs.cuda(), first.cuda(), alive.cuda()
        lg, vg = gpu.sequence(obs, state, first, alive)
        ls, vs, _ = run_steps(gpu, obs, state, first, alive)
    torch.testing.assert_close(lg.cpu(), lc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(vg.cpu(), vc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ls, lg, atol=1e-5, rtol=0)
    logits, values = gpu.sequence(obs, state, first, alive)
    (logits.square().sum() + values.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)


def test_dropout_is_configurable_and_off_in_eval_mode():
    n, a, t_len = 2, 3, 3
    policy = make("srmt", dropout=0.1)
    obs, first, alive = inputs(t_len, n, a)
    state = policy.initial_state(n, a)
    torch.manual_seed(0)
    train_logits, _ = policy.sequence(obs, state, first, alive)
    policy.eval()
    with torch.no_grad():
        l1, _, _ = run_steps(policy, obs, state, first, alive)
        l2, _ = policy.sequence(obs, state, first, alive)
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=0)
    assert torch.isfinite(train_logits).all() and not torch.equal(train_logits, l2)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_autocast_runs_without_nan(name):
    n, a, t_len = 2, 3, 3
    policy = make(name)
    obs, first, alive = inputs(t_len, n, a)
    first[0] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, values = policy.sequence(obs, policy.initial_state(n, a), first, alive)
    assert torch.isfinite(logits.float()).all() and torch.isfinite(values.float()).all()
    (logits.float().square().sum() + values.float().sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------
# shared memory as a component: every agent that can share, and the broadcast options


def test_shareable_list_is_complete():
    from memarl.agents import agent_config_class
    for name in NAMES:
        has_option = "share_memory" in {f.name for f in
                                        __import__("dataclasses").fields(agent_config_class(name))}
        assert has_option == (name in SHAREABLE or name in ("rmt", "attention")), name


@pytest.mark.parametrize("name", SHAREABLE)
def test_shared_memory_reads_other_agents_with_one_step_lag(name):
    """(RATE broadcasts its memory tokens, rewritten after every 8th step: read at step 9.)"""
    t0 = 1
    base, pert = _perturbed_logits(amplified(name, share_memory=True), t0, env=0, agent=1,
                                   t_len=12)
    assert _same(base[: t0 + 1, 0, 0], pert[: t0 + 1, 0, 0])   # nothing before / at t0
    assert _changed(base[t0 + 1:, 0, 0], pert[t0 + 1:, 0, 0])   # read from t0 + 1 on
    assert _same(base[:, 1], pert[:, 1])                       # never another env


@pytest.mark.parametrize("name", [n for n in SHAREABLE if n != "srmt"])
def test_private_memory_by_default(name):
    base, pert = _perturbed_logits(amplified(name), 1, env=0, agent=1)
    assert _same(base[:, 0, 0], pert[:, 0, 0])


def _positions(t_len, n, a, seed=4):
    return torch.randint(0, 6, (t_len, n, a, 2), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", SHAREABLE)
@pytest.mark.parametrize("options", [{"memory_radius": 3}, {"memory_drop": 0.4},
                                     {"memory_radius": 0, "memory_delay": 2}])
def test_broadcast_options_step_equals_sequence(name, options):
    t_len, n, a = 6, 3, 4
    policy = make(name, share_memory=True, **options)
    state0 = policy.initial_state(n, a)
    obs, first, alive = inputs(t_len, n, a, seed=2)
    positions = _positions(t_len, n, a)
    with torch.no_grad():
        steps, state = [], state0
        for t in range(t_len):
            logits, values, state = policy.step(obs[t], state, first[t], alive[t], positions[t])
            steps.append(logits)
        l2, _, s2 = policy.sequence(obs, state0, first, alive, positions, return_state=True)
    torch.testing.assert_close(torch.stack(steps), l2, atol=1e-5, rtol=0)
    assert_state_equal(state, s2, atol=1e-5)


@pytest.mark.parametrize("name", SHAREABLE)
def test_radius_limits_whom_an_agent_reads(name):
    t_len, n, a = 12, 1, 3          # RATE reads memory tokens written after step 8
    policy = amplified(name, share_memory=True, memory_radius=2)
    obs, _, _ = inputs(t_len, n, a, seed=11)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    positions = torch.tensor([[0, 0], [1, 1], [5, 5]]).expand(t_len, n, a, 2)  # 0-1 near, 2 far
    outputs = []
    for agent in (None, 1, 2):
        perturbed = obs.clone()
        if agent is not None:
            perturbed[0, 0, agent] += 1.0
        with torch.no_grad():
            outputs.append(_outputs(*policy.sequence(perturbed, policy.initial_state(n, a),
                                                     first, None, positions)))
    base, near, far = outputs
    assert _changed(base[1:, 0, 0], near[1:, 0, 0])     # agent 1 is within distance 2
    assert _same(base[:, 0, 0], far[:, 0, 0])           # agent 2 is 10 cells away


def test_radius_without_positions_is_a_one_line_error():
    policy = make("srmt", memory_radius=2)
    with pytest.raises(MemarlError, match="positions"):
        policy.step(torch.zeros(1, 2, *OBS), policy.initial_state(1, 2),
                    torch.ones(1, 2, dtype=torch.bool))


def test_drop_loses_each_memory_with_its_probability_per_receiver():
    from memarl.memory.broadcast import MemoryChannel
    torch.manual_seed(0)
    n, a, steps, p = 64, 4, 200, 0.3
    channel = MemoryChannel(summary_dim=2, drop=p)
    state = channel.initial_state(n, a, "cpu", torch.float32)
    alive = torch.ones(n, a, dtype=torch.bool)
    kept, patterns = [], []
    for _ in range(steps):
        state = channel.write(torch.randn(n, a, 2), alive, state, alive)
        _, valid = channel.read(state, alive, None)                  # [N, A, A]
        patterns.append(valid)
        kept.append(valid[:, ~torch.eye(a, dtype=torch.bool)].float().mean())
        assert valid[:, torch.eye(a, dtype=torch.bool)].all()        # own memory always read
    assert abs(torch.stack(kept).mean().item() - (1 - p)) < 0.01
    stacked = torch.stack(patterns)                                  # [steps, N, A, A]
    assert not torch.equal(stacked[:, 0], stacked[:, 1])             # envs drop independently
    assert not torch.equal(stacked[:, :, 0, 1], stacked[:, :, 1, 0])  # receivers too


def test_default_broadcast_options_are_plain_srmt():
    plain = make("srmt")
    explicit = make("srmt", memory_delay=1, memory_drop=0.0, memory_radius=None,
                    clear_finished_memory=False)
    obs, first, alive = inputs(5, 2, 3)
    with torch.no_grad():
        a1 = plain.sequence(obs, plain.initial_state(2, 3), first, alive)
        a2 = explicit.sequence(obs, explicit.initial_state(2, 3), first, alive)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])


@pytest.mark.parametrize("name,kw", [(name, {}) for name in NAMES] +
                         [(name, {"share_memory": True}) for name in SHAREABLE])
def test_no_gradient_crosses_an_episode_boundary(name, kw):
    """After every agent of env 0 starts a new episode at t0, nothing before t0 matters."""
    t_len, n, a, t0 = 6, 2, 3, 3
    policy = make(name, **kw)
    obs, _, _ = inputs(t_len, n, a, seed=8)
    obs.requires_grad_(True)
    first = torch.zeros(t_len, n, a, dtype=torch.bool)
    first[0] = True
    first[t0, 0] = True
    logits, values = policy.sequence(obs, policy.initial_state(n, a), first)
    (_outputs(logits, values)[t0:, 0] * torch.randn(t_len - t0, a, K + 1)).sum().backward()
    assert (obs.grad[:t0, 0] == 0).all()
    assert (obs.grad[t0:, 0] != 0).any()
