"""The async engine, learner side: actor processes sample while the learner trains.

``num_actors`` actor processes (:mod:`memarl.train.actor`) each step their own share of the envs
with the newest published weights and write segments into their shared-memory slots
(:mod:`memarl.train.transport`). The learner takes one segment of every actor as one batch
``[T, N, A]`` (all envs, whole env groups side by side, each once per update, as in the sync
loop), trains on it and publishes the new weights; the actors meanwhile collect the next
segments. One slot per actor: an actor whose segment is waiting starts the next one only when
the learner has taken it, so it acts with the weights of the update running at that moment and
its data is at most one update old when it is trained on (policy lag 0 or 1, by construction).
More slots would not make a learner-bound run faster (the learner is the bottleneck), only
staler; an actor-bound run is bound by its slowest actor either way.

**Lag.** Each segment carries the version of the weights that acted; its lag is the learner's
version minus that. Segments whose lag exceeds ``max_policy_lag`` (a guard: the schedule above
keeps it at 1) are dropped (counted in
``async/dropped_segments``; their episodes are still logged). The learning code corrects the
rest by PPO ratio clipping against the behaviour policy: the ratio in the surrogate is
``pi_theta / mu`` with ``mu`` the logprobs the segment recorded (not the learner's weights at
the start of the update), i.e. exactly the importance weight of the lagged sample, and the clip
truncates it to ``[1 - clip, 1 + clip]`` (Schulman et al.; sample-factory's APPO does the same).
V-trace targets would also correct the value targets, but need an extra forward pass over the
batch with the current weights; with lag 1 or 2 and the clip in place, the bias of GAE over
behaviour values was not worth that cost here (the async and sync runs learn to the same band,
tests/test_async.py).

**Failures.** While it waits for segments the learner checks its actors: one that exited is
named with its exit status; an exception in it (written to the control block) stops the run
with that line, since a restart would meet it again; one killed by a signal, or whose heartbeat
is older than ``actor_timeout_s``, is killed and restarted with fresh episodes, at most
``max_actor_restarts`` times per run, then the run stops with an :class:`ActorFailed`. Nothing
waits without a deadline, so the run never hangs on an actor.
"""
from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from memarl.errors import MemarlError
from memarl.train.actor import (ActorControl, ActorSpec, actor_main, actor_seeds, describe_exit,
                                split_envs)
from memarl.train.rollout import Segment
from memarl.train.transport import TIMINGS, SegmentShape, SegmentSlots, SharedWeights

START_TIMEOUT_S = 120.0
"""seconds an actor may take to import, build its envs and pull the first weights"""
SLOTS_PER_ACTOR = 1
"""segment slots per actor (see the module docstring for why one)"""


class ActorFailed(MemarlError):
    """An actor failed in a way a restart does not mend: an exception in it, or more deaths than
    ``max_actor_restarts``. The CLI exits with code 1 for it."""


@dataclasses.dataclass
class Batch:
    """What the learner trains on next, with what it took to get it."""

    segment: Segment
    next_value: torch.Tensor   # [N, A]
    lags: list[int]            # policy lag of each segment in the batch
    episodes: list[dict]       # episodes that ended in these segments (and in dropped ones)
    dropped: int               # segments dropped for their lag while this batch was gathered
    wait_s: float              # learner seconds spent waiting for full slots
    read_s: float              # learner seconds spent copying segments out of the slots
    actor_timings: dict[str, float]  # mean over the batch's segments of TIMINGS


@dataclasses.dataclass
class EngineSettings:
    """The run settings the engine needs (a subset of TrainConfig)."""

    env: str
    env_options: dict
    agent: str
    agent_options: dict
    num_envs: int
    num_actors: int
    rollout_len: int
    seed: int
    max_policy_lag: int
    actor_timeout_s: float
    max_actor_restarts: int


class _ActorHandle:
    def __init__(self, index: int, num_envs: int, slots: SegmentSlots):
        self.index, self.num_envs, self.slots = index, num_envs, slots
        self.process: multiprocessing.process.BaseProcess | None = None
        self.starts = 0
        self.started_at = 0.0


def _context() -> multiprocessing.context.BaseContext:
    """Forkserver processes: the server imports torch and memarl once, then every actor (and
    every restart) is a fork of it, started in milliseconds and free of the training process's
    threads, locks and open files (forking a process whose OpenMP pool has run can deadlock)."""
    import torch.multiprocessing  # noqa: F401 - registers the shared-tensor reducers

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "memarl.train.actor", "memarl.envs",
                                    "memarl.agents", "memarl.train.rollout"])
    return context


@contextlib.contextmanager
def _main_module_hidden():
    """Start processes without the parent's ``__main__``: multiprocessing runs it again in the
    forkserver and in every child it starts (to find functions pickled by reference to it),
    so a user's script calling ``train()`` without an ``if __name__ == "__main__"`` guard would
    start a training in every actor. The actors need nothing of it (their entry point and
    arguments live in memarl), so it is hidden while a process starts."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class AsyncEngine:
    """Actor processes and their slots; :meth:`next_batch` hands the learner its next batch."""

    def __init__(self, settings: EngineSettings, env: Any, policy: torch.nn.Module,
                 version: int, saved_states: list[dict | None] | None = None,
                 log: Callable[[str], None] | None = None):
        self.settings = settings
        # the actors hand their episodes over for a checkpoint through files here (a state is
        # megabytes of pickled envs, too big and too variable for a fixed shared buffer); not
        # in the run directory, whose temp files are the checkpoints' own
        self.state_dir = Path(tempfile.mkdtemp(prefix="memarl-actors-"))
        self.log = log or (lambda message: print(f"memarl: {message}", file=sys.stderr,
                                                 flush=True))
        sizes = split_envs(settings.num_envs, settings.num_actors)
        self.weights = SharedWeights(policy)
        self.weights.publish(policy, version)
        self.version = version
        self.control = ActorControl(settings.num_actors)
        self.actors = [_ActorHandle(i, size, SegmentSlots(
            SLOTS_PER_ACTOR, SegmentShape.of(env, policy, settings.rollout_len, num_envs=size)))
            for i, size in enumerate(sizes)]
        self.restarts = 0
        self.dropped_total = 0
        self.sampled_agent_steps = 0
        self._context = _context()
        self._save_round = 0
        saved_states = saved_states or [None] * settings.num_actors
        for actor, saved in zip(self.actors, saved_states):
            self._start(actor, saved)

    # ---- processes ---------------------------------------------------------------------------

    def _start(self, actor: _ActorHandle, saved_state: dict | None) -> None:
        s = self.settings
        env_seed, torch_seed = actor_seeds(s.seed, actor.index, actor.starts)
        spec = ActorSpec(index=actor.index, env=s.env, env_options=s.env_options,
                         num_envs=actor.num_envs, env_seed=env_seed, agent=s.agent,
                         agent_options=s.agent_options, rollout_len=s.rollout_len,
                         torch_seed=torch_seed, trainer_pid=os.getpid(),
                         state_file=str(self.state_dir / f".actor-{actor.index}.state"),
                         saved_state=saved_state)
        self.control.clear(actor.index)
        process = self._context.Process(target=actor_main, name=f"memarl-actor-{actor.index}",
                                        args=(spec, self.weights, actor.slots, self.control),
                                        daemon=True)
        with _main_module_hidden():
            process.start()
        actor.process, actor.started_at = process, time.time()
        actor.starts += 1

    def _restart(self, actor: _ActorHandle, reason: str) -> None:
        if self.restarts >= self.settings.max_actor_restarts:
            raise ActorFailed(f"actor {actor.index} (pid {actor.process.pid}) {reason}, and the "
                              f"run has restarted actors {self.restarts} time{'s' * (self.restarts != 1)} already "
                              f"(--max-actor-restarts {self.settings.max_actor_restarts})")
        self.restarts += 1
        self.log(f"warning: actor {actor.index} (pid {actor.process.pid}) {reason}; restarting "
                 f"it with fresh episodes (restart {self.restarts} of at most "
                 f"{self.settings.max_actor_restarts})")
        self._start(actor, None)

    def check_actors(self) -> None:
        """Restart dead or stuck actors, or raise :class:`ActorFailed` (see the module docs)."""
        now = time.time()
        for actor in self.actors:
            process = actor.process
            if process.exitcode is not None:
                message = self.control.error_message(actor.index)
                if message:
                    raise ActorFailed(f"actor {actor.index} (pid {process.pid}) failed: {message}")
                self._restart(actor, describe_exit(process.exitcode))
                continue
            beat = float(self.control.heartbeat[actor.index])
            start_timeout_s = max(START_TIMEOUT_S, self.settings.actor_timeout_s)
            if beat == 0.0:
                if now - actor.started_at > start_timeout_s:
                    self._kill(actor)
                    self._restart(actor, f"did not start within {start_timeout_s:g} s")
            elif now - beat > self.settings.actor_timeout_s:
                self._kill(actor)
                self._restart(actor, f"sent no heartbeat for {now - beat:.0f} s "
                              f"(--actor-timeout-s {self.settings.actor_timeout_s:g}); killed it")

    @staticmethod
    def _kill(actor: _ActorHandle) -> None:
        try:
            os.kill(actor.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        actor.process.join(timeout=5)

    def close(self) -> None:
        """Stop the actors (a few seconds to finish their segment, then SIGKILL)."""
        self.control.stop[0] = 1
        deadline = time.time() + 5
        for actor in self.actors:
            if actor.process is not None:
                actor.process.join(timeout=max(0.0, deadline - time.time()))
                if actor.process.exitcode is None:
                    self._kill(actor)
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # ---- data --------------------------------------------------------------------------------

    def publish(self, policy: torch.nn.Module, version: int) -> None:
        self.weights.publish(policy, version)
        self.version = version

    def next_batch(self, device: torch.device, stop: Callable[[], bool]) -> Batch | None:
        """One segment of every actor (all ``num_envs`` envs, in actor order) with lag <=
        max_policy_lag, as one batch on ``device``; None when ``stop()`` turned true while
        waiting. A segment over the lag bound is dropped and the actor's next one awaited."""
        taken: dict[int, tuple[Segment, torch.Tensor, int]] = {}
        episodes: list[dict] = []
        timings = {name: 0.0 for name in TIMINGS}
        dropped = 0
        wait_s = read_s = 0.0
        last_check = time.perf_counter()
        while len(taken) < len(self.actors):
            t0 = time.perf_counter()
            ready = []  # (actor, its full slot) of the actors not yet in the batch
            for actor in self.actors:
                full = [] if actor.index in taken else actor.slots.full_slots()
                if full:
                    ready.append((actor, full[0]))
            if not ready:
                if stop():
                    return None
                if t0 - last_check > 0.25:
                    self.check_actors()
                    last_check = t0
                time.sleep(0.0005)
                wait_s += time.perf_counter() - t0
                continue
            for actor, slot in ready:
                segment, next_value = actor.slots.read(slot, device)
                episodes += actor.slots.read_episodes(slot)
                slot_timings = actor.slots.timings[slot].tolist()
                actor.slots.mark_free(slot)
                self.sampled_agent_steps += segment.num_agent_steps
                lag = self.version - segment.policy_version
                if lag > self.settings.max_policy_lag:
                    dropped += 1
                    self.dropped_total += 1
                    continue
                taken[actor.index] = segment, next_value, lag
                for name, value in zip(TIMINGS, slot_timings):
                    timings[name] += value / len(self.actors)
            read_s += time.perf_counter() - t0
        ordered = [taken[index] for index in sorted(taken)]
        return Batch(Segment.concat([entry[0] for entry in ordered]),
                     torch.cat([entry[1] for entry in ordered]),
                     [entry[2] for entry in ordered], episodes, dropped, wait_s, read_s, timings)

    def collector_states(self, timeout_s: float = 30.0) -> list[dict | None]:
        """Each actor's collector state (envs mid-episode, memory state), for a checkpoint; None
        for an actor that did not answer within ``timeout_s`` (it resumes with fresh episodes)."""
        self._save_round += 1
        for actor in self.actors:
            self.control.save_request[actor.index] = self._save_round
        deadline = time.time() + timeout_s
        waiting = {actor.index for actor in self.actors}
        while waiting and time.time() < deadline:
            for index in list(waiting):
                alive = self.actors[index].process.exitcode is None
                if not alive or int(self.control.save_done[index]) == self._save_round:
                    waiting.discard(index)
            time.sleep(0.001)
        states = []
        for actor in self.actors:
            path = self.state_dir / f".actor-{actor.index}.state"
            state = None
            if int(self.control.save_done[actor.index]) == self._save_round:
                try:
                    state = torch.load(path, weights_only=False)
                except (OSError, RuntimeError, EOFError):
                    state = None
            path.unlink(missing_ok=True)
            states.append(state)
        return states

    @property
    def env_counts(self) -> list[int]:
        return [actor.num_envs for actor in self.actors]
