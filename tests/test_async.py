"""The async engine: actor processes, policy lag, failures (killed, stuck, crashing actors) and
async checkpoints. Every wait here has a deadline (``alarm``), so a hang fails the test."""
import os
import signal
import time
from contextlib import contextmanager

import pytest
import torch

import memarl
from memarl.train.actor import describe_exit, split_envs
from memarl.train.async_engine import ActorFailed, AsyncEngine, EngineSettings
from memarl.train.checkpoint import load_checkpoint, newest_readable_checkpoint
from memarl.train.rollout import RolloutCollector, Segment
from memarl.train.trainer import TrainConfig, build_policy, train


@contextmanager
def alarm(seconds: int):
    """Fail instead of hanging: SIGALRM after ``seconds``."""
    def fire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")
    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def settings(**changes) -> EngineSettings:
    values = dict(env="bottleneck", env_options={}, agent="gru", agent_options={}, num_envs=4,
                  num_actors=2, rollout_len=4, seed=0, max_policy_lag=4, actor_timeout_s=20.0,
                  max_actor_restarts=3)
    values.update(changes)
    return EngineSettings(**values)


@contextmanager
def engine_of(tmp_path, log=None, **changes):
    cfg = settings(**changes)
    env = memarl.make(cfg.env, num_envs=cfg.num_envs, seed=0)
    torch.manual_seed(0)
    policy = build_policy(cfg.agent, env, cfg.agent_options)
    messages = []
    engine = AsyncEngine(cfg, env, policy, version=0, log=log or messages.append)
    engine.messages = messages
    engine.policy = policy
    try:
        yield engine
    finally:
        engine.close()


def never() -> bool:
    return False


def test_envs_are_split_into_whole_groups():
    assert split_envs(10, 3) == [4, 3, 3]
    assert split_envs(2, 2) == [1, 1]
    assert sum(split_envs(513, 4)) == 513


def test_segments_of_several_actors_concatenate_along_the_envs():
    env = memarl.make("bottleneck", num_envs=3, seed=0)
    policy = build_policy("srmt", env, {})
    collector = RolloutCollector(env, policy, 4, torch.device("cpu"), seed=0)
    first, _ = collector.collect(policy_version=3)
    second, _ = collector.collect(policy_version=5)
    both = Segment.concat([first, second])
    assert both.obs.shape[:3] == (4, 6, 2) and both.policy_version == 3
    assert torch.equal(both.select_envs(torch.arange(3, 6)).actions, second.actions)
    for name in first.state0:
        assert torch.equal(both.state0[name][:3], first.state0[name])


def test_a_batch_holds_one_segment_per_actor_with_their_envs(tmp_path):
    with alarm(120), engine_of(tmp_path, num_envs=5) as engine:
        batch = engine.next_batch(torch.device("cpu"), never)
        assert batch.segment.actions.shape == (4, 5, 2)
        assert batch.next_value.shape == (5, 2)
        assert batch.lags == [0, 0] and batch.dropped == 0
        assert batch.actor_timings["collect_s"] > 0


def test_segments_older_than_max_policy_lag_are_dropped(tmp_path):
    with alarm(120), engine_of(tmp_path, num_actors=1, max_policy_lag=1) as engine:
        slots = engine.actors[0].slots
        while not slots.full_slots():  # a segment of version 0 is waiting
            time.sleep(0.01)
        engine.publish(engine.policy, version=5)
        batch = engine.next_batch(torch.device("cpu"), never)
        assert batch.dropped == 1 and engine.dropped_total == 1
        assert batch.lags == [0] and batch.segment.policy_version == 5


def test_a_killed_actor_is_named_and_restarted(tmp_path):
    with alarm(120), engine_of(tmp_path) as engine:
        engine.next_batch(torch.device("cpu"), never)
        victim = engine.actors[1].process
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        for _ in range(3):
            batch = engine.next_batch(torch.device("cpu"), never)
        assert engine.restarts == 1 and batch.segment.actions.shape[1] == 4
        assert any(f"actor 1 (pid {victim.pid}) killed by SIGKILL; restarting" in m
                   for m in engine.messages)


def test_a_stuck_actor_is_killed_and_restarted_after_its_timeout(tmp_path):
    with alarm(120), engine_of(tmp_path, actor_timeout_s=1.0) as engine:
        engine.next_batch(torch.device("cpu"), never)
        stuck = engine.actors[0].process
        os.kill(stuck.pid, signal.SIGSTOP)
        start = time.time()
        for _ in range(3):
            engine.next_batch(torch.device("cpu"), never)
        assert engine.restarts == 1 and time.time() - start < 30
        assert stuck.exitcode == -signal.SIGKILL
        assert any("sent no heartbeat" in message for message in engine.messages)


def test_more_actor_deaths_than_allowed_stop_the_run_with_a_named_error(tmp_path):
    with alarm(120), engine_of(tmp_path, max_actor_restarts=0) as engine:
        engine.next_batch(torch.device("cpu"), never)
        pid = engine.actors[0].process.pid
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ActorFailed, match=rf"actor 0 \(pid {pid}\) killed by SIGKILL.*"
                                              r"--max-actor-restarts 0"):
            for _ in range(5):
                engine.next_batch(torch.device("cpu"), never)


def test_an_exception_in_an_actor_stops_the_run_with_its_message(tmp_path):
    cfg = settings()
    env = memarl.make("bottleneck", num_envs=4, seed=0)
    policy = build_policy("gru", env, {})
    cfg.agent_options = {"no_such_option": 1}  # the actors fail to build their policy
    engine = AsyncEngine(cfg, env, policy, version=0, log=print)
    try:
        with alarm(120), pytest.raises(ActorFailed, match=r"actor \d \(pid \d+\) failed: "
                                                          r"\w+: .*no_such_option"):
            engine.next_batch(torch.device("cpu"), never)
    finally:
        engine.close()


def test_actors_hand_over_their_episodes_for_a_checkpoint(tmp_path):
    with alarm(120), engine_of(tmp_path) as engine:
        engine.next_batch(torch.device("cpu"), never)
        states = engine.collector_states(timeout_s=30)
        assert len(states) == 2 and all(state is not None for state in states)
        assert {"env_zlib", "obs", "policy_state"} <= states[0].keys()
        assert not list(engine.state_dir.iterdir())  # the hand-over files are gone
    assert not engine.state_dir.exists()
    assert [describe_exit(actor.process.exitcode) for actor in engine.actors] == \
        ["exited with code 0"] * 2


def tb_scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def test_async_training_measures_lag_within_its_bound_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = TrainConfig(env="bottleneck", agent="srmt", total_steps=4096, num_envs=16,
                      rollout_len=8, run_dir=str(run), num_actors=2, max_policy_lag=1,
                      print_every_s=1e9)
    with alarm(240):
        train(cfg, quiet=True)
    lags = tb_scalars(run, "async/policy_lag_max")
    assert len(lags) == 16 and max(lags) <= 1
    assert min(tb_scalars(run, "async/policy_lag_min")) >= 0
    payload = load_checkpoint(newest_readable_checkpoint(run / "checkpoints").path)
    assert payload["actor_envs"] == [8, 8] and all(payload["actors"])
    assert payload["agent_steps"] == 4096

    cfg.total_steps, cfg.run_dir = 6144, str(run)
    with alarm(240):
        train(cfg, resume=True)
    assert "(4,096 agent-steps, its episodes continued)" in capsys.readouterr().out
    payload = load_checkpoint(newest_readable_checkpoint(run / "checkpoints").path)
    assert payload["agent_steps"] == 6144 and payload["update"] == 24


def test_a_sync_checkpoint_resumes_async_with_fresh_episodes(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = TrainConfig(env="tmaze", agent="gru", total_steps=512, num_envs=8, rollout_len=8,
                      run_dir=str(run), async_=False, print_every_s=1e9)
    train(cfg, quiet=True)
    cfg.total_steps, cfg.async_ = 1024, True
    with alarm(240):
        train(cfg, resume=True)
    captured = capsys.readouterr()
    assert "written by the synchronous loop; the async actors start fresh episodes" in captured.err
    assert "fresh episodes)" in captured.out


def test_a_script_without_a_main_guard_trains_once(tmp_path):
    """multiprocessing would run the parent's __main__ again in every actor; the engine starts
    them without it, so a plain script is not re-run (here: it would find its run directory
    locked and fail every actor)."""
    import subprocess
    import sys
    script = tmp_path / "plain.py"
    script.write_text(
        "from memarl.train.trainer import TrainConfig, train\n"
        f"train(TrainConfig(env='tmaze', agent='gru', total_steps=256, num_envs=4, "
        f"rollout_len=8, run_dir={str(tmp_path / 'run')!r}, print_every_s=1e9), quiet=True)\n"
        "print('trained')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trained") == 1 and "warning" not in done.stderr


def test_a_failing_actor_stops_the_run_with_a_checkpoint_and_exit_code_1(tmp_path, monkeypatch,
                                                                         capsys):
    """An actor failure a restart does not mend ends the run, but not its learning: the learner
    writes a checkpoint first, and the message says how to go on."""
    from memarl.cli import main
    from memarl.train.async_engine import AsyncEngine as Engine
    real_next_batch, calls = Engine.next_batch, []

    def failing_after_three(self, device, stop):
        calls.append(1)
        if len(calls) > 3:
            raise ActorFailed("actor 0 (pid 1) failed: ValueError: boom")
        return real_next_batch(self, device, stop)

    monkeypatch.setattr(Engine, "next_batch", failing_after_three)
    run = tmp_path / "run"
    code = main(["train", "--env", "tmaze", "--agent", "gru", "--num-envs", "4",
                 "--rollout-len", "8", "--total-steps", "100000", "--run-dir", str(run),
                 "--print-every-s", "1e9", "--checkpoint-every-s", "1e9"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "failed: ValueError: boom" in err and f"--resume {run}" in err
    assert "checkpoint at 96 agent-steps" in err  # 3 updates of 4 envs x 8 steps
    payload = load_checkpoint(newest_readable_checkpoint(run / "checkpoints").path)
    assert payload["agent_steps"] == 96 and payload["update"] == 3
