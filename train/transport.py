"""Transport between actor processes and the learner, in shared memory (no pickling per segment).

* :class:`SharedWeights`: the learner publishes its weights with their version; an actor copies
  them into its own policy when a newer version is there, so actors act with a versioned
  snapshot, never with the learner's live module.
* :class:`SegmentSlots`: a fixed number of segment buffers ``[T, N, A]``; an actor writes a whole
  :class:`~memarl.train.rollout.Segment` (with the policy state at its start, the alive mask and
  the policy version), the episodes that ended in it and its timings into a slot, then marks the
  slot full; the learner reads it from there and marks it free. The mark is a flag in shared
  memory set after the data (x86 keeps stores in order), not a message in a queue: an actor
  killed mid-write leaves its slot free and unread, never a half message in a pipe that the
  learner would then choke on.

Both are allocated once, before the actor processes start (``torch.multiprocessing`` passes the
shared tensors to children by handle), and are written in place afterwards.
"""
from __future__ import annotations

import dataclasses
import pickle
import time
from typing import Any

import torch

from memarl.envs.base import agent_positions
from memarl.train.rollout import FLAG_FIELDS, FLOAT_FIELDS, Segment


class SharedWeights:
    """The newest published weights of a policy and their version, in shared memory.

    Publishing is a sequence lock: the sequence counter is odd while the learner copies, even
    when the weights are whole. A reader copies and keeps its copy only when the counter was even
    and unchanged around it, else it copies again. Nobody holds a lock across processes, so an
    actor that dies mid-read never blocks the learner.
    """

    def __init__(self, policy: torch.nn.Module):
        self.tensors = {name: value.detach().to("cpu", copy=True).share_memory_()
                        for name, value in policy.state_dict().items()}
        self._counters = torch.zeros(2, dtype=torch.int64).share_memory_()  # [sequence, version]
        self._counters[1] = -1  # nothing published yet

    @property
    def version(self) -> int:
        """The version of the published weights (-1 before the first publish)."""
        return int(self._counters[1])

    def publish(self, policy: torch.nn.Module, version: int) -> None:
        """Make ``policy``'s current weights the published ones, as ``version``."""
        state = policy.state_dict()
        self._counters[0] += 1  # odd: being written
        for name, shared in self.tensors.items():
            shared.copy_(state[name].detach())
        self._counters[1] = version
        self._counters[0] += 1  # even: whole

    def pull(self, policy: torch.nn.Module, have_version: int,
             timeout_s: float = 10.0) -> int | None:
        """Copy the published weights into ``policy`` when they are newer than ``have_version``;
        returns their version, or None when there is nothing newer. Raises TimeoutError when no
        whole copy could be read for ``timeout_s`` (a publisher that died mid-write)."""
        if self.version <= have_version:
            return None
        state = policy.state_dict()
        deadline = time.monotonic() + timeout_s
        while True:
            before = int(self._counters[0])
            if before % 2 == 0:
                version = int(self._counters[1])
                for name, shared in self.tensors.items():
                    state[name].copy_(shared)
                if int(self._counters[0]) == before:
                    return version
            if time.monotonic() > deadline:
                raise TimeoutError("the published weights stayed half-written for "
                                   f"{timeout_s:g} s (the publisher died mid-write?)")
            time.sleep(0.0005)


@dataclasses.dataclass(frozen=True)
class SegmentShape:
    """What a slot holds: a segment of ``rollout_len`` steps of ``num_envs`` x ``num_agents`` with
    observations of ``obs_shape``, the memory state's tensors (name -> (shape per env group, dtype))
    and whether the env has grid positions."""

    rollout_len: int
    num_envs: int
    num_agents: int
    obs_shape: tuple[int, ...]
    state: dict[str, tuple[tuple[int, ...], torch.dtype]]
    positions: bool

    @classmethod
    def of(cls, env: Any, policy: torch.nn.Module, rollout_len: int,
           num_envs: int | None = None) -> "SegmentShape":
        """The segments a collector of ``env`` and ``policy`` produces (of ``num_envs`` envs of
        its kind when given: an actor's share)."""
        num_envs = env.num_envs if num_envs is None else num_envs
        state = policy.initial_state(num_envs, env.num_agents, torch.device("cpu"))
        return cls(rollout_len, num_envs, env.num_agents, tuple(env.obs_shape),
                   {k: (tuple(v.shape), v.dtype) for k, v in state.items()},
                   agent_positions(env) is not None)


FREE, FULL = 0, 1
"""slot status: free for an actor to write, or full for the learner to read"""
TIMINGS = ("collect_s", "env_s", "policy_s")
"""an actor's seconds per segment, carried in its slot (see RolloutCollector.timings)"""


class SegmentSlots:
    """``num_slots`` segment buffers of one :class:`SegmentShape` in shared memory, each with its
    status (:data:`FREE` / :data:`FULL`), the episodes that ended in the segment (pickled, up to
    ``episode_bytes``) and the actor's timings."""

    def __init__(self, num_slots: int, shape: SegmentShape, episode_bytes: int | None = None):
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.num_slots, self.shape = num_slots, shape
        lead = (num_slots, shape.rollout_len, shape.num_envs, shape.num_agents)  # [S, T, N, A]

        def zeros(size, dtype):
            return torch.zeros(size, dtype=dtype).share_memory_()

        self.tensors = {"obs": zeros((*lead, *shape.obs_shape), torch.float32),
                        "actions": zeros(lead, torch.long)}
        self.tensors.update({name: zeros(lead, torch.float32) for name in FLOAT_FIELDS})
        self.tensors.update({name: zeros(lead, torch.bool) for name in FLAG_FIELDS})
        if shape.positions:
            self.tensors["positions"] = zeros((*lead, 2), torch.long)
        self.state0 = {name: zeros((num_slots, *size), dtype)
                       for name, (size, dtype) in shape.state.items()}
        self.next_value = zeros((num_slots, shape.num_envs, shape.num_agents), torch.float32)
        self.policy_version = zeros(num_slots, torch.int64)
        self.status = zeros(num_slots, torch.int64)
        # about 100 bytes per pickled episode; every env can end an episode at every step
        self.episode_bytes = episode_bytes or max(1 << 16, 128 * shape.num_envs * shape.rollout_len)
        self.episodes = zeros((num_slots, self.episode_bytes), torch.uint8)
        self.episodes_len = zeros(num_slots, torch.int64)
        self.timings = zeros((num_slots, len(TIMINGS)), torch.float64)

    def write(self, slot: int, segment: Segment, next_value: torch.Tensor) -> None:
        """Copy ``segment`` and the value after it into ``slot`` (a ValueError, writing nothing,
        when its shapes are not the slots')."""
        self._check_slot(slot)
        for name, buffer in self.tensors.items():
            value = getattr(segment, name)
            if value is None or tuple(value.shape) != tuple(buffer.shape[1:]):
                raise ValueError(f"segment field {name} has shape "
                                 f"{None if value is None else list(value.shape)}, the slots "
                                 f"hold {list(buffer.shape[1:])}")
        if (segment.positions is not None) != self.shape.positions:
            raise ValueError("segment positions do not match the slots (an env with grid "
                             "positions has them, others not)")
        if segment.state0.keys() != self.state0.keys():
            raise ValueError(f"segment state has {sorted(segment.state0)}, the slots hold "
                             f"{sorted(self.state0)}")
        for name, buffer in self.tensors.items():
            buffer[slot].copy_(getattr(segment, name))
        for name, buffer in self.state0.items():
            buffer[slot].copy_(segment.state0[name])
        self.next_value[slot].copy_(next_value)
        self.policy_version[slot] = segment.policy_version

    def write_episodes(self, slot: int, episodes: list[dict]) -> list[dict]:
        """Put as many of ``episodes`` into ``slot`` as fit; returns the rest (for the next one)."""
        count = len(episodes)
        while True:
            data = pickle.dumps(episodes[:count], protocol=pickle.HIGHEST_PROTOCOL)
            if len(data) <= self.episode_bytes:
                break
            count //= 2
        self.episodes[slot, :len(data)].copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.episodes_len[slot] = len(data)
        return episodes[count:]

    def read_episodes(self, slot: int) -> list[dict]:
        size = int(self.episodes_len[slot])
        return pickle.loads(self.episodes[slot, :size].numpy().tobytes()) if size else []

    def mark_full(self, slot: int) -> None:
        """Hand ``slot`` to the learner; call after everything of it is written."""
        self.status[slot] = FULL

    def mark_free(self, slot: int) -> None:
        self.status[slot] = FREE

    def full_slots(self) -> list[int]:
        return torch.nonzero(self.status == FULL).flatten().tolist()

    def free_slots(self) -> list[int]:
        return torch.nonzero(self.status == FREE).flatten().tolist()

    def read(self, slot: int, device: torch.device | str = "cpu") -> tuple[Segment, torch.Tensor]:
        """The segment in ``slot`` and the value after it, copied to ``device`` (so that the slot
        may be written again at once)."""
        self._check_slot(slot)
        fields = {name: buffer[slot].to(device, copy=True) for name, buffer in self.tensors.items()}
        state0 = {name: buffer[slot].to(device, copy=True) for name, buffer in self.state0.items()}
        segment = Segment(state0=state0, policy_version=int(self.policy_version[slot]), **fields)
        return segment, self.next_value[slot].to(device, copy=True)

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.num_slots:
            raise IndexError(f"slot {slot} is not in 0..{self.num_slots - 1}")
