"""An actor process of the async engine: steps its own env batch with the newest published
weights and hands segments to the learner through its shared-memory slots.

The actor owns whole envs (env groups are never split, so shared memory works in acting as in
learning) and a :class:`~memarl.train.rollout.RolloutCollector` over them. Its loop:

1. answer a checkpoint request (write its collector state to a file the learner reads);
2. wait for a free slot, beating its heartbeat meanwhile;
3. pull the newest weights when a newer version is published;
4. collect one segment (heartbeat after every env step) and write it, the episodes that ended
   in it and its timings into the slot, then mark the slot full.

It stops when the learner sets the stop flag or when the training process is gone (so a
``kill -9`` of the trainer leaves no actors behind). It ignores SIGINT and SIGTERM: Ctrl+C (and
a batch system's SIGTERM) reaches the whole process group, and the learner decides how the run
ends: it asks the actors for their episodes, writes its final checkpoint, then stops them. An exception is written, as one line,
into the control block before the process exits with code 1, so the learner can name it.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import torch

from memarl.train.transport import TIMINGS, SegmentSlots, SharedWeights

ERROR_BYTES = 480
"""room for an actor's one-line error message"""


@dataclasses.dataclass
class ActorSpec:
    """What an actor process builds and where it reports (picklable, sent to the process)."""

    index: int
    """actor number, 0..num_actors-1"""
    env: str
    env_options: dict
    num_envs: int
    """envs of this actor (its share of --num-envs)"""
    env_seed: int
    agent: str
    agent_options: dict
    rollout_len: int
    torch_seed: int
    """seeds action sampling (differs per actor and per restart)"""
    trainer_pid: int
    """the training process; the actor exits when it is gone"""
    state_file: str
    """where to write the collector state when the learner asks for it (for a checkpoint)"""
    saved_state: dict | None = None
    """a collector state to continue (a resumed run), or None for fresh episodes"""


class ActorControl:
    """Shared-memory control block of the actors: heartbeats, the stop flag, checkpoint requests
    and each actor's error line. Allocated by the learner before the actors start."""

    def __init__(self, num_actors: int):
        self.heartbeat = torch.zeros(num_actors, dtype=torch.float64).share_memory_()
        self.stop = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.save_request = torch.zeros(num_actors, dtype=torch.int64).share_memory_()
        self.save_done = torch.zeros(num_actors, dtype=torch.int64).share_memory_()
        self.error = torch.zeros((num_actors, ERROR_BYTES), dtype=torch.uint8).share_memory_()
        self.error_len = torch.zeros(num_actors, dtype=torch.int64).share_memory_()

    def set_error(self, index: int, message: str) -> None:
        data = message.encode("utf-8", "replace")[:ERROR_BYTES]
        self.error[index, :len(data)].copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        self.error_len[index] = len(data)

    def error_message(self, index: int) -> str:
        size = int(self.error_len[index])
        return self.error[index, :size].numpy().tobytes().decode("utf-8", "replace")

    def clear(self, index: int) -> None:
        """Reset actor ``index``'s entries before a (re)start (no heartbeat of its own yet)."""
        self.error_len[index] = 0
        self.heartbeat[index] = 0.0
        self.save_done[index] = self.save_request[index]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Actor:
    """The state of one running actor process."""

    def __init__(self, spec: ActorSpec, weights: SharedWeights, slots: SegmentSlots,
                 control: ActorControl):
        from memarl.envs import make
        from memarl.train.rollout import RolloutCollector
        from memarl.train.trainer import build_policy

        self.spec, self.weights, self.slots, self.control = spec, weights, slots, control
        torch.manual_seed(spec.torch_seed)
        env = make(spec.env, num_envs=spec.num_envs, seed=spec.env_seed, **spec.env_options)
        self.policy = build_policy(spec.agent, env, spec.agent_options)
        self.policy.eval()
        self.version = -1
        self.pull_weights(wait=True)
        self.collector = RolloutCollector(env, self.policy, spec.rollout_len, torch.device("cpu"),
                                          seed=spec.env_seed)
        if spec.saved_state is not None:
            try:
                self.collector.load_state_dict(spec.saved_state)
            except Exception as error:  # noqa: BLE001 - any unpickling failure: fresh episodes
                print(f"memarl: warning: actor {spec.index} cannot continue its saved episodes "
                      f"({type(error).__name__}: {str(error)[:120]}); it starts fresh ones",
                      file=sys.stderr, flush=True)
        self.pending_episodes: list[dict] = []
        self.last_parent_check = time.monotonic()

    def beat(self) -> None:
        self.control.heartbeat[self.spec.index] = time.time()

    def should_stop(self) -> bool:
        if bool(self.control.stop[0]):
            return True
        now = time.monotonic()
        if now - self.last_parent_check > 1.0:
            self.last_parent_check = now
            return not _process_alive(self.spec.trainer_pid)
        return False

    def pull_weights(self, wait: bool = False) -> None:
        while True:
            newer = self.weights.pull(self.policy, self.version)
            if newer is not None:
                self.version = newer
            if self.version >= 0 or not wait or self.should_stop():
                return
            self.beat()
            time.sleep(0.01)

    def answer_save_request(self) -> None:
        index = self.spec.index
        request = int(self.control.save_request[index])
        if request == int(self.control.save_done[index]):
            return
        path = Path(self.spec.state_file)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.collector.state_dict(), tmp)
        os.replace(tmp, path)
        self.control.save_done[index] = request

    def wait_for_free_slot(self) -> int | None:
        while True:
            self.beat()
            self.answer_save_request()
            free = self.slots.free_slots()
            if free:
                return free[0]
            if self.should_stop():
                return None
            time.sleep(0.0005)

    def run(self) -> None:
        while not self.should_stop():
            slot = self.wait_for_free_slot()
            if slot is None:
                return
            self.pull_weights()
            segment, next_value = self.collector.collect(self.version, on_step=self.beat)
            self.slots.write(slot, segment, next_value)
            self.pending_episodes = self.slots.write_episodes(
                slot, self.pending_episodes + self.collector.pop_finished_episodes())
            self.slots.timings[slot] = torch.tensor(
                [self.collector.timings[name] for name in TIMINGS], dtype=torch.float64)
            self.slots.mark_full(slot)
            self.beat()


def actor_main(spec: ActorSpec, weights: SharedWeights, slots: SegmentSlots,
               control: ActorControl) -> None:
    """Entry point of an actor process (see the module docstring)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        _Actor(spec, weights, slots, control).run()
    except BaseException as error:  # noqa: BLE001 - named to the learner, then exit 1
        message = str(error).splitlines()[0] if str(error) else ""
        control.set_error(spec.index, f"{type(error).__name__}: {message}"[:ERROR_BYTES])
        raise SystemExit(1) from None


def actor_seeds(seed: int, index: int, start: int) -> tuple[int, int]:
    """(env seed, torch seed) of actor ``index`` started for the ``start``-th time (0 first):
    every actor and every restart draws other episodes and other actions."""
    env_seed = (seed + 7919 * index + 104_729 * start) % 2**32
    return env_seed, (seed * 31 + 1_000_003 * (index + 1) + 15_485_863 * start) % 2**63


def split_envs(num_envs: int, num_actors: int) -> list[int]:
    """Envs per actor: as even as possible, larger shares first."""
    base, extra = divmod(num_envs, num_actors)
    return [base + (i < extra) for i in range(num_actors)]


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"

