"""Shared-memory transport between actor processes and the learner: versioned weights and
segment slots, within one process and across a forked actor process."""
import multiprocessing

import pytest
import torch

import memarl
from memarl.train.rollout import RolloutCollector
from memarl.train.trainer import build_policy
from memarl.train.transport import SegmentShape, SegmentSlots, SharedWeights

ROLLOUT = 5


def env_and_policy(env_id, agent, seed=0):
    env = memarl.make(env_id, num_envs=3, seed=seed)
    torch.manual_seed(seed)
    return env, build_policy(agent, env, {})


def assert_same_segment(a, b):
    for name in ("obs", "actions", "logprobs", "values", "rewards", "terminated", "truncated",
                 "first", "alive", "positions"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), name
    assert a.state0.keys() == b.state0.keys()
    for name in a.state0:
        assert torch.equal(a.state0[name], b.state0[name]), name
    assert a.policy_version == b.policy_version


@pytest.mark.parametrize("env_id, agent", [("bottleneck", "srmt"), ("tmaze", "gru"),
                                           ("tmaze", "rate")])
def test_a_segment_comes_back_from_its_slot_unchanged(env_id, agent):
    env, policy = env_and_policy(env_id, agent)
    collector = RolloutCollector(env, policy, ROLLOUT, torch.device("cpu"), seed=0)
    collector.collect(policy_version=0)  # memory state is not all zeros at the next start
    segment, next_value = collector.collect(policy_version=7)
    slots = SegmentSlots(3, SegmentShape.of(env, policy, ROLLOUT))
    slots.write(1, segment, next_value)
    back, back_value = slots.read(1)
    assert_same_segment(segment, back)
    assert torch.equal(next_value, back_value)
    slots.write(1, *collector.collect(policy_version=8))  # the read copy is the caller's
    assert_same_segment(segment, back)


def test_slots_refuse_what_does_not_fit():
    env, policy = env_and_policy("bottleneck", "gru")
    segment, next_value = RolloutCollector(env, policy, ROLLOUT, torch.device("cpu"),
                                           seed=0).collect(policy_version=0)
    slots = SegmentSlots(2, SegmentShape.of(env, policy, ROLLOUT + 1))
    with pytest.raises(ValueError, match="segment field obs has shape"):
        slots.write(0, segment, next_value)
    with pytest.raises(IndexError, match="slot 2 is not in 0..1"):
        slots.read(2)
    with pytest.raises(ValueError, match="num_slots"):
        SegmentSlots(0, SegmentShape.of(env, policy, ROLLOUT))


def test_weights_are_pulled_only_when_newer():
    _, learner_policy = env_and_policy("tmaze", "gru", seed=0)
    _, actor_policy = env_and_policy("tmaze", "gru", seed=1)
    weights = SharedWeights(learner_policy)
    assert weights.version == -1 and weights.pull(actor_policy, have_version=-1) is None
    weights.publish(learner_policy, version=4)
    assert weights.pull(actor_policy, have_version=4) is None
    assert weights.pull(actor_policy, have_version=3) == 4
    for a, b in zip(learner_policy.state_dict().values(), actor_policy.state_dict().values()):
        assert torch.equal(a, b)


def test_a_half_written_publish_times_out_instead_of_hanging():
    _, policy = env_and_policy("tmaze", "gru")
    weights = SharedWeights(policy)
    weights.publish(policy, version=1)
    weights._counters[0] += 1  # what a publisher that died mid-copy leaves: an odd sequence
    with pytest.raises(TimeoutError, match="half-written"):
        weights.pull(policy, have_version=0, timeout_s=0.05)


def actor_process(weights, slots, seed):
    """What an actor does: pull the newest weights, collect one segment, write it to slot 0."""
    torch.set_num_threads(1)
    env, policy = env_and_policy("bottleneck", "srmt", seed=seed + 1)  # other initial weights
    version = weights.pull(policy, have_version=-1)
    torch.manual_seed(seed)
    collector = RolloutCollector(env, policy, ROLLOUT, torch.device("cpu"), seed=seed)
    slots.write(0, *collector.collect(policy_version=version))


def test_an_actor_process_acts_with_published_weights_and_hands_back_its_segment():
    """A forked actor that pulls version 5 of the learner's weights and collects a segment
    delivers exactly the segment the learner's own weights give with the same seeds."""
    env, policy = env_and_policy("bottleneck", "srmt", seed=0)
    weights = SharedWeights(policy)
    weights.publish(policy, version=5)
    slots = SegmentSlots(2, SegmentShape.of(env, policy, ROLLOUT))
    actor = multiprocessing.get_context("fork").Process(target=actor_process,
                                                        args=(weights, slots, 11))
    actor.start()
    actor.join(timeout=120)
    assert actor.exitcode == 0
    delivered, delivered_value = slots.read(0)
    torch.manual_seed(11)
    expected, expected_value = RolloutCollector(env, policy, ROLLOUT, torch.device("cpu"),
                                                seed=11).collect(policy_version=5)
    assert_same_segment(expected, delivered)
    assert torch.equal(expected_value, delivered_value)
