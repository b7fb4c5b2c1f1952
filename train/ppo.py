"""PPO for memory policies over segments ``[T, N, A]``, readable top to bottom (CleanRL style).

* :func:`compute_gae`   advantages and returns per agent, with episode ends and value bootstrap.
* :func:`ppo_loss`      clipped policy loss, clipped value loss, entropy bonus and diagnostics.
* :func:`ppo_update`    epochs over minibatches of whole env groups (shared memory needs all
                        agents of an env side by side), adaptive-KL learning rate.

Samples of agents that are not alive (finished in ``finish`` mode) are masked out of every loss.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn as nn

from memarl.configs import Range, option_label, validate_fields
from memarl.errors import MemarlError
from memarl.train.distributed import mean_over_ranks, sum_over_ranks
from memarl.train.rollout import Segment


@dataclasses.dataclass
class PPOConfig:
    learning_rate: Annotated[float, Range(0, 1, low_exclusive=True)] = 1.3e-4
    """Adam learning rate at the start (the adaptive-KL schedule moves it from there)"""
    lr_schedule: Literal["kl_adaptive", "constant"] = "kl_adaptive"
    """'kl_adaptive' (divide by 1.5 when KL > 2*target, multiply by 1.5 when KL < target/2, after every minibatch) or 'constant'"""
    target_kl: Annotated[float, Range(0, 1000, low_exclusive=True)] = 0.008
    """KL target of the adaptive learning-rate schedule"""
    min_learning_rate: Annotated[float, Range(0, 1)] = 1e-6
    """lower bound of the adaptive learning rate"""
    max_learning_rate: Annotated[float, Range(0, 1, low_exclusive=True)] = 1e-3
    """upper bound of the adaptive learning rate (sample-factory's 1e-2 drove Sparse-reward Bottleneck runs unstable: the first minibatch of every update has KL 0, so the rate climbs to the bound)"""
    gamma: Annotated[float, Range(0, 1)] = 0.9716
    """discount factor"""
    gae_lambda: Annotated[float, Range(0, 1)] = 0.95
    """GAE lambda"""
    clip_coef: Annotated[float, Range(0, 100, low_exclusive=True)] = 0.2
    """PPO ratio clip"""
    value_clip: Annotated[float, Range(0, 1e6)] = 1.0
    """clip of the value change against the rollout's value (absolute, sample-factory style); 0 disables"""
    ent_coef: Annotated[float, Range(0, 100)] = 0.0156
    """entropy bonus coefficient"""
    vf_coef: Annotated[float, Range(0, 1000)] = 0.5
    """value loss coefficient"""
    max_grad_norm: Annotated[float, Range(0, 1e6, low_exclusive=True)] = 4.0
    """gradient-norm clip"""
    update_epochs: Annotated[int, Range(1, 1000)] = 1
    """passes over each rollout"""
    num_minibatches: Annotated[int, Range(1, 1_000_000)] = 4
    """minibatches per epoch; each holds whole env groups (all agents of an env, all T steps)"""
    advantage_normalization: Literal["minibatch", "rollout", "off"] = "minibatch"
    """centre and scale the advantages over the alive samples of each minibatch, of the whole rollout, or not at all"""
    advantage_std_floor: Annotated[float, Range(0, 1e6)] = 0.0
    """the scale divides by max(std, this floor), so a batch whose advantages are only value noise (no reward in it) is not blown up to unit size; in reward units"""
    normalize_returns: bool = False
    """the value head learns returns in units of their running mean and std (sample-factory's
    normalize_returns): with small, rare returns (Sparse rewards) the value loss is otherwise too
    small, next to the unit-size policy loss, to shape the memory they share"""
    max_nonfinite_updates: Annotated[int, Range(1, 1_000_000)] = 10
    """updates in a row with a NaN or inf loss (each such minibatch is skipped, see ppo_update)
    before the run stops with an error instead of training on nothing"""
    value_bootstrap: bool = True
    """on truncation (time limit) add gamma * V(s) to the reward instead of treating it as a terminal state"""

    def validate(self) -> None:
        """Every field against its range, then the rules between fields (one-line MemarlError)."""
        validate_fields(self, label=option_label)
        if self.min_learning_rate > self.max_learning_rate:
            raise MemarlError(f"--min-learning-rate ({self.min_learning_rate:g}) must not exceed "
                              f"--max-learning-rate ({self.max_learning_rate:g})")


class ReturnNormalizer:
    """Running mean and variance of the returns, merged batch by batch (Chan et al.'s parallel
    rule); the value head predicts ``(return - mean) / std``."""

    def __init__(self, var_floor: float = 1e-5) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 0.0
        self.var_floor = var_floor

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var + self.var_floor))

    def update(self, returns: torch.Tensor) -> None:
        """Merge a batch of returns ``[M]`` (float64 arithmetic)."""
        batch = returns.detach().double()
        # the batch of every rank (torchrun), so that every learner replica normalises alike
        n, total, squares = sum_over_ranks(torch.stack(
            [torch.tensor(float(batch.numel()), dtype=torch.float64, device=batch.device),
             batch.sum(), batch.square().sum()])).tolist()
        if n == 0:
            return
        batch_mean = total / n
        batch_var = max(squares / n - batch_mean ** 2, 0.0)
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, n
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = (float(state[k]) for k in ("mean", "var", "count"))


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                next_value: torch.Tensor, gamma: float, gae_lambda: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation per agent.

    Args:
        rewards, values, dones: ``[T, N, A]``; ``dones[t]`` is True when the agent's episode ended
            at step t (arrival or time limit), so ``values[t + 1]`` belongs to another episode.
        next_value: ``[N, A]`` value of the observation after the last step.

    Returns:
        advantages, returns ``[T, N, A]``.
    """
    num_steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(num_steps)):
        following_value = next_value if t == num_steps - 1 else values[t + 1]
        not_done = 1.0 - dones[t].to(rewards.dtype)
        delta = rewards[t] + gamma * following_value * not_done - values[t]
        last_gae = delta + gamma * gae_lambda * not_done * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_mean((x - masked_mean(x, mask)) ** 2, mask).sqrt()


def normalize(advantages: torch.Tensor, mask: torch.Tensor, std_floor: float) -> torch.Tensor:
    """Centre over the alive samples and divide by ``max(std, std_floor)`` (+1e-8)."""
    mask = mask.float()
    centred = advantages - masked_mean(advantages, mask)
    std = masked_mean(centred ** 2, mask).sqrt()
    return centred / (std.clamp_min(std_floor) + 1e-8)


def ppo_loss(new_logits: torch.Tensor, new_values: torch.Tensor, actions: torch.Tensor,
             old_logprobs: torch.Tensor, old_values: torch.Tensor, advantages: torch.Tensor,
             returns: torch.Tensor, mask: torch.Tensor, cfg: PPOConfig
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO objective on one minibatch; every tensor but ``new_logits`` is ``[T, n, A]``.

    Returns the scalar loss to minimise and detached diagnostics (CleanRL names).
    """
    mask = mask.float()
    dist = torch.distributions.Categorical(logits=new_logits)
    new_logprobs = dist.log_prob(actions)
    log_ratio = new_logprobs - old_logprobs
    ratio = log_ratio.exp()

    if cfg.advantage_normalization == "minibatch":
        advantages = normalize(advantages, mask, cfg.advantage_std_floor)

    policy_loss = masked_mean(torch.max(-advantages * ratio,
                                        -advantages * ratio.clamp(1 - cfg.clip_coef,
                                                                  1 + cfg.clip_coef)), mask)
    value_error = (new_values - returns) ** 2
    if cfg.value_clip > 0:
        clipped = old_values + (new_values - old_values).clamp(-cfg.value_clip, cfg.value_clip)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    value_loss = 0.5 * masked_mean(value_error, mask)
    entropy = masked_mean(dist.entropy(), mask)
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy

    with torch.no_grad():
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy.detach(),
            "old_approx_kl": masked_mean(-log_ratio, mask),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask),
            "clipfrac": masked_mean(((ratio - 1).abs() > cfg.clip_coef).float(), mask),
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    v, r = values[mask].double(), returns[mask].double()
    if r.numel() < 2:
        return float("nan")
    var = r.var()
    return float("nan") if var == 0 else float(1 - (r - v).var() / var)


def ppo_update(policy: nn.Module, optimizer: torch.optim.Optimizer, segment: Segment,
               next_value: torch.Tensor, cfg: PPOConfig, generator: np.random.Generator,
               return_normalizer: ReturnNormalizer | None = None) -> dict[str, float]:
    """Advantages of one segment, then ``update_epochs`` passes of minibatched PPO.

    With ``return_normalizer`` (``cfg.normalize_returns``) the policy's values are in its units:
    they are denormalised for the advantages, the returns update its statistics, and the value
    head is trained on the returns normalised by the updated statistics.

    A minibatch whose loss or gradient norm is not finite (NaN or inf) is skipped: no optimizer
    step, no learning-rate change. ``nonfinite_minibatches`` counts them.

    Returns the mean diagnostics of the last epoch (over its finite minibatches) plus
    ``explained_variance``, ``advantage_std``, ``nonfinite_minibatches`` and ``learning_rate``.
    """
    # ---- advantages ---------------------------------------------------------------------------
    values = segment.values                                                    # [T, N, A]
    if return_normalizer is not None:
        values = return_normalizer.denormalize(values)
        next_value = return_normalizer.denormalize(next_value)
    rewards = segment.rewards
    if cfg.value_bootstrap:
        # a time limit is not a terminal state: the reward stands in for the missing future
        time_limit = segment.truncated & ~segment.terminated
        rewards = rewards + cfg.gamma * values * time_limit.float()
    dones = segment.terminated | segment.truncated
    advantages, returns = compute_gae(rewards, values, dones, next_value,
                                      cfg.gamma, cfg.gae_lambda)
    value_targets, old_values = returns, segment.values                        # [T, N, A]
    if return_normalizer is not None:
        return_normalizer.update(returns[segment.alive])
        value_targets = return_normalizer.normalize(returns)
        old_values = return_normalizer.normalize(values)  # the rollout's values in the new units
    advantage_std = float(masked_std(advantages, segment.alive.float()))
    if cfg.advantage_normalization == "rollout":
        advantages = normalize(advantages, segment.alive, cfg.advantage_std_floor)

    # ---- epochs over minibatches of whole env groups ------------------------------------------
    num_envs = segment.obs.shape[1]
    num_minibatches = cfg.num_minibatches
    if num_minibatches > num_envs:  # a minibatch holds whole envs: none may be empty
        raise MemarlError(f"num_minibatches ({num_minibatches}) must not exceed the envs of a "
                          f"segment ({num_envs})")
    epoch_stats: dict[str, list[float]] = {}
    nonfinite_minibatches = 0
    forward_s = backward_s = 0.0  # the time profile of `memarl bench train`
    for _ in range(cfg.update_epochs):
        epoch_stats = {}
        for env_ids in np.array_split(generator.permutation(num_envs), num_minibatches):
            idx = torch.as_tensor(env_ids, device=segment.obs.device)
            mb = segment.select_envs(idx)
            start = time.perf_counter()
            # through __call__ (the policy's forward = sequence), which DDP needs to all-reduce
            logits, new_values = policy(mb.obs, mb.state0, mb.first, mb.alive, mb.positions)
            loss, stats = ppo_loss(logits, new_values, mb.actions, mb.logprobs, old_values[:, idx],
                                   advantages[:, idx], value_targets[:, idx], mb.alive, cfg)
            middle = time.perf_counter()
            forward_s += middle - start
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stats["grad_norm"] = nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            if not (torch.isfinite(loss) and torch.isfinite(stats["grad_norm"])):
                # a NaN or inf would poison the weights and Adam's moments for good: skip the step
                nonfinite_minibatches += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.step()
            backward_s += time.perf_counter() - middle
            if cfg.lr_schedule == "kl_adaptive":  # every learner replica adapts alike
                adapt_learning_rate(optimizer, mean_over_ranks(float(stats["approx_kl"])), cfg)
            for key, value in stats.items():
                epoch_stats.setdefault(key, []).append(float(value))

    result = {key: float(np.mean(v)) for key, v in epoch_stats.items()}
    result["nonfinite_minibatches"] = float(nonfinite_minibatches)
    result["explained_variance"] = explained_variance(values, returns, segment.alive)
    result["advantage_std"] = advantage_std
    if return_normalizer is not None:
        result["return_mean"], result["return_std"] = return_normalizer.mean, return_normalizer.std
    result["learning_rate"] = optimizer.param_groups[0]["lr"]
    result["forward_s"], result["backward_s"] = forward_s, backward_s
    return result


def adapt_learning_rate(optimizer: torch.optim.Optimizer, kl: float, cfg: PPOConfig) -> None:
    """sample-factory's ``kl_adaptive_minibatch`` rule: keep the per-minibatch KL near target."""
    for group in optimizer.param_groups:
        lr = group["lr"]
        if kl > 2.0 * cfg.target_kl:
            lr = max(lr / 1.5, cfg.min_learning_rate)
        elif kl < 0.5 * cfg.target_kl:
            lr = min(lr * 1.5, cfg.max_learning_rate)
        group["lr"] = lr
