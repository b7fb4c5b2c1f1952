"""The learner under DistributedDataParallel: ``ppo_update`` calls the policy's ``forward``, so
DDP all-reduces the gradients. Two gloo ranks, each updating on half of a segment's envs, end
with the weights one process gets from the whole segment (CPU, no GPU needed)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from memarl.agents import make_agent
from memarl.train.ppo import PPOConfig, ReturnNormalizer, ppo_update
from memarl.train.rollout import Segment

T, N, A, OBS = 6, 4, 2, (3, 5, 5)
RANK_SCRIPT = Path(__file__).resolve().parent / "ddp_rank.py"


def synthetic_segment(policy, seed=0) -> tuple[Segment, torch.Tensor]:
    """A segment with every agent alive and no episode end, so that each half of the envs holds
    as many samples as the other (the loss of the whole is then the mean of the halves')."""
    g = torch.Generator().manual_seed(seed)
    shape = (T, N, A)
    segment = Segment(
        obs=torch.rand(T, N, A, *OBS, generator=g), actions=torch.randint(0, 5, shape, generator=g),
        logprobs=torch.full(shape, float(np.log(1 / 5))),
        values=torch.randn(shape, generator=g) * 0.1,
        rewards=torch.randn(shape, generator=g), terminated=torch.zeros(shape, dtype=torch.bool),
        truncated=torch.zeros(shape, dtype=torch.bool), first=torch.zeros(shape, dtype=torch.bool),
        alive=torch.ones(shape, dtype=torch.bool), state0=policy.initial_state(N, A),
        policy_version=0)
    return segment, torch.randn(N, A, generator=g) * 0.1


def ppo_config(variant: str = "plain") -> PPOConfig:
    """``plain``: one step at a constant rate. ``adaptive``: two epochs, the rate adapted to the
    KL between them, returns normalised: what the ranks decide from their data is reduced over
    them (train/distributed.py), so they decide what one process decides from all of it. No
    advantage normalisation: its statistics are each minibatch's own."""
    if variant == "adaptive":
        return PPOConfig(num_minibatches=1, advantage_normalization="off", update_epochs=2,
                         lr_schedule="kl_adaptive", target_kl=1e-6, learning_rate=1e-2,
                         max_learning_rate=0.1, normalize_returns=True)
    return PPOConfig(num_minibatches=1, advantage_normalization="off", lr_schedule="constant",
                     learning_rate=1e-2)


def build(agent):
    torch.manual_seed(0)
    return make_agent(agent, OBS, 5, preset="bottleneck")


@pytest.mark.parametrize("agent, variant", [("gru", "plain"), ("srmt", "plain"),
                                            ("gru", "adaptive")])
def test_two_gloo_ranks_update_like_one_process_on_the_whole_segment(tmp_path, agent, variant):
    ranks = [subprocess.Popen([sys.executable, str(RANK_SCRIPT), str(r), "2", agent,
                               str(tmp_path / "store"), str(tmp_path), variant],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
             for r in range(2)]
    for process in ranks:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-2000:]
    policy = build(agent)
    segment, next_value = synthetic_segment(policy)
    cfg = ppo_config(variant)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate, eps=1e-6)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    normalizer = ReturnNormalizer() if cfg.normalize_returns else None
    ppo_update(policy, optimizer, segment, next_value, cfg, np.random.default_rng(0), normalizer)
    if variant == "adaptive":  # the rate moved between the epochs
        assert optimizer.param_groups[0]["lr"] != cfg.learning_rate
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    moved = 0
    for name, value in policy.state_dict().items():
        for weights in ranks:
            torch.testing.assert_close(weights[name], value, rtol=0, atol=2e-6)
        moved += not torch.equal(value, before[name])
    assert moved > 0


def test_a_half_alone_updates_differently(tmp_path):
    """The check above can fail: without the all-reduce a rank's update on its half differs."""
    policy = build("gru")
    segment, next_value = synthetic_segment(policy)
    whole = build("gru")
    for model, seg, nv in ((policy, segment.select_envs(torch.arange(N // 2)), next_value[:N // 2]),
                           (whole, segment, next_value)):
        optimizer = torch.optim.Adam(model.parameters(), lr=ppo_config().learning_rate, eps=1e-6)
        ppo_update(model, optimizer, seg, nv, ppo_config(), np.random.default_rng(0))
    assert any(not torch.allclose(a, b, atol=2e-6)
               for a, b in zip(policy.state_dict().values(), whole.state_dict().values()))


def test_the_learner_goes_through_forward():
    policy = build("gru")
    calls = []
    policy.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    segment, next_value = synthetic_segment(policy)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    ppo_update(policy, optimizer, segment, next_value, PPOConfig(num_minibatches=2),
               np.random.default_rng(0))
    assert calls == [torch.Size([T, N // 2, A, *OBS])] * 2



def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "memarl", "train", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("asynchronous", ["false", "true"])
def test_torchrun_two_ranks_train_with_rank_0_writing_and_resume(tmp_path, asynchronous):
    """``torchrun --nproc_per_node 2 -m memarl train``: the ranks' agent-steps add up, rank 0
    alone writes the run directory and speaks, and the run resumes under torchrun."""
    from memarl.train.checkpoint import load_checkpoint, newest_readable_checkpoint
    run = tmp_path / "run"
    common = ["--num-envs", "4", "--rollout-len", "8", "--torch-threads", "1",
              "--print-every-s", "1e9"]
    done = torchrun(["--env", "tmaze", "--agent", "gru", "--run-dir", str(run),
                     "--total-steps", "1024", "--async", asynchronous, *common])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1
    payload = load_checkpoint(newest_readable_checkpoint(run / "checkpoints").path)
    # 2 ranks x 4 envs x 1 agent x 8 steps = 64 agent-steps per update
    assert payload["agent_steps"] == 1024 and payload["update"] == 16
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.json", "tb"]

    done = torchrun(["--resume", str(run), "--total-steps", "1536", *common[4:]])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("resuming ") == 1 and "its episodes continued" in done.stdout
    payload = load_checkpoint(newest_readable_checkpoint(run / "checkpoints").path)
    assert payload["agent_steps"] == 1536 and payload["update"] == 24
