"""PPO numerics: GAE against a plain per-agent loop, the loss against hand-computed scalars."""
import math

import numpy as np
import pytest
import torch

from memarl.train.ppo import PPOConfig, adapt_learning_rate, compute_gae, ppo_loss


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
                    normalize_advantages=False)
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
    cfg = PPOConfig(value_clip=0.5, ent_coef=0.0, normalize_advantages=False)
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
