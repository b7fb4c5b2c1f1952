"""The learner: the weights being trained and everything a PPO update changes besides them.

A :class:`Learner` owns the policy it trains, the Adam optimizer (whose parameter groups carry
the adaptive learning rate), the running return statistics (``normalize_returns``), the RNG that
draws the minibatches and the update count (``version``, the policy version that actors stamp
on their segments). It consumes :class:`~memarl.train.rollout.Segment` s and knows nothing of
envs, run directories or logging, so the synchronous loop and an asynchronous engine wire the
same learner.

``state_dict`` / ``load_state_dict`` hold all of it, so a checkpoint restores a learner whose
next update equals the uninterrupted run's bit for bit (on the same device and thread count).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import load_error_summary
from memarl.train.ppo import PPOConfig, ReturnNormalizer, ppo_update
from memarl.train.rollout import Segment


class TrainingDiverged(MemarlError):
    """The loss was NaN or inf in ``max_nonfinite_updates`` updates in a row: the run stops (the
    weights are intact, every such step was skipped). The CLI exits with code 1 for it."""


class Learner:
    """PPO on segments for ``policy`` (an :class:`~memarl.agents.heads.ActorCriticPolicy`, or a
    wrapper of one that calls its ``forward``, such as DistributedDataParallel)."""

    def __init__(self, policy: torch.nn.Module, cfg: PPOConfig, seed: int):
        self.policy = policy
        self.cfg = cfg
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-6)
        self.return_normalizer = ReturnNormalizer() if cfg.normalize_returns else None
        self.seed = seed
        self.generator = np.random.default_rng(seed)
        """draws the env groups of each minibatch"""
        self.version = 0
        """updates done: the version of the weights the policy holds now"""
        self.nonfinite_streak = 0
        """updates in a row that met a NaN or inf loss"""

    def learn(self, segment: Segment, next_value: torch.Tensor) -> dict[str, float]:
        """One PPO update on ``segment``; returns its diagnostics (see :func:`ppo_update`).
        Raises :class:`TrainingDiverged` when this is the ``max_nonfinite_updates``-th update in a
        row with a NaN or inf loss."""
        self.policy.train()
        stats = ppo_update(self.policy, self.optimizer, segment, next_value, self.cfg,
                           self.generator, self.return_normalizer)
        self.version += 1
        self.nonfinite_streak = self.nonfinite_streak + 1 if stats["nonfinite_minibatches"] else 0
        if self.nonfinite_streak >= self.cfg.max_nonfinite_updates:
            raise TrainingDiverged(
                f"the loss was NaN or inf in {self.nonfinite_streak} updates in a row (updates "
                f"{self.version - self.nonfinite_streak + 1}..{self.version}; every such step "
                f"was skipped)")
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint keys: ``model``, ``optimizer``, ``update``, ``sampler_rng`` and, when
        returns are normalised, ``return_normalizer``."""
        module = getattr(self.policy, "module", self.policy)  # the weights, not a DDP wrapper
        state = {"model": module.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "update": self.version, "sampler_rng": self.generator.bit_generator.state}
        if self.return_normalizer is not None:
            state["return_normalizer"] = self.return_normalizer.state_dict()
        return state

    def load_state_dict(self, payload: dict[str, Any], path: Path | str, agent: str) -> None:
        """Restore from a checkpoint ``payload`` (read from ``path``, of agent ``agent``), or
        raise a one-line MemarlError naming what does not fit. Checkpoints written before the
        sampler's RNG was saved restart it from the seed and the update count, as their trainer
        did."""
        missing = [key for key in ("model", "optimizer", "update") if key not in payload]
        if missing:
            raise MemarlError(f"cannot resume: {path} lacks {', '.join(missing)}")
        if self.return_normalizer is not None and "return_normalizer" not in payload:
            raise MemarlError(f"cannot resume: {path} lacks the return statistics that "
                              f"normalize_returns needs")
        module = getattr(self.policy, "module", self.policy)
        try:
            module.load_state_dict(payload["model"])
        except RuntimeError as error:
            raise MemarlError(f"cannot resume: the weights in {path} do not fit agent {agent!r} "
                              f"as configured ({load_error_summary(error)})") from None
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            # Adam checks only the number of parameters per group; check each moment's shape too
            for param, state in self.optimizer.state.items():
                for moment in ("exp_avg", "exp_avg_sq"):
                    if moment in state and state[moment].shape != param.shape:
                        raise ValueError(f"{moment} of shape {list(state[moment].shape)} for a "
                                         f"parameter of shape {list(param.shape)}")
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            raise MemarlError(f"cannot resume: the optimizer state in {path} does not fit the "
                              f"model ({load_error_summary(error)})") from None
        if self.return_normalizer is not None:
            self.return_normalizer.load_state_dict(payload["return_normalizer"])
        self.version = int(payload["update"])
        if "sampler_rng" in payload:
            self.generator.bit_generator.state = payload["sampler_rng"]
        else:
            self.generator = np.random.default_rng([self.seed, self.version])
