"""PPO numerics: GAE against a plain per-agent loop, the loss against hand-computed scalars."""
import math

import numpy as np
import pytest
import torch

from memarl.errors import MemarlError
from memarl.train.ppo import (PPOConfig, ReturnNormalizer, adapt_learning_rate, compute_gae,
                               normalize, ppo_loss, ppo_update)


def gae_plain_loop(rewards, values, dones, next_value, gamma, lam):
    """One agent's trajectory, written the textbook way with Python floats."""
    steps = len(rewards)
    advantages = [0.0] * steps
    running = 0.0
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        nonterminal = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * following * nonterminal - values[t]
        running = delta + gamma * lam * nonterminal * running
        advantages[t] = running
    return advantages


@pytest.mark.parametrize("steps,envs,agents", [(1, 1, 1), (7, 3, 2), (16, 5, 3)])
def test_gae_matches_plain_loop(steps, envs, agents):
    rng = np.random.default_rng(steps * 100 + envs)
    rewards = torch.tensor(rng.normal(size=(steps, envs, agents)), dtype=torch.float64)
    values = torch.tensor(rng.normal(size=(steps, envs, agents)), dtype=torch.float64)
    dones = torch.tensor(rng.random((steps, envs, agents)) < 0.2)
    next_value = torch.tensor(rng.normal(size=(envs, agents)), dtype=torch.float64)
    advantages, returns = compute_gae(rewards, values, dones, next_value, 0.97, 0.9)
    for n in range(envs):
        for a in range(agents):
            expected = gae_plain_loop(rewards[:, n, a].tolist(), values[:, n, a].tolist(),
                                      dones[:, n, a].tolist(), float(next_value[n, a]), 0.97, 0.9)
            assert advantages[:, n, a].tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(returns, advantages + values)


def test_gae_done_cuts_bootstrap():
    rewards = torch.tensor([[[1.0]], [[0.0]]])
    values = torch.tensor([[[0.5]], [[10.0]]])
    dones = torch.tensor([[[True]], [[False]]])
    advantages, _ = compute_gae(rewards, values, dones, torch.tensor([[3.0]]), 0.5, 1.0)
    assert advantages[0, 0, 0].item() == pytest.approx(1.0 - 0.5)      # no value of step 1
    assert advantages[1, 0, 0].item() == pytest.approx(0.0 + 0.5 * 3.0 - 10.0)


def test_ppo_loss_hand_computed():
    cfg = PPOConfig(clip_coef=0.2, value_clip=0.0, ent_coef=0.1, vf_coef=0.5,
                    advantage_normalization="off")
    # one step, one env, three agents; the third is not alive and must not count
    logits = torch.tensor([[[[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]]]])  # [1, 1, 3, 2]
    actions = torch.tensor([[[1, 0, 1]]])
    old_logprobs = torch.tensor([[[math.log(0.5), math.log(0.5), 0.0]]])
    advantages = torch.tensor([[[2.0, -1.0, 100.0]]])
    new_values = torch.tensor([[[1.0, 0.0, 7.0]]])
    returns = torch.tensor([[[3.0, 1.0, -7.0]]])
    mask = torch.tensor([[[True, True, False]]])
    loss, stats = ppo_loss(logits, new_values, actions, old_logprobs, new_values, advantages,
                           returns, mask, cfg)

    # agent 0: p(a=1) = 0.75, ratio 1.5 -> clipped to 1.2 for a positive advantage
    # agent 1: p(a=0) = 0.5,  ratio 1.0 -> unclipped
    policy_loss = (-(2.0 * 1.2) + -(-1.0 * 1.0)) / 2
    value_loss = 0.5 * ((1.0 - 3.0) ** 2 + (0.0 - 1.0) ** 2) / 2
    entropy0 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    entropy = (entropy0 + math.log(2.0)) / 2
    expected = policy_loss + 0.5 * value_loss - 0.1 * entropy
    assert stats["policy_loss"].item() == pytest.approx(policy_loss, rel=1e-6)
    assert stats["value_loss"].item() == pytest.approx(value_loss, rel=1e-6)
    assert stats["entropy"].item() == pytest.approx(entropy, rel=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    log_ratio = math.log(1.5)
    assert stats["approx_kl"].item() == pytest.approx(((1.5 - 1) - log_ratio) / 2, rel=1e-6)


def test_value_clip_limits_value_change():
    cfg = PPOConfig(value_clip=0.5, ent_coef=0.0, advantage_normalization="off")
    logits = torch.zeros(1, 1, 1, 2)
    args = dict(actions=torch.zeros(1, 1, 1, dtype=torch.long),
                old_logprobs=torch.full((1, 1, 1), math.log(0.5)),
                advantages=torch.zeros(1, 1, 1), mask=torch.ones(1, 1, 1, dtype=torch.bool))
    # the new value jumped from 0 to 2 towards a return of 3: the clipped error (0.5 - 3)^2 wins
    _, stats = ppo_loss(logits, torch.full((1, 1, 1), 2.0), old_values=torch.zeros(1, 1, 1),
                        returns=torch.full((1, 1, 1), 3.0), cfg=cfg, **args)
    assert stats["value_loss"].item() == pytest.approx(0.5 * 2.5 ** 2)


def test_adaptive_kl_moves_learning_rate_within_bounds():
    cfg = PPOConfig(target_kl=0.01, min_learning_rate=1e-4, max_learning_rate=1e-3)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    adapt_learning_rate(optimizer, kl=0.05, cfg=cfg)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 / 1.5)
    adapt_learning_rate(optimizer, kl=0.01, cfg=cfg)  # inside the band: unchanged
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 / 1.5)
    for _ in range(20):
        adapt_learning_rate(optimizer, kl=0.0, cfg=cfg)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_normalize_centres_and_scales_over_alive_samples():
    advantages = torch.tensor([[[1.0, 3.0, 1000.0]]])
    mask = torch.tensor([[[True, True, False]]])
    out = normalize(advantages, mask, std_floor=0.0)
    assert out[0, 0, :2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-6)


def test_normalize_floor_keeps_noise_small():
    # advantages of a batch without reward: value noise of size 0.01; a floor of 0.1 leaves it
    # at a tenth of unit size instead of blowing it up to unit size
    noise = torch.tensor([[[0.01, -0.01]]])
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    assert normalize(noise, mask, 0.0).abs().max().item() == pytest.approx(1.0, rel=1e-5)
    assert normalize(noise, mask, 0.1).abs().max().item() == pytest.approx(0.1, rel=1e-5)
    # above the floor the floor does nothing
    signal = torch.tensor([[[2.0, -2.0]]])
    assert normalize(signal, mask, 0.1).abs().max().item() == pytest.approx(1.0, rel=1e-5)


def test_advantage_options_reject_bad_values():
    with pytest.raises(MemarlError, match="advantage"):
        PPOConfig(advantage_std_floor=-1.0).validate()


def test_return_normalizer_merges_batches_exactly():
    rng = np.random.default_rng(3)
    batches = [torch.tensor(rng.normal(loc=5.0, scale=s, size=n)) for s, n in ((0.1, 7), (2.0, 50), (1.0, 1))]
    normalizer = ReturnNormalizer()
    for batch in batches:
        normalizer.update(batch)
    everything = torch.cat(batches)
    assert normalizer.mean == pytest.approx(float(everything.mean()), rel=1e-12)
    assert normalizer.var == pytest.approx(float(everything.var(unbiased=False)), rel=1e-10)
    assert normalizer.count == len(everything)
    x = torch.tensor([1.0, -3.0])
    torch.testing.assert_close(normalizer.denormalize(normalizer.normalize(x)), x)


def _segment_and_policy(reward_scale: float):
    """A Bottleneck segment with rewards times ``reward_scale`` and a policy to update."""
    import memarl
    from memarl.train.rollout import RolloutCollector
    from memarl.train.trainer import build_policy
    torch.manual_seed(0)
    env = memarl.make("bottleneck", num_envs=4, reward="sparse", seed=0)
    policy = build_policy("gru", env, {})
    segment, next_value = RolloutCollector(env, policy, rollout_len=6, device=torch.device("cpu"),
                                           seed=0).collect(policy_version=0)
    segment.rewards = segment.rewards + 0.3 * torch.rand(segment.rewards.shape)
    segment.rewards = segment.rewards * reward_scale
    return policy, segment, next_value


def test_normalized_returns_make_the_update_independent_of_the_reward_scale():
    """The fix of the Sparse-reward collapse: with returns normalised (and advantages too) the
    value loss weighs the same against the policy loss whatever the reward scale, so an update
    on rewards x1000 equals the update on the rewards themselves."""
    updated = []
    for scale in (1.0, 1000.0):
        policy, segment, next_value = _segment_and_policy(scale)
        normalizer = ReturnNormalizer()
        normalizer.load_state_dict({"mean": 0.2 * scale, "var": 0.5 * scale ** 2, "count": 1e4})
        cfg = PPOConfig(normalize_returns=True, lr_schedule="constant", num_minibatches=2)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, eps=1e-6)
        stats = ppo_update(policy, optimizer, segment, next_value, cfg,
                           np.random.default_rng(0), normalizer)
        updated.append((torch.nn.utils.parameters_to_vector(policy.parameters()).detach(), stats))
    (params_1, stats_1), (params_1000, stats_1000) = updated
    torch.testing.assert_close(params_1, params_1000, rtol=0, atol=1e-5)
    assert stats_1000["return_std"] == pytest.approx(1000 * stats_1["return_std"], rel=1e-3)
    # without the normaliser the same two updates differ: the value loss swamps the rest
    moved = []
    for scale in (1.0, 1000.0):
        policy, segment, next_value = _segment_and_policy(scale)
        before = torch.nn.utils.parameters_to_vector(policy.parameters()).detach().clone()
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, eps=1e-6)
        ppo_update(policy, optimizer, segment, next_value,
                   PPOConfig(lr_schedule="constant", num_minibatches=2), np.random.default_rng(0))
        moved.append(torch.nn.utils.parameters_to_vector(policy.parameters()).detach() - before)
    assert (moved[0] - moved[1]).abs().max() > 1e-4


def test_a_nonfinite_minibatch_is_skipped_and_counted(monkeypatch):
    """A NaN loss in one minibatch skips that step only: the other minibatches train, Adam's
    moments stay finite, and the count is reported."""
    import memarl.train.ppo as ppo
    policy, segment, next_value = _segment_and_policy(1.0)
    real_loss, calls = ppo.ppo_loss, []

    def loss_nan_in_the_first_minibatch(*args):
        loss, stats = real_loss(*args)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 1 else loss), stats

    monkeypatch.setattr(ppo, "ppo_loss", loss_nan_in_the_first_minibatch)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, eps=1e-6)
    before = torch.nn.utils.parameters_to_vector(policy.parameters()).detach().clone()
    stats = ppo_update(policy, optimizer, segment, next_value, PPOConfig(num_minibatches=2),
                       np.random.default_rng(0))
    after = torch.nn.utils.parameters_to_vector(policy.parameters()).detach()
    assert stats["nonfinite_minibatches"] == 1 and len(calls) == 2
    assert torch.isfinite(after).all() and not torch.equal(before, after)
    assert all(torch.isfinite(m).all() for s in optimizer.state.values() for m in s.values())
    assert math.isfinite(stats["policy_loss"])


def test_nonfinite_losses_in_a_row_stop_the_run_with_exit_code_1(tmp_path, monkeypatch, capsys):
    import memarl.train.ppo as ppo
    from memarl.cli import main
    real_loss = ppo.ppo_loss
    monkeypatch.setattr(ppo, "ppo_loss", lambda *args: (lambda loss, stats: (
        loss * float("inf"), stats))(*real_loss(*args)))
    run = tmp_path / "run"
    code = main(["train", "--env", "tmaze", "--agent", "gru", "--num-envs", "4", "--rollout-len",
                 "4", "--total-steps", "1000", "--max-nonfinite-updates", "3", "--run-dir",
                 str(run), "--torch-threads", "1", "--checkpoint-every-s", "1e9"])
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "NaN or inf in 3 updates in a row (updates 1..3" in last and "--resume" in last
    assert err.count("were skipped") == 2  # a warning per update, then the error
    assert not list((run / "checkpoints").glob("ckpt_*.pt"))
